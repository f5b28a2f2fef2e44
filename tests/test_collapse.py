"""The collapse rule (`evaluators.collapse`): closed-form figures, the verdict on collapsed and
healthy image sets, and through `evaluate_model` on real SavedModels whose `sample` signature
returns noise squares, upsampled coarse images or real images."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from evaluators import collapse
from evaluators.blessing import flatten_metrics
from evaluators.features import FeatureSpace


@pytest.fixture(scope="module")
def digits():
    """1,797 real 8x8 digits as uint8 [N, 8, 8, 1]."""
    return np.round(load_digits().images * (255.0 / 16.0)).astype(np.uint8)[..., None]


def _noise_squares(n, size=8, seed=0):
    """One layout (a bright square on a dark frame) under independent pixel noise: what a
    collapsed CF-EBM gave."""
    rng = np.random.default_rng(seed)
    base = np.full((size, size, 1), 0.25)
    base[size // 4:-size // 4, size // 4:-size // 4] = 0.6
    x = base[None] + 0.15 * rng.normal(size=(n, size, size, 1))
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _upsampled_coarse(images, noise=0.0, seed=0):
    """Each image's 4x4-block average upsampled back (nearest), plus optional pixel noise."""
    x = images.astype(np.float64) / 255.0
    up = np.repeat(np.repeat(collapse.block_mean(x, 4), 4, axis=1), 4, axis=2)
    up = up + noise * np.random.default_rng(seed).normal(size=up.shape)
    return np.clip(np.round(up * 255), 0, 255).astype(np.uint8)


def test_figures_match_a_closed_form():
    # Image 0: left half 0, right half 1 (8x8). Its 4x4 blocks are 0 and 1 exactly, so the 2x2
    # level equals the upsampled coarse level: no fine detail. Pixel std: 0.5.
    # Image 1: a 2x2 checkerboard of 0 / 1 cells inside each 4x4 block: every 4x4 block averages
    # 0.5, every 2x2 block is 0 or 1, so the fine detail is exactly 0.5.
    a = np.zeros((8, 8, 1))
    a[:, 4:] = 1.0
    cell = np.kron(np.array([[0.0, 1.0], [1.0, 0.0]]), np.ones((2, 2)))
    b = np.tile(cell, (2, 2))[..., None]
    images = (np.stack([a, b]) * 255).astype(np.uint8)
    got = collapse.image_figures(images)
    assert got["coarse_size"] == [2, 2] and got["num_images"] == 2
    assert got["pixel_std"] == pytest.approx(0.5)
    assert got["fine_detail"] == pytest.approx((0.0 + 0.5) / 2)
    # Coarse levels: [[0, 1], [0, 1]] and [[.5, .5], [.5, .5]]: RMS distance 0.5.
    assert got["coarse_diversity"] == pytest.approx(0.5)


def test_block_mean_matches_numpy_and_drops_the_remainder():
    x = np.random.default_rng(0).random((3, 10, 9, 2))
    got = collapse.block_mean(x, 4)
    assert got.shape == (3, 2, 2, 2)
    np.testing.assert_allclose(got[1, 1, 0, 1], x[1, 4:8, 0:4, 1].mean())


def test_real_images_are_not_collapsed(digits):
    result = collapse.collapse_rule(digits[:500], digits[500:1000])
    assert not result["collapsed"] and result["reasons"] == []
    for ratio in collapse.BOUNDS:
        assert 0.85 < result[ratio] < 1.15, (ratio, result[ratio])


def test_noise_squares_are_collapsed_by_coarse_diversity(digits):
    result = collapse.collapse_rule(_noise_squares(300), digits[:500])
    assert result["collapsed"]
    assert result["coarse_diversity_ratio"] < collapse.BOUNDS["coarse_diversity_ratio"][0]
    assert any(r.startswith("coarse_diversity_ratio") for r in result["reasons"])
    # ...although the pixel noise leaves them plenty of per-image contrast.
    assert result["pixel_std_ratio"] > collapse.BOUNDS["pixel_std_ratio"][0]


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_upsampled_coarse_samples_are_collapsed_by_fine_detail(digits, noise):
    result = collapse.collapse_rule(_upsampled_coarse(digits[:500], noise), digits[500:1000])
    assert result["collapsed"]
    assert "fine_detail_ratio" in [r.split("=")[0] for r in result["reasons"]]
    assert result["fine_detail_ratio"] < 0.2
    assert result["coarse_diversity_ratio"] > 0.8  # the layouts are as varied as the data's


