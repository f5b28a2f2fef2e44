"""The TFX pipeline: Kubeflow V2 compile offline, LocalDagRunner end to end with caching."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("tfx", reason="TFX lives in the primary environment only")
pytestmark = pytest.mark.tfx

COMPONENTS = ("IngestImages", "BuildPyramid", "Train", "TrainDomainClassifier",
              "Evaluate", "PushModel")


def run_cli(*args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=1200)


def test_kubeflow_compile_names_every_component(tmp_path):
    out = tmp_path / "spec.json"
    result = run_cli("compile", "--preset", "mnist5k-multigrid", "--engine", "kubeflow",
                     "--output", str(out), "--pipeline-root", "gs://bucket/root",
                     cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-3000:]
    spec = json.loads(out.read_text())
    text = json.dumps(spec)
    for name in COMPONENTS:
        assert name in text, name
    assert spec["pipelineSpec"]["pipelineInfo"]["name"] == "mgebm-mnist5k-multigrid"
    assert "gs://bucket/root" in text
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"].values()
    assert {e["container"]["image"] for e in executors} == {"multigrid-ebm:0.1.0"}  # the Dockerfile's tag
    # custom artifact types carry their import path, which TFX's entrypoint imports in the pod
    assert "title: components.Pyramid" in text and "title: components.DomainClassifier" in text


@pytest.mark.slow
def test_kubeflow_spec_of_a_growing_source_never_caches_its_ingest(tmp_path):
    (tmp_path / "data" / "1" / "a").mkdir(parents=True)
    out = tmp_path / "spec.json"
    result = run_cli("compile", "--preset", "mnist5k-multigrid", "--output", str(out),
                     "--data", f"folder:{tmp_path}/data/{{SPAN}}", cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-3000:]
    tasks = json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks["IngestImages"]["cachingOptions"] == {"enableCache": False}
    assert all(tasks[name]["cachingOptions"] == {"enableCache": True} for name in COMPONENTS[1:])


def test_local_dag_runner_end_to_end_and_cached_rerun(tmp_path):
    workdir = tmp_path / "run"
    args = ("run", "--preset", "mnist5k-multigrid:smoke", "--workdir", str(workdir),
            "--set", "eval.features=domain")
    first = run_cli(*args, cwd=os.getcwd())
    assert first.returncode == 0, first.stderr[-5000:]
    assert "report:" in first.stdout and "pushed:" in first.stdout
    report = [l.split(None, 1)[1] for l in first.stdout.splitlines() if l.startswith("report:")][0]
    assert os.path.exists(report)
    metrics = json.loads(open(report.replace("report.html", "metrics.json")).read())
    assert "fid/domain" in json.dumps(metrics)
    pushed = list((workdir / "serving").glob("*/*/saved_model.pb"))
    assert len(pushed) == 1  # blessed by the smoke threshold -> version 1
    executions_before = _count_executions(workdir / "metadata.sqlite")

    second = run_cli(*args, cwd=os.getcwd())
    assert second.returncode == 0, second.stderr[-5000:]
    # A rerun with unchanged inputs reuses every component's cached result: TFX records the
    # cached executions, but no component runs again and nothing new is pushed.
    assert len(list((workdir / "serving").glob("*/*/saved_model.pb"))) == 1
    assert _count_executions(workdir / "metadata.sqlite", state="CACHED") >= len(COMPONENTS)
    assert executions_before >= len(COMPONENTS)


def _count_executions(path, state=None):
    import sqlite3

    con = sqlite3.connect(str(path))
    try:
        if state is None:
            return con.execute("SELECT COUNT(*) FROM Execution").fetchone()[0]
        code = {"CACHED": 5, "COMPLETE": 3}[state]
        return con.execute("SELECT COUNT(*) FROM Execution WHERE last_known_state = ?",
                           (code,)).fetchone()[0]
    finally:
        con.close()


@pytest.mark.slow
def test_failing_threshold_leaves_serving_untouched(tmp_path):
    workdir = tmp_path / "run"
    result = run_cli("run", "--preset", "mnist5k-multigrid:smoke", "--workdir", str(workdir),
                     "--set", "eval.features=domain", "--set", "eval.thresholds=fid/domain<=0",
                     cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-5000:]
    assert "pushed:  no" in result.stdout
    assert not list((workdir / "serving").glob("*/*"))
