"""Sample-quality metrics from classifier activations: FID, KID, Inception score, precision/recall.

All functions take numpy arrays (any float or int dtype) and return Python floats. FID, KID and the
Inception score use TF-GAN's own metric math (``tensorflow_gan/python/eval/classifier_metrics.py``,
loaded by :mod:`evaluators.tfgan_compat`); precision/recall (Kynkaanniemi et al., 2019) has no TF-GAN
counterpart and is computed here with batched numpy distances.

Conventions:
    * ``real`` / ``fake`` activations are float arrays [N, D] / [M, D] from the same feature space.
    * FID and KID are computed in float64.
    * ``kid_std`` is the sample standard deviation (ddof=1) of the per-subset KID estimates over
      ``num_subsets`` (>= 4) disjoint random subsets; ``kid`` is their mean (TF-GAN's block
      estimator). It is never NaN.
    * ``inception_score_from_logits`` returns the mean and the (ddof=0) standard deviation of the
      classifier score over ``splits`` disjoint splits, as in the original Inception-score code.
"""

import numpy as np
import tensorflow as tf

from evaluators import tfgan_compat

__all__ = [
    "fid_from_activations",
    "kid_from_activations",
    "inception_score_from_logits",
    "precision_recall",
]

MIN_KID_SUBSETS = 4


def _as_2d(name, array, min_rows=2):
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D]; got shape {arr.shape}.")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got {arr.shape[0]}.")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf values; check the feature extractor.")
    return arr


def _check_pair(real, fake, min_rows=2):
    real = _as_2d("real", real, min_rows)
    fake = _as_2d("fake", fake, min_rows)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"real and fake activations differ in width ({real.shape[1]} vs {fake.shape[1]}): "
            "extract both with the same feature space."
        )
    return real, fake


def fid_from_activations(real, fake):
    """Frechet distance between Gaussians fitted to two activation sets (TF-GAN's FID).

    Args:
        real: float array [N, D], N >= 2.
        fake: float array [M, D], M >= 2.

    Returns:
        float >= 0 (up to round-off): ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)).
    """
    real, fake = _check_pair(real, fake)
    value = tfgan_compat.frechet_classifier_distance_from_activations(
        tf.constant(real), tf.constant(fake)
    )
    return float(value.numpy())


