"""Training input pipeline: `tf.data` over the pyramid TFRecords written by the pyramid stage.

`trainers/` never imports `components/`, so the pyramid record format is parsed here from its
documented layout (the same one `components/records.py` writes):

- `PYRAMID/metadata.json`: `{"grids": [1, 4, ...], "image_size": H, "channels": C,
  "counts": {"train": n, "eval": m}, "coarse_mean": [C], "coarse_std": [C], "fingerprint": ...}`.
- `PYRAMID/{train,eval}/*.tfrecord.gz`: GZIP TFRecords of `tf.train.Example`
  `{key: bytes, label: int64, grid_S: float_list of S*S*C values in [0, 1], row-major HWC}`
  for every grid size S.

Scale pyramids of one image (pyramid.scale_factor > 0; `components/scale_pyramid_beam.py`):
metadata.json has `"format": "multigrid-ebm-scale-pyramid-v1"`, `"scales": [[h_0, w_0], ...]`
(coarsest first), `"grids": []`, `"height"`, `"width"`, and the train split holds ONE record
`{key, label, scale_K: float_list of h_K*w_K*C values}` for K = 0 .. L-1;
`make_single_image_dataset` reads it.

Class filter: `classes` (the config's `data.classes`) keeps only the records whose label is one
of them, at the trainer's input; the records keep every class and labels keep their values.
`with_labels=True` (a model whose `uses_labels` is true) adds `"label": int32 [N]` to every batch.

All file access goes through `tf.io.gfile`, so `gs://` paths work.
"""

from __future__ import annotations

import json
import posixpath

import tensorflow as tf

METADATA_FILE = "metadata.json"
SCALE_PYRAMID_FORMAT = "multigrid-ebm-scale-pyramid-v1"  # components.records.SCALE_PYRAMID_FORMAT
_REQUIRED_METADATA = ("grids", "image_size", "channels")


class PyramidDataError(ValueError):
    """The pyramid folder is missing, incomplete or does not hold what the caller asked for."""


