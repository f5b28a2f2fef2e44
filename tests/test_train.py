"""Tests of the training loop: data pipeline, budgets, checkpoints/resume, divergence guard,
geometry checks, strategies and TensorBoard logs (tiny shapes: 8 px, grids 1-4-8, 1 channel).

The pyramid folders are written here in the documented record format (no dependency on
components/): `PYRAMID/train/*.tfrecord.gz` of `{key, label, grid_S: float_list}` plus
`PYRAMID/metadata.json`.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from trainers import data as data_lib
from trainers.config import Config, ConfigError
from trainers.scale import make_strategy
from trainers.train import TrainingDiverged, WorkdirError, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def box_average(images: np.ndarray, size: int) -> np.ndarray:
    n, h, w, c = images.shape
    k = h // size
    return images.reshape(n, size, k, size, k, c).mean(axis=(2, 4))


def write_pyramid(root, n=24, grids=(1, 4, 8), channels=1, seed=0, shards=2):
    """Write a tiny pyramid folder of smooth blobs; returns (images [N,H,W,C], pyramid, metadata)."""
    rng = np.random.default_rng(seed)
    size = grids[-1]
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = []
    for _ in range(n):
        cx, cy, r = rng.uniform(0.3, 0.7, 3)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.05 + 0.1 * r))
        images.append(np.repeat(blob[..., None], channels, -1) * rng.uniform(0.5, 1.0, channels))
    images = (np.round(np.stack(images) * 255) / 255).astype(np.float32)
    pyramid = {s: box_average(images, s).astype(np.float32) for s in grids}
    root = str(root)
    os.makedirs(os.path.join(root, "train"), exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    writers = [tf.io.TFRecordWriter(
        os.path.join(root, "train", f"data-{i:05d}-of-{shards:05d}.tfrecord.gz"), options)
        for i in range(shards)]
    for i in range(n):
        feature = {"key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"k{i}".encode()])),
                   "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3]))}
        for s in grids:
            feature[f"grid_{s}"] = tf.train.Feature(
                float_list=tf.train.FloatList(value=pyramid[s][i].ravel()))
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[i % shards].write(example.SerializeToString())
    for w in writers:
        w.close()
    metadata = {"grids": list(grids), "image_size": size, "channels": channels,
                "counts": {"train": n, "eval": 0},
                "coarse_mean": pyramid[1].mean(axis=(0, 1, 2)).tolist(),
                "coarse_std": pyramid[1].std(axis=(0, 1, 2)).tolist(),
                "grid_stats": {}, "fingerprint": f"test-{seed}"}
    with open(os.path.join(root, "metadata.json"), "w") as f:
        json.dump(metadata, f)
    return images, pyramid, metadata


def tiny_config(grids=(1, 4, 8), channels=1, sampler=None, **train):
    settings = dict(batch_size=4, max_steps=3, checkpoint_every=2, log_every=1, image_log_every=2,
                    shuffle_buffer=16, seed=3)
    settings.update(train)
    return Config.build("test", data=dict(image_size=grids[-1], channels=channels),
                        pyramid=dict(grids=list(grids)), model=dict(width=0.25),
                        sampler=dict(steps=2, **(sampler or {})), train=settings)


@pytest.fixture(scope="module")
def pyramid_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pyramid")
    write_pyramid(root)
    return str(root)


def checkpoint_values(ckpt_dir) -> dict:
    """{name: value} of the latest checkpoint (without the save counter)."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(ckpt_dir))
    names = [n for n, _ in tf.train.list_variables(tf.train.latest_checkpoint(ckpt_dir))]
    return {n: reader.get_tensor(n) for n in names
            if "save_counter" not in n and not n.startswith("_CHECKPOINTABLE_OBJECT_GRAPH")}


def event_tags(log_dir) -> dict:
    """{tag: plugin name} over the event files under log_dir."""
    tags = {}
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags[value.tag] = value.metadata.plugin_data.plugin_name
    return tags


# ---------------------------------------------------------------------------------------------

