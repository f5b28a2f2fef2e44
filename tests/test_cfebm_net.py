"""The residual block of the CF-EBM energy net: the scaled block (the reference code's) against the
plain one, by the energy's pixel gradient across stages at initialisation, and the block's
closed form."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainers.families.cfebm_net import ExpandingEnergyNet, ResidualDown, avg_pool_2


def _pixel_gradients(residual: str) -> list[float]:
    keras.utils.set_random_seed(0)
    net = ExpandingEnergyNet((8, 16, 32), 1, width=32, residual=residual)
    net.build_all()
    out = []
    for k, s in enumerate(net.sizes):
        x = tf.random.stateless_uniform([32, s, s, 1], [0, k])
        for _ in range(3):  # settle the spectral norm's power iteration, as training does
            net.energy(x, k, training=True)
        with tf.GradientTape() as tape:
            tape.watch(x)
            e = net.energy(x, k)
        g = tape.gradient(e, x)
        out.append(float(tf.reduce_mean(tf.norm(tf.reshape(g, [32, -1]), axis=1))))
    return out


def test_the_scaled_block_keeps_the_pixel_gradient_across_stages():
    scaled, plain = _pixel_gradients("scaled"), _pixel_gradients("plain")
    # The plain block shrinks the gradient by about 10x per stage (about 100x from 8 to 32 px at
    # this width, seed 0: 0.31, 0.022, 0.0023); the scaled one loses much less (0.46, 0.61, 0.023).
    assert plain[0] / plain[1] > 5 and plain[1] / plain[2] > 5 and plain[0] / plain[2] > 50
    assert scaled[0] / scaled[2] < (plain[0] / plain[2]) / 4 and scaled[1] > scaled[0] / 2
    assert scaled[2] > 5 * plain[2]


def test_the_scaled_block_is_its_closed_form():
    keras.utils.set_random_seed(1)
    block = ResidualDown(4, "swish", spectral=True, name="b", residual="scaled")
    x = tf.random.stateless_normal([2, 8, 8, 3], [1, 1])
    y = block(x, training=False)
    assert not isinstance(block.skip, keras.layers.SpectralNormalization)
    assert isinstance(block.conv1, keras.layers.SpectralNormalization)
    act = keras.activations.swish
    main = act(avg_pool_2(block.conv2(act(block.conv1(x, training=False)), training=False)))
    want = (main + avg_pool_2(block.skip(x))) / np.sqrt(2.0)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_a_bad_residual_is_named():
    with pytest.raises(ValueError, match="residual='deep' must be one of"):
        ExpandingEnergyNet((8, 16), 1, width=4, residual="deep")
