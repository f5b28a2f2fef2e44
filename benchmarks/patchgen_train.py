"""Train and evaluate this project's PatchGenCN in one process, for the lever and side-by-side
benchmarks (`benchmarks.patchgen_levers`, `benchmarks.reference_patchgen`).

`load_image` reads a photo as the `file:` ingest does (its longer side area-downscaled to
`max_side`), `train_ours` builds the model from a preset plus `--set`-style overrides exactly as
the trainer does (the family registry's `build`, then `compile`), feeds it the image's scale
pyramid (`pyramid_ops.scale_sizes` / `scale_pyramid`, the pyramid stage's functions) and runs
its `train_step` for the whole budget, timing it. `evaluate_ours` then calls the model's own
signatures (`patchgen_signatures`, as the export has them) through the single-image evaluator's
code: samples, `evaluators.single_image.single_image_metrics` (SIFID, diversity, nearest patch,
high-frequency energy, next to patch shuffling and quilting), super-resolution x2 / x4 against
bicubic and the harmonization's colour distance before and after.
"""

from __future__ import annotations

import os
import time

import numpy as np

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def image_argument(spec: str) -> str:
    """PATH of a photo: one of scikit-image's bundled PHOTOS by name, or a file path."""
    if spec in PHOTOS:
        from pipeline.presets import skimage_photo  # pylint: disable=import-outside-toplevel

        return skimage_photo(spec)[len("file:"):]
    if not os.path.isfile(spec):
        raise SystemExit(f"--image {spec}: not a file and not one of {list(PHOTOS)}")
    return spec


def load_image(spec: str, max_side: int, channels: int = 3) -> np.ndarray:
    """uint8 [H, W, C]: the photo fitted as the `file:` source fits it (longer side max_side)."""
    from components.single_image import read_single_image  # pylint: disable=import-outside-toplevel

    return read_single_image(image_argument(spec), channels, max_side)[1]


def scales_of(image: np.ndarray, factor: float, min_side: int) -> list[tuple[int, int]]:
    from trainers import pyramid_ops  # pylint: disable=import-outside-toplevel

    return pyramid_ops.scale_sizes(image.shape[0], image.shape[1], factor, min_side)


def train_ours(image: np.ndarray, preset: str, overrides=(), log_every: int = 0) -> dict:
    """Train PatchGenCN on `image` (uint8 [H, W, C]) with the preset and overrides.

    Returns:
      {"model", "config", "scales", "train_s" (wall clock of all steps, the first call's tracing
      included), "scale_s" ([seconds per scale]), "steps", "final_metrics" (the last step's)}.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel
    from trainers import families, pyramid_ops  # pylint: disable=import-outside-toplevel

    cfg = load_preset(preset, list(overrides))
    scales = scales_of(image, cfg.pyramid.scale_factor, cfg.pyramid.min_side)
    metadata = {"grids": [], "image_size": max(image.shape[:2]), "channels": int(image.shape[2]),
                "scales": [list(s) for s in scales], "scale_factor": cfg.pyramid.scale_factor}
    model = families.get_family(cfg.model.family).build(cfg, metadata)
    model.compile(learning_rate=cfg.train.learning_rate, beta_1=cfg.train.beta_1)
    levels = pyramid_ops.scale_pyramid(tf.cast(image, tf.float32)[None] / 255.0, scales)
    batch = {f"scale_{k}": tf.repeat(v, cfg.train.batch_size, axis=0) for k, v in enumerate(levels)}
    step_fn = tf.function(model.train_step)
    total = sum(model.scale_steps)
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    scale_s = [0.0] * len(scales)
    out, start = {}, time.perf_counter()
    for step in range(total):
        t = time.perf_counter()
        out = step_fn(batch)
        k = int(out["scale"])  # (reading it waits for the step)
        scale_s[k] += time.perf_counter() - t
        if log_every and (step + 1) % log_every == 0:
            print(f"[ours] step {step + 1}/{total} scale {k} loss {float(out['loss']):.4f} "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    train_s = time.perf_counter() - start
    return {"model": model, "config": cfg, "scales": scales, "train_s": train_s, "scale_s": scale_s,
            "steps": total, "final_metrics": {k: float(v) for k, v in out.items()}}


class InProcessClient:
    """The evaluator's `_Client` interface (uint8 numpy in and out of the signatures) on a model
    in memory: `evaluators.single_image_eval`'s super-resolution and manipulations run on it."""

    def __init__(self, model, cap: int = 8):
        from trainers.families.patchgen_signatures import \
            signature_functions  # pylint: disable=import-outside-toplevel

        self.signatures, self.cap = signature_functions(model, cap), cap

    def call(self, name: str, **inputs) -> np.ndarray:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        tensors = {k: tf.constant(v, tf.uint8 if isinstance(v, np.ndarray) else tf.int32) for k, v in inputs.items()}
        return self.signatures[name](**tensors)["images"].numpy()

    def sample(self, num: int, seed: int, height: int, width: int) -> np.ndarray:
        out, i = [], 0
        while i < num:
            n = min(self.cap, num - i)
            out.append(self.call("sample", num_samples=n, seed=seed + i, height=height, width=width))
            i += n
        return np.concatenate(out)


