"""Evaluate an exported model end to end: metrics.json, report.html and the blessing.

`evaluate_model` talks to the model only through its SavedModel signatures (`ExportedModel`).
Each experiment declares the signatures it needs (`EXPERIMENTS`); it runs when the model exports
all of them (config.json's `signatures`), otherwise metrics.json's `skipped` and the report
name it with the reason (e.g. `"inpainting": "the model has no 'inpaint' signature"`):
1. samples (`sample`), and per feature space FID / KID / precision / recall
   (`evaluators.fid.compare_activations`, one feature extraction per image set) and the
   Inception score of the samples' logits, with a
   baseline row of the same numbers for real vs real (two halves of the real images); then the
   collapse rule (`evaluators.collapse`) on the same samples against the same real images;
2. downstream classification (`features`; experiment 2), when labels are given;
3. inpainting (`inpaint`; experiment 3) against mean-fill and interpolation;
4. diversity from shared coarse starts (`sample_from_coarse`; figure 5; box averages of real images
   at the model's `coarse_size`, 1x1 unless the family says otherwise);
5. out-of-distribution detection by energy (`energy`; `evaluators.ood`): AUROC of the held-out
   images against uniform noise, constant images, interpolations and any `ood_sets` given;
6. denoising (`denoise`; `evaluators.denoising`): PSNR / SSIM at each noise level, next to the
   noisy input and non-local means;
7. translation (`translate`; `evaluators.translation`), when source-domain images are given:
   FID / KID of the translated images to the real ones next to those of the untouched source;
8. memorization (`sample`; `evaluators.memorization`), when the training images are given: the
   nearest training image of each sample against that of each held-out real image;
   then, for a class-conditional model with labelled real images, per-class FID and the `domain`
   classifier's accuracy on samples against their requested labels (`conditional`);
9. blessing by thresholds, absolute (`fid/domain<=150`) or against the served model
   (`fid/domain<=baseline*1.05`: experiment 1 is recomputed for the served model on the same
   real images and seeds, under `baseline_model`); metrics.json and report.html in output_dir.

Experiment 1 lives in `evaluators.feature_metrics`, 2-8 in `evaluators.experiments` (one
function each); this module checks the inputs, runs them in order and writes the files.

Each experiment shows counted progress on stderr (`trainers.progress.TaskProgress`: a bar on a
terminal, a plain line every 15 s and at the end in logs).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from evaluators import blessing as blessing_lib
from evaluators import collapse as collapse_lib
from evaluators import denoising as denoising_lib
from evaluators import experiments
from evaluators import feature_metrics
from evaluators import inpainting as inpainting_lib
from evaluators import report as report_lib
from evaluators.model_client import ExportedModel

# Experiment (its key in metrics.json) -> the signatures it needs.
EXPERIMENTS = {
    "feature_spaces": ("sample",),
    "collapse": ("sample",),
    "downstream": ("features",),
    "inpainting": ("inpaint",),
    "diversity": ("sample_from_coarse",),
    "ood": ("energy",),
    "denoising": ("denoise",),
    "translation": ("translate",),
    "memorization": ("sample",),
    "conditional": ("sample",),
}
def missing_signatures(model: ExportedModel) -> dict[str, str]:
    """{experiment: reason} for every experiment of EXPERIMENTS whose signatures the model lacks."""
    skipped = {}
    for name, needs in EXPERIMENTS.items():
        lacking = [sig for sig in needs if not model.has(sig)]
        if lacking:
            skipped[name] = "the model has no " + " or ".join(f"{sig!r}" for sig in lacking) + " signature"
    return skipped


def trained_classes_only(model: ExportedModel, real, real_labels, test_images, test_labels, notes: list):
    """The real (and test) images of the classes the model was trained on (its config's
    `data.classes`; all when that is empty or the images are unlabelled)."""
    classes = (((model.config.get("config") or {}).get("data") or {}).get("classes")) or []
    if not classes or real_labels is None:
        return real, real_labels, test_images, test_labels
    labels = np.asarray(real_labels)
    keep = np.isin(labels, classes)
    notes.append(f"data.classes={classes}: {int(keep.sum())} of {len(labels)} real images are of "
                 "the trained classes and are compared")
    real, real_labels = real[keep], labels[keep]
    if test_images is not None and test_labels is not None:
        test_keep = np.isin(np.asarray(test_labels), classes)
        test_images, test_labels = np.asarray(test_images)[test_keep], np.asarray(test_labels)[test_keep]
    return real, real_labels, test_images, test_labels


@dataclasses.dataclass(frozen=True)
class EvalData:
    """The images an evaluation compares the model with: uint8 [N, H, W, C] arrays at the model's
    size and channels.

    Attributes:
      real_images: real images (the feature-space metrics; the pool of downstream classification).
      real_labels: int [N] labels (None, or any -1 = unlabelled: no downstream table).
      test_images, test_labels: a held-out labelled split for downstream and inpainting, given
        together (None = a seeded random 20% of the real images is held out).
      ood_sets: {name: images} other data sets to tell apart by energy (e.g. MNIST digits against
        a Fashion-MNIST model), besides the synthetic ones.
      translate_images: source-domain images to translate into the model's domain (None = no
        translation experiment); translate_name: their source, for the report.
      train_images: the images the model was trained on (None = no memorization check).
    """

    real_images: Any
    real_labels: Any = None
    test_images: Any = None
    test_labels: Any = None
    ood_sets: dict = dataclasses.field(default_factory=dict)
    translate_images: Any = None
    translate_name: str = ""
    train_images: Any = None


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How much of each experiment to run, the blessing rules and where extra inputs live.

    Attributes:
      num_samples: generated images for the feature-space metrics.
      kid_subsets: KID subsets (>= 4).
      num_real: real images for the feature-space metrics: a seeded random subset of this size
        (None = all); downstream classification still draws on all real images.
      label_counts: downstream labelled-set sizes.
      masks: inpainting masks; num_inpaint: images damaged per mask (0 = skip inpainting).
      num_diversity: samples for the diversity figure (K starts x M samples, K <= 4, M >= 2;
        0 = skip).
      num_ood: held-out images (and images per synthetic set) for out-of-distribution detection
        (0 = skip).
      num_denoise: held-out images per noise level (0 = skip); denoise_levels: noise standard
        deviations in (0, 1] (pixels in [0, 1]).
      num_memorization: samples (and held-out images) compared with the training images (0 =
        skip); memorization_spaces: feature spaces used besides raw pixels (those in the
        evaluation's feature spaces; every training image is extracted once, so cheap spaces
        such as `domain` suit it).
      thresholds: blessing rules such as `fid/domain<=150` or `fid/domain<=baseline*1.05`.
      seed: seeds sampling, masks and chains.
      log_dir: TensorBoard logs for the training curves, or None.
      random_model_dir: an untrained export of the same architecture (random-weight baseline).
      served_model_dir: the SavedModel being served (None = none yet): its experiment-1 metrics
        go to `baseline_model`, for the report and for rules against `baseline`.
    """

    num_samples: int = 1000
    kid_subsets: int = 10
    num_real: int | None = None
    label_counts: tuple = (1000, 2000, 4000)
    masks: tuple = inpainting_lib.MASK_KINDS
    num_inpaint: int = 100
    num_diversity: int = 16
    num_ood: int = 500
    num_denoise: int = 100
    denoise_levels: tuple = denoising_lib.NOISE_LEVELS
    num_memorization: int = 500
    memorization_spaces: tuple = ("domain",)
    thresholds: tuple = ()
    seed: int = 0
    log_dir: str | None = None
    random_model_dir: str | None = None
    served_model_dir: str | None = None


