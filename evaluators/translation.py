"""Unpaired translation evaluation (CF-EBM's application): source-domain images through the
model's `translate` signature, scored against the model's own (target) domain.

The model was trained on the target domain only; `translate(images, seed)` runs its chain from
the source images. Per feature space, the FID and KID of the translated images to real target
images stand next to those of the untouched source images: translation helps when the first is
lower. `change` is the mean absolute pixel difference between translated and source images
(in [0, 1]; 0 = the source came back unchanged), so an identity map cannot pass as a
translation. The figure pairs each source image with its translation.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

TranslateFn = Callable[[np.ndarray, int], np.ndarray]
_KEYS = ("fid", "kid", "kid_std", "num_real", "num_fake")


def _check(name: str, images, like=None) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be uint8 [N, H, W, C] with C 1 or 3, got {images.dtype} {images.shape}")
    if like is not None and images.shape[1:] != like.shape[1:]:
        raise ValueError(f"{name} must have the target images' size {like.shape[1:]}, got {images.shape[1:]}")
    return images


def evaluate_translation(source, target, translate_fn: TranslateFn, feature_spaces: dict,
                         kid_subsets: int = 10, seed: int = 0, num_examples: int = 8,
                         batch_size: int = 64) -> tuple[dict, np.ndarray]:
    """Translation table and the source | translated example pairs.

    Args:
      source: uint8 [M,H,W,C] source-domain images (M >= 2 * kid_subsets).
      target: uint8 [N,H,W,C] real target-domain images (N >= 2 * kid_subsets), the model's size.
      translate_fn: `(images uint8 [M,H,W,C], seed) -> uint8 [M,H,W,C]`.
      feature_spaces: {name: FeatureSpace} (`extract(images, batch_size) -> (features, logits)`).
      kid_subsets: KID subsets (>= 4); seed: the chains' seed.
      num_examples: pairs in the figure.

    Returns:
      (table, pairs): table = {"spaces": {name: {"translated": {fid, kid, kid_std, num_real,
      num_fake}, "source": {...}}}, "change", "change_std", "num_source"}; pairs = uint8
      [2k, H, W, C], source and translated images alternating, k = min(num_examples, M).
    """
    from evaluators.fid import compare_activations  # pylint: disable=import-outside-toplevel

    target = _check("target", target)
    source = _check("source", source, like=target)
    translated = _check("translate output", np.asarray(translate_fn(source, seed)), like=source)
    if translated.shape != source.shape:
        raise ValueError(f"translate returned shape {translated.shape}, expected {source.shape}")
    change = np.abs(translated.astype(np.float64) - source.astype(np.float64)).mean(axis=(1, 2, 3)) / 255.0
    table = {"spaces": {}, "change": float(change.mean()), "change_std": float(change.std()),
             "num_source": int(len(source))}
    for name, space in feature_spaces.items():
        real_feats = np.asarray(space.extract(target, batch_size=batch_size)[0])
        table["spaces"][name] = {}
        for key, images in (("translated", translated), ("source", source)):
            result = compare_activations(real_feats, np.asarray(space.extract(images, batch_size=batch_size)[0]),
                                         kid_subsets)
            table["spaces"][name][key] = {k: result.get(k) for k in _KEYS}
    k = min(num_examples, len(source))
    pairs = np.stack([source[:k], translated[:k]], axis=1).reshape((2 * k,) + source.shape[1:])
    return table, pairs
