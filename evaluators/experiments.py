"""Experiments 2-8 of `evaluators.evaluate`, one function each, talking to the model only through
its SavedModel signatures (`evaluators.model_client.ExportedModel`).

Each returns `(table, pictures)`: the JSON-able table that goes into metrics.json under the
experiment's key and `{caption: uint8 [H,W,C] picture}` for the report; each raises `Skipped`
with the reason when the inputs it needs were not given (the model's signatures are checked
before, by `evaluators.evaluate.missing_signatures`). Images are uint8 [N,H,W,C] at the model's
size and channels.
"""

from __future__ import annotations

import numpy as np

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


class Skipped(Exception):
    """An experiment that cannot run on the inputs given; the message is the reason."""


def split_labelled(images, labels, test_images, test_labels, seed: int, notes: list):
    """(pool_x, pool_y, test_x, test_y): the given test set, or a seeded random 20% of the reals."""
    if test_images is not None:
        return images, labels, np.asarray(test_images), np.asarray(test_labels)
    n_test = max(1, len(images) // 5)
    order = np.random.default_rng(seed).permutation(len(images))
    test, pool = order[:n_test], order[n_test:]
    notes.append(f"downstream: no test set given; a random {n_test} of the real images are held out")
    return images[pool], labels[pool], images[test], labels[test]


def columns_figure(examples: dict) -> np.ndarray:
    """{column: uint8 [k,H,W,C]} -> one picture, a row per image and a column per entry."""
    stacked = np.stack(list(examples.values()), axis=1)  # [k, columns, H, W, C]
    return report_lib.tile_images(stacked.reshape((-1,) + stacked.shape[2:]), ncols=len(examples))


def downstream(model, pool_x, pool_y, test_x, test_y, label_counts, random_model_dir, seed: int,
               notes: list):
    """Linear classifiers on the model's `features` (and a random-weight model's) per labelled-set size."""
    random_fn = ExportedModel(random_model_dir).features if random_model_dir else None
    if random_fn is None:
        notes.append("downstream: no random-weight model given; that baseline is omitted")
    with TaskProgress("downstream classification", 0, "steps") as progress:
        table = downstream_lib.downstream_table(
            pool_x, pool_y, test_x, test_y, feature_fn=model.features, random_feature_fn=random_fn,
            label_counts=label_counts, seed=seed, progress=progress)
    return table, {}


def inpainting(model, held, masks, num_inpaint: int, seed: int):
    """`inpaint` on the first num_inpaint held-out images per mask, against the baselines."""
    if not (num_inpaint > 0 and masks):
        raise Skipped("no masks or eval.num_inpaint=0")
    runs = len(masks) * (1 + len(inpainting_lib.BASELINES))
    with TaskProgress("inpainting", runs, "runs") as progress:
        table, examples = inpainting_lib.evaluate_inpainting(
            held[:num_inpaint], model.inpaint, masks=tuple(masks), seed=seed, progress=progress)
    pictures = {}
    for mask, ex in examples.items():
        order = ["original", "masked"] + [m for m in ex if m not in ("original", "masked")]
        ex = {c: ex[c] for c in order}
        pictures[f"inpainting/{mask} ({' | '.join(ex)})"] = columns_figure(ex)
    return table, pictures


def box_average(images, size: int) -> np.ndarray:
    """uint8 [N,H,W,C] -> float32 [N,size,size,C] in [0, 1]: box averages (size divides H = W)."""
    n, h, _, c = images.shape
    blocks = images.astype(np.float32).reshape(n, size, h // size, size, h // size, c)
    return blocks.mean(axis=(2, 4)) / 255.0


def diversity(model, real, num_diversity: int, seed: int, notes: list):
    """K coarse starts (real images' box averages at the model's `coarse_size`, 1x1 for the
    multi-grid EBM) x M samples each through `sample_from_coarse`."""
    if num_diversity < 2:
        raise Skipped("eval.num_diversity < 2")
    k = max(1, min(4, num_diversity // 2))
    m = max(2, num_diversity // k)
    s, h = model.coarse_size, real.shape[1]
    if h % s:
        raise Skipped(f"the model's coarse size {s} does not divide the image size {h}")
    coarse = box_average(real[:k], s)
    with TaskProgress("diversity", k, "starts") as progress:
        def from_start(c, s):
            images = model.sample_from_coarse(c, s)["images"]
            progress.update(1, f"{len(images)} samples from start {progress.done + 1}")
            return images

        result, block = diversity_lib.evaluate_diversity(from_start, coarse, m, real, seed=seed)
    noise = ((model.config.get("config") or {}).get("sampler") or {}).get("noise")
    if result["fraction_pairs_differ"] == 0.0 and noise is False:
        notes.append("diversity: samples from one 1x1 start are identical because the "
                     "sampler is deterministic (sampler.noise=false)")
    return result, {"diversity (start | samples)": block}


def ood(model, held, num_ood: int, ood_sets: dict | None, seed: int):
    """AUROC of held-out images against synthetic sets and `ood_sets` by the model's `energy`."""
    if num_ood < 1:
        raise Skipped("eval.num_ood=0")
    test = held[:num_ood]
    sets = dict(ood_lib.synthetic_sets(test, len(test), seed=seed), **(ood_sets or {}))
    total = len(test) + sum(len(v) for v in sets.values())
    with TaskProgress("out-of-distribution", total, "images") as progress:
        def energy_fn(batch):
            out = model.energy(batch)
            progress.update(len(batch))
            return out

        table = ood_lib.ood_table(energy_fn, test, sets)
    histogram = ood_lib.energy_histogram(table.pop("energies"), table["grid"])
    return table, {"ood/energy histograms": histogram}


def denoising(model, held, num_denoise: int, levels, seed: int):
    """PSNR / SSIM of `denoise` at each noise level, next to the noisy input and non-local means."""
    if num_denoise < 1 or not levels:
        raise Skipped("eval.num_denoise=0 or no eval.denoise_levels")
    runs = len(levels) * len(denoising_lib.METHODS)
    with TaskProgress("denoising", runs, "runs") as progress:
        table, examples = denoising_lib.evaluate_denoising(
            held[:num_denoise], model.denoise, levels=tuple(levels), seed=seed, progress=progress)
    pictures = {f"denoising/sigma {level} ({' | '.join(ex)})": columns_figure(ex)
                for level, ex in examples.items()}
    return table, pictures


def translation(model, source_images, source_name: str, real, feature_spaces: dict,
                kid_subsets: int, seed: int):
    """FID / KID of `translate`d source-domain images to the real ones, next to the source's."""
    if source_images is None:
        raise Skipped("no source domain given (eval.translate_source or --translate-data)")
    with TaskProgress("translation", 0, "steps"):
        table, pairs = translation_lib.evaluate_translation(
            source_images, real, model.translate, feature_spaces, kid_subsets=kid_subsets,
            seed=seed, num_examples=16)
    table["source"] = source_name
    caption = f"translation/{source_name or 'source'} -> this model (source | translated)"
    return table, {caption: report_lib.tile_images(pairs, ncols=8)}


def conditional(model, real, labels, feature_spaces: dict, num_samples: int, seed: int,
                held=None, held_labels=None):
    """A class-conditional model's per-class FID and the label accuracy of its samples.

    Samples num_samples // K images per trained class (K classes) with those labels; per feature
    space, the FID of each class's samples against the real images of that class; with the
    `domain` space (a classifier trained on the real labels), the share of samples it assigns to
    the requested label (`label_accuracy`, overall and per class), and beside it the same
    classifier's accuracy on held-out real images of those classes (`label_accuracy_real`: the
    ceiling that a perfect generator would reach under this judge; on `real` without `held`).
    Where the model has `sample_from_coarse` (LAPGAN), also the label accuracy of samples
    refined from those real images' own coarse level (box averages at `coarse_size`) with their
    labels (`label_accuracy_from_real_coarse`): it leaves out the coarsest level, so its gap to
    `label_accuracy` is what the coarsest level loses and its gap to the ceiling what the finer
    levels lose.

    Args:
      real: uint8 [N,H,W,C]; labels: int [N] (their label values are those the model was trained on).
      feature_spaces: {name: FeatureSpace}.
      held, held_labels: labelled held-out images (uint8 [M,H,W,C], int [M]) or None.
    """
    if not model.conditional:
        raise Skipped("the model is not class-conditional")
    if labels is None or (np.asarray(labels) < 0).any():
        raise Skipped("the real images are unlabelled")
    from evaluators.metrics import fid_from_activations

    labels = np.asarray(labels)
    classes = model.classes
    per = max(2, int(num_samples) // len(classes))
    requested = np.repeat(np.asarray(classes, np.int32), per)
    with TaskProgress("conditional sampling", len(requested), "images") as progress:
        samples = model.sample(len(requested), seed + 7, progress=progress, labels=requested)["images"]
    table = {"classes": [int(c) for c in classes], "num_samples_per_class": per, "fid": {},
             "label_accuracy": None, "label_accuracy_per_class": None, "label_accuracy_real": None,
             "label_accuracy_from_real_coarse": None}
    for name, space in feature_spaces.items():
        fake_feats, fake_logits = space.extract(samples)
        fake_feats = np.asarray(fake_feats)
        per_class = {}
        for c in classes:
            real_c = real[labels == c]
            if len(real_c) >= 2:
                real_feats, _ = space.extract(real_c)
                per_class[str(c)] = float(fid_from_activations(np.asarray(real_feats), fake_feats[requested == c]))
        table["fid"][name] = {"per_class": per_class,
                              "mean": float(np.mean(list(per_class.values()))) if per_class else None}
        if name == "domain" and fake_logits is not None:
            hits = np.argmax(np.asarray(fake_logits), axis=1) == requested
            table["label_accuracy"] = float(np.mean(hits))
            table["label_accuracy_per_class"] = {str(c): float(np.mean(hits[requested == c])) for c in classes}
            judged_x, judged_y = (real, labels) if held is None or held_labels is None else (
                np.asarray(held), np.asarray(held_labels))
            mine = np.isin(judged_y, classes)
            if mine.any():
                judged_x, judged_y = judged_x[mine], judged_y[mine]
                real_logits = np.asarray(space.extract(judged_x)[1])
                table["label_accuracy_real"] = float(np.mean(np.argmax(real_logits, axis=1) == judged_y))
                if model.has("sample_from_coarse") and judged_x.shape[1] % model.coarse_size == 0:
                    refined = model.sample_from_coarse(box_average(judged_x, model.coarse_size), seed + 11,
                                                       labels=judged_y.astype(np.int32))["images"]
                    hits_coarse = np.argmax(np.asarray(space.extract(refined)[1]), axis=1) == judged_y
                    table["label_accuracy_from_real_coarse"] = float(np.mean(hits_coarse))
    picks = np.concatenate([np.flatnonzero(requested == c)[:8] for c in classes])
    caption = "conditional/samples, one row per class " + ", ".join(map(str, classes))
    return table, {caption: report_lib.tile_images(samples[picks], ncols=min(8, per))}


def memorization(model, samples, held, train_images, num_memorization: int, spaces: dict, seed: int):
    """Nearest training images of samples against those of held-out images (pixels and `spaces`).

    samples: uint8 [M,H,W,C] already drawn (or None); more are drawn when fewer than needed.
    """
    if train_images is None or num_memorization < 1:
        raise Skipped("no training images given" if train_images is None else "eval.num_memorization=0")
    if samples is None or len(samples) < num_memorization:
        with TaskProgress("sampling for memorization", int(num_memorization), "images") as progress:
            samples = model.sample(int(num_memorization), seed, progress=progress)["images"]
    with TaskProgress("memorization", 0, "steps"):
        table, figure = memorization_lib.evaluate_memorization(
            samples[:num_memorization], held[:num_memorization], np.asarray(train_images), spaces)
    caption = "memorization/samples and their nearest training images (pixels)"
    return table, {caption: report_lib.tile_images(figure, ncols=1 + memorization_lib.NEIGHBOURS)}
