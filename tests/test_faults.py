"""Faults: a full disk during push or export, a rerun after a kill.

The disk-full tests use a real small file system (a tmpfs mounted on the test's folder) where
mount rights allow (root here) and are skipped otherwise; the injected-ENOSPC tests run
everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf

from evaluators import push
from tests.test_multiworker import REPO, _free_ports
from tests.test_train import tiny_config, write_pyramid
from trainers.export import ExportError, load_exported
from trainers.train import export_untrained


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A real SavedModel of a few files (one signature, one variable)."""
    module = tf.Module()
    module.w = tf.Variable(tf.range(20000, dtype=tf.float32))  # 80 kB of variables

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def scale(x):
        return {"y": x * module.w[0]}

    module.scale = scale
    path = str(tmp_path_factory.mktemp("export") / "model")
    tf.saved_model.save(module, path, signatures={"scale": scale})
    return path


class SmallDisk:
    """A tmpfs mounted on `path`, resizable; unmounted at teardown."""

    def __init__(self, path):
        self.path = str(path)
        os.makedirs(self.path, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", self.path],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})")

    def used(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def resize(self, size: int) -> None:
        size = max(4096, size // 4096 * 4096)
        subprocess.run(["mount", "-o", f"remount,size={size}", self.path], check=True)

    def close(self):
        subprocess.run(["umount", "-l", self.path], check=False)


@pytest.fixture
def small_disk(tmp_path):
    disk = SmallDisk(tmp_path / "disk")
    yield disk
    disk.close()


def _assert_one_line(message: str, *words):
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


def test_disk_full_during_push_keeps_the_served_version(saved_model, small_disk):
    root = os.path.join(small_disk.path, "serving")
    assert push.push_model(saved_model, root, "mg")["version"] == 1
    one_copy = small_disk.used()
    small_disk.resize(int(one_copy * 1.5))  # room for half of a second copy
    with pytest.raises(push.PushError) as info:
        push.push_model(saved_model, root, "mg")
    _assert_one_line(str(info.value), "no space left", os.path.join(root, "mg"), "free space",
                     "served version (1) is unchanged")
    assert sorted(os.listdir(os.path.join(root, "mg"))) == ["1"]  # no partial version, no temp
    assert push.served_model_dir(root, "mg") == os.path.join(root, "mg", "1")
    loaded = tf.saved_model.load(os.path.join(root, "mg", "1"))
    assert float(loaded.signatures["scale"](x=tf.constant([1.0]))["y"][0]) == 0.0
    small_disk.resize(8 << 20)  # space freed: the rerun pushes
    assert push.push_model(saved_model, root, "mg")["version"] == 2
    tf.saved_model.load(os.path.join(root, "mg", "2"))


def test_injected_enospc_part_way_through_the_copy(saved_model, tmp_path, monkeypatch):
    root = str(tmp_path / "serving")
    push.push_model(saved_model, root, "mg")
    real_copy, calls = tf.io.gfile.copy, []

    def copy(src, dst, overwrite=False):
        calls.append(dst)
        if len(calls) == 2:  # the first file went through, the second finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        return real_copy(src, dst, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", copy)
    with pytest.raises(push.PushError, match="no space left") as info:
        push.push_model(saved_model, root, "mg")
    _assert_one_line(str(info.value), os.path.join(root, "mg"), "free space")
    assert sorted(os.listdir(os.path.join(root, "mg"))) == ["1"]
    monkeypatch.setattr(tf.io.gfile, "copy", real_copy)
    assert push.push_model(saved_model, root, "mg")["version"] == 2


@pytest.mark.slow
def test_disk_full_during_export_keeps_the_previous_export(tmp_path, small_disk):
    write_pyramid(tmp_path / "pyramid")
    cfg = tiny_config()
    export_dir = os.path.join(small_disk.path, "export")
    export_untrained(cfg, str(tmp_path / "pyramid"), export_dir)
    before = sorted(os.listdir(export_dir))
    small_disk.resize(int(small_disk.used() * 1.5))  # a second whole export does not fit
    with pytest.raises(ExportError) as info:
        export_untrained(cfg, str(tmp_path / "pyramid"), export_dir)
    _assert_one_line(str(info.value), "no space left", export_dir, "free space",
                     "previous export there is unchanged")
    assert sorted(os.listdir(small_disk.path)) == ["export"]  # the temporary folder is gone
    assert sorted(os.listdir(export_dir)) == before
    load_exported(export_dir)  # still a whole SavedModel
    small_disk.resize(64 << 20)
    export_untrained(cfg, str(tmp_path / "pyramid"), export_dir)
    assert sorted(os.listdir(small_disk.path)) == ["export"]


def test_rerun_of_a_push_killed_after_its_rename_serves_no_duplicate(saved_model, tmp_path):
    # The push renamed version 1 into place, then the process was killed before TFX recorded
    # the execution: the rerun pushes the same export again and must not add version 2.
    root = str(tmp_path / "serving")
    first = push.push_once(saved_model, root, "mg")
    again = push.push_once(saved_model, root, "mg")
    assert first["version"] == again["version"] == 1 and again["already_served"]
    assert sorted(os.listdir(os.path.join(root, "mg"))) == ["1"]
    other = tmp_path / "other"  # a different model is a new version
    push.copy_tree(saved_model, str(other))
    with open(other / "variables" / "variables.data-00000-of-00001", "r+b") as f:
        f.write(b"\x01\x02\x03\x04")
    assert push.push_once(str(other), root, "mg")["version"] == 2


# ------------------------------------------------- multi-worker start-up: a worker never joins

def _spec(ports, index=0):
    return {"cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": index}}


def test_cluster_watchdog_ends_a_blocked_start_with_one_line():
    # The constructor blocks (a sleep stands in for TensorFlow's wait, which holds the GIL);
    # the watchdog prints one line and kills the process. A start that completes in time
    # leaves no message.
    code = textwrap.dedent("""
        import json, sys, time
        from trainers import scale
        spec = json.loads(sys.argv[1])
        assert scale.join_cluster(spec, 30, make=lambda: "ok", barrier=lambda s: None) == "ok"
        print("formed", flush=True)
        scale.join_cluster(spec, 1, make=lambda: time.sleep(60), barrier=lambda s: None)
        print("not reached", flush=True)
    """)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(_spec((2222, 2223)))], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == -9 and proc.stdout.split() == ["formed"], (proc.stdout, proc.stderr[-2000:])
    assert time.monotonic() - start < 50
    lines = [x for x in proc.stderr.splitlines() if "did not form" in x]
    assert len(lines) == 1, proc.stderr[-2000:]
    _assert_one_line(lines[0], "TF_CONFIG", "train.cluster_timeout_s=1 ", "worker 1 at localhost:2223")
    assert "localhost:2222" not in lines[0]  # this task itself is not named as missing