def test_dataset_matches_records_and_is_seeded(tmp_path):
    _, pyramid, meta = write_pyramid(tmp_path, n=10)
    assert data_lib.read_pyramid_metadata(str(tmp_path))["grids"] == [1, 4, 8]
    assert data_lib.steps_per_epoch(meta, 4) == 2

    def first_epoch(seed):
        ds = data_lib.make_train_dataset(str(tmp_path), 4, seed, 16, (1, 4, 8), 1, repeat=False)
        return [{k: v.numpy() for k, v in b.items()} for b in ds]

    a, b, c = first_epoch(1), first_epoch(1), first_epoch(2)
    assert len(a) == 2  # 10 examples, batch 4, drop_remainder
    for batch in a:
        assert set(batch) == {"grid_1", "grid_4", "grid_8"}
        assert batch["grid_8"].shape == (4, 8, 8, 1) and batch["grid_8"].dtype == np.float32
        # Every example's grids are the exact box averages of its finest grid.
        np.testing.assert_allclose(box_average(batch["grid_8"], 4), batch["grid_4"], atol=1e-6)
        # Each example is one of the written ones.
        for img in batch["grid_8"]:
            assert np.min(np.abs(pyramid[8] - img).reshape(10, -1).max(axis=1)) < 1e-7
    assert all(np.array_equal(x["grid_8"], y["grid_8"]) for x, y in zip(a, b))
    assert not all(np.array_equal(x["grid_8"], y["grid_8"]) for x, y in zip(a, c))


def test_dataset_errors(tmp_path):
    with pytest.raises(data_lib.PyramidDataError, match="metadata.json"):
        data_lib.read_pyramid_metadata(str(tmp_path))
    with pytest.raises(data_lib.PyramidDataError, match="no pyramid records"):
        data_lib.make_train_dataset(str(tmp_path), 4, 0, 8, (1, 4, 8), 1)
    with pytest.raises(data_lib.PyramidDataError, match="fewer than train.batch_size"):
        data_lib.steps_per_epoch({"counts": {"train": 3}}, 4)


