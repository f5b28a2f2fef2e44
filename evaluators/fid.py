"""Compare two image sets in a named feature space: the library side of ``mgebm fid``.

The two sets may differ in size and channel count (1 or 3): every feature space resizes to its own
input size and matches channels itself, so both sets are measured in the same space.
"""

import numpy as np

from evaluators import metrics

__all__ = ["compare_image_sets", "compare_activations"]


def _check_set(name, images):
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name} images must be uint8 in [0, 255]; got dtype {images.dtype}.")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{name} images must be [N, H, W, C] with C in (1, 3); got shape "
                         f"{images.shape}.")
    return images


def compare_activations(real_features, fake_features, kid_subsets=10, k=3, seed=0):
    """FID, KID (+ std), precision and recall between two activation sets of one space.

    Args:
        real_features: float [N, D]; fake_features: float [M, D]; N, M >= 2 * kid_subsets.
        kid_subsets: number of disjoint KID subsets (>= 4).
        k: neighbour count of the precision/recall manifolds.
        seed: seed of the KID subset shuffle.

    Returns:
        dict {fid, kid, kid_std, precision, recall, num_real, num_fake} of Python floats / ints.
    """
    fid = metrics.fid_from_activations(real_features, fake_features)
    kid, kid_std = metrics.kid_from_activations(real_features, fake_features,
                                                num_subsets=kid_subsets, seed=seed)
    precision, recall = metrics.precision_recall(real_features, fake_features, k=k)
    return {"fid": fid, "kid": kid, "kid_std": kid_std, "precision": precision, "recall": recall,
            "num_real": int(len(real_features)), "num_fake": int(len(fake_features))}


def compare_image_sets(real, fake, space, kid_subsets=10, k=3, batch_size=64, seed=0):
    """Measures how far ``fake`` is from ``real`` in ``space``.

    Args:
        real: uint8 [N, H, W, C], C in {1, 3}.
        fake: uint8 [M, H', W', C'], C' in {1, 3}; sizes and channels may differ from ``real``.
        space: a :class:`evaluators.features.FeatureSpace`.
        kid_subsets: disjoint subsets for KID and kid_std (>= 4; N, M >= 2 * kid_subsets).
        k: neighbour count of the precision/recall manifolds.
        batch_size: images per forward pass of the feature extractor.
        seed: seed of the KID subset shuffle.

    Returns:
        dict {"features": space name, "fid", "kid", "kid_std", "precision", "recall",
        "num_real", "num_fake", "space_info": space.info}; floats are finite Python floats.
    """
    real = _check_set("real", real)
    fake = _check_set("fake", fake)
    minimum = 2 * int(kid_subsets)
    for name, images in (("real", real), ("fake", fake)):
        if images.shape[0] < minimum:
            raise ValueError(f"{name} has {images.shape[0]} images; KID with kid_subsets="
                             f"{kid_subsets} needs at least {minimum}. Pass more images or lower "
                             "kid_subsets (>= 4).")
    real_features, _ = space.extract(real, batch_size=batch_size)
    fake_features, _ = space.extract(fake, batch_size=batch_size)
    result = {"features": space.name}
    result.update(compare_activations(real_features, fake_features, kid_subsets, k, seed))
    result["space_info"] = dict(space.info)
    return result