def test_flat_samples_are_collapsed_by_pixel_std(digits):
    flat = np.full((50, 8, 8, 1), 40, np.uint8) + np.arange(50, dtype=np.uint8)[:, None, None, None]
    result = collapse.collapse_rule(flat, digits[:200])
    assert result["collapsed"] and result["pixel_std_ratio"] == pytest.approx(0.0)
    assert "nearly flat" in collapse.summary(result)


def test_one_real_image_leaves_the_diversity_ratio_out(digits):
    result = collapse.collapse_rule(digits[:20], digits[20:21])
    assert result["coarse_diversity_ratio"] is None and result["real"]["coarse_diversity"] is None
    assert result["pixel_std_ratio"] is not None


@pytest.mark.parametrize("samples, real, match", [
    (np.zeros((4, 8, 8, 1), np.float32), np.zeros((4, 8, 8, 1), np.uint8), "uint8"),
    (np.zeros((1, 8, 8, 1), np.uint8), np.zeros((4, 8, 8, 1), np.uint8), "at least 2"),
    (np.zeros((4, 8, 8, 1), np.uint8), np.zeros((4, 16, 16, 1), np.uint8), "same height"),
    (np.zeros((4, 2, 2, 1), np.uint8), np.zeros((4, 2, 2, 1), np.uint8), "at least 4x4"),
])
def test_bad_input_is_named(samples, real, match):
    with pytest.raises(ValueError, match=match):
        collapse.collapse_rule(samples, real)


# ------------------------------------------------------------------- through the evaluator


class _BankModel(tf.Module):
    """A SavedModel whose `sample` returns images of a fixed bank (rows seed, seed+1, ...)."""

    def __init__(self, bank: np.ndarray):
        super().__init__()
        self.bank = tf.constant(bank)

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="num_samples"),
                                  tf.TensorSpec([], tf.int32, name="seed")])
    def sample(self, num_samples, seed):
        n = tf.shape(self.bank)[0]
        rows = tf.math.floormod(tf.range(num_samples) + seed, n)
        images = tf.gather(self.bank, rows)
        return {"images": images, "grid_8": images}


def _export(path: str, bank: np.ndarray) -> str:
    module = _BankModel(bank)
    tf.saved_model.save(module, path, signatures={"sample": module.sample})
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", "config.json"), "w") as handle:
        json.dump({"family": "bank", "signatures": ["sample"], "grids": [8], "image_size": 8,
                   "channels": 1, "trained_grids": [8], "max_num_samples": 256}, handle)
    return path


def _projection_space():
    rng = np.random.default_rng(0)
    w_feat, w_logit = rng.normal(size=(64, 16)), rng.normal(size=(64, 10))

    def batch_fn(images):
        x = images.reshape(len(images), -1).astype(np.float64) / 255.0
        return (x @ w_feat).astype(np.float32), (x @ w_logit).astype(np.float32)

    return FeatureSpace("projection", batch_fn, {"kind": "random projection for tests"})


@pytest.mark.parametrize("kind, collapsed", [("noise_squares", True), ("upsampled_coarse", True),
                                             ("real", False)])
def test_the_evaluator_reports_the_rule_for_an_export(tmp_path, digits, kind, collapsed):
    from evaluators.evaluate import EvalData, EvalOptions, evaluate_model

    bank = {"noise_squares": _noise_squares(256), "upsampled_coarse": _upsampled_coarse(digits[:256]),
            "real": digits[1000:1256]}[kind]
    model_dir = _export(str(tmp_path / "export"), bank)
    metrics = evaluate_model(model_dir, EvalData(digits[:400]), str(tmp_path / "eval"),
                             {"projection": _projection_space()},
                             EvalOptions(num_samples=200, num_real=400, kid_subsets=4, masks=(), num_inpaint=0,
                                         num_diversity=0, num_ood=0, num_denoise=0, num_memorization=0))
    assert metrics["collapse"]["collapsed"] is collapsed
    with open(tmp_path / "eval" / "metrics.json") as handle:
        written = json.load(handle)
    assert written["collapse"]["collapsed"] is collapsed
    assert flatten_metrics(written)["collapse/collapsed"] == float(collapsed)
    assert written["collapse"]["samples"]["num_images"] == 200
    page = (tmp_path / "eval" / "report.html").read_text()
    assert "Collapse rule" in page and ("COLLAPSED" in page) is collapsed
