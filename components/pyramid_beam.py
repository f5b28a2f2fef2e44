"""Pyramid stage: an Apache Beam pipeline from ingest records to multi-grid pyramid records.

For every ingested example (both splits) it decodes the PNG, scales pixels to float32 [0, 1]
(uint8 / 255) and computes the exact box-average pyramid at the configured grids with
`trainers.pyramid_ops.build_pyramid` (the trainer's own ops; elements are batched with
`beam.BatchElements` so each TF call handles many images). Output (OUTPUT = `output_dir`):

  OUTPUT/train/data-SSSSS-of-NNNNN.tfrecord.gz, OUTPUT/eval/... (one file per Beam bundle, or
      exactly `num_shards`): `tf.train.Example{key, label, grid_S: float_list of S*S*C values
      in [0, 1], row-major HWC}` for every S (records.py).
  OUTPUT/metadata.json : {"grids", "image_size", "channels", "counts": {"train", "eval"},
      "coarse_mean": [C], "coarse_std": [C], "grid_stats": {"S": {"mean": [C], "std": [C]}},
      "fingerprint", "files": {"train", "eval"} (file counts), ...}; statistics are over the train
      split, per channel, population std, exact (integer block sums, see pyramid_fns.GridStatsFn), so they do
      not depend on batching or worker count; the eval split's are in "eval_grid_stats". Written
      LAST, after the Beam pipeline finished: the folder is complete iff metadata.json exists.

`fingerprint` is sha256 over the ingest shards (sorted split/name and each file's sha256), so the
same ingested data gives the same value. Runner: "DirectRunner" runs Beam's in-process FnApiRunner
(what the DirectRunner uses for batch pipelines) built explicitly: recent Beam releases route the
plain DirectRunner to the Prism runner, which downloads a binary. `beam_args` pass through to
`PipelineOptions`, e.g. `--direct_num_workers=2 --direct_running_mode=multi_processing`, or another
runner's flags (`--project`, `--region`, `--temp_location`, ...).

With `scale_factor` > 0 (pyramid.scale_factor) the input must be a single-image ingest (a `file:`
source) and the stage writes its scale pyramid instead: `components/scale_pyramid_beam.py`
(`scale_K` records, metadata.json format "multigrid-ebm-scale-pyramid-v1" with "scales").
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import sys
import time
from typing import Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions

from components import pyramid_dask, pyramid_fns, records, scale_pyramid_beam
from trainers import config as config_lib
from trainers import pyramid_ops

STATS_DIR = "_stats"
OUTPUT_NAMES = ("train", "eval", records.METADATA_FILE, STATS_DIR)


class PyramidError(ValueError):
    """The pyramid stage cannot run on this input/output; the message names the fix."""


def _make_runner(runner: str):
    if runner not in config_lib.BEAM_RUNNERS:
        raise PyramidError(f"runner={runner!r} is not allowed; allowed values: "
                           f"{list(config_lib.BEAM_RUNNERS)}")
    if runner == "DaskRunner":
        return pyramid_dask.dask_runner()  # DaskUnavailable (a ValueError) when dask is missing
    if runner == "DirectRunner":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # pylint: disable=import-outside-toplevel
        return FnApiRunner()
    return runner


def ingest_fingerprint(input_dir: str) -> str:
    """sha256 over the ingest shards of both splits (sorted names and file contents)."""
    digest = hashlib.sha256()
    for split in records.SPLITS:
        for path in records.split_files(input_dir, split):
            with tf.io.gfile.GFile(path, "rb") as f:
                data = f.read()
            digest.update(f"{split}/{posixpath.basename(path)}\n".encode("utf-8"))
            digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _prepare_output(output_dir: str) -> None:
    if tf.io.gfile.exists(output_dir):
        others = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(output_dir)
                        if n.rstrip("/") not in OUTPUT_NAMES)
        if others:
            raise PyramidError(f"output folder {output_dir} holds other files {others[:5]}; give an "
                               "empty or new folder (only an earlier pyramid output is replaced)")
    records.remove_outputs(output_dir, OUTPUT_NAMES[::-1])  # metadata.json first
    tf.io.gfile.makedirs(output_dir)


def run_pyramid(input_dir: str, output_dir: str, grids: Sequence[int], runner: str = "DirectRunner",
                beam_args: Sequence[str] = (), num_shards: int = 0, batch_size: int = 64,
                scale_factor: float = 0.0, min_side: int = 25) -> dict:
    """Run the Beam pyramid pipeline on an ingest output and write metadata.json.

    Args:
      input_dir: a complete ingest output (with summary.json).
      output_dir: output folder; created; an earlier pyramid output there is replaced.
      grids: increasing sizes starting at 1, each dividing the next, the last = ingested image size.
      runner: a Beam runner name from trainers.config.BEAM_RUNNERS.
      beam_args: extra pipeline options passed verbatim to PipelineOptions.
      num_shards: output files per split; 0 = one per Beam bundle, each written as its records
        stream past (memory flat in the data set size); N >= 1 = exactly N files, which costs a
        shuffle that Beam's in-process runner holds in memory. batch_size: max images per TF call.
      scale_factor: 0 = the integer grids; in (0, 1) = the scale pyramid of a single-image ingest
        (`grids` ignored; see components/scale_pyramid_beam.py), its coarsest scale's shorter side
        the smallest one >= min_side.

    Returns:
      The metadata dict also written to OUTPUT/metadata.json.

    Raises:
      ValueError (PyramidError, ConfigError): incomplete input, bad grids, runner or output folder.
      RuntimeError: the Beam pipeline did not finish (no metadata.json is written).
    """
    if _norm(input_dir) == _norm(output_dir):
        raise PyramidError(f"output {output_dir} is the ingest folder; choose another folder")
    try:
        summary = records.read_summary(input_dir)
        for split in records.SPLITS:
            records.split_files(input_dir, split)
    except ValueError as err:
        raise PyramidError(str(err)) from None
    image_size, channels = int(summary["image_size"]), int(summary["channels"])
    scales = _scales(input_dir, summary, float(scale_factor), int(min_side))
    grids = () if scales else tuple(int(g) for g in grids)
    if not scales:
        config_lib.validate_grids(grids, image_size)
    if num_shards < 0 or batch_size < 1:
        raise PyramidError(f"num_shards={num_shards} must be >= 0 (0 = one file per bundle) and "
                           f"batch_size={batch_size} >= 1")
    beam_runner = _make_runner(runner)
    if runner == "DaskRunner" and scales:
        raise PyramidError("pyramid.runner=DaskRunner builds the integer grids; the scale pyramid of "
                           "one image (pyramid.scale_factor > 0) runs on DirectRunner")
    options = PipelineOptions(list(beam_args))
    _prepare_output(output_dir)
    start = time.time()
    print(f"pyramid: {input_dir} -> {output_dir}, "
          + (f"scales {[list(s) for s in scales]}" if scales else f"grids {list(grids)}")
          + f", runner {runner}", file=sys.stderr, flush=True)
    try:
        fingerprint = ingest_fingerprint(input_dir)
        if runner == "DaskRunner":  # the subset of Beam that runs on Dask: components/pyramid_dask.py
            pyramid_dask.run(input_dir, output_dir, posixpath.join(output_dir, STATS_DIR), grids,
                             channels, beam_args, num_shards, batch_size)
        else:
            _run_beam(beam_runner, options, input_dir, output_dir, grids, scales, channels, num_shards,
                      batch_size)
        stats = {}
        for split in records.SPLITS:
            with tf.io.gfile.GFile(posixpath.join(output_dir, STATS_DIR, split)) as f:
                stats[split] = json.loads(f.read())
        if scales:
            scale_pyramid_beam.ensure_shards(output_dir)
            metadata = scale_pyramid_beam.metadata(summary, stats, scales, scale_factor, min_side)
        else:
            train = stats["train"]["grids"]
            metadata = {
                "format": "multigrid-ebm-pyramid-v1",
                "grids": list(grids),
                "image_size": image_size,
                "channels": channels,
                "counts": {split: stats[split]["count"] for split in records.SPLITS},
                "coarse_mean": train[str(grids[0])]["mean"],
                "coarse_std": train[str(grids[0])]["std"],
                "grid_stats": train,
                "stats_split": "train",
                "eval_grid_stats": stats["eval"]["grids"],
            }
        metadata.update({
            "fingerprint": fingerprint,
            "ingest": {"source": summary.get("source"), "fingerprint": summary.get("fingerprint"),
                       "input_dir": input_dir},
            "num_shards": int(num_shards),
            "files": {split: len(records.split_files(output_dir, split)) for split in records.SPLITS},
            "runner": runner,
        })
        records.remove_outputs(output_dir, (STATS_DIR,))
        records.write_json(posixpath.join(output_dir, records.METADATA_FILE), metadata)
    except BaseException:
        records.remove_outputs(output_dir, OUTPUT_NAMES[::-1])
        raise
    print(f"pyramid: done in {time.time() - start:.1f}s: {metadata['counts']['train']} train, "
          f"{metadata['counts']['eval']} eval; coarse mean {np.round(metadata['coarse_mean'], 4).tolist()}"
          f" std {np.round(metadata['coarse_std'], 4).tolist()}", file=sys.stderr, flush=True)
    return metadata


def _run_beam(beam_runner, options, input_dir: str, output_dir: str, grids: tuple, scales: list,
              channels: int, num_shards: int, batch_size: int) -> None:
    """The stage's usual Beam form (read, batch, pyramid, write and statistics per split); waits."""
    pipeline = beam.Pipeline(runner=beam_runner, options=options)
    if scales:
        scale_pyramid_beam.build(pipeline, input_dir, output_dir,
                                 posixpath.join(output_dir, STATS_DIR), scales, channels, num_shards)
    for split in records.SPLITS if not scales else ():
        batches = (
            pipeline
            | f"Read/{split}" >> beam.io.ReadFromTFRecord(
                posixpath.join(input_dir, split, "*" + records.SHARD_SUFFIX),
                compression_type=CompressionTypes.GZIP)
            | f"Batch/{split}" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_size)
            | f"Pyramid/{split}" >> beam.ParDo(pyramid_fns.PyramidFn(grids, channels)))
        _ = (batches
             | f"Encode/{split}" >> beam.FlatMap(pyramid_fns.explode, grids)
             | f"Write/{split}" >> beam.io.WriteToTFRecord(
                 posixpath.join(output_dir, split, "data"), file_name_suffix=records.SHARD_SUFFIX,
                 num_shards=num_shards, compression_type=CompressionTypes.GZIP))
        _ = (batches
             | f"Stats/{split}" >> beam.CombineGlobally(pyramid_fns.GridStatsFn(grids, channels))
             | f"StatsJson/{split}" >> beam.Map(json.dumps)
             | f"WriteStats/{split}" >> beam.io.WriteToText(
                 posixpath.join(output_dir, STATS_DIR, split), num_shards=1,
                 shard_name_template=""))
    state = pipeline.run().wait_until_finish()
    if state not in (None, beam.runners.runner.PipelineState.DONE):
        raise RuntimeError(f"pyramid: the Beam pipeline ended in state {state}; see the runner's log")


