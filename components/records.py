"""TFRecord formats passed between the data stages, and tf.data readers for them.

Two record kinds, both `tf.train.Example` in GZIP-compressed TFRecord shards
(`SPLIT/data-00000-of-00002.tfrecord.gz`):

* ingest records (written by `components/ingest.py`):
  `{image: bytes (PNG of uint8 [H, W, C]), label: int64 (-1 when none), key: bytes}`;
  the ingest folder also holds `summary.json` (written last: the folder is complete iff it exists).
* pyramid records (written by `components/pyramid_beam.py`):
  `{key: bytes, label: int64, grid_S: float_list of S*S*C values in [0, 1], row-major HWC}`
  for every grid size S; the folder also holds `metadata.json` (written last).
* scale-pyramid records (one image, `components/scale_pyramid_beam.py`):
  `{key: bytes, label: int64, scale_K: float_list of h_K*w_K*C values in [0, 1], row-major HWC}`
  for K = 0 (coarsest) .. L-1 (finest); metadata.json has `"format":
  "multigrid-ebm-scale-pyramid-v1"` and `"scales": [[h_0, w_0], ..., [h_L-1, w_L-1]]`.
"""

from __future__ import annotations

import json
import posixpath
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

SPLITS = ("train", "eval")
SHARD_SUFFIX = ".tfrecord.gz"
SUMMARY_FILE = "summary.json"
METADATA_FILE = "metadata.json"


def _join(*parts: str) -> str:
    """Join path parts with "/" (local paths on POSIX and gs:// style URLs alike)."""
    return posixpath.join(*parts)


def shard_name(index: int, num_shards: int) -> str:
    """`data-00000-of-00002.tfrecord.gz` style shard file name."""
    return f"data-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


def split_files(directory: str, split: str) -> list[str]:
    """Sorted shard paths of one split (`DIR/SPLIT/*.tfrecord.gz`).

    Raises:
      ValueError: unknown split, or no shard there.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is unknown; use one of {list(SPLITS)}")
    files = sorted(tf.io.gfile.glob(_join(directory, split, "*" + SHARD_SUFFIX)))
    if not files:
        raise ValueError(f"no {SHARD_SUFFIX} shards in {_join(directory, split)}; run the stage "
                         "that writes them first (mgebm ingest / mgebm pyramid)")
    return files


def read_json(path: str) -> dict:
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def write_json(path: str, data: Mapping) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def remove_outputs(output_dir: str, names) -> None:
    """Delete the named files or folders inside output_dir (those that exist), in order."""
    for name in names:
        path = posixpath.join(output_dir, name)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        elif tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


# ---------------------------------------------------------------------------------------------
# Ingest records.

def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def encode_ingest_example(png: bytes, label: int, key: str) -> bytes:
    """Serialized `tf.train.Example{image: PNG bytes, label: int64, key: bytes (utf-8)}`."""
    features = {"image": _bytes_feature(png), "label": _int_feature(label),
                "key": _bytes_feature(key.encode("utf-8"))}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
        deterministic=True)


def decode_ingest_example(serialized: bytes) -> dict:
    """Inverse of `encode_ingest_example` in plain Python: {"image": bytes, "label": int, "key": str}."""
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    return {"image": feature["image"].bytes_list.value[0],
            "label": int(feature["label"].int64_list.value[0]),
            "key": feature["key"].bytes_list.value[0].decode("utf-8")}


def read_summary(ingest_dir: str) -> dict:
    """The ingest stage's `summary.json`; ValueError naming the folder when it is missing."""
    path = _join(ingest_dir, SUMMARY_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{ingest_dir} is not a complete ingest output (no {SUMMARY_FILE}); "
                         "run `mgebm ingest` into it first")
    return read_json(path)


def ingested_dataset(ingest_dir: str, split: str = "train") -> tf.data.Dataset:
    """Unbatched dataset of an ingest output split.

    Returns:
      tf.data.Dataset of dicts {"image": uint8 [H, W, C], "label": int64 [], "key": string []},
      in shard order (deterministic); H = W = image_size, or a single-image ingest's
      height / width (summary.json).
    """
    summary = read_summary(ingest_dir)
    size, channels = int(summary["image_size"]), int(summary["channels"])
    height, width = int(summary.get("height", size)), int(summary.get("width", size))
    files = split_files(ingest_dir, split)
    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
            "key": tf.io.FixedLenFeature([], tf.string)}

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        image = tf.io.decode_png(parsed["image"], channels=channels)
        image = tf.ensure_shape(image, [height, width, channels])
        return {"image": image, "label": parsed["label"], "key": parsed["key"]}

    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# ---------------------------------------------------------------------------------------------
# Pyramid records.

