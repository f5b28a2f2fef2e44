"""TF-GAN's metric math (FID, KID, classifier score) on TensorFlow >= 2.16.

``import tensorflow_gan`` fails there (its ``__init__`` touches the removed ``tf.estimator``);
`trainers.tfgan_loader` loads ``tensorflow_gan/python/eval/classifier_metrics.py`` (and its
sibling ``eval_utils.py``) from their files without the package ``__init__`` and restores
``sys.modules`` afterwards; see that module for how. The functions below are TF-GAN's own,
unchanged, run with TensorFlow's deprecation logging silenced (TF-GAN 2.1.0 calls
``tf.map_fn(..., back_prop=False)``, which logs a notice on every first call).

Exposed functions:
    frechet_classifier_distance_from_activations(activations1, activations2) -> scalar Tensor
    kernel_classifier_distance_and_std_from_activations(activations1, activations2,
        max_block_size=1024, dtype=None) -> (kid Tensor, std Tensor)
    classifier_score_from_logits(logits) -> scalar Tensor
"""

from trainers.tfgan_loader import TFGANUnavailable, load_tfgan_module, silenced

__all__ = [
    "TFGANUnavailable",
    "load_classifier_metrics",
    "frechet_classifier_distance_from_activations",
    "kernel_classifier_distance_and_std_from_activations",
    "classifier_score_from_logits",
]


def load_classifier_metrics():
    """TF-GAN's ``classifier_metrics`` module, loaded once per process without its package init.

    Raises:
        TFGANUnavailable: tensorflow-gan (or tensorflow-probability, which it imports) is missing.
    """
    return load_tfgan_module("python/eval/classifier_metrics.py")


def frechet_classifier_distance_from_activations(activations1, activations2):
    """TF-GAN's FID from activations ([N, D] and [M, D] float Tensors) -> scalar Tensor."""
    with silenced():
        return load_classifier_metrics().frechet_classifier_distance_from_activations(
            activations1, activations2
        )


def kernel_classifier_distance_and_std_from_activations(
    activations1, activations2, max_block_size=1024, dtype=None
):
    """TF-GAN's KID (cubic polynomial kernel, unbiased MMD^2) and its block std, as Tensors."""
    with silenced():
        return load_classifier_metrics().kernel_classifier_distance_and_std_from_activations(
            activations1, activations2, max_block_size=max_block_size, dtype=dtype
        )


def classifier_score_from_logits(logits):
    """TF-GAN's classifier (Inception) score exp(E[KL(p(y|x) || p(y))]) from [N, K] logits."""
    with silenced():
        return load_classifier_metrics().classifier_score_from_logits(logits)
