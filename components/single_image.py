"""The `file:PATH` source: ONE image, kept at its own aspect ratio, for single-image models.

PATH is an image file, or a folder holding exactly one image file
(`components.source_spec.single_image_path`). The image is decoded like a `folder:` source's
files (`components/image_decode.py`: every format, EXIF orientation, the `max_pixels` header
check before decoding), then:

  * channels: alpha dropped (no compositing); channels=1 -> gray by ITU-R BT.601 luma; channels=3
    -> RGB, a gray image replicated to 3 channels (the policy of `sources.normalize_images`);
  * size: NO crop; when `max_side` > 0 and the longer side is above it, the image is area-resized
    (`tf.image.resize(method="area")`) so its longer side is max_side, the shorter one
    round(shorter * max_side / longer); it is never upscaled. A JPEG is first decoded at a reduced
    size through Pillow's `Image.draft` (`image_decode.jpeg_draft`). Pixels are rounded to uint8.

The key is the file's base name; the label is -1. A file that cannot be used (unreadable, corrupt,
too large, shorter side below `min_side` after resizing) raises `SourceError` with one line naming
the file, its size and the fix: one image is the whole data set, so there is nothing to skip to.
"""

from __future__ import annotations

import posixpath

import numpy as np
import tensorflow as tf

from components.image_decode import DEFAULT_MAX_PIXELS, decode_bytes, fit_longer_side
from components.image_decode import short_error as _short
from components.source_spec import SourceError, is_remote, single_image_path


def image_path(arg: str) -> str:
    """The image file of `file:arg` (local or remote; see `source_spec.single_image_path`)."""
    if is_remote(arg):
        return single_image_path(arg, listdir=tf.io.gfile.listdir, isdir=tf.io.gfile.isdir)
    return single_image_path(arg)


def fit_single_image(image: np.ndarray, channels: int, max_side: int = 0) -> np.ndarray:
    """Channel and size policy of the module docstring for one decoded image.

    Args:
      image: uint8 [H, W, Cin], Cin in 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA).
      channels: 1 or 3.
      max_side: longer side of the result when the image is larger (0 = keep the size).

    Returns:
      uint8 [h, w, channels] with (h, w) = `image_decode.fit_longer_side(H, W, max_side)`.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels={channels} must be 1 (grayscale) or 3 (RGB)")
    x = tf.cast(tf.convert_to_tensor(image), tf.float32)[None]
    cin = int(x.shape[-1])
    if cin in (2, 4):
        x = x[..., : cin - 1]
    if channels == 1 and x.shape[-1] == 3:
        x = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114], tf.float32), -1, keepdims=True)
    size = fit_longer_side(int(x.shape[1]), int(x.shape[2]), max_side)
    if size != (int(x.shape[1]), int(x.shape[2])):
        x = tf.image.resize(x, size, method="area")
    if channels == 3 and x.shape[-1] == 1:
        x = tf.tile(x, [1, 1, 1, 3])
    return tf.cast(tf.clip_by_value(tf.round(x[0]), 0.0, 255.0), tf.uint8).numpy()


def read_single_image(arg: str, channels: int, max_side: int = 0,
                      max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 0) -> tuple[str, np.ndarray]:
    """Read, check and fit the one image of `file:arg`.

    Args:
      arg: PATH of `file:PATH`. channels: 1 or 3. max_side: see `fit_single_image`.
      max_pixels: refuse a file whose header says width * height > this, before decoding it.
      min_side: the fitted image's shorter side must be >= this (pyramid.min_side; 0 = no check).

    Returns:
      (key: the file's base name, image uint8 [h, w, channels]).

    Raises:
      SourceError: bad PATH, or an unusable image (the message names the file and the fix).
    """
    path = image_path(arg)
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except (tf.errors.OpError, OSError) as err:
        raise SourceError(f"file:{arg}: {path} is unreadable: {_short(err)}") from None
    decoded = decode_bytes(data, int(max_pixels), int(max_side))
    if decoded.image is None:
        raise SourceError(f"file:{arg}: {path}: {decoded.reason}")
    image = fit_single_image(decoded.image, int(channels), int(max_side))
    height, width = image.shape[:2]
    needed = max(int(min_side), 2)
    if min(height, width) < needed:
        after = f" after data.max_side={max_side}" if max_side and max(decoded.image.shape[:2]) > max_side else ""
        raise SourceError(
            f"file:{arg}: {path} is {height}x{width} (HxW){after}, its shorter side is below "
            f"{'pyramid.min_side=' + str(min_side) if min_side >= 2 else '2 pixels'}; lower "
            "pyramid.min_side (or raise data.max_side) or give a bigger image")
    return posixpath.basename(path), image