def encode_pyramid_example(key: str, label: int, grids: Mapping[int, np.ndarray]) -> bytes:
    """Serialized `tf.train.Example{key, label, grid_S: float_list}`.

    Args:
      key: example key (utf-8). label: int (-1 when none).
      grids: S -> float array [S, S, C] in [0, 1]; stored flattened row-major HWC.
    """
    features = {"key": _bytes_feature(key.encode("utf-8")), "label": _int_feature(label)}
    for size, values in grids.items():
        flat = np.asarray(values, dtype=np.float32).reshape(-1)
        features[f"grid_{int(size)}"] = tf.train.Feature(
            float_list=tf.train.FloatList(value=flat.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
        deterministic=True)


def decode_pyramid_example(serialized: bytes, channels: int) -> dict:
    """Inverse of `encode_pyramid_example`: {"key": str, "label": int, S: float32 [S, S, C]}."""
    feature = tf.train.Example.FromString(serialized).features.feature
    out = {"key": feature["key"].bytes_list.value[0].decode("utf-8"),
           "label": int(feature["label"].int64_list.value[0])}
    for name, value in feature.items():
        if name.startswith("grid_"):
            size = int(name[len("grid_"):])
            out[size] = np.asarray(value.float_list.value, np.float32).reshape(size, size, channels)
    return out


def read_metadata(pyramid_dir: str) -> dict:
    """The pyramid stage's `metadata.json` (grids, image_size, channels, counts, stats, ...).

    Raises:
      ValueError: the folder has no metadata.json (the pyramid run did not finish).
    """
    path = _join(pyramid_dir, METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{pyramid_dir} is not a complete pyramid output (no {METADATA_FILE}); "
                         "run `mgebm pyramid` into it first")
    return read_json(path)


def pyramid_dataset(pyramid_dir: str, split: str = "train", grids: Sequence[int] | None = None,
                    channels: int | None = None) -> tf.data.Dataset:
    """Unbatched dataset of pyramid examples.

    Args:
      pyramid_dir: a pyramid stage output folder.
      split: "train" or "eval".
      grids: grid sizes to read (a subset of the stored ones); None = all from metadata.json.
      channels: 1 or 3; None = from metadata.json.

    Returns:
      tf.data.Dataset of dicts {"grid_S": float32 [S, S, C] in [0, 1] for every S,
      "label": int64 [], "key": string []}, in shard order (deterministic).
    """
    if grids is None or channels is None:
        metadata = read_metadata(pyramid_dir)
        grids = metadata["grids"] if grids is None else grids
        channels = metadata["channels"] if channels is None else channels
    grids = [int(g) for g in grids]
    channels = int(channels)
    files = split_files(pyramid_dir, split)
    spec = {"key": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}
    for size in grids:
        spec[f"grid_{size}"] = tf.io.FixedLenFeature([size * size * channels], tf.float32)

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        out = {"label": parsed["label"], "key": parsed["key"]}
        for size in grids:
            out[f"grid_{size}"] = tf.reshape(parsed[f"grid_{size}"], [size, size, channels])
        return out

    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# ---------------------------------------------------------------------------------------------
# Scale-pyramid records (one image at L non-square scales).

SCALE_PYRAMID_FORMAT = "multigrid-ebm-scale-pyramid-v1"


def encode_scale_example(key: str, label: int, levels: Sequence[np.ndarray]) -> bytes:
    """Serialized `tf.train.Example{key, label, scale_K: float_list}`.

    Args:
      key: example key (utf-8). label: int (-1 when none).
      levels: [float array [h_K, w_K, C] in [0, 1]] coarsest first; stored flattened row-major HWC.
    """
    features = {"key": _bytes_feature(key.encode("utf-8")), "label": _int_feature(label)}
    for k, values in enumerate(levels):
        flat = np.asarray(values, dtype=np.float32).reshape(-1)
        features[f"scale_{k}"] = tf.train.Feature(float_list=tf.train.FloatList(value=flat.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString(
        deterministic=True)


def decode_scale_example(serialized: bytes, scales: Sequence[Sequence[int]], channels: int) -> dict:
    """Inverse of `encode_scale_example` in plain Python.

    Args:
      serialized: one record. scales: [[h_K, w_K]] coarsest first (metadata.json "scales").
      channels: C.

    Returns:
      {"key": str, "label": int, K: float32 [h_K, w_K, C] for every K}.
    """
    feature = tf.train.Example.FromString(serialized).features.feature
    out = {"key": feature["key"].bytes_list.value[0].decode("utf-8"),
           "label": int(feature["label"].int64_list.value[0])}
    for k, (h, w) in enumerate(scales):
        out[k] = np.asarray(feature[f"scale_{k}"].float_list.value, np.float32).reshape(
            int(h), int(w), int(channels))
    return out


def scale_dataset(pyramid_dir: str, split: str = "train") -> tf.data.Dataset:
    """Unbatched dataset of a scale pyramid's records (scales and channels from metadata.json).

    Returns:
      tf.data.Dataset of dicts {"scale_K": float32 [h_K, w_K, C] in [0, 1] for every K,
      "label": int64 [], "key": string []}, in shard order (an empty eval split gives none).

    Raises:
      ValueError: no metadata.json, or the folder is not a scale pyramid.
    """
    metadata = read_metadata(pyramid_dir)
    if metadata.get("format") != SCALE_PYRAMID_FORMAT:
        raise ValueError(f"{pyramid_dir} is not a scale pyramid (format {metadata.get('format')!r}); "
                         "use pyramid_dataset, or build it with pyramid.scale_factor > 0")
    scales = [(int(h), int(w)) for h, w in metadata["scales"]]
    channels = int(metadata["channels"])
    spec = {"key": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64)}
    for k, (h, w) in enumerate(scales):
        spec[f"scale_{k}"] = tf.io.FixedLenFeature([h * w * channels], tf.float32)

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        out = {"label": parsed["label"], "key": parsed["key"]}
        for k, (h, w) in enumerate(scales):
            out[f"scale_{k}"] = tf.reshape(parsed[f"scale_{k}"], [h, w, channels])
        return out

    dataset = tf.data.TFRecordDataset(split_files(pyramid_dir, split), compression_type="GZIP")
    return dataset.map(parse, deterministic=True)
