"""Pixel statistics for single-image models: high-frequency energy and a region's colour distance.

Inputs are numpy float images in [0, 1] (float64 inside).

* ``mean_abs_laplacian``: the mean absolute 4-neighbour Laplacian
  L = x[i-1, j] + x[i+1, j] + x[i, j-1] + x[i, j+1] - 4 x[i, j] over the interior pixels
  (no padding) and the channels, per image. Grain (per-pixel noise) raises it, blur lowers it;
  the ratio of the samples' value to the training image's (``hf_energy_ratio``) is 1 for samples
  with the photo's sharpness. On white noise of std s it is E|N(0, 20 s^2)| = sqrt(40 / pi) s
  (about 3.57 s); a blur removes the photo's edges.
* ``colour_distance``: the Euclidean distance between the mean colour inside a mask and the mean
  colour of the ring around it (pixels outside the mask within ``ring`` pixels of it, Chebyshev
  distance: a square dilation), in [0, 1] units (sqrt(C) at most). Harmonization should lower it:
  a pasted object's colours move toward its surroundings.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["mean_abs_laplacian", "hf_energy_ratio", "ring_mask", "colour_distance"]


def _images(name: str, images, ndim: int) -> np.ndarray:
    x = np.asarray(images, np.float64)
    if x.ndim != ndim or x.shape[-3] < 3 or x.shape[-2] < 3:
        raise ValueError(f"{name} must be float [{'N, ' if ndim == 4 else ''}H >= 3, W >= 3, C] in [0, 1]; "
                         f"got shape {x.shape}.")
    return x


def mean_abs_laplacian(images) -> np.ndarray:
    """Mean |4-neighbour Laplacian| of each image (see the module docstring).

    Args:
        images: float [N, H, W, C] in [0, 1], H, W >= 3.

    Returns:
        float64 [N] >= 0 (0 for an image that is linear in its coordinates, e.g. constant).
    """
    x = _images("images", images, 4)
    lap = (x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:] - 4.0 * x[:, 1:-1, 1:-1])
    return np.abs(lap).mean(axis=(1, 2, 3))


def hf_energy_ratio(image, samples) -> float:
    """Mean over samples of their mean |Laplacian|, over the training image's.

    Args:
        image: float [H, W, C] in [0, 1], not flat (its mean |Laplacian| > 0).
        samples: float [N, h, w, C] in [0, 1] (any size >= 3).

    Returns:
        float >= 0: 1 = the photo's high-frequency energy, > 1 grain, < 1 blur.
    """
    reference = float(mean_abs_laplacian(_images("image", image, 3)[None])[0])
    if reference == 0:
        raise ValueError("image has no high-frequency energy (its Laplacian is 0 everywhere): the ratio is undefined.")
    return float(mean_abs_laplacian(samples).mean() / reference)


def ring_mask(mask, ring: int) -> np.ndarray:
    """bool [H, W]: pixels outside ``mask`` (bool/0-1 [H, W]) within ``ring`` >= 1 px of it."""
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2 or not m.any():
        raise ValueError(f"mask must be a non-empty [H, W] array of 0/1; got shape {m.shape}, {int(m.sum())} set.")
    if int(ring) < 1:
        raise ValueError(f"ring={ring} must be >= 1 pixel.")
    grown = ndimage.binary_dilation(m, structure=np.ones((3, 3), bool), iterations=int(ring))
    return grown & ~m


def colour_distance(image, mask, ring: int) -> float:
    """||mean colour in mask - mean colour of its ring|| (see the module docstring).

    Args:
        image: float [H, W, C] in [0, 1]. mask: [H, W] (or [H, W, 1]) of 0/1, 1 = the object.
        ring: width of the surrounding region in pixels (>= 1).

    Returns:
        float >= 0.

    Raises:
        ValueError: bad shapes, an empty mask or an empty ring (the mask covers the image).
    """
    x = _images("image", image, 3)
    m = np.asarray(mask)
    m = m[..., 0] if m.ndim == 3 else m
    if m.shape != x.shape[:2]:
        raise ValueError(f"mask must have the image's [H, W] {x.shape[:2]}; got {m.shape}.")
    around = ring_mask(m, ring)
    if not around.any():
        raise ValueError("the mask leaves no pixels around it: the colour distance is undefined.")
    inside = x[m.astype(bool)].mean(axis=0)
    return float(np.sqrt(np.sum((inside - x[around].mean(axis=0)) ** 2)))