@pytest.mark.slow
def test_chief_without_its_worker_fails_after_the_timeout(make_data_stages, tmp_path):
    # A real second port on which nobody listens: TensorFlow alone waits forever.
    stages = make_data_stages(tmp_path / "data", "builtin:mnist5k", 32, 1, (1, 4, 16, 32), limit=64)
    ports = _free_ports(2)
    env = dict(os.environ, TF_CONFIG=json.dumps(_spec(ports)), PYTHONUNBUFFERED="1")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "train", "--pyramid", stages.pyramid_dir,
         "--preset", "mnist5k-multigrid:smoke", "--workdir", str(tmp_path / "work"),
         "--set", "train.strategy=multi_worker_mirrored", "--set", "train.cluster_timeout_s=10"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode == -9, proc.stderr[-3000:]  # killed by the watchdog
    lines = [x for x in proc.stderr.splitlines() if "did not form" in x]
    assert len(lines) == 1, proc.stderr[-3000:]
    _assert_one_line(lines[0], "TF_CONFIG", "train.cluster_timeout_s=10 ", f"worker 1 at localhost:{ports[1]}")
    print(f"exited {elapsed:.1f} s after the start (10 s timeout + start-up)")


# ------------------------------------------------- uneven global batch over the replicas

class _Replicas:
    def __init__(self, n):
        self.num_replicas_in_sync = n


def test_uneven_global_batch_is_a_config_error_naming_batch_and_replicas():
    from trainers import scale
    from trainers.config import ConfigError

    with pytest.raises(ConfigError) as info:
        scale.check_global_batch(5, _Replicas(2))
    _assert_one_line(str(info.value), "train.batch_size=5", "2 replicas", "4 or 6")
    for batch, replicas in ((6, 2), (5, 1), (8, 4)):
        scale.check_global_batch(batch, _Replicas(replicas))
    scale.check_global_batch(5, tf.distribute.get_strategy())  # the default strategy: 1 replica


