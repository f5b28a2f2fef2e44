"""Evaluate a single-image model (config.json `"single_image": true`, e.g. PatchGenCN).

`evaluate_single_image` talks to the export only through its signatures and writes
`metrics.json`, `report.html` and its pictures as PNG files (`pictures/`) into output_dir:

1. `sample`: `num_samples` images at the training size, and 4 at twice its width (a wider aspect
   ratio: the chains run at that size at every scale);
2. `evaluators.single_image.single_image_metrics` on the training-size samples: SIFID in each
   feature space (`sifid/<space>`), diversity (`diversity/single_image`), the nearest-patch
   distance to the training image (`nearest_patch/mean`), next to the same numbers for random
   patch shuffling and image quilting (`baseline/patch_shuffle/...`, `baseline/quilting/...`);
   and the collapse rule (`evaluators.collapse`; `collapse`) of the samples against the image;
3. `super_resolve` x2 and x4 with a ground truth: the training image cropped to a multiple of
   the factor and area-downsampled by it, super-resolved, compared (PSNR / SSIM,
   `evaluators.denoising.denoising_metrics`) with the original next to bicubic upsampling
   (`super_resolution/x2/model/psnr`, ...); inputs too small for the model are skipped;
4. `edit` (a block of the image pasted elsewhere, mask = the pasted block), `harmonize` (a solid
   disc of a colour the image lacks, mask = the disc) and `style_transfer` (a flat-colour
   "painting" of the image: blurred and quantised to 3 levels per channel) as pictures, from the
   middle scale (`start_scale` = L // 2; harmonize from the one below it); for harmonize, the
   colour distance of the disc to the ring around it (`evaluators.image_statistics.colour_distance`,
   ring width = half the disc's radius) before and after (`harmonization`:
   `colour_distance_before`, `colour_distance_after`; harmonization should lower it);
5. with `served_model_dir`, step 2 for the served model on the same image and seeds, under
   `baseline_model` (`{"dir", "version", "metrics": {flat name: value}}`), for rules such as
   `sifid/efficientnet_lite0<=baseline*1.05`; then the blessing (`evaluators.blessing`).

Images are uint8 [.., H, W, C] at the boundary.
"""

from __future__ import annotations

import os
import time

import numpy as np
import tensorflow as tf

from evaluators import blessing as blessing_lib
from evaluators import image_statistics
from evaluators.collapse import collapse_rule
from evaluators.collapse import summary as collapse_summary
from evaluators import report as report_lib
from evaluators import report_parts as parts
from evaluators import single_image as metrics_lib
from evaluators.denoising import denoising_metrics
from evaluators.model_client import ExportedModel

SR_FACTORS = (2, 4)


def _version(path: str) -> str:
    return os.path.basename(os.path.normpath(path))


class _Client:
    """uint8 numpy in and out of one export's signatures (batched by the export's cap)."""

    def __init__(self, model_dir: str):
        self.model = ExportedModel(model_dir)
        self.info = self.model.config
        self.cap = self.model.max_num_samples

    def call(self, name: str, **inputs) -> np.ndarray:
        tensors = {k: tf.constant(v, tf.uint8 if isinstance(v, np.ndarray) else tf.int32)
                   for k, v in inputs.items()}
        return self.model.signatures[name](**tensors)["images"].numpy()

    def sample(self, num: int, seed: int, height: int, width: int) -> np.ndarray:
        out, i = [], 0
        while i < num:
            n = min(self.cap, num - i)
            out.append(self.call("sample", num_samples=n, seed=seed + i, height=height, width=width))
            i += n
        return np.concatenate(out)


