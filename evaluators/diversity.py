"""Diversity of samples from one coarse start (figure 5 of Gao et al., CVPR 2018; the LAPGAN
paper's several images from one coarse image).

K starts (SxS images, S the model's coarsest size: the box averages of K data images, 1x1 for
the multi-grid EBM) are each replicated M times and run through the model's
`sample_from_coarse` signature. Distances are per-pair RMS pixel
differences in [0, 1] units, sqrt(mean((a - b)^2)) over all pixels and channels:
- `within_start_mean`: mean pairwise distance among the M samples sharing a start, averaged
  over starts;
- `between_starts_mean`: mean distance between samples of different starts;
- `data_mean`: mean pairwise distance among data images (the spread the model should match);
- `fraction_pairs_differ`: share of same-start pairs whose distance exceeds `differ_tol`
  (1/255 by default: more than one 8-bit level RMS). With a noise-free sampler
  (`sampler.noise=false`) the chain from one start is deterministic and this is 0.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from evaluators.report import tile_images

SampleFromCoarseFn = Callable[[np.ndarray, int], np.ndarray]


def _flat(images, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    return images.reshape(images.shape[0], -1).astype(np.float64) / 255.0


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def pairwise_rms(images) -> np.ndarray:
    """Distances of all unordered pairs i < j of uint8 [N,H,W,C] images: float64 [N(N-1)/2]."""
    x = _flat(images, "images")
    if x.shape[0] < 2:
        raise ValueError(f"pairwise distances need at least 2 images, got {x.shape[0]}")
    rows, cols = np.triu_indices(x.shape[0], k=1)
    return np.sqrt(_sq_dists(x, x)[rows, cols] / x.shape[1])


def mean_pairwise_rms(images) -> float:
    """Mean RMS pixel distance (in [0, 1] units) over all pairs of uint8 [N,H,W,C] images."""
    return float(pairwise_rms(images).mean())


def evaluate_diversity(sample_from_coarse_fn: SampleFromCoarseFn, coarse, samples_per_start: int,
                       data_images, seed: int = 0, max_data: int = 256,
                       differ_tol: float = 1.0 / 255.0) -> tuple[dict, np.ndarray]:
    """Samples from shared coarse starts versus the data's spread.

    Args:
      sample_from_coarse_fn: `(coarse float32 [N,S,S,C] in [0,1], seed int) -> uint8 [N,H,W,C]`.
      coarse: float32 [K,S,S,C] in [0, 1], the K starts (K >= 1; S divides H, e.g. 1).
      samples_per_start: M >= 2 samples per start.
      data_images: uint8 [N,H,W,C] data images (N >= 2); the first `max_data` are used.
      seed: passed to every call (start k uses seed + k).
      max_data: cap on the data images compared.
      differ_tol: RMS distance above which two samples count as different.

    Returns:
      (result, block): result as in the module docstring plus `num_starts`, `samples_per_start`,
      `within_start_per_start` [K], `ratio` (within / data, None when data_mean is 0), `num_data`;
      block uint8: one row per start, the upsampled start first, then its M samples.
    """
    coarse = np.asarray(coarse, np.float32)
    if coarse.ndim != 4 or coarse.shape[1] != coarse.shape[2] or coarse.shape[0] < 1:
        raise ValueError(f"coarse must be float32 [K, S, S, C] (e.g. [K, 1, 1, C]) with K >= 1, "
                         f"got {coarse.shape}")
    if not np.all((coarse >= 0) & (coarse <= 1)):
        raise ValueError("coarse values must lie in [0, 1]")
    if samples_per_start < 2:
        raise ValueError(f"samples_per_start must be >= 2 to form pairs, got {samples_per_start}")
    data = np.asarray(data_images)[:max_data]
    if data.ndim == 4 and (data.shape[1] % coarse.shape[1] or data.shape[2] % coarse.shape[1]):
        raise ValueError(f"coarse size {coarse.shape[1]} must divide the image size "
                         f"{data.shape[1]}x{data.shape[2]}")
    data_dists = pairwise_rms(data)
    per_start, differ, groups = [], [], []
    for k in range(coarse.shape[0]):
        reps = np.repeat(coarse[k:k + 1], samples_per_start, axis=0)
        samples = np.asarray(sample_from_coarse_fn(reps, seed + k))
        if samples.ndim != 4 or samples.shape[0] != samples_per_start or samples.dtype != np.uint8:
            raise ValueError(f"sample_from_coarse_fn returned {samples.dtype} {samples.shape}, "
                             f"expected uint8 [{samples_per_start}, H, W, C]")
        if samples.shape[1:] != data.shape[1:]:
            raise ValueError(f"samples have shape {samples.shape[1:]} but data images {data.shape[1:]}")
        dists = pairwise_rms(samples)
        per_start.append(float(dists.mean()))
        differ.append(dists > differ_tol)
        groups.append(samples)
    between = []
    flat = [_flat(g, "samples") for g in groups]
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            between.append(np.sqrt(_sq_dists(flat[i], flat[j]) / flat[i].shape[1]).mean())
    within = float(np.mean(per_start))
    data_mean = float(data_dists.mean())
    result = {
        "distance": "RMS pixel difference per pair, [0, 1] units",
        "num_starts": int(coarse.shape[0]),
        "samples_per_start": int(samples_per_start),
        "within_start_mean": within,
        "within_start_per_start": per_start,
        "between_starts_mean": float(np.mean(between)) if between else None,
        "data_mean": data_mean,
        "num_data": int(data.shape[0]),
        "ratio": within / data_mean if data_mean > 0 else None,
        "fraction_pairs_differ": float(np.concatenate(differ).mean()),
        "differ_tol": float(differ_tol),
    }
    h, w, c = data.shape[1:]
    starts = np.clip(np.round(coarse * 255.0), 0, 255).astype(np.uint8)
    if starts.shape[-1] != c:
        starts = np.repeat(starts[..., :1], c, axis=-1)
    size = starts.shape[1]
    starts = np.repeat(np.repeat(starts, h // size, axis=1), w // size, axis=2)  # nearest up
    rows = [np.concatenate([starts[k:k + 1], g])
            for k, g in enumerate(groups)]
    block = tile_images(np.concatenate(rows), ncols=samples_per_start + 1)
    return result, block
