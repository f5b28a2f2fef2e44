"""GAN losses of the LAPGAN / DCGAN families: TF-GAN's loss library, and the Wasserstein gradient
penalty rewritten for eager execution and exact resume.

`LOSSES` (the `train.gan_loss` values), each a (discriminator, generator) pair of TF-GAN's own
functions from ``tensorflow_gan/python/losses/losses_impl.py`` (loaded by
`trainers.tfgan_loader`), called with unit weights, TF-GAN's default reduction
(SUM_BY_NONZERO_WEIGHTS: the mean over the batch) and no loss collection:

- `minimax`: ``minimax_discriminator_loss`` / ``minimax_generator_loss`` (Goodfellow et al.
  2014; the generator minimises log(1 - D(G(z))));
- `non_saturating`: ``modified_discriminator_loss`` / ``modified_generator_loss`` (the
  generator minimises -log D(G(z)); the LAPGAN paper's practice);
- `wasserstein`: ``wasserstein_discriminator_loss`` / ``wasserstein_generator_loss`` (Arjovsky
  et al. 2017), to be used with `gradient_penalty` (Gulrajani et al. 2017).

The auxiliary-classifier terms of AC-GAN (Odena et al. 2017), added to either side's loss when a
conditional model's discriminators classify (`model.class_conditioning = acgan`), are TF-GAN's
``acgan_discriminator_loss`` (softmax cross-entropy of the class logits on real plus on generated
images) and ``acgan_generator_loss`` (the same on generated images).

Discriminator outputs are logits (any real number). TF-GAN smooths the discriminator's real
labels by 0.25 by default; here `label_smoothing` defaults to 0 (the papers' plain loss) and is
passed through when given.

`gradient_penalty` is TF-GAN's ``wasserstein_gradient_penalty`` formula, not its function: that
one calls graph-only ``tf.gradients`` (it raises under eager execution) and draws its
interpolation weights with unseeded ``tf.random.uniform``, so a resumed run would not repeat
them. Here the input gradient comes from a `tf.GradientTape` (nested inside the caller's tape,
the penalty's gradient reaches the discriminator's weights) and the weights from
``tf.random.stateless_uniform(seed)``.
"""

from __future__ import annotations

import tensorflow as tf

from trainers.langevin import global_batch_draw
from trainers.tfgan_loader import load_tfgan_module, silenced

LOSSES = {
    "minimax": ("minimax_discriminator_loss", "minimax_generator_loss"),
    "non_saturating": ("modified_discriminator_loss", "modified_generator_loss"),
    "wasserstein": ("wasserstein_discriminator_loss", "wasserstein_generator_loss"),
}


def _loss_fn(kind: str, index: int):
    if kind not in LOSSES:
        raise ValueError(f"GAN loss {kind!r} is not one of {list(LOSSES)}")
    return getattr(load_tfgan_module("python/losses/losses_impl.py"), LOSSES[kind][index])


def discriminator_loss(kind: str, real_logits, fake_logits, label_smoothing: float = 0.0) -> tf.Tensor:
    """The discriminator's loss (scalar) from its outputs on real and generated images, [N] or [N, 1]."""
    extra = {} if kind == "wasserstein" else {"label_smoothing": label_smoothing}
    with silenced():
        return _loss_fn(kind, 0)(real_logits, fake_logits, loss_collection=None, **extra)


def generator_loss(kind: str, fake_logits) -> tf.Tensor:
    """The generator's loss (scalar) from the discriminator's outputs on generated images."""
    with silenced():
        return _loss_fn(kind, 1)(fake_logits, loss_collection=None)


def acgan_discriminator_loss(real_class_logits, fake_class_logits, onehot) -> tf.Tensor:
    """TF-GAN's AC-GAN discriminator term (scalar): softmax cross-entropy of the class logits
    float32 [N, K] on real plus on generated images against the labels, one-hot float32 [N, K]."""
    with silenced():
        return load_tfgan_module("python/losses/losses_impl.py").acgan_discriminator_loss(
            real_class_logits, fake_class_logits, onehot, loss_collection=None)


def acgan_generator_loss(fake_class_logits, onehot) -> tf.Tensor:
    """TF-GAN's AC-GAN generator term (scalar): the cross-entropy on generated images."""
    with silenced():
        return load_tfgan_module("python/losses/losses_impl.py").acgan_generator_loss(
            fake_class_logits, onehot, loss_collection=None)


def gradient_penalty(discriminator_fn, real, fake, seed, target: float = 1.0, epsilon: float = 1e-10,
                     one_sided: bool = False) -> tf.Tensor:
    """mean over examples of (sqrt(|grad_x D(x_hat)|^2 + epsilon) / target - 1)^2.

    Args:
      discriminator_fn: x [N, ...] -> outputs [N] or [N, 1] (conditioning captured by the caller).
      real, fake: float [N, ...] the same shape; x_hat = real + alpha (fake - real) with one
        alpha ~ U[0, 1) per example.
      seed: int32 [2], the stateless seed of alpha (derive it from the step for exact resume; the
        same on every replica: alpha is drawn for the global batch and split).
      target, epsilon, one_sided: as TF-GAN's (one-sided: only norms above target are penalised).

    Returns:
      Scalar float tensor.
    """
    real = tf.convert_to_tensor(real)
    fake = tf.cast(fake, real.dtype)
    shape = tf.concat([tf.shape(real)[:1], tf.ones([tf.rank(real) - 1], tf.int32)], axis=0)
    # Drawn for the global batch and split, so R replicas give one process's alphas.
    alpha = global_batch_draw(lambda s: tf.random.stateless_uniform(s, seed=seed, dtype=real.dtype), shape)
    x_hat = real + alpha * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        outputs = discriminator_fn(x_hat)
    grads = tape.gradient(outputs, x_hat)
    slopes = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=tf.range(1, tf.rank(grads))) + epsilon)
    penalties = slopes / target - 1.0
    if one_sided:
        penalties = tf.maximum(0.0, penalties)
    return tf.reduce_mean(tf.square(penalties))
