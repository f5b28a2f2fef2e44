"""trainers.pyramid_ops against numpy references."""

import numpy as np
import pytest
import tensorflow as tf

from trainers import pyramid_ops


def np_box(images, size):
    n, h, w, c = images.shape
    return images.reshape(n, size, h // size, size, w // size, c).mean(axis=(2, 4))


def np_nearest(images, size):
    factor = size // images.shape[1]
    return np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)


@pytest.mark.parametrize("shape,size", [((3, 32, 32, 1), 4), ((2, 16, 16, 3), 1),
                                        ((2, 12, 12, 3), 6), ((1, 8, 8, 1), 8),
                                        ((2, 12, 6, 2), 3)])
def test_box_downsample_matches_numpy(shape, size):
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = pyramid_ops.box_downsample(tf.constant(x), size)
    assert out.dtype == tf.float32
    assert out.shape == (shape[0], size, size, shape[3])
    np.testing.assert_allclose(out.numpy(), np_box(x.astype(np.float64), size), atol=1e-6)


def test_box_downsample_accepts_uint8_and_float64():
    x = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    out = pyramid_ops.box_downsample(x, 2)
    assert out.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), np_box(x.astype(np.float64), 2), atol=1e-4)
    out64 = pyramid_ops.box_downsample(x.astype(np.float64) / 255.0, 4)
    assert out64.dtype == tf.float64
    np.testing.assert_allclose(out64.numpy(), np_box(x / 255.0, 4), atol=1e-12)


def test_box_downsample_keeps_range_and_constant_images():
    x = np.full((1, 16, 16, 3), 0.25, np.float32)
    np.testing.assert_allclose(pyramid_ops.box_downsample(x, 4).numpy(), 0.25, atol=1e-7)
    y = np.random.default_rng(2).random((4, 16, 16, 1), dtype=np.float32)
    out = pyramid_ops.box_downsample(y, 4).numpy()
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("size", [3, 0, 5, 64])
def test_box_downsample_rejects_non_dividing_sizes(size):
    with pytest.raises(ValueError, match="divide"):
        pyramid_ops.box_downsample(np.zeros((1, 16, 16, 1), np.float32), size)


def test_box_downsample_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank 4"):
        pyramid_ops.box_downsample(np.zeros((16, 16, 1), np.float32), 4)


@pytest.mark.parametrize("shape,size", [((2, 1, 1, 3), 4), ((3, 4, 4, 1), 16), ((1, 8, 8, 3), 8)])
def test_nearest_upsample_matches_numpy(shape, size):
    x = np.random.default_rng(3).random(shape, dtype=np.float32)
    out = pyramid_ops.nearest_upsample(tf.constant(x), size)
    assert out.shape == (shape[0], size, size, shape[3])
    np.testing.assert_array_equal(out.numpy(), np_nearest(x, size))


def test_nearest_upsample_then_box_down_is_identity():
    x = np.random.default_rng(4).random((2, 4, 4, 3), dtype=np.float32)
    up = pyramid_ops.nearest_upsample(x, 16)
    np.testing.assert_allclose(pyramid_ops.box_downsample(up, 4).numpy(), x, atol=1e-6)


@pytest.mark.parametrize("size", [6, 2])
def test_nearest_upsample_rejects_non_multiples(size):
    with pytest.raises(ValueError, match="multiple"):
        pyramid_ops.nearest_upsample(np.zeros((1, 4, 4, 1), np.float32), size)


def test_build_pyramid_matches_numpy_at_every_grid():
    x = np.random.default_rng(5).random((3, 32, 32, 3), dtype=np.float32)
    pyramid = pyramid_ops.build_pyramid(tf.constant(x), (1, 4, 16, 32))
    assert sorted(pyramid) == [1, 4, 16, 32]
    for size, level in pyramid.items():
        assert level.shape == (3, size, size, 3) and level.dtype == tf.float32
        np.testing.assert_allclose(level.numpy(), np_box(x.astype(np.float64), size), atol=1e-6)
    np.testing.assert_array_equal(pyramid[32].numpy(), x)


def test_build_pyramid_works_inside_tf_function():
    fn = tf.function(lambda t: pyramid_ops.build_pyramid(t, (1, 2, 8)))
    x = np.random.default_rng(6).random((2, 8, 8, 1), dtype=np.float32)
    out = fn(tf.constant(x))
    np.testing.assert_allclose(out[2].numpy(), np_box(x.astype(np.float64), 2), atol=1e-6)


@pytest.mark.parametrize("grids,match", [((1, 4, 16), "largest grid"), ((1, 3, 32), "divide"),
                                         ((), "empty")])
def test_build_pyramid_rejects_bad_grids(grids, match):
    with pytest.raises(ValueError, match=match):
        pyramid_ops.build_pyramid(np.zeros((1, 32, 32, 1), np.float32), grids)


def test_large_block_average_is_float32_accurate():
    # A 256x256 block averaged in float32 must stay within 1e-6 of the float64 mean (a single
    # reduction over 65536 values drifts to ~5e-6 on skewed content).
    rng = np.random.default_rng(7)
    x = (rng.integers(0, 256, (4, 256, 256, 3)) ** 2 / 255.0**2).astype(np.float32)
    out = pyramid_ops.box_downsample(tf.constant(x), 1).numpy()
    np.testing.assert_allclose(out, np_box(x.astype(np.float64), 1), atol=1e-6, rtol=0)


# ------------------------------------------------------------------ Laplacian pyramid

@pytest.mark.parametrize("shape,sizes", [((3, 32, 32, 1), (8, 16, 32)), ((2, 16, 16, 3), (1, 4, 16)),
                                         ((2, 12, 12, 1), (3, 12))])
def test_laplacian_levels_and_reconstruction_match_numpy(shape, sizes):
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    coarse, residuals = pyramid_ops.laplacian_from_images(tf.constant(x), sizes)
    ref = {s: np_box(x.astype(np.float64), s) for s in sizes}
    np.testing.assert_allclose(coarse.numpy(), ref[sizes[0]], atol=1e-6)
    assert sorted(residuals) == list(sizes[1:])
    for small, big in zip(sizes, sizes[1:]):
        np.testing.assert_allclose(residuals[big].numpy(), ref[big] - np_nearest(ref[small], big), atol=1e-6)
    rebuilt = pyramid_ops.reconstruct_laplacian(coarse, residuals)
    assert rebuilt.dtype == tf.float32 and rebuilt.shape == shape
    np.testing.assert_allclose(rebuilt.numpy(), x, atol=3e-7, rtol=0)  # exact up to float32 rounding


def test_laplacian_of_a_pyramid_dict_and_bad_sizes():
    x = np.random.default_rng(2).random((2, 8, 8, 1), dtype=np.float32)
    pyramid = pyramid_ops.build_pyramid(tf.constant(x), (1, 2, 8))
    coarse, residuals = pyramid_ops.laplacian_pyramid(pyramid, (2, 8))
    assert coarse.shape == (2, 2, 2, 1) and list(residuals) == [8]
    np.testing.assert_allclose(pyramid_ops.reconstruct_laplacian(coarse, residuals).numpy(), x, atol=3e-7)
    with pytest.raises(ValueError, match="lacks sizes"):
        pyramid_ops.laplacian_pyramid(pyramid, (2, 4, 8))
    with pytest.raises(ValueError, match="must be larger than and a multiple"):
        pyramid_ops.laplacian_from_images(tf.constant(x), (4, 6, 8))