def _checked_data(model: ExportedModel, data: EvalData, options: EvalOptions, has_spaces: bool,
                  skipped: dict, notes: list) -> EvalData:
    """`data` restricted to the model's trained classes, after checking it fits the model."""
    real, real_labels, test_images, test_labels = trained_classes_only(
        model, np.asarray(data.real_images), data.real_labels, data.test_images, data.test_labels, notes)
    want = (model.image_size, model.image_size, model.channels)
    if real.ndim != 4 or real.shape[1:] != want or real.dtype != np.uint8:
        raise ValueError(f"real_images must be uint8 [N, {want[0]}, {want[1]}, {want[2]}] to match "
                         f"the model in {model.export_dir}, got {real.dtype} {real.shape}")
    if len(real) < 4:
        raise ValueError(f"real_images needs at least 4 images, got {len(real)}")
    if has_spaces and "feature_spaces" not in skipped \
            and min(len(real), int(options.num_samples)) < 2 * int(options.kid_subsets):
        raise ValueError(f"KID with kid_subsets={options.kid_subsets} needs at least "
                         f"{2 * options.kid_subsets} real images and samples; got {len(real)} real and "
                         f"num_samples={options.num_samples}: raise them or lower kid_subsets (>= 4)")
    if (test_images is None) != (test_labels is None):
        raise ValueError("test_images and test_labels must be given together (or neither: a "
                         "random 20% of the real images is then held out)")
    return dataclasses.replace(data, real_images=real, real_labels=real_labels,
                               test_images=test_images, test_labels=test_labels)


