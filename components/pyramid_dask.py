"""The pyramid stage on Beam's Dask runner: a `dask.distributed` cluster runs the Beam pipeline.

Beam's DaskRunner (apache-beam 2.74, `apache_beam.runners.dask`) turns a pipeline into
`dask.bag` operations, but only Create, ParDo, GroupByKey and Flatten have a translation, and it
computes the output of the pipeline's last transform alone. The stage's usual form
(`pyramid_beam.run_pyramid`: ReadFromTFRecord -> BatchElements -> ParDo -> WriteToTFRecord, plus
a statistics branch per split) cannot run there:
  * `beam.io.Read` has no translation and yields no bag: the first ParDo after
    `ReadFromTFRecord` fails with `AttributeError: 'NoneType' object has no attribute 'map'`;
  * Beam's file sinks (WriteToTFRecord, WriteToText) lose every record: the runner collects a
    bundle's outputs before `finish_bundle`, where the sink reports the files it wrote, so the
    final shard is written empty and the temporary files stay behind;
  * of several branches only the last one runs.
So on Dask the stage is one chain of the supported transforms:

  Create(chunks) -> ParDo(ChunkPyramidFn) -> GroupByKey(split) -> ParDo(WriteStatsFn)

A chunk is a run of at most `chunk_records` consecutive records of one ingest shard (or, with
`num_shards` = N, one N-th of a split). ChunkPyramidFn reads its chunk, builds the pyramids in
batches of `batch_size` with the same `PyramidFn` and `GridStatsFn` (`pyramid_fns`) as the usual form, writes
OUTPUT/SPLIT/data-IIIII-of-NNNNN.tfrecord.gz itself (a temporary name, renamed when complete, so
a task that Dask runs again leaves one file) and emits (split, exact statistics accumulator).
Memory per task is one batch whatever the data size; the records are byte-identical to the
DirectRunner's, since they are encoded by the same functions. WriteStatsFn merges the
accumulators of a split (exact integers: any order) into `_stats/SPLIT`, which `run_pyramid`
reads as it does after the usual form.

Cluster: `--dask_client_address=HOST:PORT` (or `--dask_scheduler_file=PATH`) in the Beam args uses
an existing cluster, whose workers must have this package installed; without one, a LocalCluster
of `LOCAL_WORKERS` worker processes (one thread each) is started here and closed at the end.
"""

from __future__ import annotations

import itertools
import json
import logging
import posixpath
import sys
import uuid
from typing import Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions

from components import pyramid_fns, records

LOCAL_WORKERS = 2
CHUNK_RECORDS = 2048


class DaskUnavailable(ValueError):
    """dask / distributed are not installed; the message names the install command."""


