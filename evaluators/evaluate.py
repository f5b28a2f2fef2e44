"""Evaluate an exported model end to end: metrics.json, report.html and the blessing.

`evaluate_model` talks to the model only through its SavedModel signatures (`ExportedModel`).
Each experiment declares the signatures it needs (`EXPERIMENTS`); it runs when the model exports
all of them (config.json's `signatures`), otherwise metrics.json's `skipped` and the report
name it with the reason (e.g. `"inpainting": "the model has no 'inpaint' signature"`):
1. samples (`sample`), and per feature space FID / KID / precision / recall
   (`evaluators.fid.compare_activations`, one feature extraction per image set) and the
   Inception score of the samples' logits, with a
   baseline row of the same numbers for real vs real (two halves of the real images);
2. downstream classification (`features`; experiment 2), when labels are given;
3. inpainting (`inpaint`; experiment 3) against mean-fill and interpolation;
4. diversity from shared 1x1 starts (`sample_from_coarse`; figure 5);
5. out-of-distribution detection by energy (`energy`; `evaluators.ood`): AUROC of the held-out
   images against uniform noise, constant images, interpolations and any `ood_sets` given;
6. denoising (`denoise`; `evaluators.denoising`): PSNR / SSIM at each noise level, next to the
   noisy input and non-local means;
7. translation (`translate`; `evaluators.translation`), when source-domain images are given:
   FID / KID of the translated images to the real ones next to those of the untouched source;
8. memorization (`sample`; `evaluators.memorization`), when the training images are given: the
   nearest training image of each sample against that of each held-out real image;
9. blessing by thresholds; metrics.json and report.html in output_dir.

Each experiment shows counted progress on stderr (`trainers.progress.TaskProgress`: a bar on a
terminal, a plain line every 15 s and at the end in logs).
"""

from __future__ import annotations

import os
import time

import numpy as np

from evaluators import blessing as blessing_lib
from evaluators import denoising as denoising_lib
from evaluators import diversity as diversity_lib
from evaluators import downstream as downstream_lib
from evaluators import inpainting as inpainting_lib
from evaluators import memorization as memorization_lib
from evaluators import ood as ood_lib
from evaluators import report as report_lib
from evaluators import translation as translation_lib
from evaluators.model_client import ExportedModel
from trainers.progress import TaskProgress

# Experiment (its key in metrics.json) -> the signatures it needs.
EXPERIMENTS = {
    "feature_spaces": ("sample",),
    "downstream": ("features",),
    "inpainting": ("inpaint",),
    "diversity": ("sample_from_coarse",),
    "ood": ("energy",),
    "denoising": ("denoise",),
    "translation": ("translate",),
    "memorization": ("sample",),
}
_SPACE_KEYS = ("fid", "kid", "kid_std", "precision", "recall", "num_real", "num_fake")


def _space_metrics(name: str, space, real: np.ndarray, fake: np.ndarray, kid_subsets: int,
                   notes: list, batch_size: int = 64, seed: int = 0) -> dict:
    """Model-vs-real metrics in one feature space, plus the real-vs-real reference.

    Each image set is run through the space once (`space.extract`); FID / KID / precision /
    recall come from `evaluators.fid.compare_activations` (the activation half of
    `compare_image_sets`), the Inception score from the same pass's logits.
    """
    from evaluators.fid import compare_activations

    with TaskProgress(f"features {name}", len(real) + len(fake), "images") as progress:
        real_feats, real_logits = _extract(space, real, batch_size, progress)
        fake_feats, fake_logits = _extract(space, fake, batch_size, progress)
    result = compare_activations(real_feats, fake_feats, kid_subsets)
    out = {k: result.get(k) for k in _SPACE_KEYS}
    out["info"] = dict(getattr(space, "info", None) or {})
    out["inception_score"], out["inception_score_std"] = _inception(fake_logits, name, notes)
    half = len(real_feats) // 2
    order = np.random.default_rng(seed).permutation(len(real_feats))  # halves of the same mix
    try:
        ref = compare_activations(real_feats[order[:half]], real_feats[order[half:2 * half]],
                                  kid_subsets)
        ref = {k: ref.get(k) for k in _SPACE_KEYS}
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