def _subset_bounds(n, num_subsets):
    """(start, end) of ``num_subsets`` consecutive chunks, sized as by np.array_split."""
    sizes = np.full(num_subsets, n // num_subsets)
    sizes[: n % num_subsets] += 1
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def kid_from_activations(real, fake, num_subsets=10, seed=0, shuffle=True):
    """Kernel Inception distance (unbiased MMD^2, kernel (x.y/d + 1)^3) and its spread.

    Both sets are shuffled (with ``seed``; TF-GAN's block estimator assumes random order) and
    split into ``num_subsets`` disjoint consecutive subsets of (nearly) equal size (as
    ``np.array_split``); subset i of ``real`` is paired with subset i of ``fake`` and TF-GAN's KID is
    computed on each pair (one block each).

    Args:
        real: float array [N, D].
        fake: float array [M, D]; both N and M must be >= 2 * num_subsets.
        num_subsets: int >= 4, number of disjoint subsets.
        seed: int, seed of the shuffle.
        shuffle: bool; False keeps the given order (for inputs already in random order).

    Returns:
        (kid, kid_std): the mean of the per-subset estimates and their standard deviation (ddof=1),
        Python floats. kid may be slightly negative (unbiased estimator).
    """
    if int(num_subsets) != num_subsets or num_subsets < MIN_KID_SUBSETS:
        raise ValueError(
            f"num_subsets must be an integer >= {MIN_KID_SUBSETS} so that kid_std is defined; "
            f"got {num_subsets}."
        )
    num_subsets = int(num_subsets)
    real, fake = _check_pair(real, fake, min_rows=2 * num_subsets)
    if shuffle:
        rng = np.random.default_rng(seed)
        real = real[rng.permutation(real.shape[0])]
        fake = fake[rng.permutation(fake.shape[0])]
    estimates = []
    for (r0, r1), (f0, f1) in zip(
        _subset_bounds(real.shape[0], num_subsets), _subset_bounds(fake.shape[0], num_subsets)
    ):
        block = max(r1 - r0, f1 - f0)
        kid, _ = tfgan_compat.kernel_classifier_distance_and_std_from_activations(
            tf.constant(real[r0:r1]), tf.constant(fake[f0:f1]), max_block_size=block
        )
        estimates.append(float(kid.numpy()))
    estimates = np.asarray(estimates)
    return float(estimates.mean()), float(estimates.std(ddof=1))


def inception_score_from_logits(logits, splits=10):
    """Inception (classifier) score exp(E_x KL(p(y|x) || p(y))) over disjoint splits.

    Args:
        logits: float array [N, K] of unnormalised class logits, N >= splits.
        splits: int >= 1, number of disjoint consecutive splits.

    Returns:
        (mean, std) of the per-split scores (std with ddof=0; 0.0 for one split). Each score lies in
        [1, K].
    """
    logits = _as_2d("logits", logits, min_rows=1)
    if int(splits) != splits or splits < 1:
        raise ValueError(f"splits must be a positive integer; got {splits}.")
    splits = int(splits)
    if logits.shape[0] < splits:
        raise ValueError(
            f"logits has {logits.shape[0]} rows, fewer than splits={splits}; lower splits."
        )
    scores = [
        float(tfgan_compat.classifier_score_from_logits(tf.constant(logits[a:b])).numpy())
        for a, b in _subset_bounds(logits.shape[0], splits)
    ]
    return float(np.mean(scores)), float(np.std(scores))


def _sq_dists(a, b, batch_size):
    """Yields (start, squared distances [rows, len(b)]) in row batches of ``a``."""
    b_sq = np.sum(b * b, axis=1)
    for start in range(0, a.shape[0], batch_size):
        rows = a[start:start + batch_size]
        d = np.sum(rows * rows, axis=1)[:, None] + b_sq[None, :] - 2.0 * rows @ b.T
        yield start, np.maximum(d, 0.0)


def _knn_radii(feats, k, batch_size):
    """Squared distance of every row to its k-th nearest other row."""
    radii = np.empty(feats.shape[0])
    for start, d in _sq_dists(feats, feats, batch_size):
        # Column k of the sorted row is the k-th neighbour (column 0 is the point itself).
        radii[start:start + d.shape[0]] = np.partition(d, k, axis=1)[:, k]
    return radii


def _coverage(points, manifold, radii, batch_size):
    """Fraction of ``points`` inside at least one ball (manifold_i, radius_i)."""
    inside = 0
    for _, d in _sq_dists(points, manifold, batch_size):
        inside += int(np.count_nonzero(np.any(d <= radii[None, :], axis=1)))
    return inside / points.shape[0]


def precision_recall(real, fake, k=3, batch_size=1024):
    """Improved precision and recall of a sample set (Kynkaanniemi et al., 2019).

    The real manifold is the union of balls around each real feature with the radius of its k-th
    nearest real neighbour; precision is the fraction of fake features inside it. Recall swaps the
    roles (fake manifold, fraction of real features inside).

    Args:
        real: float array [N, D], N > k.
        fake: float array [M, D], M > k.
        k: int >= 1, the neighbour that sets each radius.
        batch_size: rows per batch of the distance computation (memory ~ batch_size * max(N, M)).

    Returns:
        (precision, recall), Python floats in [0, 1].
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer; got {k}.")
    k = int(k)
    real, fake = _check_pair(real, fake, min_rows=k + 1)
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
    batch_size = int(batch_size)
    real_radii = _knn_radii(real, k, batch_size)
    fake_radii = _knn_radii(fake, k, batch_size)
    precision = _coverage(fake, real, real_radii, batch_size)
    recall = _coverage(real, fake, fake_radii, batch_size)
    return float(precision), float(recall)

