"""Translation evaluation: FID of translated vs untouched source images, the change, the pairs."""

import numpy as np
import pytest

from evaluators.features import FeatureSpace
from evaluators.translation import evaluate_translation


def _space():
    """A real FeatureSpace: 4x4 block means of the image (cheap, deterministic)."""
    def batch_fn(images):
        x = images.astype(np.float32).reshape(len(images), 4, 4, 4, 4, -1).mean(axis=(2, 4))
        return x.reshape(len(images), -1), x.reshape(len(images), -1)[:, :2]
    return FeatureSpace("blocks", batch_fn, {"kind": "block means for tests"})


def _sets(n=40):
    rng = np.random.default_rng(0)
    target = np.zeros((n, 16, 16, 1), np.uint8)
    target[:, 4:12, 4:12] = rng.integers(150, 255, (n, 1, 1, 1))  # bright squares
    source = rng.integers(0, 60, (n, 16, 16, 1)).astype(np.uint8)  # dark noise
    return source, target


def test_a_translation_towards_the_target_lowers_fid_and_identity_does_not():
    source, target = _sets()
    spaces = {"blocks": _space()}
    identity, pairs = evaluate_translation(source, target, lambda x, s: x, spaces, kid_subsets=4)
    row = identity["spaces"]["blocks"]
    assert identity["change"] == 0.0 and row["translated"]["fid"] == pytest.approx(row["source"]["fid"])
    assert pairs.shape == (16, 16, 16, 1) and np.array_equal(pairs[0::2], source[:8])

    def paint_square(images, seed):  # moves each image onto the target's support
        out = images.copy()
        out[:, 4:12, 4:12] = 200
        out[:, :4] = out[:, 12:] = 0
        out[:, :, :4] = out[:, :, 12:] = 0
        return out

    moved, pairs = evaluate_translation(source, target, paint_square, spaces, kid_subsets=4, num_examples=3)
    row = moved["spaces"]["blocks"]
    assert row["translated"]["fid"] < 0.1 * row["source"]["fid"] and moved["change"] > 0.1
    assert row["translated"]["num_fake"] == 40 and moved["num_source"] == 40
    assert pairs.shape == (6, 16, 16, 1) and np.all(pairs[1::2][:, 6, 6] == 200)


def test_bad_inputs_name_the_argument():
    source, target = _sets()
    with pytest.raises(ValueError, match="source must have the target images' size"):
        evaluate_translation(source[:, :8, :8], target, lambda x, s: x, {})
    with pytest.raises(ValueError, match="translate output must be uint8"):
        evaluate_translation(source, target, lambda x, s: x / 255.0, {})
    with pytest.raises(ValueError, match="translate returned shape"):
        evaluate_translation(source, target, lambda x, s: x[:3], {})