def test_train_exports_logs_and_refuses_to_overwrite(pyramid_dir, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    cfg = tiny_config(max_steps=3)
    result = train(cfg, pyramid_dir, workdir)
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {workdir}/logs" in out
    assert "energy gap" in out and "step 3/3 (stops at the max_steps limit" in out
    assert result.steps == 3 and result.stopped_by == "max_steps"
    assert result.export_dir == os.path.join(workdir, "export")
    assert os.path.exists(os.path.join(result.export_dir, "saved_model.pb"))
    assert os.path.exists(os.path.join(result.export_dir, "assets", "config.json"))
    assert not glob.glob(os.path.join(workdir, "export.*"))  # no temporary folder left behind
    ckpts = tf.train.get_checkpoint_state(result.checkpoint_dir).all_model_checkpoint_paths
    assert [int(p.rsplit("-", 1)[1]) for p in ckpts] == [0, 2, 3]
    assert checkpoint_values(result.checkpoint_dir)["step/.ATTRIBUTES/VARIABLE_VALUE"] == 3

    tags = event_tags(result.log_dir)
    for grid in (4, 8):
        assert tags[f"energy_gap/{grid}"] == "scalars"
        assert tags[f"loss/{grid}"] == "scalars"
        assert tags[f"synthesized/grid_{grid}"] == "images"
        assert tags[f"energy_observed/grid_{grid}"] == "histograms"
        assert tags[f"energy_synthesized/grid_{grid}"] == "histograms"
    assert tags["observed/grid_8"] == "images" and tags["observed/grid_1"] == "images"
    assert tags["time_per_step"] == "scalars"

    with pytest.raises(WorkdirError, match="resume=True"):
        train(cfg, pyramid_dir, workdir)
    # A rerun with resume=True after the budget is reached trains no further step.
    again = train(cfg, pyramid_dir, workdir, resume=True, export=False)
    assert again.steps == 3 and again.stopped_by == "max_steps" and again.export_dir is None


def test_resumed_run_equals_uninterrupted_run(pyramid_dir, tmp_path):
    full = train(tiny_config(max_steps=4), pyramid_dir, str(tmp_path / "full"), export=False)
    part = train(tiny_config(max_steps=2), pyramid_dir, str(tmp_path / "resumed"), export=False)
    assert part.steps == 2 and part.export_dir is None
    resumed = train(tiny_config(max_steps=4), pyramid_dir, str(tmp_path / "resumed"), resume=True,
                    export=False)
    assert full.steps == resumed.steps == 4
    a, b = checkpoint_values(full.checkpoint_dir), checkpoint_values(resumed.checkpoint_dir)
    assert sorted(a) == sorted(b)
    assert any(k.startswith("variables/energy_8") and "conv1..kernel" in k for k in a)
    assert any(k.startswith("optimizers/grid_4/") for k in a)
    assert a["model/train_counter/.ATTRIBUTES/VARIABLE_VALUE"] == 4  # the sampler seed counter
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(pyramid_dir, tmp_path, capsys):
    full = train(tiny_config(max_steps=6), pyramid_dir, str(tmp_path / "full"), export=False)
    part = train(tiny_config(max_steps=4), pyramid_dir, str(tmp_path / "resumed"), export=False)
    latest = tf.train.latest_checkpoint(part.checkpoint_dir)
    assert latest.endswith("ckpt-4")
    data = tf.io.gfile.glob(latest + ".data-*")[0]
    with open(data, "r+b") as f:  # a machine that died while writing it
        f.truncate(os.path.getsize(data) // 2)
    capsys.readouterr()
    resumed = train(tiny_config(max_steps=6), pyramid_dir, str(tmp_path / "resumed"), resume=True,
                    export=False)
    out = capsys.readouterr().out
    assert f"[train] checkpoint {latest} cannot be read" in out
    assert "resumed from " + latest[:-1] + "2 at step 2" in out
    assert resumed.steps == 6
    a, b = checkpoint_values(full.checkpoint_dir), checkpoint_values(resumed.checkpoint_dir)
    for key in a:  # resumed from step 2: the same run as the uninterrupted one
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_epoch_budget_and_wall_clock(pyramid_dir, tmp_path):
    # 24 examples / batch 8 = 3 steps per epoch; max_steps=0 means "no step limit".
    result = train(tiny_config(batch_size=8, max_steps=0, epochs=1, checkpoint_every=50),
                   pyramid_dir, str(tmp_path / "epochs"), export=False)
    assert result.steps == 3 and result.stopped_by == "epochs"
    assert checkpoint_values(result.checkpoint_dir)["step/.ATTRIBUTES/VARIABLE_VALUE"] == 3
    # A wall-clock budget that is already spent stops at the first step boundary, with a
    # final checkpoint (the export is tested above).
    tiny = train(tiny_config(max_steps=100, max_minutes=1e-9), pyramid_dir, str(tmp_path / "clock"),
                 export=False)
    assert tiny.steps == 0 and tiny.stopped_by == "max_minutes"
    assert tf.train.latest_checkpoint(tiny.checkpoint_dir).endswith("ckpt-0")


def test_xla_on_cpu_warns(pyramid_dir, tmp_path, capsys):
    # The budget is spent before the first step, so nothing is compiled; only the warning is checked.
    train(tiny_config(max_steps=100, max_minutes=1e-9, jit_compile=True), pyramid_dir,
          str(tmp_path / "xla"), export=False)
    assert "train.jit_compile=true (XLA) on a CPU-only machine" in capsys.readouterr().out
    train(tiny_config(max_steps=100, max_minutes=1e-9), pyramid_dir, str(tmp_path / "plain"), export=False)
    assert "jit_compile" not in capsys.readouterr().out


def test_divergence_guard_raises_without_export(pyramid_dir, tmp_path, capsys):
    # A step size of 1e20 without clipping overflows float32 at the first Langevin step.
    cfg = tiny_config(sampler=dict(step_size=1e20, clip=False), max_steps=3, max_retries=2,
                      retry_lr_factor=0.5)
    workdir = str(tmp_path / "diverge")
    with pytest.raises(TrainingDiverged, match="not finite.*Nothing was exported"):
        train(cfg, pyramid_dir, workdir)
    out = capsys.readouterr().out
    assert "retry 1/2" in out and "retry 2/2" in out
    assert "learning rate now grid_4:5e-05 grid_8:5e-05 (retry 1/2)" in out
    assert "learning rate now grid_4:2.5e-05 grid_8:2.5e-05 (retry 2/2)" in out
    assert not os.path.exists(os.path.join(workdir, "export"))
    assert not glob.glob(os.path.join(workdir, "export*"))


@pytest.mark.slow
def test_divergence_guard_catches_exploding_samples(pyramid_dir, tmp_path, capsys):
    # Unclipped chains with a huge (but finite) step leave the pixel range by far.
    cfg = tiny_config(sampler=dict(step_size=1e4, clip=False), max_steps=2, max_retries=0,
                      max_sample_abs=10.0)
    with pytest.raises(TrainingDiverged, match=r"(sample_abs_max/\d+=.*exceeds train.max_sample_abs=10.0)|not finite"):
        train(cfg, pyramid_dir, str(tmp_path / "explode"))


def test_geometry_mismatch_names_both_values(pyramid_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"pyramid.grids=\[1, 4, 16\].*grids=\[1, 4, 8\]"):
        train(tiny_config(grids=(1, 4, 16)), pyramid_dir, str(tmp_path / "g"))
    with pytest.raises(ConfigError, match=r"data.channels=3.*channels=1"):
        train(tiny_config(channels=3), pyramid_dir, str(tmp_path / "c"))
    assert not os.path.exists(tmp_path / "g")


def test_strategy_selection(monkeypatch):
    assert make_strategy(tiny_config().train) is tf.distribute.get_strategy()
    mirrored = make_strategy(Config.build(train=dict(strategy="mirrored")).train)
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync >= 1
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_strategy(Config.build(train=dict(strategy="multi_worker_mirrored")).train)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        make_strategy(Config.build(train=dict(strategy="multi_worker_mirrored")).train)
    with pytest.raises(ConfigError, match="tpu_address"):
        make_strategy(Config.build(train=dict(strategy="tpu")).train)


_SUBPROCESS_TRAIN = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {repo!r})
    import tensorflow as tf
    if {devices} > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * {devices})
    from trainers.config import Config
    from trainers.train import train
    cfg = Config.from_json({config!r})
    r = train(cfg, {pyramid!r}, {workdir!r}, resume={resume!r})
    print("RESULT", json.dumps({{"steps": r.steps, "stopped_by": r.stopped_by}}))
