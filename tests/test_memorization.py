"""Memorization check: exact nearest neighbours, the ratio on copying vs fresh models, the figure."""

import numpy as np
import pytest

from evaluators.features import FeatureSpace
from evaluators.memorization import evaluate_memorization, nearest_neighbours


def test_nearest_neighbours_match_brute_force_in_every_chunking():
    rng = np.random.default_rng(0)
    queries, reference = rng.normal(size=(37, 5)), rng.normal(size=(50, 5))
    brute = np.sqrt(((queries[:, None, :] - reference[None, :, :]) ** 2).sum(-1))
    want_index = np.argsort(brute, axis=1, kind="stable")[:, :3]
    for chunk in (1, 8, 100):
        dist, index = nearest_neighbours(queries, reference, k=3, chunk=chunk)
        assert np.array_equal(index, want_index)
        assert np.allclose(dist, np.take_along_axis(brute, want_index, axis=1))
    dist, index = nearest_neighbours(reference[:4], reference, k=1)
    assert np.array_equal(index[:, 0], np.arange(4)) and np.allclose(dist, 0.0, atol=1e-6)
    all_dist, _ = nearest_neighbours(queries, reference, k=50)  # k = R: every row, ascending
    assert np.all(np.diff(all_dist, axis=1) >= 0)
    with pytest.raises(ValueError, match="k=4 must be between 1"):
        nearest_neighbours(queries, reference[:3], k=4)
    with pytest.raises(ValueError, match="the same D"):
        nearest_neighbours(queries, reference[:, :2])


def _data(seed=0, n=300):
    """Smooth random 8x8 images: a train set and a held-out set from the same distribution."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, size=(n, 2, 2, 1))
    return np.clip(np.repeat(np.repeat(low, 4, 1), 4, 2) + rng.normal(0, 8, (n, 8, 8, 1)), 0, 255).astype(np.uint8)


def test_a_copying_model_scores_far_below_one_and_a_fresh_one_near_one():
    train, held, fresh = _data(0), _data(1, 100), _data(2, 100)
    copies = train[:100]
    space = FeatureSpace("mean", lambda x: (x.reshape(len(x), -1).mean(1, keepdims=True),) * 2, {"kind": "test"})
    copied, figure = evaluate_memorization(copies, held, train, {"mean": space}, num_examples=3)
    assert copied["ratio"] == 0.0 and copied["spaces"]["pixels"]["fraction_closer_than_real_q05"] == 1.0
    assert set(copied["spaces"]) == {"pixels", "mean"} and copied["spaces"]["mean"]["num_train"] == 300
    assert figure.shape == (3 * 6, 8, 8, 1) and np.array_equal(figure[0], figure[1])  # nearest = itself
    honest, _ = evaluate_memorization(fresh, held, train)
    assert 0.8 < honest["ratio"] < 1.25 and honest["spaces"]["pixels"]["fraction_closer_than_real_q05"] < 0.15


def test_bad_inputs_name_the_set():
    train, held = _data(0, 20), _data(1, 10)
    with pytest.raises(ValueError, match="held_out images are"):
        evaluate_memorization(train[:5], held[:, :4, :4], train)
    with pytest.raises(ValueError, match="generated images must be uint8"):
        evaluate_memorization(train[:5].astype(np.float32), held, train)
    with pytest.raises(ValueError, match="fewer than neighbours=5"):
        evaluate_memorization(train[:5], held, train[:3])
