"""Multi-worker training: two `mgebm train` processes started with the standard
TF_CONFIG on localhost, the same --workdir, a pyramid written by the real Beam stage with its
default settings (one file per split).

Fast tests: the input pipeline shards by data (not files), only the chief keeps checkpoints, logs
and the export (the others write to a temporary folder that is removed), and the workdir lock
gives every non-chief task its own lock file. Slow tests (two worker processes on this machine):
the chief's final checkpoint equals a single-process run on the same global batch, and a job with
a killed worker, restarted, resumes from the last checkpoint to the same step count.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from pipeline import workdir_lock
from trainers import data as data_lib
from trainers import scale

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tf_config(ports, index, task_type="worker", chief_port=None) -> str:
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    if chief_port:
        cluster["chief"] = [f"localhost:{chief_port}"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


# --------------------------------------------------------------------------------- fast tests

def test_train_dataset_shards_by_data_so_one_file_serves_two_workers(tmp_path):
    from tests.test_train import write_pyramid

    write_pyramid(tmp_path, n=8, shards=1)  # one file, as the pyramid stage writes by default
    ds = data_lib.make_train_dataset(str(tmp_path), 4, 0, 8, (1, 4, 8), 1)
    assert (ds.options().experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.DATA)
    # What MultiWorkerMirroredStrategy does to it on worker 1 of 2: rebatch + auto-shard.
    from tensorflow.python.data.experimental.ops import distribute as distribute_ops

    sharded = distribute_ops._AutoShardDataset(ds, 2, 1, num_replicas=2)  # pylint: disable=protected-access
    assert next(iter(sharded))["grid_8"].shape[0] == 4  # no "Could not apply FILE based sharding"


class _Resolver:
    def __init__(self, task_type, task_id, cluster):
        self.task_type, self.task_id, self._cluster = task_type, task_id, cluster

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


class _Strategy:
    def __init__(self, task_type=None, task_id=0, cluster=None):
        self.cluster_resolver = _Resolver(task_type, task_id, cluster or {}) if task_type else None


def test_only_the_chief_keeps_files_and_the_others_use_a_removed_temporary_folder(tmp_path):
    workers = {"worker": ["localhost:1", "localhost:2"]}
    workdir = str(tmp_path / "work")
    assert scale.is_chief(tf.distribute.get_strategy()) and scale.is_chief(_Strategy())
    assert scale.is_chief(_Strategy("worker", 0, workers))
    assert not scale.is_chief(_Strategy("worker", 1, workers))
    with_chief = dict(workers, chief=["localhost:3"])
    assert scale.is_chief(_Strategy("chief", 0, with_chief))
    assert not scale.is_chief(_Strategy("worker", 0, with_chief))
    with scale.worker_workdir(workdir, _Strategy("worker", 0, workers)) as own:
        assert own == workdir
    stale = os.path.join(workdir, ".worker-tmp", "worker-1", "checkpoints")
    os.makedirs(stale)  # left by a killed worker
    open(os.path.join(stale, "old"), "w").close()
    with pytest.raises(RuntimeError, match="boom"):
        with scale.worker_workdir(workdir, _Strategy("worker", 1, workers)) as own:
            assert own == os.path.join(workdir, ".worker-tmp", "worker-1")
            assert os.listdir(own) == []  # emptied before use
            open(os.path.join(own, "ckpt"), "w").close()
            raise RuntimeError("boom")
    assert not os.path.exists(os.path.join(workdir, ".worker-tmp"))  # removed however it exits


def test_workdir_lock_is_per_task_for_non_chief_workers(tmp_path, monkeypatch):
    ports = (1, 2)
    assert workdir_lock.lock_name({}) == ".mgebm.lock"
    assert workdir_lock.lock_name({"TF_CONFIG": "{bad"}) == ".mgebm.lock"
    assert workdir_lock.lock_name({"TF_CONFIG": tf_config(ports, 0)}) == ".mgebm.lock"
    assert workdir_lock.lock_name({"TF_CONFIG": tf_config(ports, 1)}) == ".mgebm.worker-1.lock"
    assert workdir_lock.lock_name({"TF_CONFIG": tf_config((1,), 0)}) == ".mgebm.lock"
    assert workdir_lock.lock_name({"TF_CONFIG": tf_config(ports, 0, "chief", 3)}) == ".mgebm.lock"
    assert workdir_lock.lock_name({"TF_CONFIG": tf_config(ports, 0, chief_port=3)}) == ".mgebm.worker-0.lock"
    workdir = str(tmp_path / "work")
    monkeypatch.setenv("TF_CONFIG", tf_config(ports, 0))
    with workdir_lock.hold(workdir):  # the chief holds the job lock ...
        monkeypatch.setenv("TF_CONFIG", tf_config(ports, 1))
        with workdir_lock.hold(workdir) as path:  # ... and does not lock out worker 1
            assert os.path.basename(path) == ".mgebm.worker-1.lock"
        monkeypatch.delenv("TF_CONFIG")
        with pytest.raises(workdir_lock.WorkdirBusy):  # another run is still refused
            with workdir_lock.hold(workdir):
                pass


# --------------------------------------------------------------------------------- slow tests

def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


SMOKE = ["--preset", "mnist5k-multigrid:smoke"]


def _start(pyramid, workdir, log, tf_config_value=None, extra=()):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    env.pop("TF_CONFIG", None)
    args = [sys.executable, "-m", "pipeline.cli", "train", "--pyramid", pyramid, *SMOKE,
            "--workdir", workdir, *extra]
    if tf_config_value:
        env["TF_CONFIG"] = tf_config_value
        args += ["--set", "train.strategy=multi_worker_mirrored"]
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _kill(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _run_all(procs, timeout):
    """Wait for every process; kill them all (process groups) on timeout or failure."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            _kill(p)
    return [p.returncode for p in procs]