def _downsample(image: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(ground truth cropped to a multiple of factor, its area-downsampled version), uint8."""
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    truth = image[:h, :w]
    small = truth.astype(np.float64).reshape(h // factor, factor, w // factor, factor, -1).mean((1, 3))
    return truth, np.round(small).astype(np.uint8)


def _bicubic(images: np.ndarray, height: int, width: int, antialias: bool = False) -> np.ndarray:
    """uint8 [N, h, w, C] -> uint8 [N, height, width, C], bicubic (antialiased when asked)."""
    x = tf.image.resize(tf.cast(images, tf.float32) / 255.0, [height, width], method="bicubic",
                        antialias=antialias)
    return np.round(np.clip(x.numpy(), 0, 1) * 255).astype(np.uint8)


def resize_uint8(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [h, w, C] -> [height, width, C] (antialiased bicubic; unchanged when the size is)."""
    if image.shape[:2] == (height, width):
        return image
    return _bicubic(image[None], height, width, antialias=True)[0]


def side_range(info: dict) -> tuple[int, int]:
    """(smallest, largest) height or width the export's signatures accept: its config.json's
    `side_range`.

    Raises:
      ValueError: config.json lacks it (an export written before it was recorded).
    """
    if "side_range" not in info:
        raise ValueError("the export's config.json has no side_range (the sizes its signatures "
                         "accept): export it again (`mgebm train --resume` on its work folder)")
    low, high = info["side_range"]
    return int(low), int(high)


def super_resolution(client: _Client, image: np.ndarray, seed: int, sides: tuple[int, int],
                     notes: list):
    """{"xF": {"model": {"psnr", "ssim", ...}, "bicubic": {...}}} and pictures; `sides` =
    `side_range(info)`."""
    table, pictures = {}, {}
    low, high = sides
    for factor in SR_FACTORS:
        truth, small = _downsample(image, factor)
        if min(small.shape[:2]) < low or max(truth.shape[:2]) > high:
            notes.append(f"super_resolution x{factor}: skipped (input {small.shape[:2]} or output "
                         f"{truth.shape[:2]} outside the model's sides [{low}, {high}])")
            continue
        model = client.call("super_resolve", images=small[None], seed=seed, scale=factor)
        bicubic = _bicubic(small[None], *truth.shape[:2])
        table[f"x{factor}"] = {"model": denoising_metrics(truth[None], model),
                               "bicubic": denoising_metrics(truth[None], bicubic),
                               "input_size": list(small.shape[:2])}
        nearest = np.repeat(np.repeat(small, factor, 0), factor, 1)
        pictures[f"super_resolution/x{factor}: input (nearest) | bicubic | model | truth"] = \
            parts.tile_images(np.stack([nearest, bicubic[0], model[0], truth]), 4)
    return table, pictures


def _edits(image: np.ndarray, seed: int):
    """(edited image, mask) for `edit`, (composite, mask) for `harmonize`, a painting for style."""
    rng = np.random.default_rng(seed)
    h, w, c = image.shape
    bh, bw = max(2, h // 4), max(2, w // 4)
    edited, mask = image.copy(), np.zeros((h, w, 1), np.uint8)
    y0, x0 = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
    y1, x1 = (y0 + h // 2) % (h - bh + 1), (x0 + w // 2) % (w - bw + 1)
    edited[y1:y1 + bh, x1:x1 + bw] = image[y0:y0 + bh, x0:x0 + bw]
    mask[y1:y1 + bh, x1:x1 + bw] = 1
    yy, xx = np.mgrid[:h, :w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) <= (min(h, w) / 6) ** 2
    mean = image.reshape(-1, c).mean(0)
    colour = np.where(mean > 127, 20, 235).astype(np.uint8)  # far from the image's mean colour
    composite = image.copy()
    composite[disc] = colour
    blur = _bicubic(_bicubic(image[None], max(1, h // 8), max(1, w // 8)), h, w)[0]
    painting = (np.round(blur / 127.5) * 127.5).clip(0, 255).astype(np.uint8)
    return (edited, mask), (composite, disc[..., None].astype(np.uint8)), painting


def harmonization_ring(height: int, width: int) -> int:
    """Width in pixels of the region around `_edits`' disc that harmonization is measured against:
    half the disc's radius min(H, W) / 6, at least 1."""
    return max(1, round(min(height, width) / 12))


def manipulations(client: _Client, image: np.ndarray, seed: int, num_scales: int) -> tuple[dict, dict]:
    """Pictures of edit and style_transfer (input | result) from the middle scale, and of
    harmonize from the scale below it (a flat inserted colour needs the coarser start to change);
    and the harmonization's {"colour_distance_before", "colour_distance_after"} (the disc's mean
    colour to its surroundings', pixels in [0, 1]), "ring_px", "start_scale"}."""
    start = num_scales // 2
    (edited, e_mask), (composite, h_mask), painting = _edits(image, seed)
    out = {}
    result = client.call("edit", images=edited[None], mask=e_mask[None], seed=seed, start_scale=start)
    out[f"edit (start scale {start}): pasted block | result"] = parts.tile_images(
        np.stack([edited, result[0]]), 2)
    coarser = max(0, start - 1)
    result = client.call("harmonize", images=composite[None], mask=h_mask[None], seed=seed,
                         start_scale=coarser)
    out[f"harmonize (start scale {coarser}): inserted disc | result"] = parts.tile_images(
        np.stack([composite, result[0]]), 2)
    ring = harmonization_ring(*image.shape[:2])
    values = {f"colour_distance_{when}": image_statistics.colour_distance(
        picture.astype(np.float64) / 255.0, h_mask, ring)
        for when, picture in (("before", composite), ("after", result[0]))}
    values.update(ring_px=ring, start_scale=coarser)
    result = client.call("style_transfer", images=painting[None], seed=seed, start_scale=start)
    out[f"style_transfer (start scale {start}): content | result"] = parts.tile_images(
        np.stack([painting, result[0]]), 2)
    return out, values


def evaluate_single_image(model_dir: str, image, output_dir: str, spaces=("efficientnet_lite0",),
                          num_samples: int = 8, thresholds=(), served_model_dir: str | None = None,
                          seed: int = 0, inception_weights: str = "", log_dir: str | None = None) -> dict:
    """Evaluate a single-image export; write metrics.json and report.html into output_dir.

    Args:
      model_dir: the export folder (config.json says single_image). image: uint8 [H, W, C], the
        training image at the model's training size. spaces: SIFID feature spaces.
      num_samples: samples at the training size (>= 2). thresholds: blessing rules.
      served_model_dir: the served export (None = none yet). seed: seeds every signature call.
      inception_weights: Inception-v3 weights file for the `inception_v3` SIFID space.
      log_dir: TensorBoard logs (for the training curves), or None.

    Returns:
      The metrics dict as written to metrics.json.
    """
    start_time = time.time()
    client = _Client(model_dir)
    info = client.info
    if not info.get("single_image"):
        raise ValueError(f"{model_dir} is not a single-image model (config.json lacks "
                         "single_image: true); use evaluators.evaluate.evaluate_model")
    image = np.asarray(image)
    want = (int(info["height"]), int(info["width"]), int(info["channels"]))
    if image.dtype != np.uint8 or image.shape != want:
        raise ValueError(f"image must be the training image, uint8 {list(want)}, got "
                         f"{image.dtype} {list(image.shape)}")
    if num_samples < 2:
        raise ValueError(f"num_samples={num_samples} must be >= 2 (diversity needs two samples)")
    num_scales = len(info["scales"])
    sides = side_range(info)
    notes, timings, pictures = [], {}, {}
    h, w, _ = want
    t = time.time()
    samples = client.sample(num_samples, seed, h, w)
    wide_width = min(2 * w, sides[1])
    wide = client.sample(4, seed + 10_000, h, wide_width)
    timings["sample"] = time.time() - t
    pictures["samples: the training image, then samples at its size"] = parts.tile_images(
        np.concatenate([image[None], samples]), 4)
    pictures[f"samples at a wider aspect ratio ({h}x{wide_width})"] = parts.tile_images(wide, 2)
    t = time.time()
    single = metrics_lib.single_image_metrics(image.astype(np.float32) / 255.0,
                                              samples.astype(np.float32) / 255.0, spaces=tuple(spaces),
                                              inception_weights=inception_weights, seed=seed)
    timings["single_image_metrics"] = time.time() - t
    t = time.time()
    sr, sr_pictures = super_resolution(client, image, seed, sides, notes)
    pictures.update(sr_pictures)
    edit_pictures, harmonization = manipulations(client, image, seed, num_scales)
    pictures.update(edit_pictures)
    timings["applications"] = time.time() - t
    metrics = {
        "schema_version": report_lib.SCHEMA_VERSION,
        "model": {"dir": model_dir, "family": client.model.family, "single_image": True,
                  "height": h, "width": w, "channels": want[2], "scales": info["scales"]},
        "signatures": client.model.signature_names, "notes": notes, "timings_s": timings,
        "skipped": dict(single.pop("skipped", {}) or {}),
        "data": {"num_samples": int(num_samples)}, "super_resolution": sr,
    }
    metrics["harmonization"] = harmonization
    metrics.update(single)
    metrics["collapse"] = collapse_rule(samples, image[None])
    print(f"[evaluate] {collapse_summary(metrics['collapse'])}", flush=True)
    if served_model_dir:
        metrics["baseline_model"] = served_metrics(served_model_dir, image, num_samples, spaces,
                                                   inception_weights, seed, notes)
    metrics["blessing"] = blessing_lib.evaluate_thresholds(list(thresholds), metrics)
    timings["total"] = time.time() - start_time
    metrics = report_lib.write_metrics_json(os.path.join(output_dir, "metrics.json"), metrics)
    write_report(output_dir, metrics, pictures, info, log_dir)
    save_pictures(os.path.join(output_dir, "pictures"), pictures)
    return metrics


def save_pictures(folder: str, pictures: dict) -> list[str]:
    """Each report picture also as `folder/<name>.png` (the caption up to its first ':' or '(',
    as a file name: `samples.png`, `super_resolution_x2.png`, `edit.png`, ...); returns the paths."""
    tf.io.gfile.makedirs(folder)
    paths = []
    for caption, image in pictures.items():
        stem = caption.split(":")[0].split("(")[0].strip().replace("/", "_").replace(" ", "_")
        stem = "samples_wide" if caption.startswith("samples at a wider") else stem
        path = os.path.join(folder, f"{stem}.png")
        with tf.io.gfile.GFile(path, "wb") as f:
            f.write(parts.png_bytes(image))
        paths.append(path)
    return paths


def served_metrics(served_dir, image, num_samples, spaces, inception_weights, seed, notes) -> dict:
    """The served export's step-2 metrics on the same image and seeds (flat names), or an error."""
    out = {"dir": served_dir, "version": _version(served_dir)}
    try:
        served = _Client(served_dir)
        if not served.info.get("single_image"):
            raise ValueError("it is not a single-image model")
        h, w = image.shape[:2]
        samples = served.sample(num_samples, seed, h, w)
        values = metrics_lib.single_image_metrics(image.astype(np.float32) / 255.0,
                                                  samples.astype(np.float32) / 255.0,
                                                  spaces=tuple(spaces),
                                                  inception_weights=inception_weights, seed=seed)
        out["metrics"] = {k: v for k, v in values.items() if "/" in k and not k.startswith("baseline/")}
    except (ValueError, tf.errors.OpError) as err:
        out["error"] = f"the served model could not be compared: {str(err).splitlines()[0]}"
        notes.append(out["error"])
    return out


def write_report(output_dir: str, metrics: dict, pictures: dict, info: dict, log_dir) -> str:
    """report.html of a single-image evaluation: samples, the metrics table (model, baselines and
    the served model when compared), super-resolution, applications, then blessing, training
    curves and configuration."""
    values = {k: v for k, v in metrics.items() if "/" in k}
    rows = metrics_lib.table_rows(values)
    header, body_rows = ["method", *rows[0][1:]], rows[1:]
    served = metrics.get("baseline_model") or {}
    if served.get("metrics"):
        body_rows.append([f"served model (version {served['version']})",
                          *[served["metrics"].get(col) for col in header[1:]]])
    sr_rows = [[key, method, v[method]["psnr"], v[method]["ssim"]]
               for key, v in (metrics.get("super_resolution") or {}).items() for method in ("model", "bicubic")]

    def figures(*prefixes):
        return "".join(parts.img(k, v) for k, v in pictures.items() if k.startswith(prefixes))

    sections = {
        "Samples": figures("samples"),
        "SIFID, diversity, nearest patch": (
            "<p>SIFID: lower = closer patch statistics; diversity: per-pixel std over samples / the "
            "image's std; nearest patch: RMS distance of each sample patch to its nearest image "
            "patch (0 = copied).</p>" + parts.table(header, body_rows)),
        "Collapse rule": parts.collapse_section(metrics),
        "Super-resolution": (
            (parts.table(["factor", "method", "PSNR (dB)", "SSIM"], sr_rows) if sr_rows
             else parts.none("not computed (see notes)")) + figures("super_resolution")),
        "Editing, harmonization, style transfer": (
            parts.table(["harmonization", "colour distance of the disc to its surroundings"],
                        [[when, (metrics.get("harmonization") or {}).get(f"colour_distance_{when}")]
                         for when in ("before", "after")])
            + figures("edit", "harmonize", "style_transfer")),
    }
    sections.update(report_lib.common_sections(metrics, info, log_dir))
    return report_lib.write_page(output_dir, metrics, sections)