class _Recorder:
    """The metrics dict, pictures and timings of one evaluation, filled experiment by experiment."""

    def __init__(self, metrics: dict, skipped: dict, timings: dict):
        self.metrics, self.skipped, self.timings, self.images = metrics, skipped, timings, {}

    def run(self, name: str, experiment) -> None:
        """Run experiment() -> (table, pictures) unless skipped; record table, pictures, time."""
        t = time.time()
        self.metrics[name] = None
        if name not in self.skipped:
            try:
                self.metrics[name], pictures = experiment()
                self.images.update(pictures)
            except experiments.Skipped as reason:
                self.skipped[name] = str(reason)
        self.timings[name] = time.time() - t


def evaluate_model(model_dir: str, data: EvalData, output_dir: str, feature_spaces: dict,
                   options: EvalOptions = EvalOptions()) -> dict:
    """Evaluate the SavedModel in model_dir; write metrics.json and report.html to output_dir.

    Args:
      model_dir: the export folder (saved_model.pb, assets/config.json).
      data: the real (and held-out, out-of-distribution, source-domain, training) images.
      output_dir: where metrics.json and report.html go (created).
      feature_spaces: {name: FeatureSpace} (`extract(images) -> (features, logits)`, `info`).
      options: experiment sizes, blessing rules, seed and extra model folders.

    Returns:
      The metrics dict exactly as written to metrics.json (schema in `evaluators.report`);
      `skipped` maps each experiment that did not run to the reason.

    Raises:
      ValueError: images that do not fit the model, too few for KID, or a test split without labels.
    """
    t_start = time.time()
    o = options
    timings, notes = {}, []
    model = ExportedModel(model_dir)
    skipped = missing_signatures(model)
    data = _checked_data(model, data, o, bool(feature_spaces), skipped, notes)
    real = data.real_images
    metrics: dict = {
        "schema_version": report_lib.SCHEMA_VERSION,
        "model": {"dir": model_dir, "family": model.family, "grids": model.grids,
                  "trained_grids": model.trained_grids, "image_size": model.image_size,
                  "channels": model.channels},
        "signatures": model.signature_names,
        "data": {"num_real": int(len(real))}, "notes": notes, "timings_s": timings,
        "skipped": skipped,
    }
    rec = _Recorder(metrics, skipped, timings)
    real_for_metrics = real
    if o.num_real is not None and o.num_real < len(real):
        pick = np.sort(np.random.default_rng(o.seed).permutation(len(real))[:int(o.num_real)])
        real_for_metrics = real[pick]
    metrics["data"]["num_real_for_metrics"] = int(len(real_for_metrics))

    # 1. Samples and feature-space metrics (and the served model's, on the same images and seeds).
    metrics["feature_spaces"], fake = {}, None
    if "feature_spaces" not in skipped:
        t = time.time()
        fake, metrics["feature_spaces"], pictures = feature_metrics.samples_and_spaces(
            model, real, real_for_metrics, feature_spaces, o.num_samples, o.kid_subsets, notes, o.seed)
        rec.images.update(pictures)
        timings["feature_spaces"] = time.time() - t
        if o.served_model_dir:
            t = time.time()
            metrics["baseline_model"], pictures = feature_metrics.served_model_metrics(
                o.served_model_dir, model, real, real_for_metrics, feature_spaces, o.num_samples,
                o.kid_subsets, notes, o.seed)
            rec.images.update(pictures)
            timings["baseline_model"] = time.time() - t

    # 1b. The collapse rule on the same samples and real images.
    def collapse():
        result = collapse_lib.collapse_rule(fake, real_for_metrics)
        print(f"[evaluate] {collapse_lib.summary(result)}", flush=True)
        return result, {}
    if fake is None and "collapse" not in skipped:
        skipped["collapse"] = "no samples (the feature-space experiment did not run)"
    rec.run("collapse", collapse)

    # 2. Downstream classification (its held-out split is the held-out set of 3-6).
    labels = None if data.real_labels is None else np.asarray(data.real_labels)
    held = None if data.test_images is None else np.asarray(data.test_images)
    if "downstream" not in skipped and (labels is None or (labels < 0).any()):
        notes.append("downstream: skipped (real images are unlabelled)")
        skipped["downstream"] = "the real images are unlabelled"
    if "downstream" not in skipped:
        pool_x, pool_y, held, held_y = experiments.split_labelled(real, labels, held, data.test_labels,
                                                                   o.seed, notes)
        metrics["data"]["num_test"] = int(len(held))
    rec.run("downstream", lambda: experiments.downstream(
        model, pool_x, pool_y, held, held_y, o.label_counts, o.random_model_dir, o.seed, notes))
    held = held if held is not None else real

    # 3-8. The applications, one experiment function each.
    rec.run("inpainting", lambda: experiments.inpainting(model, held, o.masks, o.num_inpaint, o.seed))
    rec.run("diversity", lambda: experiments.diversity(model, real, o.num_diversity, o.seed, notes))
    rec.run("ood", lambda: experiments.ood(model, held, o.num_ood, data.ood_sets, o.seed))
    rec.run("denoising", lambda: experiments.denoising(model, held, o.num_denoise, o.denoise_levels, o.seed))
    rec.run("translation", lambda: experiments.translation(
        model, data.translate_images, data.translate_name, real_for_metrics, feature_spaces,
        o.kid_subsets, o.seed))
    memorization_held = np.asarray(data.test_images) if data.test_images is not None else real
    spaces = {n: feature_spaces[n] for n in o.memorization_spaces if n in feature_spaces}
    rec.run("memorization", lambda: experiments.memorization(
        model, fake, memorization_held, data.train_images, o.num_memorization, spaces, o.seed))
    rec.run("conditional", lambda: experiments.conditional(
        model, real, labels, feature_spaces, o.num_samples, o.seed, data.test_images, data.test_labels))
    for name, reason in skipped.items():
        print(f"[evaluate] skipped {name}: {reason}", flush=True)

    # 9. Blessing, files.
    metrics["blessing"] = blessing_lib.evaluate_thresholds(tuple(o.thresholds), metrics)
    print(f"[evaluate] {blessing_lib.summary(metrics['blessing'])}", flush=True)
    timings["total"] = time.time() - t_start
    clean = report_lib.write_metrics_json(os.path.join(output_dir, "metrics.json"), metrics)
    evaluation = {**{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(o).items()},
                  "model_dir": model_dir, "feature_spaces": sorted(feature_spaces),
                  "ood_sets": sorted(data.ood_sets or {}), "translate_source": data.translate_name}
    report_lib.write_report(output_dir, clean, rec.images,
                            {"model_config": model.config.get("config"), "evaluation": evaluation},
                            o.log_dir)
    return clean