def _job(pyramid, workdir, tmp, tag, extra=(), timeout=480):
    ports = _free_ports(2)
    logs = [open(os.path.join(tmp, f"{tag}-w{i}.log"), "w") for i in range(2)]
    procs = [_start(pyramid, workdir, logs[i], tf_config(ports, i), extra) for i in range(2)]
    return procs, logs


def _text(log):
    log.flush()
    with open(log.name) as f:
        return f.read()


def checkpoint_values(ckpt_dir) -> dict:
    path = tf.train.latest_checkpoint(ckpt_dir)
    reader = tf.train.load_checkpoint(path)
    return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(path)
            if "save_counter" not in n and not n.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


# Differ by design between one process and two workers: the TensorBoard previews keep the first
# replica's last samples (`aggregation="only_first_replica"`), so they hold a half batch.
_BY_DESIGN = ("last_samples", "_preview")


def _assert_close(a, b, what, tol=1e-4, moments_rtol=0.0):
    """Every checkpoint value but the by-design ones within tol (absolute); the optimizers' moment
    estimates also within moments_rtol of the variable's largest |value| (Adam's moments of
    near-cancelling gradients, e.g. a bias, amplify float differences; the weights do not).
    Prints the largest difference."""
    assert a.keys() == b.keys()
    diffs, limits = {}, {}
    for k in a:
        if any(part in k for part in _BY_DESIGN):
            continue
        x, y = np.asarray(a[k], np.float64), np.asarray(b[k], np.float64)
        diffs[k] = float(np.max(np.abs(x - y), initial=0.0))
        limits[k] = tol + (moments_rtol * float(np.max(np.abs(x), initial=0.0))
                           if "optimizer" in k else 0.0)
    weights = [d for k, d in diffs.items() if "optimizer" not in k]
    print(f"max |{what}| over {len(diffs)} checkpoint values: {max(diffs.values()):.3g} "
          f"(model variables {max(weights):.3g})")
    assert len(diffs) > 10 and all(diffs[k] < limits[k] for k in diffs), {
        k: (d, limits[k]) for k, d in diffs.items() if d >= limits[k]}


