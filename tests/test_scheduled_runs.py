"""Scheduled runs on data that grows: spans, and pushing only a model no worse than the served one.

The pipeline (smoke preset, LocalDagRunner + SQLite, the real Beam, Keras and TF-GAN stages)
runs three times on one work folder, as a nightly schedule would: span 1, span 2 with a model made
worse on purpose, span 3 with a normal model. The presets' rule `fid/domain<=baseline*1.05`
re-evaluates the served model on each candidate's images and seeds, so only runs 1 and 3 push.
Then a rerun with no new span (all cached) and one that warm-starts from the served model.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

pytest.importorskip("tfx", reason="TFX lives in the primary environment only")


def _write_span(root, span: int, count: int = 240):
    """One span folder of 8x8 digits as PNGs in class subfolders (labels for the domain space).

    Every span holds the same files: the candidates of runs 1 and 3 are then trained on the same
    images, so their comparison is exact rather than a coin toss at smoke sample counts.
    """
    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    for i in range(count):
        folder = os.path.join(root, str(span), str(data.target[i]))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(images[i]).save(os.path.join(folder, f"d{i:04d}.png"))


def _run(workdir, source, *overrides):
    args = ["run", "--preset", "mnist5k-multigrid:smoke", "--workdir", str(workdir), "--data", source,
            "--set", "eval.features=domain", "--set", "eval.num_samples=40", "--set", "eval.num_real=40",
            *[a for o in overrides for a in ("--set", o)]]
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                            timeout=1500, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert result.returncode == 0, result.stderr[-5000:]
    report = [line.split(None, 1)[1] for line in result.stdout.splitlines() if line.startswith("metrics:")][0]
    with open(report) as f:
        return result, json.load(f)


def _served(workdir):
    root = workdir / "serving" / "mnist5k-multigrid"  # the preset's name
    versions = sorted(int(v) for v in os.listdir(root) if v.isdigit()) if root.is_dir() else []
    spans = {}
    for version in versions:
        with open(root / str(version) / "assets" / "config.json") as f:
            spans[version] = json.load(f)["config"]["data"]["span"]
    return spans


@pytest.mark.slow
@pytest.mark.tfx
def test_three_scheduled_runs_push_only_models_no_worse_than_the_served_one(tmp_path):
    data, workdir = tmp_path / "data", tmp_path / "run"
    source = f"folder:{data}/{{SPAN}}"
    _write_span(data, 1)
    first, first_metrics = _run(workdir, source)
    assert "[mgebm] data: span 1 of" in first.stderr + first.stdout
    assert first_metrics.get("baseline_model") is None  # nothing served yet
    assert "no served model yet" in first_metrics["blessing"]["checks"][-1]["reason"]
    assert _served(workdir) == {1: "1"}

    _write_span(data, 2)  # a model made worse on purpose: chains that end in pure noise
    second, second_metrics = _run(workdir, source, "sampler.noise_schedule=constant",
                                  "sampler.noise_scale=30")
    base = second_metrics["baseline_model"]
    assert base["version"] == 1 and base["dir"].endswith(os.path.join("mnist5k-multigrid", "1"))
    assert second_metrics["blessing"]["blessed"] is False
    rule = second_metrics["blessing"]["checks"][-1]
    assert rule["rule"] == "fid/domain<=baseline*1.05" and rule["baseline"] == base["feature_spaces"]["domain"]["fid"]
    assert "violates <= " in rule["reason"] and "served version 1" in rule["reason"]
    assert "pushed:  no (not blessed: fid/domain=" in second.stdout
    assert _served(workdir) == {1: "1"}

    _write_span(data, 3)
    third, third_metrics = _run(workdir, source)
    assert third_metrics["baseline_model"]["version"] == 1 and third_metrics["blessing"]["blessed"]
    # same images, same seeds: the served model's figures recomputed here equal run 1's own
    assert third_metrics["baseline_model"]["feature_spaces"]["domain"]["fid"] == pytest.approx(
        third_metrics["feature_spaces"]["domain"]["fid"], rel=1e-5)
    assert _served(workdir) == {1: "1", 2: "3"}  # the models of runs 1 and 3, by span

    # A rerun with no new span reuses every stage (TFX cache): nothing is trained or pushed again.
    again, _ = _run(workdir, source)
    assert "[mgebm] data: span 3 of" in again.stderr + again.stdout
    assert _served(workdir) == {1: "1", 2: "3"}

    # The next night continues from the served model instead of from random weights.
    warm, _ = _run(workdir, source, "train.warm_start=latest_blessed")
    served = os.path.join(str(workdir), "serving", "mnist5k-multigrid", "2")
    assert f"[train] warm start from the weights of {served}" in warm.stdout + warm.stderr
