"""trainers/stem_conv.py: the stride-2 first conv with the stride-1 input gradient is the same
function as tf.nn.conv2d, to float rounding, in value, dx, dW and second order."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainers import networks
from trainers.stem_conv import input_gradient, stem_conv, with_stem_gradient


def _reference(x, w):
    return tf.nn.conv2d(x, w, 2, "SAME")


def _grads(conv, x, w, probe):
    """(y, dx, dW, d/dW of |dx|^2) of sum(leaky_relu(conv(x, w)) * probe)."""
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = conv(x, w)
            loss = tf.reduce_sum(tf.nn.leaky_relu(y, 0.2) * probe)
        dx, dw = inner.gradient(loss, [x, w])
        penalty = tf.reduce_sum(dx ** 2)
    return y, dx, dw, outer.gradient(penalty, w)


@pytest.mark.parametrize("batch,height,width,cin,kernel,cout", [
    (2, 16, 16, 3, 5, 8),   # the energy nets' stem shape, small
    (3, 9, 9, 1, 5, 4),     # odd size: TF pads 2 before and after
    (2, 8, 12, 3, 3, 5),    # a 3x3 kernel, non-square input
    (1, 7, 5, 1, 3, 2),     # odd, non-square
    (2, 6, 6, 2, 1, 3),     # a 1x1 kernel
    (2, 10, 10, 3, 4, 4),   # an even kernel
])
def test_matches_tf_conv_in_value_and_gradients(batch, height, width, cin, kernel, cout):
    gen = tf.random.Generator.from_seed(3)
    x = gen.normal([batch, height, width, cin])
    w = tf.Variable(gen.normal([kernel, kernel, cin, cout]))
    probe = gen.normal([batch, -(-height // 2), -(-width // 2), cout])
    expected = _grads(_reference, x, w, probe)
    got = _grads(stem_conv, x, w, probe)
    for name, e, g in zip(("y", "dx", "dW", "second order"), expected, got):
        assert g.shape == e.shape, name
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-4, atol=1e-4 * float(tf.reduce_max(tf.abs(e))),
                                   err_msg=name)


def test_input_gradient_is_the_transpose_of_the_conv():
    """<conv(x), dy> == <x, input_gradient(dy)> for random x, dy: the adjoint identity."""
    gen = tf.random.Generator.from_seed(4)
    x, w, dy = gen.normal([2, 11, 11, 3]), gen.normal([5, 5, 3, 6]), gen.normal([2, 6, 6, 6])
    lhs = float(tf.reduce_sum(_reference(x, w) * dy))
    rhs = float(tf.reduce_sum(x * input_gradient(dy, w, (11, 11))))
    assert lhs == pytest.approx(rhs, rel=1e-4)


def test_bfloat16_matches_float32_within_bf16_precision():
    gen = tf.random.Generator.from_seed(5)
    w, dy = gen.normal([5, 5, 3, 4]), gen.normal([2, 4, 4, 4])
    got = input_gradient(tf.cast(dy, tf.bfloat16), tf.cast(w, tf.bfloat16), (8, 8))
    assert got.dtype == tf.bfloat16
    expected = input_gradient(dy, w, (8, 8))
    np.testing.assert_allclose(tf.cast(got, tf.float32).numpy(), expected.numpy(), rtol=0.05,
                               atol=0.05 * float(tf.reduce_max(tf.abs(expected))))


def test_xla_compiles_the_same_gradient():
    gen = tf.random.Generator.from_seed(6)
    x, w = gen.normal([2, 10, 10, 3]), gen.normal([5, 5, 3, 4])

    def dx(conv):
        def f(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                energy = tf.reduce_sum(tf.nn.leaky_relu(conv(x, w), 0.2) ** 2)
            return tape.gradient(energy, x)
        return f

    np.testing.assert_allclose(tf.function(dx(stem_conv), jit_compile=True)(x).numpy(),
                               dx(_reference)(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{"strides": 1}, {"strides": 2, "padding": "valid"},
                                    {"strides": (2, 1)}])
def test_layer_rejects_other_strides_and_paddings(kwargs):
    with pytest.raises(ValueError, match="conv9: the stem gradient needs a stride-2 'same' conv"):
        with_stem_gradient(keras.layers.Conv2D(4, 3, name="conv9", **kwargs))


@pytest.mark.parametrize("channels,norm", [(1, "none"), (3, "none"), (3, "spectral")])
def test_energy_net_checkpoints_load_across_stem_layers(channels, norm, tmp_path, monkeypatch):
    """A net with TF's own stem gradient and one with the stem conv hold the same variables:
    weights saved from one load into the other and give the same energies and pixel gradients."""
    keras.utils.set_random_seed(0)
    fast = networks.build_energy_net(32, channels, norm=norm)
    stem = fast.convs[0].layer if norm == "spectral" else fast.convs[0]
    assert stem.convolution_op is stem_conv
    monkeypatch.setattr(networks.EnergyNet, "STEM_GRADIENT", False)
    plain = networks.build_energy_net(32, channels, norm=norm)
    assert (plain.convs[0].layer if norm == "spectral" else plain.convs[0]).convolution_op is not stem_conv
    path = str(tmp_path / "fast.weights.h5")
    fast.save_weights(path)
    plain.load_weights(path)
    x = tf.random.stateless_uniform([4, 32, 32, channels], [1, 2])

    def energy_and_grad(net):
        with tf.GradientTape() as tape:
            tape.watch(x)
            energy = net(x)
            total = tf.reduce_sum(energy)
        return energy, tape.gradient(total, x)

    for a, b in zip(energy_and_grad(fast), energy_and_grad(plain)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
