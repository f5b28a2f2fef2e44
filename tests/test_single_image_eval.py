"""Single-image metrics and baselines (evaluators/single_image.py, evaluators/quilting.py) against
numpy / scipy references and closed forms."""

import itertools
import json
import time

import numpy as np
import pytest
from scipy import linalg

from evaluators import features, metrics, quilting
from evaluators import single_image as si


def _texture(h, w, c=3, seed=0):
    """A deterministic, non-constant float32 [h, w, c] image in [0, 1]: stripes plus smooth noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 0.5 + 0.25 * np.sin(x / 2.5 + 0.3 * y) * np.cos(y / 4.0)
    channels = [np.clip(base + 0.15 * rng.random((h, w)) + 0.05 * k, 0, 1) for k in range(c)]
    return np.stack(channels, axis=-1).astype(np.float32)


def _noisy(image, sigma, seed):
    rng = np.random.default_rng(seed)
    return np.clip(image + sigma * rng.standard_normal(image.shape), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------------------- SIFID


def _scipy_frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_and_fid():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((600, 6)) @ rng.standard_normal((6, 6))
    b = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6)) + 0.7
    expected = _scipy_frechet(a, b)
    assert si.sifid_from_features(a, b, eps=0.0) == pytest.approx(expected, rel=1e-6)
    assert si.sifid_from_features(a, b, eps=0.0) == pytest.approx(metrics.fid_from_activations(a, b), rel=1e-4)
    # The default eps changes the value by O(eps * d) only.
    assert si.sifid_from_features(a, b) == pytest.approx(expected, abs=1e-4)


def test_frechet_regularised_when_dims_exceed_positions():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((5, 24)), rng.standard_normal((7, 24)) + 0.3
    value = si.sifid_from_features(a, b)
    assert np.isfinite(value) and value > 0
    assert si.sifid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)
    mu, sigma = si.gaussian_stats(a, eps=1e-3)
    assert np.linalg.eigvalsh(sigma).min() >= 1e-3 * (1 - 1e-9)


def test_sifid_self_zero_and_grows_with_noise():
    image = _texture(48, 40)
    assert si.sifid(image, image[None])[0] == pytest.approx(0.0, abs=1e-6)
    values = si.sifid(image, np.stack([_noisy(image, s, seed=3) for s in (0.03, 0.1, 0.3)]))
    assert np.all(values > 0) and np.all(np.diff(values) > 0), values


def test_sifid_features_are_spatial_and_gray_works():
    image = _texture(32, 48, c=1)
    feats = si.spatial_features(image[None])
    assert feats.shape == (1, (32 // 4) * (48 // 4), 24)
    # Samples may be wider than the image; a 4x4-position map (16 < d = 24) is regularised.
    wide = np.stack([_texture(16, 16, c=1, seed=s) for s in (1, 2)])
    values = si.sifid(image, wide)
    assert values.shape == (2,) and np.all(np.isfinite(values)) and np.all(values > 0)


def test_sifid_inception_plumbing_with_random_weights():
    image = _texture(40, 40)
    feats = si.spatial_features(image[None], "inception_v3", _random_weights_for_tests=True)
    # Keras InceptionV3: 3x3/2 valid conv (19), 3x3 valid (17), 3x3 same, 3x3/2 max-pool (8): 64-d.
    assert feats.shape == (1, 8 * 8, 64)
    assert si.sifid(image, image[None], "inception_v3", _random_weights_for_tests=True)[0] == pytest.approx(
        0.0, abs=1e-6)
    # Too small for the valid-padded layers: a ValueError, checked before the CPU kernels (which
    # crash the process with SIGFPE on an empty output).
    with pytest.raises(ValueError, match="8x8 give 0 position"):
        si.spatial_features(image[None, :8, :8], "inception_v3", _random_weights_for_tests=True)


def test_inception_without_weights_is_skipped_with_reason(monkeypatch, tmp_path):
    monkeypatch.delenv(features.INCEPTION_V3_ENV, raising=False)
    monkeypatch.delenv(features.ALLOW_DOWNLOAD_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    image = _texture(24, 24)
    result = si.single_image_metrics(image, image[None], spaces=("inception_v3",), baseline_num=2)
    assert "sifid/inception_v3" not in result
    assert "weights" in result["skipped"]["sifid/inception_v3"]
    assert "diversity/single_image" in result["skipped"]  # one sample only
    tiny = si.single_image_metrics(image[:4, :4], image[None, :4, :4], patch_size=3, baseline_num=2)
    assert "1 position(s)" in tiny["skipped"]["sifid/efficientnet_lite0"] and "nearest_patch/mean" in tiny


# ------------------------------------------------------------------------------------- diversity


def test_diversity_closed_forms():
    image = _texture(20, 24)
    assert si.diversity(image, np.stack([image] * 4)) == 0.0
    shifted = np.clip(image * 0.8, 0, 1)
    # Two samples a, b: per-pixel std (ddof=0) is |a - b| / 2.
    expected = np.mean(np.abs(image.astype(np.float64) - shifted) / 2) / image.astype(np.float64).std()
    assert si.diversity(image, np.stack([image, shifted])) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="constant"):
        si.diversity(np.full((8, 8, 3), 0.5, np.float32), np.stack([image[:8, :8]] * 2))
    with pytest.raises(ValueError, match="shape"):
        si.diversity(image, np.stack([image[:10]] * 2))


# --------------------------------------------------------------------------------- nearest patch


def _brute_nearest(image, samples, p, stride):
    h, w = image.shape[:2]
    bank = np.array([image[y:y + p, x:x + p].ravel() for y in range(h - p + 1) for x in range(w - p + 1)],
                    np.float64)
    out = []
    for s in samples:
        row = []
        for y in range(0, s.shape[0] - p + 1, stride):
            for x in range(0, s.shape[1] - p + 1, stride):
                d = np.sqrt(np.mean((bank - s[y:y + p, x:x + p].ravel()) ** 2, axis=1))
                row.append(d.min())
        out.append(row)
    return np.array(out)


def test_nearest_patch_matches_brute_force():
    image = _texture(12, 10)
    samples = np.stack([_noisy(_texture(9, 13, seed=s), 0.1, s) for s in (1, 2)])
    got = si.nearest_patch_distances(image, samples, patch_size=3, stride=2)
    assert got.shape == (2, 4 * 6)
    np.testing.assert_allclose(got, _brute_nearest(image, samples, 3, 2), rtol=1e-6, atol=1e-9)


def test_nearest_patch_zero_for_copies_positive_at_seams_only():
    image = _texture(32, 32)
    assert si.nearest_patch_distances(image, image[None], 5, 1).max() < 1e-6
    shuffled = quilting.patch_shuffle(image, (32, 48), 8, 3, seed=0)
    # Patches of 4 at stride 4 never cross the 8-pixel block seams: all are copies.
    assert si.nearest_patch_distances(image, shuffled, 4, 4).max() < 1e-6
    crossing = si.nearest_patch_distances(image, shuffled, 4, 2)  # every other column/row crosses
    noise = np.random.default_rng(0).random((3, 32, 48, 3)).astype(np.float32)
    assert 0 < crossing.mean() < si.nearest_patch_distances(image, noise, 4, 2).mean()


# --------------------------------------------------------------------------------------- baselines


def test_patch_shuffle_shape_and_determinism():
    image = _texture(30, 20)
    out = quilting.patch_shuffle(image, (25, 37), 7, 4, seed=5)
    assert out.shape == (4, 25, 37, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, quilting.patch_shuffle(image, (25, 37), 7, 4, seed=5))
    assert not np.array_equal(out, quilting.patch_shuffle(image, (25, 37), 7, 4, seed=6))


def test_quilting_shape_range_and_determinism():
    image = _texture(40, 30)
    out = quilting.image_quilting(image, (33, 50), 10, 3, 2, seed=1)
    assert out.shape == (2, 33, 50, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, quilting.image_quilting(image, (33, 50), 10, 3, 2, seed=1))
    assert not np.array_equal(out, quilting.image_quilting(image, (33, 50), 10, 3, 2, seed=2))
    gray = quilting.image_quilting(image[..., :1], (20, 20), 8, 2, 1, seed=0)
    assert gray.shape == (1, 20, 20, 1)


def test_quilting_without_overlap_copies_image_blocks():
    image = _texture(16, 14)
    p = 5
    out = quilting.image_quilting(image, (15, 20), p, 0, 2, seed=0)
    bank = {image[y:y + p, x:x + p].tobytes() for y in range(16 - p + 1) for x in range(14 - p + 1)}
    for sample in out:
        for y, x in itertools.product(range(0, 15, p), range(0, 20, p)):
            assert sample[y:y + p, x:x + p].tobytes() in bank


def _brute_min_cut(errors):
    rows, cols = errors.shape
    best = np.inf
    for start in range(cols):
        for steps in itertools.product((-1, 0, 1), repeat=rows - 1):
            path = np.cumsum([start, *steps])
            if path.min() >= 0 and path.max() < cols:
                best = min(best, errors[np.arange(rows), path].sum())
    return best


def test_min_cut_path_is_optimal_and_connected():
    rng = np.random.default_rng(0)
    for shape in ((6, 4), (5, 3), (4, 1), (1, 5)):
        errors = rng.random(shape)
        path = quilting.min_cut_path(errors)
        assert path.shape == (shape[0],) and path.min() >= 0 and path.max() < shape[1]
        assert np.all(np.abs(np.diff(path)) <= 1)
        assert errors[np.arange(shape[0]), path].sum() == pytest.approx(_brute_min_cut(errors))
    # A hand-made surface with a cheap diagonal valley.
    valley = np.array([[9, 0, 9, 9], [9, 9, 0, 9], [9, 9, 9, 0], [9, 9, 0, 9]], np.float64)
    np.testing.assert_array_equal(quilting.min_cut_path(valley), [1, 2, 3, 2])


def test_quilting_96x128_from_128x96_is_fast():
    image = _texture(128, 96)
    start = time.perf_counter()
    out = quilting.image_quilting(image, (96, 128), 24, 4, 1, seed=0)
    elapsed = time.perf_counter() - start
    print(f"image_quilting 96x128 from 128x96 (block 24, overlap 4): {elapsed:.2f} s")
    assert out.shape == (1, 96, 128, 3) and elapsed < 10


# ------------------------------------------------------------------------------- errors and entry


@pytest.mark.parametrize("call, match", [
    (lambda im: si.diversity(im[0], np.stack([im] * 2)), "image must be a 3-D"),
    (lambda im: si.nearest_patch_distances(im * 2, im[None]), r"image values must lie in \[0, 1\]"),
    (lambda im: si.nearest_patch_distances(im, im[None] - 1), r"samples values must lie in \[0, 1\]"),
    (lambda im: si.nearest_patch_distances(im, im[None], patch_size=50), "patch_size=50 is larger"),
    (lambda im: quilting.image_quilting(im, (8, 8), 40, 2, 1), "patch_size=40 is larger"),
    (lambda im: si.nearest_patch_distances(im, im[None, :5], patch_size=7), "patch_size=7 is larger than the samples"),
    (lambda im: quilting.patch_shuffle(im, (8, 8), 4, None), "num must be a positive integer"),
    (lambda im: quilting.patch_shuffle(im, (8, 0), 4, 1), "out_hw width must be"),
    (lambda im: quilting.image_quilting(im, (8, 8), 4, 4, 1), "overlap must be"),
    (lambda im: quilting.patch_shuffle((im * 255).astype(np.uint8), (8, 8), 4, 1), "image must be float"),
    (lambda im: si.single_image_metrics(im, im[None], spaces=("vgg",)), "spaces must hold"),
])
def test_bad_input_raises_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call(_texture(16, 16))
    assert "\n" not in str(info.value)


def test_single_image_metrics_keys_json_and_table():
    image = _texture(40, 36)
    samples = np.stack([_noisy(image, 0.05, s) for s in range(3)])
    result = si.single_image_metrics(image, samples, patch_size=5, seed=0)
    keys = ["sifid/efficientnet_lite0", "sifid_std/efficientnet_lite0", "diversity/single_image",
            "nearest_patch/mean", "hf_energy/ratio"]
    for prefix in ("", "baseline/patch_shuffle/", "baseline/quilting/"):
        for key in keys:
            assert np.isfinite(result[prefix + key]), prefix + key
    assert result["skipped"] == {}
    assert result["hf_energy/ratio"] > 1  # noise adds high-frequency energy
    assert result["info"]["image_mean_abs_laplacian"] > 0
    json.dumps(result)
    rows = si.table_rows(result)
    assert [r[0] for r in rows] == ["", "model", "patch shuffle", "image quilting"]
    assert rows[0][1:] == sorted(keys) and all(v is not None for r in rows[1:] for v in r[1:])
    assert si.single_image_metrics(image, samples, patch_size=5, seed=0) == result  # seeded baselines

    wide = np.stack([_noisy(_texture(40, 60, seed=s), 0.05, s) for s in range(2)])
    result = si.single_image_metrics(image, wide, patch_size=5, baseline_num=2)
    assert "diversity/single_image" in result["skipped"]
    assert "diversity/single_image" not in result and "baseline/quilting/nearest_patch/mean" in result
    assert result["info"]["sample_size"] == [40, 60, 3]


def test_overlap_errors_match_brute_force():
    image = _texture(14, 12).astype(np.float64)
    p = 5
    target = np.random.default_rng(0).random((p, p, 3))
    mask = np.zeros((p, p), bool)
    mask[:, :2] = True
    mask[:2, :] = True
    got = quilting._OverlapSearch(image, p).errors(target, mask)
    expected = np.array([[np.sum(mask[..., None] * (image[y:y + p, x:x + p] - target) ** 2)
                          for x in range(12 - p + 1)] for y in range(14 - p + 1)])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_quilting_of_a_periodic_image_with_zero_tolerance_is_seamless():
    # Period 5 in both directions: an exact continuation (overlap error 0) always exists, and with
    # tolerance 0 only such blocks are chosen, so every patch of the output is a patch of the image.
    tile = np.random.default_rng(1).random((5, 5, 3))
    image = np.tile(tile, (4, 4, 1)).astype(np.float32)
    out = quilting.image_quilting(image, (30, 33), 8, 3, 2, seed=0, tolerance=0.0)
    assert si.nearest_patch_distances(image, out, 4, 1).max() < 1e-6
    shuffled = quilting.patch_shuffle(image, (30, 33), 8, 2, seed=0)
    assert si.nearest_patch_distances(image, shuffled, 4, 1).max() > 0.05  # seams in the baseline


def test_efficientnet_early_layer_equals_the_full_models_block2():
    import keras

    from evaluators import efficientnet_lite0 as enet

    model = enet.load_efficientnet_lite0()
    reference = keras.Model(model.input, model.get_layer("block2_add").output)
    image = _texture(224, 224)
    expected = reference((image[None] * 255.0 - enet.PIXEL_MEAN) / enet.PIXEL_STD, training=False).numpy()
    got = si.spatial_features(image[None])
    np.testing.assert_allclose(got, expected.reshape(1, -1, 24), rtol=1e-4, atol=1e-4)
