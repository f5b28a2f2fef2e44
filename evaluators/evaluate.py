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

import os
import time

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


def evaluate_model(model_dir: str, real_images, real_labels, output_dir: str, feature_spaces: dict,
                   num_samples: int = 1000, kid_subsets: int = 10,
                   label_counts=(1000, 2000, 4000), masks=inpainting_lib.MASK_KINDS,
                   num_inpaint: int = 100, num_diversity: int = 16, thresholds=(),
                   log_dir: str | None = None, random_model_dir: str | None = None, seed: int = 0,
                   test_images=None, test_labels=None, num_real: int | None = None,
                   num_ood: int = 500, ood_sets: dict | None = None, num_denoise: int = 100,
                   denoise_levels=denoising_lib.NOISE_LEVELS, translate_images=None,
                   translate_name: str = "", train_images=None, num_memorization: int = 500,
                   memorization_spaces=("domain",), served_model_dir: str | None = None) -> dict:
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
      served_model_dir: the SavedModel being served (None = none yet): its experiment-1 metrics
        go to `baseline_model`, for the report and for rules such as `fid/domain<=baseline*1.05`.

    Returns:
      The metrics dict exactly as written to metrics.json (schema in `evaluators.report`);
      `skipped` maps each experiment that did not run to the reason.
    """
    t_start = time.time()
    timings, notes = {}, []
    model = ExportedModel(model_dir)
    skipped = missing_signatures(model)
    real = np.asarray(real_images)
    real, real_labels, test_images, test_labels = trained_classes_only(
        model, real, real_labels, test_images, test_labels, notes)
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

    def run(name: str, experiment) -> None:
        """Run experiment() -> (table, pictures) unless skipped; record table, pictures, time."""
        t = time.time()
        metrics[name] = None
        if name not in skipped:
            try:
                metrics[name], pictures = experiment()
                images.update(pictures)
            except experiments.Skipped as reason:
                skipped[name] = str(reason)
        timings[name] = time.time() - t

    # 1. Samples and feature-space metrics.
    metrics["feature_spaces"], fake = {}, None
    if "feature_spaces" not in skipped:
        t = time.time()
        fake, metrics["feature_spaces"], pictures = feature_metrics.samples_and_spaces(
            model, real, real_for_metrics, feature_spaces, num_samples, kid_subsets, notes, seed)
        images.update(pictures)
        timings["feature_spaces"] = time.time() - t
        if served_model_dir:
            t = time.time()
            metrics["baseline_model"], pictures = feature_metrics.served_model_metrics(
                served_model_dir, model, real, real_for_metrics, feature_spaces, num_samples,
                kid_subsets, notes, seed)
            images.update(pictures)
            timings["baseline_model"] = time.time() - t

    # 1b. The collapse rule on the same samples and real images.
    def collapse():
        result = collapse_lib.collapse_rule(fake, real_for_metrics)
        print(f"[evaluate] {collapse_lib.summary(result)}", flush=True)
        return result, {}
    if fake is None and "collapse" not in skipped:
        skipped["collapse"] = "no samples (the feature-space experiment did not run)"
    run("collapse", collapse)

    # 2. Downstream classification (its held-out split is the held-out set of 3-6).
    labels = None if real_labels is None else np.asarray(real_labels)
    held = None if test_images is None else np.asarray(test_images)
    if "downstream" not in skipped and (labels is None or (labels < 0).any()):
        notes.append("downstream: skipped (real images are unlabelled)")
        skipped["downstream"] = "the real images are unlabelled"
    if "downstream" not in skipped:
        pool_x, pool_y, held, held_y = experiments.split_labelled(real, labels, held, test_labels,
                                                                   seed, notes)
        metrics["data"]["num_test"] = int(len(held))
    run("downstream", lambda: experiments.downstream(model, pool_x, pool_y, held, held_y,
                                                     label_counts, random_model_dir, seed, notes))
    held = held if held is not None else real

    # 3-8. The applications.
    run("inpainting", lambda: experiments.inpainting(model, held, masks, num_inpaint, seed))
    run("diversity", lambda: experiments.diversity(model, real, num_diversity, seed, notes))
    run("ood", lambda: experiments.ood(model, held, num_ood, ood_sets, seed))
    run("denoising", lambda: experiments.denoising(model, held, num_denoise, denoise_levels, seed))
    run("translation", lambda: experiments.translation(
        model, translate_images, translate_name, real_for_metrics, feature_spaces, kid_subsets, seed))
    memorization_held = np.asarray(test_images) if test_images is not None else real
    spaces = {n: feature_spaces[n] for n in memorization_spaces if n in feature_spaces}
    run("memorization", lambda: experiments.memorization(
        model, fake, memorization_held, train_images, num_memorization, spaces, seed))

    run("conditional", lambda: experiments.conditional(model, real, labels, feature_spaces, num_samples, seed,
                                                       test_images, test_labels))

    for name, reason in skipped.items():
        print(f"[evaluate] skipped {name}: {reason}", flush=True)

    # 9. Blessing, files.
    metrics["blessing"] = blessing_lib.evaluate_thresholds(tuple(thresholds), metrics)
    print(f"[evaluate] {blessing_lib.summary(metrics['blessing'])}", flush=True)
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
                             "served_model_dir": served_model_dir,
                             "seed": seed, "log_dir": log_dir}}
    report_lib.write_report(output_dir, clean, images, config, log_dir)
    return clean
