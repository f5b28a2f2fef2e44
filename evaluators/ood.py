"""Out-of-distribution detection by energy (CF-EBM's table): AUROC of in- vs out-of-distribution.

A model with an `energy` signature scores images by f(x) (higher = more probable). The
in-distribution set is the held-out test split; each out-of-distribution set is scored the same
way, and the AUROC says how well f separates them (1 = every test image scores above every
out-of-distribution image, 0.5 = chance). Sets that need no other data (made from the test
split, seeded):

- `uniform_noise`: every pixel uniform in 0..255;
- `constant`: one random colour per image (each channel uniform in 0..255);
- `interpolation`: the pixel-wise mean of two random test images (a linear interpolation at 1/2);

plus any other data set the caller passes (e.g. MNIST digits against a Fashion-MNIST model).
With several energy outputs (one per grid), the headline AUROC uses the finest grid's energy
and `auroc_by_grid` gives every grid's.
"""

from __future__ import annotations

import numpy as np

SYNTHETIC_SETS = ("uniform_noise", "constant", "interpolation")


def auroc(in_scores, out_scores) -> float:
    """Area under the ROC curve of `in_scores` (positives) against `out_scores` (negatives).

    The Mann-Whitney U statistic with mid-ranks for ties: the probability that a random
    positive scores above a random negative, ties counting 1/2 (equal to
    `sklearn.metrics.roc_auc_score`).

    Args:
      in_scores: float [N >= 1]; out_scores: float [M >= 1], finite.

    Returns:
      AUROC in [0, 1].
    """
    pos, neg = np.asarray(in_scores, np.float64).ravel(), np.asarray(out_scores, np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"auroc needs at least one score on each side, got {pos.size} and {neg.size}")
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))):
        raise ValueError("auroc needs finite scores; an energy is NaN or infinite")
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, np.float64)
    sorted_scores = scores[order]
    # mid-ranks: each run of equal scores gets the mean of its 1-based positions
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], scores.size]
    for lo, hi in zip(starts, ends):
        ranks[order[lo:hi]] = (lo + 1 + hi) / 2.0
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def synthetic_sets(test_images: np.ndarray, num: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The data-free out-of-distribution sets, each uint8 [num, H, W, C] like `test_images`.

    Args:
      test_images: uint8 [N >= 2, H, W, C] held-out in-distribution images.
      num: images per set (>= 1).
      seed: numpy seed.
    """
    test_images = np.asarray(test_images)
    if test_images.ndim != 4 or test_images.dtype != np.uint8 or len(test_images) < 2:
        raise ValueError(f"test_images must be uint8 [N >= 2, H, W, C], got {test_images.dtype} "
                         f"{test_images.shape}")
    rng = np.random.default_rng(seed)
    shape = (int(num),) + test_images.shape[1:]
    pairs = rng.integers(0, len(test_images), size=(int(num), 2))
    mixed = (test_images[pairs[:, 0]].astype(np.float32) + test_images[pairs[:, 1]]) / 2.0
    return {
        "uniform_noise": rng.integers(0, 256, size=shape, dtype=np.uint8),
        "constant": np.broadcast_to(rng.integers(0, 256, size=(shape[0], 1, 1, shape[3]), dtype=np.uint8),
                                    shape).copy(),
        "interpolation": np.round(mixed).astype(np.uint8),
    }


def ood_table(energy_fn, test_images: np.ndarray, ood_sets: dict[str, np.ndarray]) -> dict:
    """AUROC of the test split against each out-of-distribution set, by energy.

    Args:
      energy_fn: uint8 [N, H, W, C] -> {grid S: float32 [N]} (the `energy` signature's outputs).
      test_images: uint8 [N, H, W, C] in-distribution images.
      ood_sets: {name: uint8 [M, H, W, C]}.

    Returns:
      {"auroc": {name: float}, "auroc_by_grid": {S: {name: float}}, "grid": finest S,
       "num_test": N, "num_ood": {name: M}, "mean_energy": {"test": float, name: float, ...},
       "energies": {"test": float [N], name: float [M]} (finest grid; for the histogram, not for
       metrics.json)}.
    """
    test_e = {int(g): np.asarray(e, np.float64) for g, e in energy_fn(test_images).items()}
    grid = max(test_e)
    out = {"auroc": {}, "auroc_by_grid": {g: {} for g in sorted(test_e)}, "grid": grid,
           "num_test": int(len(test_images)), "num_ood": {}, "mean_energy": {"test": float(test_e[grid].mean())},
           "energies": {"test": test_e[grid]}}
    for name, images in ood_sets.items():
        ood_e = {int(g): np.asarray(e, np.float64) for g, e in energy_fn(images).items()}
        for g in test_e:
            out["auroc_by_grid"][g][name] = auroc(test_e[g], ood_e[g])
        out["auroc"][name] = out["auroc_by_grid"][grid][name]
        out["num_ood"][name] = int(len(images))
        out["mean_energy"][name] = float(ood_e[grid].mean())
        out["energies"][name] = ood_e[grid]
    return out


def energy_histogram(energies: dict[str, np.ndarray], grid: int) -> np.ndarray:
    """One histogram of energies per set (test split and each OOD set): uint8 [H, W, 3] picture."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=90)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    values = np.concatenate([np.asarray(v, np.float64) for v in energies.values()])
    bins = np.linspace(values.min(), values.max() + 1e-9, 40)
    for name, e in energies.items():
        ax.hist(np.asarray(e, np.float64), bins=bins, alpha=0.5, label=name)
    ax.set_xlabel(f"energy f(x), grid {grid} (higher = more probable)", fontsize=8)
    ax.set_ylabel("images", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
