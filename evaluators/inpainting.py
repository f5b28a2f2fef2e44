"""Inpainting evaluation (experiment 3 of Gao et al., CVPR 2018): masks, baselines, metrics.

Masks are uint8 [N, H, W, 1] with 1 = missing pixel (the SavedModel `inpaint` convention):
- `square`: a centred square whose side is half the image side (25% missing; the paper's 32x32
  square on 64x64 CelebA faces).
- `doodle`: random thick strokes (a brush of radius ~H/16 dragged along random walks), grown
  stamp by stamp until about 25% of the pixels are missing; seeded.
- `pepper`: exactly round(0.6 * H * W) pixels per image missing at random positions; seeded.

Recovery goes through a callable `inpaint_fn(images uint8 [N,H,W,C], mask uint8 [N,H,W,1],
seed int) -> uint8 [N,H,W,C]` (e.g. `ExportedModel.inpaint`). Baselines in the same table:
`mean_fill` (every missing pixel gets the mean of the image's observed pixels, per channel) and
`interpolation` (piecewise-linear interpolation of the observed pixels over their Delaunay
triangulation, `scipy.interpolate.griddata(method="linear")`, nearest observed pixel outside
their convex hull).

Metrics, per image then averaged over images, pixels in [0, 1] units:
- `error`: mean absolute error over the missing pixels (all channels), as in the paper's Table 4.
- `psnr`: 10 log10(1 / MSE) over the whole image (data range 1), as in the paper. An exactly
  recovered image has MSE 0 and infinite PSNR: its MSE is floored at 1e-10, so its PSNR is
  capped at `PSNR_CAP_DB` = 100 dB (far above any real recovery of 8-bit images, whose smallest
  non-zero MSE gives at most ~48 dB + 10 log10(H W C)); `num_exact` counts such images.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

MASK_KINDS = ("square", "doodle", "pepper")
DOODLE_FRACTION = 0.25
PEPPER_FRACTION = 0.6
PSNR_CAP_DB = 100.0
_MSE_FLOOR = 10.0 ** (-PSNR_CAP_DB / 10.0)
MASKED_VALUE = 128  # grey shown in place of missing pixels in the example figures

InpaintFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _check_images(name: str, images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be uint8 [N, H, W, C] with C 1 or 3, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 in [0, 255], got dtype {images.dtype}; "
                         "convert with np.clip(x * 255, 0, 255).round().astype(np.uint8)")
    return images


def _check_mask(mask, images: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    n, h, w, _ = images.shape
    if mask.shape != (n, h, w, 1):
        raise ValueError(f"mask must have shape {(n, h, w, 1)} (1 = missing), got {mask.shape}")
    if mask.dtype != np.uint8 or mask.max(initial=0) > 1:
        raise ValueError("mask must be uint8 with values 0 (observed) and 1 (missing)")
    return mask


def make_masks(kind: str, num: int, height: int, width: int | None = None,
               seed: int = 0) -> np.ndarray:
    """Inpainting masks of one kind.

    Args:
      kind: `square`, `doodle` or `pepper`.
      num: number of masks N (>= 1).
      height, width: image size in pixels (width defaults to height); each >= 2.
      seed: RNG seed; the same (kind, num, size, seed) always gives the same masks.

    Returns:
      uint8 [N, H, W, 1], 1 = missing, 0 = observed.
    """
    width = height if width is None else width
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; allowed: {list(MASK_KINDS)}")
    if num < 1 or height < 2 or width < 2:
        raise ValueError(f"make_masks needs num >= 1 and a size >= 2, got num={num}, "
                         f"size={height}x{width}")
    masks = np.zeros((num, height, width, 1), np.uint8)
    rng = np.random.default_rng(seed)
    if kind == "square":
        sh, sw = max(1, height // 2), max(1, width // 2)
        top, left = (height - sh) // 2, (width - sw) // 2
        masks[:, top:top + sh, left:left + sw] = 1
    elif kind == "pepper":
        count = int(round(PEPPER_FRACTION * height * width))
        for i in range(num):
            flat = np.zeros(height * width, np.uint8)
            flat[rng.permutation(height * width)[:count]] = 1
            masks[i, :, :, 0] = flat.reshape(height, width)
    else:
        for i in range(num):
            masks[i, :, :, 0] = _doodle(rng, height, width)
    return masks


def _doodle(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One doodle mask: brush stamps along random walks until DOODLE_FRACTION is missing."""
    mask = np.zeros((height, width), np.uint8)
    radius = max(1.0, min(height, width) / 16.0)
    yy, xx = np.mgrid[0:height, 0:width]
    target = DOODLE_FRACTION * height * width
    while mask.sum() < target:
        y, x = rng.uniform(0, height), rng.uniform(0, width)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(8, 24))):
            mask[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = 1
            if mask.sum() >= target:
                break
            angle += rng.normal(0.0, 0.5)
            y = float(np.clip(y + radius * np.sin(angle), 0, height - 1))
            x = float(np.clip(x + radius * np.cos(angle), 0, width - 1))
    return mask


def apply_mask(images, mask, value: int = MASKED_VALUE) -> np.ndarray:
    """Images with missing pixels replaced by `value` (uint8 [N,H,W,C]), for figures."""
    images = _check_images("images", images)
    mask = _check_mask(mask, images)
    return np.where(mask.astype(bool), np.uint8(value), images)


def mean_fill(images, mask, seed: int = 0) -> np.ndarray:
    """Baseline: missing pixels <- per-image, per-channel mean of the observed pixels.

    Args:
      images: uint8 [N,H,W,C]. mask: uint8 [N,H,W,1], 1 = missing. seed: unused (same
        signature as `inpaint_fn`).

    Returns:
      uint8 [N,H,W,C]; observed pixels unchanged; an image with no observed pixel gets 128.
    """
    del seed
    images = _check_images("images", images)
    mask = _check_mask(mask, images)
    observed = 1.0 - mask.astype(np.float64)
    counts = observed.sum(axis=(1, 2))  # [N, 1]
    sums = (images.astype(np.float64) * observed).sum(axis=(1, 2))  # [N, C]
    means = np.where(counts > 0, sums / np.maximum(counts, 1.0), 128.0)
    fill = np.round(means)[:, None, None, :].astype(np.uint8)
    return np.where(mask.astype(bool), fill, images)


def interpolation_fill(images, mask, seed: int = 0) -> np.ndarray:
    """Baseline: piecewise-linear interpolation of the observed pixels (nearest outside the hull).

    Args:
      images: uint8 [N,H,W,C]. mask: uint8 [N,H,W,1], 1 = missing. seed: unused.

    Returns:
      uint8 [N,H,W,C]; observed pixels unchanged. Images with fewer than 3 observed pixels
      (or collinear ones) fall back to nearest-neighbour / mean fill.
    """
    from scipy.interpolate import griddata  # scipy is a dependency of scikit-learn
    from scipy.spatial import QhullError

    del seed
    images = _check_images("images", images)
    mask = _check_mask(mask, images)
    out = images.copy()
    fallback = mean_fill(images, mask)
    for i in range(images.shape[0]):
        missing = mask[i, :, :, 0].astype(bool)
        if not missing.any() or missing.all():
            out[i] = fallback[i]
            continue
        known = np.argwhere(~missing).astype(np.float64)
        query = np.argwhere(missing).astype(np.float64)
        values = images[i][~missing].astype(np.float64)  # [K, C]
        nearest = griddata(known, values, query, method="nearest")
        try:
            linear = griddata(known, values, query, method="linear")
            filled = np.where(np.isnan(linear), nearest, linear)
        except (QhullError, ValueError):
            filled = nearest
        out[i][missing] = np.clip(np.round(filled), 0, 255).astype(np.uint8)
    return out


BASELINES: dict[str, InpaintFn] = {"mean_fill": mean_fill, "interpolation": interpolation_fill}


def inpainting_metrics(original, recovered, mask) -> dict:
    """Error on the missing pixels and whole-image PSNR (see the module docstring).

    Args:
      original, recovered: uint8 [N,H,W,C]. mask: uint8 [N,H,W,1], 1 = missing.

    Returns:
      {"error", "error_std", "psnr", "psnr_std", "num_images", "num_exact"}: floats in [0, 1]
      for error, dB for PSNR (each image capped at PSNR_CAP_DB), means/stds over images.
    """
    original = _check_images("original", original)
    recovered = _check_images("recovered", recovered)
    if recovered.shape != original.shape:
        raise ValueError(f"recovered shape {recovered.shape} must equal original shape {original.shape}")
    mask = _check_mask(mask, original)
    diff = (original.astype(np.float64) - recovered.astype(np.float64)) / 255.0
    missing = np.broadcast_to(mask.astype(np.float64), diff.shape)
    num_missing = missing.sum(axis=(1, 2, 3))
    abs_err = np.where(num_missing > 0,
                       (np.abs(diff) * missing).sum(axis=(1, 2, 3)) / np.maximum(num_missing, 1), 0.0)
    mse = (diff ** 2).mean(axis=(1, 2, 3))
    psnr = 10.0 * np.log10(1.0 / np.maximum(mse, _MSE_FLOOR))
    return {
        "error": float(abs_err.mean()),
        "error_std": float(abs_err.std()),
        "psnr": float(psnr.mean()),
        "psnr_std": float(psnr.std()),
        "num_images": int(original.shape[0]),
        "num_exact": int((mse == 0).sum()),
    }


def evaluate_inpainting(images, inpaint_fn: InpaintFn | None = None,
                        masks: tuple[str, ...] | list[str] = MASK_KINDS, seed: int = 0,
                        num_examples: int = 4, progress=None) -> tuple[dict, dict]:
    """Inpainting table (model and baselines for every mask) and example figure arrays.

    Args:
      images: uint8 [N,H,W,C] held-out images to damage and recover.
      inpaint_fn: the model's recovery `(images, mask, seed) -> uint8 images`, or None for the
        baselines only. Its observed pixels are clamped to the originals before scoring; the
        share of observed pixels it had changed is reported in `observed_changed`.
      masks: mask kinds to run.
      seed: seeds the masks (mask k uses seed + k) and the model's Langevin chains.
      num_examples: images per mask in the example figures.
      progress: optional `progress(done, total, note)`, called after each (mask, method) run.

    Returns:
      (table, examples): table = {"masks": {mask: {method: metrics dict}}, "methods": {...},
      "psnr_cap_db": ..., "observed_changed": {mask: fraction}}; examples = {mask: {"original",
      "masked", method...: uint8 [k,H,W,C]}} with k = min(num_examples, N).
    """
    images = _check_images("images", images)
    n, h, w, _ = images.shape
    methods = {"model": inpaint_fn} if inpaint_fn is not None else {}
    methods.update(BASELINES)
    table = {"masks": {}, "psnr_cap_db": PSNR_CAP_DB, "observed_changed": {},
             "methods": {"model": "the model's inpaint signature (Langevin on the missing pixels)",
                         "mean_fill": "mean of the image's observed pixels, per channel",
                         "interpolation": "piecewise-linear (Delaunay) interpolation of observed "
                                          "pixels, nearest outside their hull"}}
    if inpaint_fn is None:
        table["methods"].pop("model")
    examples = {}
    k = min(num_examples, n)
    for index, kind in enumerate(masks):
        mask = make_masks(kind, n, h, w, seed=seed + index)
        results, ex = {}, {"original": images[:k], "masked": apply_mask(images[:k], mask[:k])}
        for name, fn in methods.items():
            recovered = _check_images(f"{name} output", np.asarray(fn(images, mask, seed)))
            if recovered.shape != images.shape:
                raise ValueError(f"inpaint method {name!r} returned shape {recovered.shape}, "
                                 f"expected {images.shape}")
            if name == "model":
                observed = ~mask.astype(bool)[..., 0]
                changed = (recovered != images).any(axis=-1) & observed
                table["observed_changed"][kind] = float(changed.sum() / max(observed.sum(), 1))
                recovered = np.where(mask.astype(bool), recovered, images)
            results[name] = inpainting_metrics(images, recovered, mask)
            ex[name] = recovered[:k]
            if progress is not None:
                progress(index * len(methods) + len(results), len(masks) * len(methods),
                         f"{kind} mask, {name}")
        table["masks"][kind] = results
        examples[kind] = ex
    return table, examples