""")


def _train_script(cfg, pyramid, workdir, resume=False, devices=1):
    return _SUBPROCESS_TRAIN.format(repo=REPO, config=cfg.to_json(), pyramid=pyramid,
                                    workdir=workdir, resume=resume, devices=devices)


@pytest.mark.slow
def test_multi_worker_and_mirrored_training_in_subprocesses(pyramid_dir, tmp_path):
    """One-worker TF_CONFIG cluster (multi_worker_mirrored) and 2 logical CPUs (mirrored)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["localhost:23456"]},
                                   "task": {"type": "worker", "index": 0}})
    cfg = tiny_config(max_steps=2, strategy="multi_worker_mirrored")
    proc = subprocess.run([sys.executable, "-c", _train_script(cfg, pyramid_dir, str(tmp_path / "mw"))],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'RESULT {"steps": 2' in proc.stdout
    env.pop("TF_CONFIG")
    cfg = tiny_config(max_steps=2, strategy="mirrored")
    proc = subprocess.run([sys.executable, "-c", _train_script(cfg, pyramid_dir, str(tmp_path / "mi"),
                                                               devices=2)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'RESULT {"steps": 2' in proc.stdout
    assert os.path.exists(tmp_path / "mi" / "export" / "saved_model.pb")


@pytest.mark.slow
def test_killed_subprocess_resumes_to_the_same_step_count(pyramid_dir, tmp_path):
    workdir = str(tmp_path / "killed")
    cfg = tiny_config(max_steps=8, checkpoint_every=1, log_every=1)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen([sys.executable, "-c", _train_script(cfg, pyramid_dir, workdir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            latest = tf.train.latest_checkpoint(ckpt_dir) if os.path.isdir(ckpt_dir) else None
            if latest and int(latest.rsplit("-", 1)[1]) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "training finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = int(tf.train.latest_checkpoint(ckpt_dir).rsplit("-", 1)[1])
    assert 2 <= killed_at < 8
    assert not os.path.exists(os.path.join(workdir, "export", "saved_model.pb"))
    result = train(cfg, pyramid_dir, workdir, resume=True)
    assert result.steps == 8 and result.stopped_by == "max_steps"
    full = train(cfg, pyramid_dir, str(tmp_path / "full"))
    a, b = checkpoint_values(full.checkpoint_dir), checkpoint_values(result.checkpoint_dir)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