def test_uneven_batch_fails_at_start_under_a_real_two_replica_strategy():
    # Two logical CPUs, MirroredStrategy over both (what `mirrored` gives on a 2-GPU machine).
    code = textwrap.dedent("""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from trainers import scale
        from trainers.config import ConfigError
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        scale.check_global_batch(6, strategy)
        try:
            scale.check_global_batch(5, strategy)
        except ConfigError as err:
            print("ConfigError:", err)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ConfigError: train.batch_size=5 does not split evenly over the 2 replicas" in proc.stdout


# ------------------------------------------------- benchmarks/faults.py's audit of a rerun

def _mlmd(path, executions, artifacts, events):
    import sqlite3

    con = sqlite3.connect(str(path))
    con.executescript(
        "CREATE TABLE Type (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE Execution (id INTEGER PRIMARY KEY, type_id INT, last_known_state INT);"
        "CREATE TABLE Artifact (id INTEGER PRIMARY KEY, type_id INT, uri TEXT, state INT);"
        "CREATE TABLE Event (id INTEGER PRIMARY KEY, artifact_id INT, execution_id INT, type INT);")
    con.executemany("INSERT INTO Type VALUES (?, ?)", [
        (1, "components.pyramid_component.BuildPyramid"), (2, "components.trainer_component.Train"),
        (3, "components.Pyramid")])
    con.executemany("INSERT INTO Execution VALUES (?, ?, ?)", executions)
    con.executemany("INSERT INTO Artifact VALUES (?, ?, ?, ?)", artifacts)
    con.executemany("INSERT INTO Event (artifact_id, execution_id, type) VALUES (?, ?, ?)", events)
    con.commit()
    con.close()


def test_fault_audit_flags_an_input_from_an_unfinished_execution(tmp_path):
    from benchmarks import faults

    whole, half = tmp_path / "p1", tmp_path / "p2"
    whole.mkdir()
    (whole / "metadata.json").write_text("{}")
    half.mkdir()  # killed before metadata.json
    # 1: pyramid killed (RUNNING), 2: pyramid rerun COMPLETE, 3: train (rerun) reads artifact 2
    _mlmd(tmp_path / "metadata.sqlite", [(1, 1, 2), (2, 1, 3), (3, 2, 3)],
          [(1, 3, str(half), 2), (2, 3, str(whole), 2)], [(1, 1, 4), (2, 2, 4), (2, 3, 3)])
    audit = faults.audit_rerun(str(tmp_path), since_id=1)
    assert audit == {"reexecuted": ["BuildPyramid", "Train"], "cached": [], "partial_used": []}
    # The same train reading the killed execution's half-written folder instead: flagged twice.
    os.remove(tmp_path / "metadata.sqlite")
    _mlmd(tmp_path / "metadata.sqlite", [(1, 1, 2), (2, 2, 3)], [(1, 3, str(half), 2)],
          [(1, 1, 4), (1, 2, 3)])
    partial = faults.audit_rerun(str(tmp_path), since_id=1)["partial_used"]
    assert len(partial) == 2 and "unfinished execution" in partial[0] and "completion files" in partial[1]


# ------------------------------------------------- a kill inside a stage of `mgebm run`

@pytest.mark.slow
@pytest.mark.tfx
def test_kill_inside_training_then_rerun_reuses_the_cache_and_serves_a_whole_model(tmp_path):
    # The faults benchmark's machinery on one stage: SIGKILL to the run's process group 8 s into
    # the Train stage (mid-training on this machine), then the same command again.
    pytest.importorskip("tfx")
    from benchmarks import faults

    workdir = str(tmp_path / "run")
    cmd = faults.command("mnist5k-multigrid:smoke", workdir, 200)
    kill = faults.killed_run(cmd, workdir, "train", 8.0, timeout=600)
    assert kill["killed"], kill
    since = faults.max_execution_id(workdir)
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    audit = faults.audit_rerun(workdir, since)
    assert audit["partial_used"] == []
    assert {"IngestImages", "BuildPyramid", "TrainDomainClassifier"} <= set(audit["cached"])
    assert {"Train", "Evaluate", "PushModel"} <= set(audit["reexecuted"])
    result = faults.final_result(workdir, proc.stdout)
    assert result["served_versions"] == ["mnist5k-multigrid/1"] and result["steps"] == 4
    assert faults.served_loads(workdir) is True
