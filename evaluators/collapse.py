"""The collapse rule: has a generator's output collapsed, whatever its family?

A model has collapsed when its samples lost what every image of the data has. Three figures,
each of the samples divided by the same figure of real images (so the rule does not depend on
the data set's contrast), on uint8 [N, H, W, C] images read as [0, 1] pixels. The coarse level
averages 4 x 4 pixel blocks (8 x 8 for 32 px images: CF-EBM's and LAPGAN's first stage):

- `pixel_std`: the mean over images of each image's pixel standard deviation. Blank, flat or
  washed-out samples have almost none.
- `fine_detail`: the mean over images of the RMS difference between the image averaged over
  2 x 2 blocks and its coarse level upsampled back (nearest): the structure it holds between
  the coarse size and half the image size. Samples that are coarse samples upsampled (a
  coarse-to-fine chain whose finer levels add nothing) have almost none; averaging 2 x 2 first
  keeps per-pixel grain (Langevin noise) from passing for detail.
- `coarse_diversity`: the mean RMS distance between pairs of images at the coarse level: how
  much their layouts differ. Samples that are all the same shape under pixel noise (noise
  squares, mode collapse) have little of it, whatever their pixel noise.

`collapsed` is true when any ratio falls below its bound (`BOUNDS`); `reasons` says which and by
how much. Calibration on Fashion-MNIST (1,000 real images against 64 samples of each export
pictured in docs/): real images score 1 on every ratio by construction; the multi-grid EBMs,
LAPGAN and DCGAN score 0.75-1.06 on all three; CF-EBM's noise squares score 0.23 in coarse
diversity, its dim blobs 0.21 in pixel std and 0.16 in coarse diversity, the CD-1 and PCD
baselines' blank images 0.02 or less in pixel std; real images box-averaged to 8 px and
upsampled back score 0.0 in fine detail (0.16 with N(0, 0.05^2) pixel noise added).
"""

from __future__ import annotations

import numpy as np

# ratio name -> (bound: collapsed below it, what it means when it fires)
BOUNDS = {
    "pixel_std_ratio": (0.25, "the samples are nearly flat"),
    "fine_detail_ratio": (0.3, "the samples hold no detail finer than the coarse size: the finest "
                               "level is the coarsest upsampled"),
    "coarse_diversity_ratio": (0.4, "the samples' coarse layouts are nearly all the same "
                                    "(mode collapse)"),
}
MAX_PAIRS_IMAGES = 500  # images used for the pairwise distances (N^2 / 2 pairs)
FACTOR = 4  # the coarse level averages FACTOR x FACTOR pixel blocks


def _pixels(images, name: str, minimum: int) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if images.shape[0] < minimum:
        raise ValueError(f"{name} needs at least {minimum} images for the collapse rule, got "
                         f"{images.shape[0]}")
    if images.shape[1] < FACTOR or images.shape[2] < FACTOR:
        raise ValueError(f"{name} must be at least {FACTOR}x{FACTOR} pixels, got {images.shape[1:3]}")
    return images.astype(np.float64) / 255.0


def block_mean(x: np.ndarray, factor: int) -> np.ndarray:
    """Box average of float [N, H, W, C] over factor x factor blocks: [N, H // f, W // f, C]
    (the last H % f rows and W % f columns are dropped)."""
    n, h, w, c = x.shape
    h, w = h // factor, w // factor
    return x[:, :h * factor, :w * factor].reshape(n, h, factor, w, factor, c).mean(axis=(2, 4))


def image_figures(images, minimum: int = 2) -> dict:
    """The three figures of one image set (see the module docstring).

    Args:
      images: uint8 [N, H, W, C] with H, W >= 4 and N >= `minimum`.
      minimum: fewest images accepted; `coarse_diversity` is None for a single image.

    Returns:
      {"pixel_std", "fine_detail", "coarse_diversity", "num_images", "coarse_size" [h, w]};
      the distances are RMS in [0, 1] pixel units.
    """
    x = _pixels(images, "images", minimum)
    coarse = block_mean(x, FACTOR)
    half = block_mean(x, FACTOR // 2)
    up = np.repeat(np.repeat(coarse, 2, axis=1), 2, axis=2)
    fine = np.sqrt(((half[:, :up.shape[1], :up.shape[2]] - up) ** 2).mean(axis=(1, 2, 3)))
    count = min(len(coarse), MAX_PAIRS_IMAGES)
    diversity = None
    if count >= 2:
        flat = coarse[:count].reshape(count, -1)
        sq = (flat * flat).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T, 0.0) / flat.shape[1]
        rows, cols = np.triu_indices(count, k=1)
        diversity = float(np.sqrt(d2[rows, cols]).mean())
    return {"pixel_std": float(x.reshape(len(x), -1).std(axis=1).mean()),
            "fine_detail": float(fine.mean()), "coarse_diversity": diversity,
            "num_images": int(len(x)), "coarse_size": [int(coarse.shape[1]), int(coarse.shape[2])]}


def collapse_rule(samples, real) -> dict:
    """The collapse verdict of samples against real images of the same shape.

    Args:
      samples: uint8 [N, H, W, C] generated images (N >= 2).
      real: uint8 [M, H, W, C] real images, the same H, W, C (M >= 1; with one real image, e.g.
        a single-image model's training image, `coarse_diversity_ratio` is None and unused).

    Returns:
      {"collapsed": bool, "reasons": [str], "samples": image_figures(samples),
       "real": image_figures(real), "pixel_std_ratio", "fine_detail_ratio",
       "coarse_diversity_ratio" (each None when the real figure is 0 or None),
       "bounds": {ratio: bound}, "coarse_size" [h, w]}.

    Raises:
      ValueError: not uint8 rank 4, too few images or pixels, or shapes that differ.
    """
    samples, real = np.asarray(samples), np.asarray(real)
    if samples.ndim == 4 and real.ndim == 4 and samples.shape[1:] != real.shape[1:]:
        raise ValueError(f"samples {samples.shape[1:]} and real images {real.shape[1:]} must have "
                         "the same height, width and channels")
    mine, theirs = image_figures(samples, minimum=2), image_figures(real, minimum=1)
    out = {"samples": mine, "real": theirs, "coarse_size": mine["coarse_size"],
           "bounds": {k: b for k, (b, _) in BOUNDS.items()}, "reasons": []}
    for ratio, (bound, meaning) in BOUNDS.items():
        key = ratio[:-len("_ratio")]
        value = mine[key] / theirs[key] if theirs[key] else None
        out[ratio] = value
        if value is not None and value < bound:
            out["reasons"].append(f"{ratio}={value:.3f} < {bound}: {meaning}")
    out["collapsed"] = bool(out["reasons"])
    return out


def summary(result: dict | None) -> str:
    """One line for logs and reports."""
    if not result:
        return "collapse rule: not computed"
    ratios = ", ".join(f"{k} {result.get(k):.2f}" for k in BOUNDS if result.get(k) is not None)
    verdict = "COLLAPSED (" + "; ".join(result["reasons"]) + ")" if result["collapsed"] else "not collapsed"
    return f"collapse rule: {verdict}; {ratios}"
