"""Metrics against numpy/scipy references and known closed forms."""

import sys

import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.distance import cdist

from evaluators import metrics, tfgan_compat


# ---------------------------------------------------------------- references (numpy / scipy)
def fid_reference(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def mmd2_cubic_unbiased(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean())


def inception_score_reference(logits):
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    py = p.mean(0, keepdims=True)
    kl = np.sum(p * (np.log(p + 1e-300) - np.log(py)), axis=1)
    return float(np.exp(kl.mean()))


def pr_reference(real, fake, k):
    def radii(x):
        return np.sort(cdist(x, x), axis=1)[:, k]

    rr, rf = radii(real), radii(fake)
    d = cdist(fake, real)
    precision = np.mean(np.any(d <= rr[None, :], axis=1))
    recall = np.mean(np.any(d.T <= rf[None, :], axis=1))
    return precision, recall


# ---------------------------------------------------------------- tfgan_compat
def test_tfgan_compat_loads_without_touching_package_init():
    module = tfgan_compat.load_classifier_metrics()
    assert module is tfgan_compat.load_classifier_metrics()  # cached per process
    for name in ("frechet_classifier_distance_from_activations",
                 "kernel_classifier_distance_and_std_from_activations",
                 "classifier_score_from_logits"):
        assert callable(getattr(module, name))
    # The placeholder parent packages are removed again: nothing named tensorflow_gan is left
    # behind that could shadow the real package.
    assert "tensorflow_gan" not in sys.modules
    assert "tensorflow_gan.python.eval" not in sys.modules


# ---------------------------------------------------------------- FID
def test_fid_matches_scipy_reference():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    b = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) * 0.5 + 0.3
    assert metrics.fid_from_activations(a, b) == pytest.approx(fid_reference(a, b), rel=1e-6)


def test_fid_identical_sets_is_zero():
    a = np.random.default_rng(1).normal(size=(200, 10)).astype(np.float32)
    assert abs(metrics.fid_from_activations(a, a)) < 1e-6


def test_fid_shifted_gaussians_closed_form():
    rng = np.random.default_rng(2)
    n, d = 20000, 4
    shift = np.array([1.0, -0.5, 2.0, 0.0])
    a = rng.normal(size=(n, d))
    b = rng.normal(size=(n, d)) + shift
    expected = float(np.sum(shift ** 2))  # = 5.25; the covariance term vanishes
    # Independent samples: the mean term's sampling std is about 2 |shift| sqrt(2 / n) = 0.05.
    assert metrics.fid_from_activations(a, b) == pytest.approx(expected, abs=0.25)
    # Same sample shifted: equal covariances exactly, so FID is the closed form to round-off.
    assert metrics.fid_from_activations(a, a + shift) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- KID
def test_kid_matches_unbiased_mmd_per_subset():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(80, 5))
    b = rng.normal(size=(60, 5)) + 0.4
    kid, kid_std = metrics.kid_from_activations(a, b, num_subsets=4, shuffle=False)
    ests = [mmd2_cubic_unbiased(x, y) for x, y in zip(np.array_split(a, 4), np.array_split(b, 4))]
    assert kid == pytest.approx(np.mean(ests), rel=1e-9)
    assert kid_std == pytest.approx(np.std(ests, ddof=1), rel=1e-9)


def test_kid_shuffled_is_finite_positive_and_near_zero_for_same_distribution():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    kid, kid_std = metrics.kid_from_activations(a, b, num_subsets=10)
    assert np.isfinite(kid) and np.isfinite(kid_std) and kid_std > 0
    assert abs(kid) < 3 * kid_std
    far_kid, _ = metrics.kid_from_activations(a, b + 3.0, num_subsets=10)
    assert far_kid > 10 * kid_std
    # Deterministic for a seed.
    assert metrics.kid_from_activations(a, b, num_subsets=10) == (kid, kid_std)


def test_kid_rejects_too_few_subsets_or_samples():
    a = np.zeros((50, 3))
    with pytest.raises(ValueError, match="num_subsets"):
        metrics.kid_from_activations(a, a, num_subsets=3)
    with pytest.raises(ValueError, match="at least 20 rows"):
        metrics.kid_from_activations(a[:10], a, num_subsets=10)


# ---------------------------------------------------------------- Inception score
def test_inception_score_known_cases():
    uniform = np.zeros((100, 10))
    mean, std = metrics.inception_score_from_logits(uniform, splits=10)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    confident = 50.0 * np.eye(10)[np.arange(200) % 10]  # balanced within every split
    mean, std = metrics.inception_score_from_logits(confident, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_matches_numpy_per_split():
    logits = np.random.default_rng(5).normal(size=(90, 7)) * 3
    mean, std = metrics.inception_score_from_logits(logits, splits=3)
    scores = [inception_score_reference(s) for s in np.array_split(logits, 3)]
    assert mean == pytest.approx(np.mean(scores), rel=1e-6)
    assert std == pytest.approx(np.std(scores), rel=1e-5)


def test_inception_score_bad_splits():
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score_from_logits(np.zeros((5, 3)), splits=10)


# ---------------------------------------------------------------- precision / recall
def test_precision_recall_identical_and_disjoint():
    a = np.random.default_rng(6).normal(size=(150, 4))
    assert metrics.precision_recall(a, a, k=3) == (1.0, 1.0)
    assert metrics.precision_recall(a, a + 100.0, k=3) == (0.0, 0.0)


def test_precision_recall_matches_bruteforce_with_batching():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(120, 3))
    fake = rng.normal(size=(90, 3)) * 1.5 + 0.5  # wider: recall high, precision lower
    precision, recall = metrics.precision_recall(real, fake, k=3, batch_size=17)
    ref_p, ref_r = pr_reference(real, fake, 3)
    assert precision == pytest.approx(ref_p) and recall == pytest.approx(ref_r)
    assert precision < recall


# ---------------------------------------------------------------- input checks
@pytest.mark.parametrize("real, fake, match", [
    (np.zeros((10, 3)), np.zeros((10, 4)), "width"),
    (np.zeros(10), np.zeros((10, 1)), "2-D"),
    (np.full((10, 2), np.nan), np.zeros((10, 2)), "NaN"),
])
def test_bad_activations_raise(real, fake, match):
    with pytest.raises(ValueError, match=match):
        metrics.fid_from_activations(real, fake)
