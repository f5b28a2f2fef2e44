"""GAN losses: TF-GAN's functions against their closed forms, and the gradient penalty against
TF-GAN's own (graph-mode) implementation on fixed inputs, seeded, with gradients to the weights."""

import numpy as np
import pytest
import tensorflow as tf

from trainers import gan_losses
from trainers.tfgan_loader import load_tfgan_module

REAL = np.array([1.5, -0.3, 0.2, 2.0], np.float32)
FAKE = np.array([-1.0, 0.4, -2.2, 0.1], np.float32)


def _softplus(x):
    return np.log1p(np.exp(x))


@pytest.mark.parametrize("kind, d_want, g_want", [
    # TF-GAN's minimax generator loss is minus its discriminator loss with real logits fixed at 1:
    # -(softplus(-1) + mean softplus(f)); the constant does not change the gradient.
    ("minimax", _softplus(-REAL).mean() + _softplus(FAKE).mean(), -(_softplus(-1.0) + _softplus(FAKE).mean())),
    ("non_saturating", _softplus(-REAL).mean() + _softplus(FAKE).mean(), _softplus(-FAKE).mean()),
    ("wasserstein", FAKE.mean() - REAL.mean(), -FAKE.mean()),
])
def test_losses_match_their_closed_forms(kind, d_want, g_want):
    d = gan_losses.discriminator_loss(kind, tf.constant(REAL), tf.constant(FAKE))
    g = gan_losses.generator_loss(kind, tf.constant(FAKE))
    assert float(d) == pytest.approx(d_want, rel=1e-5) and float(g) == pytest.approx(g_want, rel=1e-5)


def test_label_smoothing_is_passed_to_tfgan_and_bad_kinds_are_named():
    smoothed = gan_losses.discriminator_loss("non_saturating", tf.constant(REAL), tf.constant(FAKE), 0.25)
    want = (0.875 * _softplus(-REAL) + 0.125 * _softplus(REAL)).mean() + _softplus(FAKE).mean()
    assert float(smoothed) == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="'hinge' is not one of"):
        gan_losses.generator_loss("hinge", tf.constant(FAKE))


def _tfgan_penalty(disc, real, fake):
    """TF-GAN's own wasserstein_gradient_penalty, in graph mode (it refuses eager execution)."""
    impl = load_tfgan_module("python/losses/losses_impl.py")

    @tf.function
    def run():
        return impl.wasserstein_gradient_penalty(real, fake, None, lambda x, _: disc(x), "d",
                                                 loss_collection=None)
    return float(run())


def test_gradient_penalty_equals_tfgans_where_alpha_cannot_matter():
    rng = np.random.default_rng(0)
    real = tf.constant(rng.normal(size=(5, 4, 4, 2)), tf.float32)
    w = tf.constant(rng.normal(size=(4, 4, 2)) * 0.3, tf.float32)
    linear = lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])  # gradient w everywhere
    fake = tf.constant(rng.normal(size=(5, 4, 4, 2)), tf.float32)
    ours = gan_losses.gradient_penalty(linear, real, fake, seed=tf.constant([1, 2]))
    closed = (np.sqrt((w.numpy() ** 2).sum() + 1e-10) - 1.0) ** 2
    assert float(ours) == pytest.approx(closed, rel=1e-5)
    assert float(ours) == pytest.approx(_tfgan_penalty(linear, real, fake), rel=1e-5)
    curved = lambda x: tf.reduce_sum(tf.tanh(x * w * 3.0), axis=[1, 2, 3])[:, None]  # [N, 1] outputs
    ours = gan_losses.gradient_penalty(curved, real, real, seed=tf.constant([1, 2]))  # x_hat = real
    assert float(ours) == pytest.approx(_tfgan_penalty(curved, real, real), rel=1e-5)
    one_sided = gan_losses.gradient_penalty(linear, real, fake, seed=tf.constant([1, 2]), target=10.0,
                                            one_sided=True)
    assert float(one_sided) == 0.0  # every norm is below the target


def test_gradient_penalty_is_seeded_and_its_gradient_reaches_the_weights():
    rng = np.random.default_rng(1)
    real = tf.constant(rng.normal(size=(6, 3, 3, 1)), tf.float32)
    fake = tf.constant(rng.normal(size=(6, 3, 3, 1)), tf.float32)
    v = tf.Variable(0.7)
    disc = lambda x: v * tf.reduce_sum(x ** 2, axis=[1, 2, 3])  # grad_x = 2 v x
    a = gan_losses.gradient_penalty(disc, real, fake, seed=tf.constant([3, 4]))
    b = gan_losses.gradient_penalty(disc, real, fake, seed=tf.constant([3, 4]))
    c = gan_losses.gradient_penalty(disc, real, fake, seed=tf.constant([3, 5]))
    assert float(a) == float(b) and float(a) != float(c)
    with tf.GradientTape() as tape:  # x_hat = real: d/dv mean((2 v |x| - 1)^2) = mean(4 |x| (2 v |x| - 1))
        penalty = gan_losses.gradient_penalty(disc, real, real, seed=tf.constant([0, 0]), epsilon=0.0)
    norms = np.sqrt((real.numpy() ** 2).sum(axis=(1, 2, 3)))
    want = np.mean(4 * norms * (2 * 0.7 * norms - 1))
    assert float(tape.gradient(penalty, v)) == pytest.approx(want, rel=1e-4)


def test_acgan_terms_are_softmax_cross_entropies():
    rng = np.random.default_rng(2)
    real_cls = rng.normal(size=(4, 3)).astype(np.float32)
    fake_cls = rng.normal(size=(4, 3)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    onehot = np.eye(3, dtype=np.float32)[labels]

    def cross_entropy(logits):
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return -log_p[np.arange(len(labels)), labels].mean()
    d = gan_losses.acgan_discriminator_loss(tf.constant(real_cls), tf.constant(fake_cls), tf.constant(onehot))
    g = gan_losses.acgan_generator_loss(tf.constant(fake_cls), tf.constant(onehot))
    assert float(d) == pytest.approx(cross_entropy(real_cls) + cross_entropy(fake_cls), rel=1e-5)
    assert float(g) == pytest.approx(cross_entropy(fake_cls), rel=1e-5)
