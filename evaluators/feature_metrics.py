"""Experiment 1 of `evaluators.evaluate`: samples and the metrics in every feature space.

Per feature space: FID / KID / precision / recall of the samples against the real images
(`evaluators.fid.compare_activations`, one feature extraction per image set), the Inception score
of the samples' logits, and a reference row of the same numbers for real vs real (two disjoint
random halves of the real images).
"""

from __future__ import annotations

import numpy as np

from evaluators import report as report_lib
from trainers.progress import TaskProgress

SPACE_KEYS = ("fid", "kid", "kid_std", "precision", "recall", "num_real", "num_fake")


def space_metrics(name: str, space, real: np.ndarray, fake: np.ndarray, kid_subsets: int,
                  notes: list, batch_size: int = 64, seed: int = 0) -> dict:
    """Model-vs-real metrics in one feature space, plus the real-vs-real reference.

    Args:
      name: the space's name (progress lines, notes).
      space: a FeatureSpace (`extract(images, batch_size) -> (features [N,D], logits [N,K] | None)`).
      real, fake: uint8 [N,H,W,C] real images and samples.
      kid_subsets: KID subsets. notes: list that gets a line when something is left out.
    Returns:
      {fid, kid, kid_std, precision, recall, num_real, num_fake, info, inception_score,
       inception_score_std, reference: the same keys for real vs real, or None}.
    """
    from evaluators.fid import compare_activations

    with TaskProgress(f"features {name}", len(real) + len(fake), "images") as progress:
        real_feats, real_logits = _extract(space, real, batch_size, progress)
        fake_feats, fake_logits = _extract(space, fake, batch_size, progress)
    result = compare_activations(real_feats, fake_feats, kid_subsets)
    out = {k: result.get(k) for k in SPACE_KEYS}
    out["info"] = dict(getattr(space, "info", None) or {})
    out["inception_score"], out["inception_score_std"] = _inception(fake_logits, name, notes)
    half = len(real_feats) // 2
    order = np.random.default_rng(seed).permutation(len(real_feats))  # halves of the same mix
    try:
        ref = compare_activations(real_feats[order[:half]], real_feats[order[half:2 * half]],
                                  kid_subsets)
        ref = {k: ref.get(k) for k in SPACE_KEYS}
        ref["inception_score"], ref["inception_score_std"] = _inception(real_logits, name, [])
        ref["description"] = ("real vs real: two disjoint random halves of the real images "
                              "(inception_score: of all real images)")
        out["reference"] = ref
    except ValueError as err:
        out["reference"] = None
        notes.append(f"{name}: no real-vs-real reference ({err})")
    return out


def _extract(space, images: np.ndarray, batch_size: int, progress: TaskProgress,
             batches_per_chunk: int = 4):
    """`space.extract` in chunks of whole batches (the same batches as one call, so the same
    numbers), counting the images done in progress."""
    if len(images) == 0:
        return space.extract(images, batch_size=batch_size)
    feats, logits = [], []
    step = batch_size * batches_per_chunk
    for start in range(0, len(images), step):
        chunk = images[start:start + step]
        chunk_feats, chunk_logits = space.extract(chunk, batch_size=batch_size)
        feats.append(np.asarray(chunk_feats))
        logits.append(chunk_logits)
        progress.update(len(chunk))
    if any(part is None for part in logits):
        return np.concatenate(feats), None
    return np.concatenate(feats), np.concatenate([np.asarray(part) for part in logits])


def _inception(logits, name: str, notes: list) -> tuple[float | None, float | None]:
    from evaluators.metrics import inception_score_from_logits

    if logits is None or np.asarray(logits).ndim != 2 or np.asarray(logits).shape[1] < 2:
        notes.append(f"{name}: the feature space has no class logits; no Inception score")
        return None, None
    return inception_score_from_logits(logits, splits=min(10, len(logits)))


def samples_and_spaces(model, real, real_for_metrics, feature_spaces: dict, num_samples: int,
                       kid_subsets: int, notes: list, seed: int):
    """Samples (pictures) and the metrics in every feature space.

    Args:
      model: an `ExportedModel` with `sample`.
      real: uint8 [N,H,W,C] (the first 64 are pictured); real_for_metrics: the subset compared.
      feature_spaces: {name: FeatureSpace}. num_samples: images generated.
    Returns:
      (samples uint8 [num_samples,H,W,C], {space: space_metrics(...)}, {caption: picture uint8}).
    """
    with TaskProgress("sampling", int(num_samples), "images") as progress:
        samples = model.sample(int(num_samples), seed, progress=progress)
    pictures = {}
    for key in sorted((k for k in samples if k.startswith("grid_")), key=lambda k: int(k[5:])):
        pictures[f"samples/{key}"] = report_lib.tile_images(samples[key][:64], ncols=8)
    pictures["samples/real_data"] = report_lib.tile_images(real[:64], ncols=8)
    fake = samples["images"]
    spaces = {name: space_metrics(name, space, real_for_metrics, fake, kid_subsets, notes, seed=seed)
              for name, space in feature_spaces.items()}
    return fake, spaces, pictures


def served_model_metrics(served_dir: str, candidate, real, real_for_metrics, feature_spaces: dict,
                         num_samples: int, kid_subsets: int, notes: list, seed: int):
    """The served model's experiment-1 metrics, recomputed on the candidate's images and seeds.

    Args:
      served_dir: the served SavedModel (e.g. `SERVING_ROOT/NAME/3`; the folder name is its
        version when it is an integer).
      candidate: the candidate `ExportedModel` (the geometry both must share).
      real, real_for_metrics, feature_spaces, num_samples, kid_subsets, seed: exactly those of
        the candidate's experiment 1.
    Returns:
      ({"dir", "version", "family", "feature_spaces": {space: space_metrics(...)}} or, when the
      served model cannot be compared, the same keys with "error" and empty feature_spaces;
      {caption: picture uint8}).
    """
    from evaluators.model_client import ExportedModel

    name = served_dir.rstrip("/").rsplit("/", 1)[-1]
    out = {"dir": served_dir, "version": int(name) if name.isdigit() else None, "family": None,
           "feature_spaces": {}}
    served = ExportedModel(served_dir)
    out["family"] = served.family
    same = (served.image_size, served.channels) == (candidate.image_size, candidate.channels)
    if not same or not served.has("sample"):
        out["error"] = ("the served model has no 'sample' signature" if same else
                        f"the served model makes {served.image_size} px x {served.channels} channels, "
                        f"the candidate {candidate.image_size} px x {candidate.channels}")
        notes.append(f"served model {served_dir}: not compared ({out['error']})")
        return out, {}
    fake, out["feature_spaces"], _ = samples_and_spaces(
        served, real, real_for_metrics, feature_spaces, num_samples, kid_subsets, notes, seed)
    caption = f"samples/served model (version {out['version']})"
    return out, {caption: report_lib.tile_images(fake[:64], ncols=8)}
