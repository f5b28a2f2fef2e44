"""Diversity from shared 1x1 starts (evaluators/diversity.py) against brute-force numpy."""

import itertools

import numpy as np
import pytest

from evaluators import diversity as div


def _brute_rms(images):
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return np.array([np.sqrt(np.mean((x[i] - x[j]) ** 2))
                     for i, j in itertools.combinations(range(len(x)), 2)])


def _flat_colour(coarse, seed):
    """Deterministic 'sampler': every sample is the start's colour."""
    return np.broadcast_to(np.round(coarse * 255).astype(np.uint8), (len(coarse), 8, 8, 3)).copy()


def _noisy(coarse, seed):
    rng = np.random.default_rng(seed)
    base = coarse * 255 + rng.normal(0, 40, (len(coarse), 8, 8, 3))
    return np.clip(np.round(base), 0, 255).astype(np.uint8)


def test_pairwise_rms_matches_brute_force():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 5, 3), dtype=np.uint8)
    np.testing.assert_allclose(div.pairwise_rms(images), _brute_rms(images), rtol=1e-9, atol=1e-12)
    assert div.mean_pairwise_rms(images) == pytest.approx(_brute_rms(images).mean())
    with pytest.raises(ValueError, match="at least 2"):
        div.pairwise_rms(images[:1])


def test_noisy_sampler_differs_within_start_and_matches_reference():
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    coarse = np.array([[[[0.2, 0.5, 0.8]]], [[[0.9, 0.1, 0.4]]]], np.float32)
    result, block = div.evaluate_diversity(_noisy, coarse, 4, data, seed=3)
    ref_within = np.mean([_brute_rms(_noisy(np.repeat(coarse[k:k + 1], 4, 0), 3 + k)).mean()
                          for k in range(2)])
    assert result["within_start_mean"] == pytest.approx(ref_within)
    assert result["data_mean"] == pytest.approx(_brute_rms(data).mean())
    assert result["fraction_pairs_differ"] == 1.0
    assert result["between_starts_mean"] > result["within_start_mean"]
    assert result["ratio"] == pytest.approx(ref_within / result["data_mean"])
    assert result["num_starts"] == 2 and result["samples_per_start"] == 4
    # 2 rows x (start + 4 samples) tiles of 8x8 with 2-pixel padding
    assert block.dtype == np.uint8 and block.shape == (2 * 10 + 2, 5 * 10 + 2, 3)
    np.testing.assert_array_equal(block[2:10, 2:10], np.round(coarse[0, 0, 0] * 255).astype(np.uint8)
                                  * np.ones((8, 8, 1), np.uint8))


def test_deterministic_sampler_has_no_diversity():
    data = np.random.default_rng(2).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    coarse = np.full((3, 1, 1, 3), 0.5, np.float32)
    result, _ = div.evaluate_diversity(_flat_colour, coarse, 3, data)
    assert result["within_start_mean"] == 0.0
    assert result["fraction_pairs_differ"] == 0.0
    assert result["ratio"] == 0.0


def test_bad_inputs_raise():
    data = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="samples_per_start"):
        div.evaluate_diversity(_noisy, np.zeros((1, 1, 1, 3), np.float32), 1, data)
    with pytest.raises(ValueError, match=r"\[K, S, S, C\]"):
        div.evaluate_diversity(_noisy, np.zeros((1, 2, 3, 3), np.float32), 2, data)
    with pytest.raises(ValueError, match="coarse size 3 must divide"):
        div.evaluate_diversity(_noisy, np.zeros((1, 3, 3, 3), np.float32), 2, data)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        div.evaluate_diversity(_noisy, np.full((1, 1, 1, 3), 2.0, np.float32), 2, data)
    with pytest.raises(ValueError, match="expected uint8"):
        div.evaluate_diversity(lambda c, s: np.zeros((1, 8, 8, 3), np.uint8),
                               np.zeros((1, 1, 1, 3), np.float32), 2, data)
