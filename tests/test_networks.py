"""Energy networks: reference layer shapes, a numpy forward pass, shapes/dtypes per grid and norm."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainers.networks import build_energy_net, layer_specs


def test_reference_layer_shapes():
    assert layer_specs(4) == [(5, 2, 96), (3, 1, 128), (3, 1, 256)]
    assert layer_specs(16) == [(5, 2, 96), (3, 1, 128), (3, 1, 256), (3, 1, 512)]
    assert layer_specs(64) == [(5, 2, 64), (5, 2, 128), (5, 2, 256), (5, 2, 512)]
    assert layer_specs(32) == layer_specs(64)[:3]
    # other sizes: 2 -> the 4x4 net, 8 -> the 16x16 net, 128 -> five 5x5/2 convs capped at 512
    assert layer_specs(2) == layer_specs(4)
    assert layer_specs(8) == layer_specs(16)
    assert [c for _, _, c in layer_specs(128)] == [64, 128, 256, 512, 512]
    assert [c for _, _, c in layer_specs(16, width=0.5)] == [48, 64, 128, 256]


def test_built_reference_net_has_reference_weights():
    net = build_energy_net(4, 3)
    kernels = [tuple(v.shape) for v in net.trainable_variables if len(v.shape) == 4]
    assert kernels == [(5, 5, 3, 96), (3, 3, 96, 128), (3, 3, 128, 256)]
    dense = [tuple(v.shape) for v in net.trainable_variables if len(v.shape) == 2]
    assert dense == [(2 * 2 * 256, 1)]  # 4 -> 2 after the stride-2 conv; no bias (see networks.py)
    assert net.feature_dim == 96 + 128 + 256


def _np_conv_same(x, kernel, bias, stride):
    """TF 'same' convolution in numpy (NHWC, HWIO): pad_total = max((ceil(n/s)-1)s + k - n, 0)."""
    n, size, _, cin = x.shape
    k = kernel.shape[0]
    out = -(-size // stride)
    pad = max((out - 1) * stride + k - size, 0)
    xp = np.pad(x, [(0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)])
    y = np.zeros((n, out, out, kernel.shape[3]))
    for i in range(out):
        for j in range(out):
            patch = xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
            y[:, i, j, :] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return y + bias


def test_energy_and_features_match_numpy_forward_pass():
    net = build_energy_net(8, 3, width=0.05)
    x = np.random.default_rng(0).uniform(size=(3, 8, 8, 3)).astype(np.float32)
    h = (x.astype(np.float64) - 0.5) * 2.0  # the documented centring
    pooled = []
    for conv, (_, s, _) in zip(net.convs, net.specs):
        kernel, bias = [v.numpy().astype(np.float64) for v in conv.weights]
        h = _np_conv_same(h, kernel, bias, s)
        h = np.where(h > 0, h, 0.2 * h)  # leaky ReLU 0.2
        pooled.append(h.mean(axis=(1, 2)))
    (w,) = [v.numpy().astype(np.float64) for v in net.dense.weights]
    energy = h.reshape(3, -1) @ w[:, 0]
    np.testing.assert_allclose(net(x).numpy(), energy, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(net.features(x).numpy(), np.concatenate(pooled, axis=1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("grid", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("norm", ["none", "batch", "batch_stats", "spectral"])
def test_shapes_dtypes_per_grid_and_norm(grid, norm):
    net = build_energy_net(grid, 3, norm=norm, width=0.1)
    x = tf.random.stateless_uniform([5, grid, grid, 3], [grid, 1])
    for training in (False, True):
        e = net(x, training=training)
        assert e.shape == (5,) and e.dtype == tf.float32
    feats = net.features(x)
    assert feats.shape == (5, net.feature_dim) and feats.dtype == tf.float32
    assert np.isfinite(e.numpy()).all() and np.isfinite(feats.numpy()).all()


@pytest.mark.parametrize("norm", ["none", "spectral"])
@pytest.mark.parametrize("activation", ["leaky_relu", "elu", "swish", "relu"])
def test_energy_gradient_finite_and_per_example(norm, activation):
    net = build_energy_net(4, 1, norm=norm, activation=activation, width=0.1)
    x = tf.random.stateless_uniform([4, 4, 4, 1], [0, 3])
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(net(x))
    grad = tape.gradient(total, x)
    assert grad.shape == x.shape and np.isfinite(grad.numpy()).all() and np.abs(grad.numpy()).max() > 0
    # no coupling across the batch in inference mode: one example alone gives the same energy
    np.testing.assert_allclose(net(x[:1]).numpy(), net(x).numpy()[:1], rtol=1e-5, atol=1e-6)


def test_batch_stats_norm_matches_numpy_and_is_blind_to_the_pixel_scale():
    net = build_energy_net(8, 3, norm="batch_stats", width=0.05)
    x = np.random.default_rng(1).uniform(size=(6, 8, 8, 3)).astype(np.float32)
    # numpy forward pass: pixels as they are, then conv, normalise by this batch's mean and
    # variance over N, H, W, leaky ReLU
    h = x.astype(np.float64)
    for conv, (_, s, _) in zip(net.convs, net.specs):
        kernel, bias = [v.numpy().astype(np.float64) for v in conv.weights]
        h = _np_conv_same(h, kernel, bias, s)
        h = (h - h.mean(axis=(0, 1, 2))) / np.sqrt(h.var(axis=(0, 1, 2)) + 1e-5)
        h = np.where(h > 0, h, 0.2 * h)
    (w,) = [v.numpy().astype(np.float64) for v in net.dense.weights]
    for training in (False, True):  # no moving averages: the same in both modes
        np.testing.assert_allclose(net(x, training=training).numpy(), h.reshape(6, -1) @ w[:, 0], rtol=1e-3,
                                   atol=1e-4)
    # the pixels' scale (the authors' [0, 255] against [0, 1]) leaves the energy unchanged
    np.testing.assert_allclose(net(x / 4.0).numpy(), net(x).numpy(), rtol=1e-3, atol=1e-3)
    # and an image's energy depends on its batch
    assert not np.allclose(net(x[:2]).numpy(), net(x).numpy()[:2], rtol=1e-3)


def test_spectral_norm_normalises_kernels_in_training_mode():
    net = build_energy_net(4, 1, norm="spectral", width=0.1)
    for _ in range(30):  # power iteration converges over calls
        net(tf.zeros([1, 4, 4, 1]), training=True)
    kernel = net.convs[0].layer.kernel.numpy()
    sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    assert sigma == pytest.approx(1.0, abs=0.05)


def test_mixed_precision_policy_gives_float32_energies():
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        net = build_energy_net(4, 3, width=0.1)
        assert net.convs[0].compute_dtype == "bfloat16"
        x = tf.random.stateless_uniform([2, 4, 4, 3], [1, 1])
        with tf.GradientTape() as tape:
            tape.watch(x)
            e = net(x)
            total = tf.reduce_sum(e)
        assert e.dtype == tf.float32 and net.features(x).dtype == tf.float32
        assert tape.gradient(total, x).dtype == tf.float32
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


@pytest.mark.parametrize("kwargs, match", [
    (dict(grid_size=1, channels=1), "grid_size"),
    (dict(grid_size=4, channels=2), "channels"),
    (dict(grid_size=4, channels=1, norm="layer"), "norm"),
    (dict(grid_size=4, channels=1, activation="tanh"), "activation"),
    (dict(grid_size=4, channels=1, width=0.0), "width"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_energy_net(**kwargs)


def test_wrong_input_shape_raises():
    net = build_energy_net(4, 1, width=0.1)
    with pytest.raises(ValueError, match=r"\[N, 4, 4, 1\]"):
        net(tf.zeros([2, 8, 8, 1]))