def _split(images, labels, test_images, test_labels, seed: int, notes: list):
    """Labelled pool and held-out split: the given test set, or a seeded random 20% of the reals."""
    if test_images is not None:
        return images, labels, np.asarray(test_images), np.asarray(test_labels)
    n_test = max(1, len(images) // 5)
    order = np.random.default_rng(seed).permutation(len(images))
    test, pool = order[:n_test], order[n_test:]
    notes.append(f"downstream: no test set given; a random {n_test} of the real images are held out")
    return images[pool], labels[pool], images[test], labels[test]


def _columns_figure(examples: dict) -> np.ndarray:
    """{column: uint8 [k,H,W,C]} -> one picture, a row per image and a column per entry."""
    stacked = np.stack(list(examples.values()), axis=1)  # [k, columns, H, W, C]
    return report_lib.tile_images(stacked.reshape((-1,) + stacked.shape[2:]), ncols=len(examples))


def _samples_and_spaces(model, real, real_for_metrics, metrics, images, feature_spaces, num_samples,
                        kid_subsets, notes, timings, seed) -> np.ndarray:
    """Experiment 1: samples (pictures) and the metrics in every feature space; returns the samples."""
    t = time.time()
    with TaskProgress("sampling", int(num_samples), "images") as progress:
        samples = model.sample(int(num_samples), seed, progress=progress)
    fake = samples["images"]
    for key in sorted((k for k in samples if k.startswith("grid_")), key=lambda k: int(k[5:])):
        images[f"samples/{key}"] = report_lib.tile_images(samples[key][:64], ncols=8)
    images["samples/real_data"] = report_lib.tile_images(real[:64], ncols=8)
    timings["sample"] = time.time() - t
    t = time.time()
    metrics["feature_spaces"] = {
        name: _space_metrics(name, space, real_for_metrics, fake, kid_subsets, notes, seed=seed)
        for name, space in feature_spaces.items()}
    timings["feature_spaces"] = time.time() - t
    return fake


def missing_signatures(model: ExportedModel) -> dict[str, str]:
    """{experiment: reason} for every experiment of EXPERIMENTS whose signatures the model lacks."""
    skipped = {}
    for name, needs in EXPERIMENTS.items():
        lacking = [sig for sig in needs if not model.has(sig)]
        if lacking:
            skipped[name] = "the model has no " + " or ".join(f"{sig!r}" for sig in lacking) + " signature"
    return skipped


def evaluate_model(model_dir: str, real_images, real_labels, output_dir: str, feature_spaces: dict,
                   num_samples: int = 1000, kid_subsets: int = 10,
                   label_counts=(1000, 2000, 4000), masks=inpainting_lib.MASK_KINDS,
                   num_inpaint: int = 100, num_diversity: int = 16, thresholds=(),
                   log_dir: str | None = None, random_model_dir: str | None = None, seed: int = 0,
                   test_images=None, test_labels=None, num_real: int | None = None,
                   num_ood: int = 500, ood_sets: dict | None = None, num_denoise: int = 100,
                   denoise_levels=denoising_lib.NOISE_LEVELS, translate_images=None,
                   translate_name: str = "", train_images=None, num_memorization: int = 500,
                   memorization_spaces=("domain",)) -> dict:
    """Evaluate the SavedModel in model_dir; write metrics.json and report.html to output_dir.

    Args:
      model_dir: the export folder (saved_model.pb, assets/config.json).
      real_images: uint8 [N,H,W,C] real images at the model's size and channels.
      real_labels: int [N] labels (-1 or None = unlabelled: no downstream table).
      output_dir: where metrics.json and report.html go (created).
      feature_spaces: {name: FeatureSpace} (`extract(images) -> (features, logits)`, `info`).
      num_samples: generated images for the feature-space metrics.
      kid_subsets: KID subsets (>= 4). label_counts: downstream labelled-set sizes.
      masks: inpainting masks; num_inpaint: images damaged per mask (0 = skip inpainting).
      num_diversity: samples for the diversity figure (K starts x M samples, K <= 4, M >= 2;
        0 = skip).
      thresholds: blessing rules such as `fid/domain<=150`.
      log_dir: TensorBoard logs for the training curves, or None.
      random_model_dir: an untrained export of the same architecture (random-weight baseline).
      seed: seeds sampling, masks and chains.
      test_images, test_labels: held-out labelled split for downstream and inpainting
        (default: a seeded random 20% of the real images).
      num_real: real images for the feature-space metrics: a seeded random subset of this size
        (None = all); downstream classification still draws on all real images.
      num_ood: held-out images (and images per synthetic set) for out-of-distribution detection
        (0 = skip).
      ood_sets: {name: uint8 [M,H,W,C]} other data sets to tell apart by energy (e.g. MNIST
        digits against a Fashion-MNIST model), besides the synthetic ones.
      num_denoise: held-out images per noise level for denoising (0 = skip);
        denoise_levels: noise standard deviations in (0, 1] (pixels in [0, 1]).
      translate_images: uint8 [M,H,W,C] source-domain images to translate into the model's
        domain (None = no translation experiment); translate_name: their source, for the report.
      train_images: uint8 [T,H,W,C] the images the model was trained on (None = no memorization
        check); num_memorization: samples (and held-out images: `test_images`, else
        `real_images`) compared with them (0 = skip); memorization_spaces: the feature spaces
        used besides raw pixels (each must be in feature_spaces; every training image is
        extracted once, so cheap spaces such as `domain` suit it).

    Returns:
      The metrics dict exactly as written to metrics.json (schema in `evaluators.report`);
      `skipped` maps each experiment that did not run to the reason.
    """
    t_start = time.time()
    timings, notes = {}, []
    model = ExportedModel(model_dir)
    skipped = missing_signatures(model)
    real = np.asarray(real_images)
    want = (model.image_size, model.image_size, model.channels)
    if real.ndim != 4 or real.shape[1:] != want or real.dtype != np.uint8:
        raise ValueError(f"real_images must be uint8 [N, {want[0]}, {want[1]}, {want[2]}] to match "
                         f"the model in {model_dir}, got {real.dtype} {real.shape}")
    if len(real) < 4:
        raise ValueError(f"real_images needs at least 4 images, got {len(real)}")
    if feature_spaces and "feature_spaces" not in skipped and min(len(real), int(num_samples)) < 2 * int(kid_subsets):
        raise ValueError(f"KID with kid_subsets={kid_subsets} needs at least {2 * kid_subsets} real "
                         f"images and samples; got {len(real)} real and num_samples={num_samples}: "
                         "raise them or lower kid_subsets (>= 4)")
    if (test_images is None) != (test_labels is None):
        raise ValueError("test_images and test_labels must be given together (or neither: a "
                         "random 20% of the real images is then held out)")
    metrics: dict = {
        "schema_version": report_lib.SCHEMA_VERSION,
        "model": {"dir": model_dir, "family": model.family, "grids": model.grids,
                  "trained_grids": model.trained_grids, "image_size": model.image_size,
                  "channels": model.channels},
        "signatures": model.signature_names,
        "data": {"num_real": int(len(real))}, "notes": notes, "timings_s": timings,
        "skipped": skipped,
    }
    images: dict = {}

    real_for_metrics = real
    if num_real is not None and num_real < len(real):
        pick = np.sort(np.random.default_rng(seed).permutation(len(real))[:int(num_real)])
        real_for_metrics = real[pick]
    metrics["data"]["num_real_for_metrics"] = int(len(real_for_metrics))

    # 1. Samples and feature-space metrics.
    metrics["feature_spaces"], fake = {}, None
    if "feature_spaces" not in skipped:
        fake = _samples_and_spaces(model, real, real_for_metrics, metrics, images, feature_spaces,
                            num_samples, kid_subsets, notes, timings, seed)

    # 2. Downstream classification.
    t = time.time()
    labels = None if real_labels is None else np.asarray(real_labels)
    held_images = None if test_images is None else np.asarray(test_images)
    metrics["downstream"] = None
    if "downstream" in skipped:
        pass
    elif labels is None or (labels < 0).any():
        notes.append("downstream: skipped (real images are unlabelled)")
        skipped["downstream"] = "the real images are unlabelled"
    else:
        pool_x, pool_y, test_x, test_y = _split(real, labels, held_images, test_labels, seed, notes)
        held_images = test_x
        random_fn = ExportedModel(random_model_dir).features if random_model_dir else None
        if random_fn is None:
            notes.append("downstream: no random-weight model given; that baseline is omitted")
        with TaskProgress("downstream classification", 0, "steps") as progress:
            metrics["downstream"] = downstream_lib.downstream_table(
                pool_x, pool_y, test_x, test_y, feature_fn=model.features,
                random_feature_fn=random_fn, label_counts=label_counts, seed=seed,
                progress=progress)
        metrics["data"]["num_test"] = int(len(test_x))
    timings["downstream"] = time.time() - t

    # 3. Inpainting on held-out images.
    t = time.time()
    metrics["inpainting"] = None
    source = held_images if held_images is not None else real
    if "inpainting" not in skipped and not (num_inpaint > 0 and masks):
        skipped["inpainting"] = "no masks or eval.num_inpaint=0"
    if "inpainting" not in skipped:
        runs = len(masks) * (1 + len(inpainting_lib.BASELINES))
        with TaskProgress("inpainting", runs, "runs") as progress:
            table, examples = inpainting_lib.evaluate_inpainting(
                source[:num_inpaint], model.inpaint, masks=tuple(masks), seed=seed,
                progress=progress)
        metrics["inpainting"] = table
        for mask, ex in examples.items():
            ex = {c: ex[c] for c in ["original", "masked"] + [m for m in ex if m not in ("original", "masked")]}
            images[f"inpainting/{mask} ({' | '.join(ex)})"] = _columns_figure(ex)
    timings["inpainting"] = time.time() - t

    # 4. Diversity from shared 1x1 starts.
    t = time.time()
    metrics["diversity"] = None
    if "diversity" not in skipped and num_diversity < 2:
        skipped["diversity"] = "eval.num_diversity < 2"
    if "diversity" not in skipped:
        k = max(1, min(4, num_diversity // 2))
        m = max(2, num_diversity // k)
        coarse = real[:k].astype(np.float32).mean(axis=(1, 2), keepdims=True) / 255.0
        with TaskProgress("diversity", k, "starts") as progress:
            def from_start(c, s):
                images = model.sample_from_coarse(c, s)["images"]
                progress.update(1, f"{len(images)} samples from start {progress.done + 1}")
                return images

            result, block = diversity_lib.evaluate_diversity(from_start, coarse, m, real,
                                                             seed=seed)
        noise = ((model.config.get("config") or {}).get("sampler") or {}).get("noise")
        if result["fraction_pairs_differ"] == 0.0 and noise is False:
            notes.append("diversity: samples from one 1x1 start are identical because the "
                         "sampler is deterministic (sampler.noise=false)")
        metrics["diversity"] = result
        images["diversity (start | samples)"] = block
    timings["diversity"] = time.time() - t

    # 5. Out-of-distribution detection by energy.
    t = time.time()
    metrics["ood"] = None
    if "ood" not in skipped and num_ood < 1:
        skipped["ood"] = "eval.num_ood=0"
    if "ood" not in skipped:
        test = source[:num_ood]
        sets = dict(ood_lib.synthetic_sets(test, len(test), seed=seed), **(ood_sets or {}))
        total = len(test) + sum(len(v) for v in sets.values())
        with TaskProgress("out-of-distribution", total, "images") as progress:
            def energy_fn(batch):
                out = model.energy(batch)
                progress.update(len(batch))
                return out

            table = ood_lib.ood_table(energy_fn, test, sets)
        images["ood/energy histograms"] = ood_lib.energy_histogram(table.pop("energies"), table["grid"])
        metrics["ood"] = table
    timings["ood"] = time.time() - t

    # 6. Denoising of held-out images.
    t = time.time()
    metrics["denoising"] = None
    if "denoising" not in skipped and (num_denoise < 1 or not denoise_levels):
        skipped["denoising"] = "eval.num_denoise=0 or no eval.denoise_levels"
    if "denoising" not in skipped:
        runs = len(denoise_levels) * len(denoising_lib.METHODS)
        with TaskProgress("denoising", runs, "runs") as progress:
            table, examples = denoising_lib.evaluate_denoising(
                source[:num_denoise], model.denoise, levels=tuple(denoise_levels), seed=seed,
                progress=progress)
        metrics["denoising"] = table
        for level, ex in examples.items():
            images[f"denoising/sigma {level} ({' | '.join(ex)})"] = _columns_figure(ex)
    timings["denoising"] = time.time() - t

    # 7. Translation of source-domain images into the model's domain.
    t = time.time()
    metrics["translation"] = None
    if "translation" not in skipped and translate_images is None:
        skipped["translation"] = "no source domain given (eval.translate_source or --translate-data)"
    if "translation" not in skipped:
        with TaskProgress("translation", 0, "steps"):
            table, pairs = translation_lib.evaluate_translation(
                translate_images, real_for_metrics, model.translate, feature_spaces,
                kid_subsets=kid_subsets, seed=seed, num_examples=16)
        table["source"] = translate_name
        metrics["translation"] = table
        images[f"translation/{translate_name or 'source'} -> this model (source | translated)"] = (
            report_lib.tile_images(pairs, ncols=8))
    timings["translation"] = time.time() - t

    # 8. Memorization: nearest training images of samples against those of held-out images.
    t = time.time()
    metrics["memorization"] = None
    if "memorization" not in skipped and (train_images is None or num_memorization < 1):
        skipped["memorization"] = ("no training images given" if train_images is None
                                   else "eval.num_memorization=0")
    if "memorization" not in skipped:
        held = np.asarray(test_images) if test_images is not None else real
        if fake is None or len(fake) < num_memorization:
            with TaskProgress("sampling for memorization", int(num_memorization), "images") as progress:
                fake = model.sample(int(num_memorization), seed, progress=progress)["images"]
        spaces = {n: feature_spaces[n] for n in memorization_spaces if n in feature_spaces}
        with TaskProgress("memorization", 0, "steps"):
            table, figure = memorization_lib.evaluate_memorization(
                fake[:num_memorization], held[:num_memorization], np.asarray(train_images), spaces)
        metrics["memorization"] = table
        images["memorization/samples and their nearest training images (pixels)"] = (
            report_lib.tile_images(figure, ncols=1 + memorization_lib.NEIGHBOURS))
    timings["memorization"] = time.time() - t

    for name, reason in skipped.items():
        print(f"[evaluate] skipped {name}: {reason}", flush=True)

    # 9. Blessing, files.
    metrics["blessing"] = blessing_lib.evaluate_thresholds(tuple(thresholds), metrics)
    timings["total"] = time.time() - t_start
    clean = report_lib.write_metrics_json(os.path.join(output_dir, "metrics.json"), metrics)
    config = {"model_config": model.config.get("config"),
              "evaluation": {"model_dir": model_dir, "feature_spaces": sorted(feature_spaces),
                             "num_samples": num_samples, "kid_subsets": kid_subsets,
                             "label_counts": list(label_counts), "masks": list(masks),
                             "num_inpaint": num_inpaint, "num_diversity": num_diversity,
                             "num_ood": num_ood, "ood_sets": sorted(ood_sets or {}),
                             "num_denoise": num_denoise, "denoise_levels": list(denoise_levels),
                             "translate_source": translate_name,
                             "num_memorization": num_memorization,
                             "memorization_spaces": list(memorization_spaces),
                             "thresholds": list(thresholds), "random_model_dir": random_model_dir,
                             "seed": seed, "log_dir": log_dir}}
    report_lib.write_report(output_dir, clean, images, config, log_dir)
    return clean
