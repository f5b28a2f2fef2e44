"""The pyramid stage on Beam's Dask runner (components/pyramid_dask.py): chunking, bad input, and
the same records as the DirectRunner's on a dask.distributed cluster of 2 worker processes."""

import json
import os

import pytest

from components import ingest, pyramid_beam, pyramid_dask, records
from components.pyramid_beam import PyramidError
from pipeline.presets import load_preset

GRIDS = (1, 4, 16, 32)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """600 built-in MNIST digits at 32 px in 3 ingest shards per split (uneven record counts)."""
    root = tmp_path_factory.mktemp("dask")
    ingest_dir = str(root / "ingested")
    ingest.run_ingest("builtin:mnist5k", ingest_dir, 32, 1, limit=600, num_shards=3, progress_every=0)
    return ingest_dir


def _counts(ingest_dir):
    return {s: records.read_summary(ingest_dir)["counts"][s] for s in records.SPLITS}


def test_chunks_cover_every_record_once(ingested):
    counts = _counts(ingested)
    chunks = pyramid_dask.plan_chunks(ingested, chunk_records=50)
    for split in records.SPLITS:
        mine = [c for c in chunks if c[0] == split]
        assert [c[1] for c in mine] == list(range(len(mine))) and {c[2] for c in mine} == {len(mine)}
        seen = sorted((path, start + i) for _, _, _, runs in mine for path, start, n in runs for i in range(n))
        assert len(seen) == len(set(seen)) == counts[split]  # each record in exactly one chunk
        assert all(n <= 50 for _, _, _, runs in mine for _, _, n in runs)
    # num_shards = N: exactly N chunks per split, sizes differing by at most one record
    exact = pyramid_dask.plan_chunks(ingested, num_shards=4)
    for split in records.SPLITS:
        sizes = [sum(n for _, _, n in runs) for s, _, _, runs in exact if s == split]
        assert len(sizes) == 4 and sum(sizes) == counts[split] and max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match="chunk_records=0 must be >= 1"):
        pyramid_dask.plan_chunks(ingested, chunk_records=0)


def test_dask_runner_is_a_config_choice_and_refuses_a_scale_pyramid(tmp_path):
    pytest.importorskip("distributed", reason="pyramid.runner=DaskRunner needs dask[distributed]")
    cfg = load_preset("mnist5k-multigrid:smoke", ["pyramid.runner=DaskRunner",
                                                  "pyramid.beam_args=--dask_client_address=10.0.0.5:8786"])
    assert cfg.pyramid.runner == "DaskRunner" and cfg.pyramid.beam_args == ("--dask_client_address=10.0.0.5:8786",)
    photo = tmp_path / "photo"
    ingest.run_ingest(load_preset("chelsea-patchgen").data.source, str(photo), 32, 3, max_side=40,
                      min_side=16, progress_every=0)
    with pytest.raises(PyramidError, match="DaskRunner builds the integer grids"):
        pyramid_beam.run_pyramid(str(photo), str(tmp_path / "out"), (), runner="DaskRunner",
                                 scale_factor=0.75, min_side=16)
    assert not os.path.exists(tmp_path / "out")  # refused before writing


def _records(pyramid_dir, split):
    """The split's serialized records, sorted (whatever the file boundaries)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    files = records.split_files(pyramid_dir, split)
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _same_metadata(a, b):
    drop = ("runner", "files", "num_shards")
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


@pytest.mark.slow
def test_dask_cluster_writes_the_direct_runners_records_byte_for_byte(ingested, tmp_path):
    distributed = pytest.importorskip("distributed", reason="pyramid.runner=DaskRunner needs dask[distributed]")
    direct = pyramid_beam.run_pyramid(ingested, str(tmp_path / "direct"), GRIDS)
    # A local cluster of 2 worker processes, started and closed by the stage.
    local = pyramid_beam.run_pyramid(ingested, str(tmp_path / "local"), GRIDS, runner="DaskRunner")
    assert local["runner"] == "DaskRunner" and _same_metadata(direct, local)
    assert local["files"] == {"train": 3, "eval": 3}  # one file per chunk: 3 ingest shards of < 2048
    # An existing cluster named by its address; pyramid.num_shards=2 gives exactly 2 files per split.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster:
        with distributed.Client(cluster.scheduler_address) as client:
            assert len(client.scheduler_info()["workers"]) == 2
        remote = pyramid_beam.run_pyramid(
            ingested, str(tmp_path / "remote"), GRIDS, runner="DaskRunner", num_shards=2,
            beam_args=[f"--dask_client_address={cluster.scheduler_address}"])
    assert _same_metadata(direct, remote) and remote["files"] == {"train": 2, "eval": 2}
    for split in records.SPLITS:
        want = _records(str(tmp_path / "direct"), split)
        assert len(want) == direct["counts"][split] > 0
        assert _records(str(tmp_path / "local"), split) == want, split
        assert _records(str(tmp_path / "remote"), split) == want, split
    for out in ("local", "remote"):  # no temporary files or statistics left behind
        left = sorted(n for _, _, names in os.walk(tmp_path / out) for n in names)
        assert all(n.endswith(records.SHARD_SUFFIX) for n in left if n != records.METADATA_FILE), left
        assert json.load(open(tmp_path / out / records.METADATA_FILE))["fingerprint"] == direct["fingerprint"]