def read_pyramid_metadata(pyramid_dir: str) -> dict:
    """Read `PYRAMID/metadata.json`.

    Args:
      pyramid_dir: output folder of the pyramid stage (local path or gs:// URL).

    Returns:
      The metadata dict; `grids` is a list of ints, `image_size` and `channels` ints; a scale
      pyramid's `scales` is a list of [h, w] int pairs (and `grids` is []).

    Raises:
      PyramidDataError: the file is missing, not JSON, or lacks grids / image_size / channels (or
        a scale pyramid's scales).
    """
    path = posixpath.join(str(pyramid_dir), METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise PyramidDataError(
            f"{path} does not exist: pass the output folder of the pyramid stage as pyramid_dir "
            "(it holds metadata.json, train/ and eval/)")
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            meta = json.loads(f.read())
        except json.JSONDecodeError as err:
            raise PyramidDataError(f"{path} is not valid JSON ({err}); rerun the pyramid stage") from None
    missing = [k for k in _REQUIRED_METADATA if k not in meta]
    if missing:
        raise PyramidDataError(f"{path} lacks {missing}; rerun the pyramid stage")
    meta["grids"] = [int(g) for g in meta["grids"]]
    meta["image_size"] = int(meta["image_size"])
    meta["channels"] = int(meta["channels"])
    if is_scale_pyramid(meta):
        scales = meta.get("scales")
        if not scales or any(len(s) != 2 or min(int(v) for v in s) < 1 for s in scales):
            raise PyramidDataError(f"{path}: a scale pyramid needs scales [[h, w], ...] (got {scales!r}); "
                                   "rerun the pyramid stage")
        meta["scales"] = [[int(h), int(w)] for h, w in scales]
    return meta


def is_scale_pyramid(metadata: dict) -> bool:
    """True for the metadata of a single image's scale pyramid (pyramid.scale_factor > 0)."""
    return metadata.get("format") == SCALE_PYRAMID_FORMAT


def make_single_image_dataset(pyramid_dir: str, batch_size: int, scales=None,
                              channels: int | None = None) -> tf.data.Dataset:
    """Endless batches of the one training image of a scale pyramid, at every scale.

    The record is read once and cached; every batch holds `batch_size` copies of it.

    Args:
      pyramid_dir: output folder of the pyramid stage built with pyramid.scale_factor > 0.
      batch_size: N (>= 1).
      scales: [[h_K, w_K]] coarsest first; None = metadata.json's (a given list must equal it).
      channels: C; None = metadata.json's (a given value must equal it).

    Returns:
      A `tf.data.Dataset` yielding forever `{"scale_K": float32 [N, h_K, w_K, C] in [0, 1]}` for
      K = 0 (coarsest) .. L-1 (finest).

    Raises:
      PyramidDataError: not a scale pyramid, a train split without exactly one record, or
        scales / channels that differ from the metadata.
    """
    if batch_size < 1:
        raise PyramidDataError(f"batch_size={batch_size} must be >= 1")
    meta = read_pyramid_metadata(pyramid_dir)
    if not is_scale_pyramid(meta):
        raise PyramidDataError(
            f"{pyramid_dir} is not a single image's scale pyramid (format {meta.get('format')!r}, grids "
            f"{meta['grids']}); ingest a file: source and build the pyramid with pyramid.scale_factor > 0")
    stored = [tuple(s) for s in meta["scales"]]
    if scales is not None and [tuple(int(v) for v in s) for s in scales] != stored:
        raise PyramidDataError(f"scales {list(scales)} differ from the pyramid's {stored}; rebuild the "
                               "pyramid or pass scales=None")
    if channels is not None and int(channels) != meta["channels"]:
        raise PyramidDataError(f"channels={channels} differs from the pyramid's {meta['channels']}")
    channels = meta["channels"]
    spec = {f"scale_{k}": tf.io.FixedLenFeature([h * w * channels], tf.float32)
            for k, (h, w) in enumerate(stored)}
    records = list(tf.data.TFRecordDataset(pyramid_files(pyramid_dir, "train"), compression_type="GZIP"))
    if len(records) != 1:
        raise PyramidDataError(f"the scale pyramid's train split in {pyramid_dir} holds {len(records)} "
                               "records, not one image; rebuild it from a file: source")
    parsed = tf.io.parse_single_example(records[0], spec)
    batch = {f"scale_{k}": tf.tile(tf.reshape(parsed[f"scale_{k}"], [1, h, w, channels]),
                                   [batch_size, 1, 1, 1]) for k, (h, w) in enumerate(stored)}
    return tf.data.Dataset.from_tensors(batch).repeat()


def pyramid_files(pyramid_dir: str, split: str = "train") -> list[str]:
    """Sorted list of `PYRAMID/SPLIT/*.tfrecord.gz`; PyramidDataError when there is none."""
    pattern = posixpath.join(str(pyramid_dir), split, "*.tfrecord.gz")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise PyramidDataError(f"no pyramid records match {pattern}; run the pyramid stage first")
    return files


def parse_pyramid_batch(serialized: tf.Tensor, grids, channels: int,
                        with_labels: bool = False) -> dict[str, tf.Tensor]:
    """Parse a batch of serialized pyramid examples.

    Args:
      serialized: string Tensor [N] of serialized `tf.train.Example`s.
      grids: grid sizes to read, e.g. (1, 4, 16, 32).
      channels: C, 1 or 3.
      with_labels: also return `"label": int32 [N]` (-1 where a record has none).

    Returns:
      `{"grid_S": float32 [N, S, S, C] in [0, 1]}` for every S in `grids` (plus `"label"`).
    """
    spec = {f"grid_{s}": tf.io.FixedLenFeature([s * s * channels], tf.float32) for s in grids}
    if with_labels:
        spec["label"] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
    parsed = tf.io.parse_example(serialized, spec)
    out = {f"grid_{s}": tf.reshape(parsed[f"grid_{s}"], [-1, s, s, channels]) for s in grids}
    if with_labels:
        out["label"] = tf.cast(parsed["label"], tf.int32)
    return out


def class_predicate(classes):
    """serialized record -> bool []: whether its label is one of `classes` (a non-empty tuple)."""
    wanted = tf.constant([int(c) for c in classes], tf.int64)
    spec = {"label": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}

    def keep(serialized):
        label = tf.io.parse_single_example(serialized, spec)["label"]
        return tf.reduce_any(tf.equal(label, wanted))

    return keep


def count_records(pyramid_dir: str, split: str = "train", classes=()) -> int:
    """Records of the split (only those of `classes` when given)."""
    ds = tf.data.TFRecordDataset(pyramid_files(pyramid_dir, split), compression_type="GZIP")
    if classes:
        ds = ds.filter(class_predicate(classes))
    return int(ds.reduce(0, lambda n, _: n + 1))


def make_train_dataset(pyramid_dir: str, batch_size: int, seed: int, shuffle_buffer: int,
                       grids, channels: int, split: str = "train",
                       repeat: bool = True, classes=(), with_labels: bool = False) -> tf.data.Dataset:
    """Shuffled, batched, prefetched dataset of pyramid batches for training.

    The order is a pure function of `seed` (files are read sequentially in sorted order, the
    shuffle is seeded, parsing keeps order), so `dataset.skip(k)` reproduces the position after
    k batches; `train()` uses that to resume exactly. Each repetition of the data (epoch) is
    reshuffled, deterministically.

    Args:
      pyramid_dir: output folder of the pyramid stage.
      batch_size: global batch size N (batches are cut with drop_remainder, so every batch is full).
      seed: shuffle seed.
      shuffle_buffer: elements in the shuffle buffer (>= 1).
      grids: grid sizes to read, e.g. (1, 4, 16, 32).
      channels: C, 1 or 3.
      split: folder under pyramid_dir, `train` (default) or `eval`.
      repeat: repeat forever (epochs are counted by the caller); False gives one pass.
      classes: keep only records with these labels (empty: all), before the shuffle.
      with_labels: add `"label": int32 [N]` to every batch.

    Returns:
      A `tf.data.Dataset` of dicts `{"grid_S": float32 [N, S, S, C] in [0, 1]}` (plus `"label"`),
      with the auto-shard policy DATA for multi-worker training (any number of files).

    Raises:
      PyramidDataError: no record files, or bad batch_size / shuffle_buffer.
    """
    if batch_size < 1:
        raise PyramidDataError(f"batch_size={batch_size} must be >= 1")
    if shuffle_buffer < 1:
        raise PyramidDataError(f"shuffle_buffer={shuffle_buffer} must be >= 1")
    grids = tuple(int(g) for g in grids)
    files = pyramid_files(pyramid_dir, split)
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if classes:
        ds = ds.filter(class_predicate(classes))
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda s: parse_pyramid_batch(s, grids, channels, with_labels),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    # Shard by data, not files: the pyramid stage writes one file per split by default, and FILE
    # (AUTO's first choice) fails with fewer files than workers. Every worker reads the same
    # seeded order; with the global batch rebatched to per-worker batches, the workers together
    # see exactly the single-process global batch at each step.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def steps_per_epoch(metadata: dict, batch_size: int, pyramid_dir: str | None = None,
                    classes=()) -> int:
    """Full batches per pass over the training split (of the records of `classes`, when given).

    Uses `metadata["counts"]["train"]`; when the metadata has no count, or a class filter is
    given, and `pyramid_dir` is given, the records are counted.

    Raises:
      PyramidDataError: the split (after the class filter) has fewer examples than one batch.
    """
    count = None if classes else metadata.get("counts", {}).get("train")
    if count is None and pyramid_dir is not None:
        count = count_records(pyramid_dir, "train", classes)
    count = int(count or 0)
    steps = count // batch_size
    if steps < 1:
        which = f" of data.classes={','.join(map(str, classes))}" if classes else ""
        raise PyramidDataError(
            f"the pyramid's train split has {count} examples{which}, fewer than train.batch_size="
            f"{batch_size}; lower train.batch_size or use more data")
    return steps