def _scales(input_dir: str, summary: dict, scale_factor: float, min_side: int) -> list[tuple[int, int]]:
    """The scale sizes of a single-image ingest when scale_factor > 0, else []; PyramidError when
    the ingest and scale_factor do not belong together or the image is too small."""
    single = bool(summary.get("single_image"))
    if scale_factor == 0:
        if single:
            raise PyramidError(f"{input_dir} holds one image (a file: source), which needs a scale "
                               "pyramid; set pyramid.scale_factor (e.g. --set pyramid.scale_factor=0.75, "
                               "or mgebm pyramid --scale-factor 0.75)")
        return []
    if not 0.0 < scale_factor < 1.0 or min_side < 3:
        raise PyramidError(f"scale_factor={scale_factor} must be in (0, 1) and min_side={min_side} >= 3")
    if not single:
        raise PyramidError(f"scale_factor={scale_factor} builds the scale pyramid of ONE image, but "
                           f"{input_dir} is an ingest of {summary.get('source')!r}; ingest a file: source "
                           "or set pyramid.scale_factor=0 for the integer grids")
    height, width = int(summary["height"]), int(summary["width"])
    try:
        return pyramid_ops.scale_sizes(height, width, scale_factor, min_side)
    except ValueError as err:
        raise PyramidError(f"{summary.get('source')}: {err}") from None


def _norm(path: str) -> str:
    import os  # pylint: disable=import-outside-toplevel
    return path.rstrip("/") if "://" in path else os.path.abspath(path)