@pytest.fixture(scope="module")
def smoke_pyramid(tmp_path_factory, make_data_stages):
    """A tiny mnist5k pyramid at the smoke preset's geometry, written by the real Beam stage with
    its default settings (one file per split)."""
    root = tmp_path_factory.mktemp("mw-data")
    stages = make_data_stages(root, "builtin:mnist5k", 32, 1, (1, 4, 16, 32), limit=64)
    assert stages.metadata["files"]["train"] == 1
    return stages.pyramid_dir


@pytest.mark.slow
def test_two_workers_equal_one_process_on_the_same_global_batch(smoke_pyramid, tmp_path):
    single_log = open(tmp_path / "single.log", "w")
    single = _start(smoke_pyramid, str(tmp_path / "single"), single_log)
    assert _run_all([single], 300) == [0], _text(single_log)[-3000:]
    workdir = str(tmp_path / "job")
    procs, logs = _job(smoke_pyramid, workdir, str(tmp_path), "job")
    codes = _run_all(procs, 480)
    assert codes == [0, 0], "\n".join(_text(lg)[-3000:] for lg in logs)
    assert '"steps": 4' in _text(logs[0]) and '"steps": 4' in _text(logs[1])
    a = checkpoint_values(str(tmp_path / "single" / "checkpoints"))
    b = checkpoint_values(os.path.join(workdir, "checkpoints"))
    assert a.keys() == b.keys() and len(a) > 10
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("-4")
    _assert_close(a, b, "single process - two workers")
    # Only the chief's files are kept: one export, one log folder, no temporary worker folder.
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
    assert not os.path.exists(os.path.join(workdir, ".worker-tmp"))
    assert sorted(os.listdir(workdir)) == sorted(
        [".mgebm.lock", ".mgebm.worker-1.lock", "checkpoints", "export", "logs"])


@pytest.mark.slow
def test_a_killed_worker_fails_the_job_and_a_restart_resumes_to_the_same_step_count(
        smoke_pyramid, tmp_path):
    steps = ["--set", "train.max_steps=6", "--set", "train.checkpoint_every=1"]
    workdir = str(tmp_path / "job")
    ckpt_dir = os.path.join(workdir, "checkpoints")
    procs, logs = _job(smoke_pyramid, workdir, str(tmp_path), "first", steps)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            latest = tf.train.latest_checkpoint(ckpt_dir) if os.path.isdir(ckpt_dir) else None
            if latest and int(latest.rsplit("-", 1)[1]) >= 2:
                break
            time.sleep(0.2)
        assert all(p.poll() is None for p in procs), "\n".join(_text(lg)[-2000:] for lg in logs)
        _kill(procs[1])  # worker 1 dies mid-training ...
        codes = _run_all(procs[:1], 300)
        assert codes[0] != 0  # ... and the chief fails instead of hanging
    finally:
        for p in procs:
            _kill(p)
    killed_at = int(tf.train.latest_checkpoint(ckpt_dir).rsplit("-", 1)[1])
    assert 2 <= killed_at < 6
    assert not os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
    procs, logs = _job(smoke_pyramid, workdir, str(tmp_path), "restart", [*steps, "--resume"])
    codes = _run_all(procs, 480)
    assert codes == [0, 0], "\n".join(_text(lg)[-3000:] for lg in logs)
    chief = _text(logs[0])
    assert "resumed from" in chief and '"steps": 6' in chief and '"steps": 6' in _text(logs[1])
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("-6")
    assert os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
    assert not os.path.exists(os.path.join(workdir, ".worker-tmp"))
    # ... and to the uninterrupted run's model (one process; equal to two workers, see above).
    single_log = open(tmp_path / "single.log", "w")
    single = _start(smoke_pyramid, str(tmp_path / "single"), single_log, extra=steps)
    assert _run_all([single], 300) == [0], _text(single_log)[-3000:]
    _assert_close(checkpoint_values(str(tmp_path / "single" / "checkpoints")),
                  checkpoint_values(ckpt_dir), "uninterrupted single process - resumed two workers",
                  moments_rtol=1e-2)