def plan_chunks(input_dir: str, num_shards: int = 0, chunk_records: int = CHUNK_RECORDS) -> list[tuple]:
    """The chunks of both splits: (split, index, count_of_split_chunks, [(path, start, count), ...]).

    num_shards = 0: every ingest shard in runs of at most `chunk_records` records (one output
    file each); N >= 1: each split cut into N nearly equal runs (exactly N files, no shuffle).
    Counting the records reads every ingest shard once (decompression only, no decoding).
    """
    if chunk_records < 1:
        raise ValueError(f"chunk_records={chunk_records} must be >= 1")
    chunks = []
    for split in records.SPLITS:
        sizes = [(path, _count(path)) for path in records.split_files(input_dir, split)]
        if num_shards:
            total = sum(n for _, n in sizes)
            bounds = [round(i * total / num_shards) for i in range(num_shards + 1)]
            pieces = [_slice(sizes, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
        else:
            pieces = [[(path, start, min(chunk_records, n - start))]
                      for path, n in sizes for start in range(0, n, chunk_records)] or [[]]
        chunks += [(split, i, len(pieces), piece) for i, piece in enumerate(pieces)]
    return chunks


def _count(path: str) -> int:
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    return sum(1 for _ in tf.compat.v1.io.tf_record_iterator(path, options))


def _slice(sizes: list[tuple[str, int]], lo: int, hi: int) -> list[tuple[str, int, int]]:
    """Records [lo, hi) of the concatenated shards as (path, start, count) runs."""
    out, offset = [], 0
    for path, n in sizes:
        start, stop = max(lo, offset), min(hi, offset + n)
        if start < stop:
            out.append((path, start - offset, stop - start))
        offset += n
    return out


class ChunkPyramidFn(beam.DoFn):
    """(split, index, of, runs) -> writes that chunk's pyramid shard; emits (split, accumulator)."""

    def __init__(self, output_dir: str, grids: Sequence[int], channels: int, batch_size: int):
        super().__init__()
        self._output_dir, self._batch_size = output_dir, int(batch_size)
        self._grids, self._channels = tuple(int(g) for g in grids), int(channels)

    def process(self, chunk):
        split, index, of, runs = chunk
        pyramid_fn = pyramid_fns.PyramidFn(self._grids, self._channels)
        stats_fn = pyramid_fns.GridStatsFn(self._grids, self._channels)
        acc = stats_fn.create_accumulator()
        final = posixpath.join(self._output_dir, split, records.shard_name(index, of))
        partial = posixpath.join(self._output_dir, split, f".{uuid.uuid4().hex}.partial")
        tf.io.gfile.makedirs(posixpath.dirname(final))
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(partial, options) as writer:
            for batch in _batches(runs, self._batch_size):
                for out in pyramid_fn.process(batch):
                    acc = stats_fn.add_input(acc, out)
                    for example in pyramid_fns.explode(out, self._grids):
                        writer.write(example)
        tf.io.gfile.rename(partial, final, overwrite=True)
        yield split, _to_json(acc, self._grids)


def _batches(runs, batch_size: int):
    """Lists of at most batch_size serialized records of the runs, in order. TF's record iterator
    (C++; about 10x faster here than a tf.data pipeline per chunk) skips to each run's start."""
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for path, start, count in runs:
        records_ = itertools.islice(tf.compat.v1.io.tf_record_iterator(path, options), start, start + count)
        while batch := list(itertools.islice(records_, batch_size)):
            yield batch


def _to_json(acc: dict, grids: Sequence[int]) -> str:
    """A GridStatsFn accumulator as JSON (its integer sums stay exact)."""
    return json.dumps({"images": acc["images"], "size": acc["size"],
                       "grids": {str(s): acc[s] for s in grids}})


def _from_json(text: str, grids: Sequence[int]) -> dict:
    data = json.loads(text)
    return {"images": data["images"], "size": data["size"],
            **{s: tuple(data["grids"][str(s)]) for s in grids}}


class WriteStatsFn(beam.DoFn):
    """(split, [accumulator JSON]) -> `_stats/SPLIT`: the merged statistics, as the usual form writes."""

    def __init__(self, stats_dir: str, grids: Sequence[int], channels: int):
        super().__init__()
        self._stats_dir = stats_dir
        self._grids, self._channels = tuple(int(g) for g in grids), int(channels)

    def process(self, element):
        split, accs = element
        stats_fn = pyramid_fns.GridStatsFn(self._grids, self._channels)
        merged = stats_fn.merge_accumulators([_from_json(a, self._grids) for a in accs])
        tf.io.gfile.makedirs(self._stats_dir)
        with tf.io.gfile.GFile(posixpath.join(self._stats_dir, split), "w") as f:
            f.write(json.dumps(stats_fn.extract_output(merged)))
        yield split


def dask_runner():
    """Beam's DaskRunner, or DaskUnavailable naming the install command."""
    try:
        import distributed  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        from apache_beam.runners.dask.dask_runner import DaskRunner  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        raise DaskUnavailable(f"pyramid.runner=DaskRunner needs dask and distributed ({err}); install "
                              "them with `pip install multigrid-ebm[dask]` (pinned in "
                              "requirements/primary-py310.txt)") from None
    return DaskRunner()


def _has_cluster(beam_args: Sequence[str]) -> bool:
    return any(a.startswith(("--dask_client_address", "--dask_scheduler_file")) for a in beam_args)


def run(input_dir: str, output_dir: str, stats_dir: str, grids: Sequence[int], channels: int,
        beam_args: Sequence[str] = (), num_shards: int = 0, batch_size: int = 64,
        chunk_records: int = CHUNK_RECORDS) -> None:
    """Run the stage's Dask form (see the module docstring) and wait for it.

    Raises:
      DaskUnavailable: dask or distributed missing.
      RuntimeError: the pipeline failed on the cluster, or a split's statistics do not count
        every record of its chunks exactly once.
    """
    runner = dask_runner()
    chunks = plan_chunks(input_dir, num_shards, chunk_records)
    args = list(beam_args)
    if not any(a.startswith(("--dask_npartitions", "--dask_partition_size")) for a in args):
        args.append(f"--dask_npartitions={len(chunks)}")  # one Dask task per chunk
    cluster, quiet = None, logging.getLogger("distributed")
    level = quiet.level
    if not _has_cluster(args):
        from distributed import LocalCluster  # pylint: disable=import-outside-toplevel

        quiet.setLevel(logging.ERROR)  # our own cluster: its start and stop are not news
        cluster = LocalCluster(n_workers=LOCAL_WORKERS, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        args.append(f"--dask_client_address={cluster.scheduler_address}")
        print(f"pyramid: a local Dask cluster of {LOCAL_WORKERS} worker processes at "
              f"{cluster.scheduler_address}", file=sys.stderr, flush=True)
    result = None
    try:
        pipeline = beam.Pipeline(runner=runner, options=PipelineOptions(args))
        _ = (pipeline
             | "Chunks" >> beam.Create(chunks)
             | "Pyramid" >> beam.ParDo(ChunkPyramidFn(output_dir, grids, channels, batch_size))
             | "BySplit" >> beam.GroupByKey()
             | "WriteStats" >> beam.ParDo(WriteStatsFn(stats_dir, grids, channels)))
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        if result is not None:
            result.client.close()
        if cluster is not None:
            cluster.close()
        quiet.setLevel(level)
    expected = {s: sum(c for chunk in chunks if chunk[0] == s for _, _, c in chunk[3]) for s in records.SPLITS}
    for split in records.SPLITS:
        with tf.io.gfile.GFile(posixpath.join(stats_dir, split)) as f:
            got = json.loads(f.read())["count"]
        if got != expected[split]:
            raise RuntimeError(f"pyramid on Dask: the {split} statistics count {got} records, the "
                               f"chunks hold {expected[split]}; the cluster lost or repeated work")