def sample_metrics(image: np.ndarray, samples: np.ndarray, seed: int = 0) -> dict:
    """`single_image_metrics` (efficientnet_lite0 SIFID) of uint8 samples against the uint8 image."""
    from evaluators.single_image import single_image_metrics  # pylint: disable=import-outside-toplevel

    return single_image_metrics(image.astype(np.float32) / 255.0, samples.astype(np.float32) / 255.0,
                                spaces=("efficientnet_lite0",), seed=seed)


def evaluate_ours(model, image: np.ndarray, num_samples: int = 8, seed: int = 0, applications: bool = True):
    """(metrics, pictures {caption: uint8 image}) of a trained model, as the evaluator computes them."""
    from evaluators import report_parts as parts  # pylint: disable=import-outside-toplevel
    from evaluators import single_image_eval as ev  # pylint: disable=import-outside-toplevel

    client = InProcessClient(model)
    h, w = image.shape[:2]
    t = time.perf_counter()
    samples = client.sample(num_samples, seed, h, w)
    metrics = {"sample_s": time.perf_counter() - t}
    metrics.update(sample_metrics(image, samples, seed))
    pictures = {"samples": parts.tile_images(np.concatenate([image[None], samples]), 3)}
    if applications:
        notes = []
        low = int(np.ceil(3.0 / model.factor ** (model.num_scales - 1) - 1e-9))
        metrics["super_resolution"], sr_pictures = ev.super_resolution(client, image, seed, low, notes)
        edit_pictures, metrics["harmonization"] = ev.manipulations(client, image, seed, model.num_scales)
        pictures.update(sr_pictures)
        pictures.update(edit_pictures)
        metrics["notes"] = notes
    return metrics, pictures, samples


def summary(metrics: dict) -> dict:
    """The lever table's numbers from `evaluate_ours`' metrics (None where not computed)."""
    sr = (metrics.get("super_resolution") or {}).get("x2") or {}
    harm = metrics.get("harmonization") or {}
    return {"sifid": metrics.get("sifid/efficientnet_lite0"),
            "sifid_quilting": metrics.get("baseline/quilting/sifid/efficientnet_lite0"),
            "sifid_shuffle": metrics.get("baseline/patch_shuffle/sifid/efficientnet_lite0"),
            "hf_ratio": metrics.get("hf_energy/ratio"), "diversity": metrics.get("diversity/single_image"),
            "nearest_patch": metrics.get("nearest_patch/mean"),
            "sr_x2_psnr": (sr.get("model") or {}).get("psnr"), "sr_x2_bicubic": (sr.get("bicubic") or {}).get("psnr"),
            "harm_before": harm.get("colour_distance_before"), "harm_after": harm.get("colour_distance_after")}


def save_png(path: str, picture: np.ndarray) -> None:
    from evaluators import report_parts as parts  # pylint: disable=import-outside-toplevel

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(parts.png_bytes(picture))
