"""Scale-pyramid stage (pyramid.scale_factor > 0): one ingested image -> its scales, with Beam.

For the single image of a `file:` ingest (summary.json `"single_image": true`, uint8 [H, W, C]) it
computes L scales with `trainers.pyramid_ops.scale_sizes(H, W, scale_factor, min_side)` (coarsest
first) and `scale_pyramid` (each scale resized from the finest with antialiased bicubic, clipped
to [0, 1]; the finest is the image / 255 exactly). Output (OUTPUT = `output_dir`):

  OUTPUT/train/data-*.tfrecord.gz: `tf.train.Example{key, label, scale_K: float_list of
      h_K*w_K*C values in [0, 1], row-major HWC}` for K = 0 (coarsest) .. L-1 (finest)
      (`records.encode_scale_example`); OUTPUT/eval/: a valid empty shard (the eval split of a
      single-image ingest is empty).
  OUTPUT/metadata.json: {"format": "multigrid-ebm-scale-pyramid-v1", "single_image": true,
      "scales": [[h_0, w_0], ..., [H, W]], "scale_factor", "min_side", "grids": [],
      "image_size": max(H, W), "height": H, "width": W, "channels", "counts": {"train": 1,
      "eval": 0}, "coarse_mean": [C], "coarse_std": [C] (scale 0), "scale_stats": {"K": {"mean":
      [C], "std": [C]}} (train split, per channel, population std, float64 sums of the float32
      levels), "fingerprint", "ingest", "files", "runner", ...}; written LAST (the folder is
      complete iff it exists).

Run through `components.pyramid_beam.run_pyramid(..., scale_factor=, min_side=)`, which shares
the runner, the options, the output checks and the fingerprint with the integer-grid stage.
"""

from __future__ import annotations

import json
import posixpath
from typing import Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes

from components import records


class _ScalesFn(beam.DoFn):
    """Serialized ingest Example -> {"key", "label", "levels": [float32 [h_K, w_K, C]]}."""

    def __init__(self, scales: Sequence[tuple[int, int]], channels: int):
        super().__init__()
        self._scales = [tuple(int(v) for v in s) for s in scales]
        self._channels = int(channels)

    def process(self, serialized):
        from trainers import pyramid_ops  # pylint: disable=import-outside-toplevel

        example = records.decode_ingest_example(serialized)
        image = tf.io.decode_png(example["image"], channels=self._channels)
        if tuple(image.shape[:2]) != self._scales[-1]:
            raise ValueError(f"pyramid: image {example['key']} is {tuple(image.shape[:2])}, but the "
                             f"ingest summary says {self._scales[-1]}; rerun the ingest")
        levels = pyramid_ops.scale_pyramid(tf.cast(image, tf.float32)[None] / 255.0, self._scales)
        yield {"key": example["key"], "label": example["label"],
               "levels": [level.numpy()[0] for level in levels]}


class ScaleStatsFn(beam.CombineFn):
    """Per-channel mean / population std of every scale (float64 sums; one image in practice).

    Output: JSON-able {"count": images, "scales": {"K": {"mean": [C], "std": [C]}}}.
    """

    def __init__(self, num_scales: int, channels: int):
        super().__init__()
        self._num_scales, self._channels = int(num_scales), int(channels)

    def create_accumulator(self):
        zeros = np.zeros((self._num_scales, 3, self._channels), np.float64)  # pixels, sum, sum sq
        return {"images": 0, "sums": zeros}

    def add_input(self, acc, element):
        sums = acc["sums"].copy()
        for k, level in enumerate(element["levels"]):
            flat = np.asarray(level, np.float64).reshape(-1, self._channels)
            sums[k] += np.stack([np.full(self._channels, flat.shape[0], np.float64),
                                 flat.sum(0), (flat * flat).sum(0)])
        return {"images": acc["images"] + 1, "sums": sums}

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for acc in accumulators:
            out = {"images": out["images"] + acc["images"], "sums": out["sums"] + acc["sums"]}
        return out

    def extract_output(self, acc):
        scales = {}
        for k in range(self._num_scales):
            n, total, squares = acc["sums"][k]
            n = np.maximum(n, 1.0)
            mean = total / n
            std = np.sqrt(np.maximum(squares / n - mean * mean, 0.0))
            scales[str(k)] = {"mean": mean.tolist(), "std": std.tolist()}
        return {"count": int(acc["images"]), "scales": scales}


def _encode(element):
    return records.encode_scale_example(element["key"], element["label"], element["levels"])


def build(pipeline, input_dir: str, output_dir: str, stats_dir: str,
          scales: Sequence[tuple[int, int]], channels: int, num_shards: int) -> None:
    """Add the read -> scales -> write and stats steps of both splits to a Beam pipeline."""
    for split in records.SPLITS:
        levels = (
            pipeline
            | f"Read/{split}" >> beam.io.ReadFromTFRecord(
                posixpath.join(input_dir, split, "*" + records.SHARD_SUFFIX),
                compression_type=CompressionTypes.GZIP)
            | f"Scales/{split}" >> beam.ParDo(_ScalesFn(scales, channels)))
        _ = (levels
             | f"Encode/{split}" >> beam.Map(_encode)
             | f"Write/{split}" >> beam.io.WriteToTFRecord(
                 posixpath.join(output_dir, split, "data"), file_name_suffix=records.SHARD_SUFFIX,
                 num_shards=num_shards, compression_type=CompressionTypes.GZIP))
        _ = (levels
             | f"Stats/{split}" >> beam.CombineGlobally(ScaleStatsFn(len(scales), channels))
             | f"StatsJson/{split}" >> beam.Map(json.dumps)
             | f"WriteStats/{split}" >> beam.io.WriteToText(
                 posixpath.join(stats_dir, split), num_shards=1, shard_name_template=""))


def ensure_shards(output_dir: str) -> None:
    """Give a split that got no file (an empty eval split) one valid empty GZIP shard."""
    for split in records.SPLITS:
        if not tf.io.gfile.glob(posixpath.join(output_dir, split, "*" + records.SHARD_SUFFIX)):
            tf.io.gfile.makedirs(posixpath.join(output_dir, split))
            with tf.io.TFRecordWriter(posixpath.join(output_dir, split, records.shard_name(0, 1)),
                                      options="GZIP"):
                pass


def metadata(summary: dict, stats: dict, scales: Sequence[tuple[int, int]], scale_factor: float,
             min_side: int) -> dict:
    """The scale-specific part of metadata.json (see the module docstring)."""
    train = stats["train"]["scales"]
    height, width = scales[-1]
    return {
        "format": records.SCALE_PYRAMID_FORMAT,
        "single_image": True,
        "scales": [[int(h), int(w)] for h, w in scales],
        "scale_factor": float(scale_factor),
        "min_side": int(min_side),
        "grids": [],
        "image_size": int(max(height, width)),
        "height": int(height),
        "width": int(width),
        "channels": int(summary["channels"]),
        "counts": {split: stats[split]["count"] for split in records.SPLITS},
        "coarse_mean": train["0"]["mean"],
        "coarse_std": train["0"]["std"],
        "scale_stats": train,
        "stats_split": "train",
    }
