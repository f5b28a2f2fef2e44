"""Denoising evaluation (CF-EBM's application): Gaussian noise at several levels, recovered by the
model's `denoise` signature, next to the noisy input itself and a classic denoiser.

For each noise level sigma (pixels in [0, 1]) the held-out images get additive Gaussian noise
N(0, sigma^2), seeded, clipped to [0, 1] and rounded to uint8 (what a user's noisy 8-bit file
holds, and what the `denoise` signature takes). Methods in the same table:

- `noisy`: the noisy input, unchanged (the floor any denoiser must beat);
- `nl_means`: scikit-image's non-local means (`skimage.restoration.denoise_nl_means`, 5x5
  patches, search distance 6, filter strength h = 0.8 sigma with sigma known: the settings
  scikit-image's documentation recommends for fast mode);
- `model`: the model's `denoise(images uint8 [N,H,W,C], seed) -> uint8 [N,H,W,C]`.

Metrics per image against the clean image, then mean and standard deviation over images, pixels
in [0, 1] units: `psnr` = 10 log10(1 / MSE) (data range 1; an exact recovery is capped like the
inpainting table's, `evaluators.inpainting.PSNR_CAP_DB`) and `ssim`, the structural similarity
of Wang et al. (2004) as scikit-image computes it with their settings (Gaussian window
sigma 1.5, 11 px wide, population covariances, data range 1, channels averaged). Images under
11 px on a side cannot hold that window: they get a uniform window as wide as the image
(odd, >= 3), and the table's `ssim_window` says which was used.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from evaluators.inpainting import PSNR_CAP_DB

NOISE_LEVELS = (0.1, 0.2)
METHODS = {
    "noisy": "the noisy input, unchanged",
    "nl_means": "scikit-image non-local means (5x5 patches, distance 6, h = 0.8 sigma, sigma known)",
    "model": "the model's denoise signature (Langevin from the noisy image under its energy)",
}
_MSE_FLOOR = 10.0 ** (-PSNR_CAP_DB / 10.0)

DenoiseFn = Callable[[np.ndarray, int], np.ndarray]


def _check_images(name: str, images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [N, H, W, C] with C 1 or 3, got "
                         f"{images.dtype} {images.shape}")
    if len(images) < 1:
        raise ValueError(f"{name} must hold at least one image")
    return images


def add_noise(images, sigma: float, seed: int = 0) -> np.ndarray:
    """uint8 [N,H,W,C] -> uint8 [N,H,W,C] with N(0, sigma^2) noise on [0, 1] pixels, clipped, rounded."""
    images = _check_images("images", images)
    if not 0.0 < float(sigma) <= 1.0:
        raise ValueError(f"noise level sigma must be in (0, 1] (pixels in [0, 1]), got {sigma}")
    noise = np.random.default_rng(seed).normal(0.0, float(sigma), images.shape)
    noisy = images.astype(np.float64) / 255.0 + noise
    return np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)


def nl_means(noisy, sigma: float) -> np.ndarray:
    """Non-local means of each image (uint8 [N,H,W,C] -> the same), noise level sigma known."""
    from skimage.restoration import denoise_nl_means  # pylint: disable=import-outside-toplevel

    noisy = _check_images("noisy", noisy)
    out = np.empty_like(noisy)
    for i, image in enumerate(noisy.astype(np.float64) / 255.0):
        clean = denoise_nl_means(image, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6,
                                 fast_mode=True, channel_axis=-1)
        out[i] = np.clip(np.round(clean * 255.0), 0, 255).astype(np.uint8).reshape(image.shape)
    return out


def denoising_metrics(clean, recovered) -> dict:
    """{"psnr", "psnr_std", "ssim", "ssim_std", "num_images"} of recovered against clean images.

    Args:
      clean, recovered: uint8 [N,H,W,C], the same shape (H, W >= 7 for the SSIM window).
    """
    from skimage.metrics import structural_similarity  # pylint: disable=import-outside-toplevel

    clean, recovered = _check_images("clean", clean), _check_images("recovered", recovered)
    if clean.shape != recovered.shape:
        raise ValueError(f"recovered images have shape {recovered.shape}, expected {clean.shape}")
    if min(clean.shape[1:3]) < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {clean.shape[1:3]}")
    a, b = clean.astype(np.float64) / 255.0, recovered.astype(np.float64) / 255.0
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    psnr = 10.0 * np.log10(1.0 / np.maximum(mse, _MSE_FLOOR))
    window = ssim_window(clean.shape[1], clean.shape[2])
    options = (dict(gaussian_weights=True, sigma=1.5) if window == "gaussian" else
               dict(win_size=int(window.split("x")[0]), gaussian_weights=False))
    ssim = np.array([structural_similarity(x, y, data_range=1.0, channel_axis=-1,
                                           use_sample_covariance=False, **options)
                     for x, y in zip(a, b)])
    return {"psnr": float(psnr.mean()), "psnr_std": float(psnr.std()), "ssim": float(ssim.mean()),
            "ssim_std": float(ssim.std()), "num_images": int(len(a))}


def ssim_window(height: int, width: int) -> str:
    """`"gaussian"` (Wang et al.'s 11-px Gaussian window, sigma 1.5) when the image holds it, else
    the uniform window used instead, e.g. `"7x7 uniform"` for 8x8 images."""
    side = min(int(height), int(width))
    if side >= 11:
        return "gaussian"
    side -= 1 - side % 2  # largest odd width that fits
    return f"{side}x{side} uniform"


def evaluate_denoising(images, denoise_fn: DenoiseFn | None = None, levels=NOISE_LEVELS,
                       seed: int = 0, num_examples: int = 4, progress=None) -> tuple[dict, dict]:
    """Denoising table (every method at every noise level) and example figure arrays.

    Args:
      images: uint8 [N,H,W,C] clean held-out images.
      denoise_fn: the model's `(noisy uint8 images, seed) -> uint8 images`, or None for the
        baselines only.
      levels: noise standard deviations in (0, 1], pixels in [0, 1].
      seed: level k's noise uses seed + k; the model's chains use seed.
      num_examples: images per level in the example figures.
      progress: optional `progress(done, total, note)` after each (level, method).

    Returns:
      (table, examples): table = {"levels": {"0.1": {method: metrics}}, "methods": {method:
      text}, "psnr_cap_db", "ssim_window"}; examples = {"0.1": {"clean", "noisy", "nl_means", "model": uint8
      [k,H,W,C]}} with k = min(num_examples, N).
    """
    images = _check_images("images", images)
    if not levels:
        raise ValueError("levels must name at least one noise level")
    methods = [m for m in METHODS if m != "model" or denoise_fn is not None]
    table = {"levels": {}, "methods": {m: METHODS[m] for m in methods}, "psnr_cap_db": PSNR_CAP_DB,
             "ssim_window": ssim_window(images.shape[1], images.shape[2])}
    examples, k = {}, min(num_examples, len(images))
    for index, sigma in enumerate(levels):
        noisy = add_noise(images, sigma, seed=seed + index)
        key = f"{float(sigma):g}"
        table["levels"][key], examples[key] = {}, {"clean": images[:k]}
        for name in methods:
            if name == "noisy":
                out = noisy
            elif name == "nl_means":
                out = nl_means(noisy, float(sigma))
            else:
                out = _check_images("denoise output", np.asarray(denoise_fn(noisy, seed)))
            table["levels"][key][name] = denoising_metrics(images, out)
            examples[key][name] = out[:k]
            if progress is not None:
                progress(index * len(methods) + methods.index(name) + 1, len(levels) * len(methods),
                         f"sigma {key}, {name}")
    return table, examples
