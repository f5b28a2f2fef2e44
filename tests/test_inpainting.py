"""Inpainting masks, baselines and metrics (evaluators/inpainting.py) against numpy references."""

import numpy as np
import pytest

from evaluators import inpainting as inp


def _smooth_images(n=6, size=16, channels=3, seed=0):
    """Smooth images: random planes plus a low-frequency sinusoid, uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for _ in range(n):
        chans = []
        for _ in range(channels):
            a, b, c = rng.uniform(-0.4, 0.4, 3)
            chans.append(0.5 + a * xx + b * yy + 0.1 * np.sin(2 * np.pi * (xx + c)))
        out.append(np.stack(chans, -1))
    return np.clip(np.round(np.asarray(out) * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [16, 32])
def test_mask_missing_fractions_and_format(size):
    square = inp.make_masks("square", 5, size, seed=0)
    doodle = inp.make_masks("doodle", 12, size, seed=0)
    pepper = inp.make_masks("pepper", 12, size, seed=0)
    for m in (square, doodle, pepper):
        assert m.dtype == np.uint8 and m.shape[1:] == (size, size, 1)
        assert set(np.unique(m)) <= {0, 1}
    assert np.all(square.mean(axis=(1, 2, 3)) == 0.25)
    half = size // 2
    assert square[0, size // 4:size // 4 + half, size // 4:size // 4 + half].all()
    assert abs(doodle.mean(axis=(1, 2, 3)) - 0.25).max() <= 0.08
    assert abs(pepper.mean(axis=(1, 2, 3)) - 0.6).max() <= 0.05
    # doodles are strokes: most missing pixels have a missing 4-neighbour
    d = doodle[0, :, :, 0].astype(bool)
    neighbours = np.zeros_like(d)
    neighbours[1:] |= d[:-1]
    neighbours[:-1] |= d[1:]
    neighbours[:, 1:] |= d[:, :-1]
    neighbours[:, :-1] |= d[:, 1:]
    assert (neighbours[d]).mean() > 0.9


def test_masks_are_deterministic_per_seed():
    for kind in ("doodle", "pepper"):
        a = inp.make_masks(kind, 3, 16, seed=5)
        b = inp.make_masks(kind, 3, 16, seed=5)
        c = inp.make_masks(kind, 3, 16, seed=6)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        assert not np.array_equal(a[0], a[1])  # different images get different masks


def test_bad_mask_requests_raise():
    with pytest.raises(ValueError, match="unknown mask kind"):
        inp.make_masks("circle", 2, 16)
    with pytest.raises(ValueError, match="num >= 1"):
        inp.make_masks("square", 0, 16)
    images = _smooth_images(2, 8)
    with pytest.raises(ValueError, match="mask must have shape"):
        inp.mean_fill(images, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        inp.mean_fill(images.astype(np.float32), np.zeros((2, 8, 8, 1), np.uint8))


def test_metrics_match_numpy_reference():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    mask = inp.make_masks("pepper", 4, 8, seed=2)
    got = inp.inpainting_metrics(a, b, mask)
    x, y = a / 255.0, b / 255.0
    errors, psnrs = [], []
    for i in range(4):
        miss = mask[i, :, :, 0] == 1
        errors.append(np.abs(x[i][miss] - y[i][miss]).mean())
        psnrs.append(10 * np.log10(1.0 / np.mean((x[i] - y[i]) ** 2)))
    assert got["error"] == pytest.approx(np.mean(errors), rel=1e-12)
    assert got["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-12)
    assert got["psnr_std"] == pytest.approx(np.std(psnrs), rel=1e-9)
    assert got["num_images"] == 4 and got["num_exact"] == 0


def test_exact_recovery_gives_zero_error_and_capped_psnr():
    images = _smooth_images(3, 16)
    table, _ = inp.evaluate_inpainting(images, lambda im, m, s: im.copy(), masks=("square",))
    model = table["masks"]["square"]["model"]
    assert model["error"] == 0.0
    assert model["psnr"] == inp.PSNR_CAP_DB and np.isfinite(model["psnr"])
    assert model["num_exact"] == 3


def test_baselines_keep_observed_pixels_and_mean_fill_matches_numpy():
    images = _smooth_images(3, 16)
    mask = inp.make_masks("doodle", 3, 16, seed=0)
    observed = mask[..., 0] == 0
    for fn in (inp.mean_fill, inp.interpolation_fill):
        out = fn(images, mask)
        assert out.dtype == np.uint8 and out.shape == images.shape
        np.testing.assert_array_equal(out[observed], images[observed])
    filled = inp.mean_fill(images, mask)
    for i in range(3):
        ref = np.round(images[i][observed[i]].astype(np.float64).mean(0))
        missing = filled[i][~observed[i]]
        np.testing.assert_array_equal(missing, np.broadcast_to(ref, missing.shape))


def test_interpolation_recovers_a_linear_ramp():
    yy, xx = np.mgrid[0:16, 0:16]
    ramp = (8 * xx + 4 * yy + 10).astype(np.uint8)[None, :, :, None]
    for kind in ("square", "pepper"):
        mask = inp.make_masks(kind, 1, 16, seed=3)
        out = inp.interpolation_fill(ramp, mask)
        inside = inp.inpainting_metrics(ramp, out, mask)["error"]
        assert inside < 2.0 / 255.0, kind


def test_smooth_images_interpolation_beats_mean_fill_beats_noise():
    images = _smooth_images(6, 16)
    rng = np.random.default_rng(0)

    def noise_fill(im, mask, seed):
        return rng.integers(0, 256, im.shape, dtype=np.uint8)

    table, examples = inp.evaluate_inpainting(images, noise_fill, seed=1, num_examples=2)
    assert set(table["masks"]) == {"square", "doodle", "pepper"}
    for kind, rows in table["masks"].items():
        assert rows["interpolation"]["error"] < rows["mean_fill"]["error"] < rows["model"]["error"], kind
        assert rows["interpolation"]["psnr"] > rows["mean_fill"]["psnr"] > rows["model"]["psnr"], kind
        assert table["observed_changed"][kind] > 0.9  # noise changed observed pixels; clamped
        ex = examples[kind]
        assert set(ex) == {"original", "masked", "model", "mean_fill", "interpolation"}
        assert all(v.shape == (2, 16, 16, 3) and v.dtype == np.uint8 for v in ex.values())
        mask = inp.make_masks(kind, 6, 16, seed=1 + list(table["masks"]).index(kind))
        np.testing.assert_array_equal(ex["masked"][mask[:2, ..., 0] == 1], inp.MASKED_VALUE)


def test_baselines_only_without_model():
    table, _ = inp.evaluate_inpainting(_smooth_images(2, 8, 1), None, masks=("pepper",))
    assert set(table["masks"]["pepper"]) == {"mean_fill", "interpolation"}
    assert "model" not in table["methods"]
