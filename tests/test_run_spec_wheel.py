"""The compiled Kubeflow spec run step by step from a wheel, as the image runs it (slow).

The Dockerfile's install, outside the checkout: a wheel of this checkout, installed with its tfx
and dask extras and the pinned requirements into a fresh virtual environment (uv, offline, from the
cache that `make env` filled), the checkout never on sys.path. In that environment `mgebm compile`
writes the spec of `mnist5k-multigrid:smoke` on spans of digits, and `mgebm run-spec` runs each
task's container command as a KFP V2 pod does, from a working folder outside the checkout.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

pytest.importorskip("tfx", reason="TFX lives in the primary environment only")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "components", "trainers", "evaluators")
MODEL = "mnist5k-multigrid"  # the preset's name: the serving model name


def _uv() -> str:
    for path in (shutil.which("uv"), os.path.expanduser("~/.local/bin/uv")):
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip("the fresh environment is installed with uv, which `make env` installs")


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(argv, cwd, timeout=1800, check=True):
    proc = subprocess.run(argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{argv[:3]} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """(venv python, venv mgebm, a working folder): the wheel installed as the Dockerfile does."""
    root = tmp_path_factory.mktemp("wheel")
    src, dist, venv, work = root / "src", root / "dist", root / "venv", root / "work"
    src.mkdir()
    work.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), src / name)
    for name in PACKAGES:
        shutil.copytree(os.path.join(REPO, name), src / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(dist)!r}))"
    wheel = _run([sys.executable, "-c", build], cwd=src).stdout.strip().splitlines()[-1]
    uv = _uv()
    base = os.path.realpath(sys.executable)  # the interpreter itself, not this environment's link to it
    _run([uv, "venv", "-q", "--python", base, str(venv)], cwd=root)
    install = dict(_env(), VIRTUAL_ENV=str(venv))
    pins = os.path.join(REPO, "requirements", "primary-py310.txt")
    proc = subprocess.run([uv, "pip", "install", "-q", "--offline", "-r", pins, f"{dist / wheel}[tfx,dask]"],
                          cwd=root, env=install, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"the wheel's install failed:\n{proc.stderr[-4000:]}"
    python, mgebm = str(venv / "bin" / "python"), str(venv / "bin" / "mgebm")
    where = _run([python, "-c", "import sys, components, pipeline; print(components.__file__); print(sys.path)"],
                 cwd=work).stdout.splitlines()
    assert where[0].startswith(str(venv)) and REPO not in where[1]  # from the wheel, not the checkout
    return python, mgebm, work


def _write_span(root, span: int, count: int = 240):
    """A span folder of 8x8 digits as PNGs in class subfolders (the same files every span)."""
    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)
    for i in range(count):
        folder = os.path.join(root, str(span), str(data.target[i]))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(images[i]).save(os.path.join(folder, f"d{i:04d}.png"))


@pytest.fixture(scope="module")
def compiled(wheel_env, tmp_path_factory):
    """The smoke preset's spec, compiled in the fresh environment on spanned data."""
    _, mgebm, work = wheel_env
    root = tmp_path_factory.mktemp("kfp")
    _write_span(root / "data", 1)
    spec = root / "spec.json"
    _run([mgebm, "compile", "--preset", f"{MODEL}:smoke", "--engine", "kubeflow", "--output", str(spec),
          "--pipeline-root", str(root / "root"), "--data", f"folder:{root / 'data'}/{{SPAN}}",
          "--set", "eval.features=domain", "--set", "eval.num_samples=40", "--set", "eval.num_real=40"], cwd=work)
    return root, spec


def _class_paths(spec: dict) -> list[str]:
    paths = set()
    for executor in spec["pipelineSpec"]["deploymentSpec"]["executors"].values():
        args = executor["container"]["args"]
        paths.add(args[args.index("--executor_class_path") + 1])
    return sorted(paths)


@pytest.mark.slow
@pytest.mark.tfx
def test_the_wheel_imports_every_executor_and_artifact_type_the_spec_names(wheel_env, compiled):
    python, _, work = wheel_env
    spec = json.load(open(compiled[1]))
    paths = _class_paths(spec)
    assert len(paths) == 6 and all(p.startswith("components.") for p in paths)
    schemas = [d["artifactType"]["instanceSchema"] for c in spec["pipelineSpec"]["components"].values()
               for side in ("inputDefinitions", "outputDefinitions")
               for d in c.get(side, {}).get("artifacts", {}).values()]
    # As TFX's container entrypoint does: each executor class by its path, each artifact class by
    # its schema title (first-party titles map to tfx.types paths, custom ones are import paths).
    check = ("import json, sys, yaml\n"
             "from tfx.utils import import_utils\n"
             "from tfx.orchestration.kubeflow.v2 import compiler_utils\n"
             "paths, schemas = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n"
             "titles = sorted({yaml.safe_load(s)['title'] for s in schemas})\n"
             "types = [compiler_utils.TITLE_TO_CLASS_PATH.get(t, t) for t in titles]\n"
             "got = [import_utils.import_class_by_path(p) for p in paths + types]\n"
             "print(json.dumps([c.__module__ + '.' + c.__name__ for c in got] + titles))\n")
    proc = _run([python, "-c", check, json.dumps(paths), json.dumps(schemas)], cwd=work)
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out[:6] == paths
    assert {"components.Pyramid", "components.DomainClassifier", "tfx.Examples", "tfx.Model"} <= set(out)


def _chain(run_dir: str, spec: dict) -> dict:
    """Check that every task read exactly the artifacts its producers reported; task -> outputs."""
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    written = {}
    for name in tasks:
        with open(os.path.join(run_dir, name, "executor_output.json")) as f:
            written[name] = {k: v["artifacts"][0] for k, v in json.load(f)["artifacts"].items()}
    for name, task in tasks.items():
        with open(os.path.join(run_dir, name, "executor_input.json")) as f:
            given = json.load(f)["inputs"]["artifacts"]
        for key, source in task["inputs"].get("artifacts", {}).items():
            ref = source["taskOutputArtifact"]
            produced = written[ref["producerTask"]][ref["outputArtifactKey"]]
            [read] = given[key]["artifacts"]
            assert (read["uri"], read["metadata"]) == (produced["uri"], produced["metadata"]), (name, key)
            assert read["uri"].startswith(os.path.join(run_dir, ref["producerTask"]))
    return written


def _run_spec(mgebm, spec, root, work, check=True):
    proc = _run([mgebm, "run-spec", str(spec), "--pipeline-root", str(root)], cwd=work, timeout=2400, check=check)
    lines = {ln.split(":", 1)[0]: ln.split(None, 1)[1] for ln in proc.stdout.splitlines()
             if ln.startswith(("pushed:", "run:"))}
    return proc, lines


@pytest.mark.slow
@pytest.mark.tfx
def test_compiled_smoke_spec_runs_step_by_step_from_the_wheel(wheel_env, compiled):
    python, mgebm, work = wheel_env
    root, spec_path = compiled
    spec = json.load(open(spec_path))
    serving = root / "root" / "serving" / MODEL

    # Bad input first: a wrong image or executor class path is one line naming the task; nothing runs.
    for task, change, message in [
            ("BuildPyramid", ("image", "tensorflow/tfx:1.16.0"), "task BuildPyramid: image 'tensorflow/tfx:1.16.0'"),
            ("Train", ("class", "components.trainer_component.Trainer_Executor"),
             "task Train: executor class components.trainer_component.Trainer_Executor not found: module "
             "components.trainer_component")]:
        bad = json.loads(json.dumps(spec))
        container = bad["pipelineSpec"]["deploymentSpec"]["executors"][f"{task}_executor"]["container"]
        if change[0] == "image":
            container["image"] = change[1]
        else:
            container["args"][container["args"].index("--executor_class_path") + 1] = change[1]
        (root / "bad.json").write_text(json.dumps(bad))
        proc = _run([mgebm, "run-spec", str(root / "bad.json"), "--pipeline-root", str(root / "bad")], cwd=work,
                    check=False)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
        assert proc.stderr.startswith(f"mgebm run-spec: error: {message}") and not (root / "bad").exists()

    # Span 1: every task runs from the wheel; the model is pushed under the preset's name.
    first, lines = _run_spec(mgebm, spec_path, root / "root", work)
    assert lines["pushed"] == str(serving / "1"), first.stdout[-2000:]
    run_dir = lines["run"]
    out = _chain(run_dir, spec)
    images, pyramid, model = out["IngestImages"]["images"], out["BuildPyramid"]["pyramid"], out["Train"]["model"]
    assert images["metadata"]["spans"] == "1" and images["metadata"]["num_train"] > 0
    pyramid_meta = json.load(open(os.path.join(pyramid["uri"], "metadata.json")))
    assert pyramid_meta["ingest"]["input_dir"] == images["uri"]  # the pyramid read the ingested records
    assert pyramid["metadata"]["fingerprint"] == pyramid_meta["fingerprint"]
    exported = json.load(open(os.path.join(model["uri"], "assets", "config.json")))
    assert exported["fingerprint"] == pyramid_meta["fingerprint"]  # trained on that pyramid
    assert exported["config"]["export"]["model_name"] == MODEL
    assert out["Evaluate"]["blessing"]["metadata"]["blessed"] == 1.0
    assert out["PushModel"]["pushed_model"]["metadata"]["pushed_destination"] == str(serving / "1")
    with open(os.path.join(model["uri"], "saved_model.pb"), "rb") as trained:
        assert trained.read() == (serving / "1" / "saved_model.pb").read_bytes()  # pushed = trained
    # The served model's `sample` signature in a fresh process of the fresh environment.
    sample = ("import json, sys, tensorflow as tf\n"
              "m = tf.saved_model.load(sys.argv[1])\n"
              "out = m.signatures['sample'](num_samples=tf.constant(4), seed=tf.constant(0))\n"
              "x = out['images']\n"
              "print(json.dumps([x.shape.as_list(), x.dtype.name, int(tf.reduce_max(x))]))\n")
    shape, dtype, top = json.loads(_run([python, "-c", sample, str(serving / "1")], cwd=work).stdout.splitlines()[-1])
    assert shape == [4, 32, 32, 1] and dtype == "uint8" and 0 < top <= 255

    # Span 2 with the same spec: the served model is re-evaluated on the new images and seeds, and
    # the push follows the rule fid/domain<=baseline*1.05, as `mgebm run` does.
    _write_span(root / "data", 2)
    second, lines = _run_spec(mgebm, spec_path, root / "root", work)
    out = _chain(lines["run"], spec)
    assert out["IngestImages"]["images"]["metadata"]["spans"] == "2"
    metrics = json.load(open(os.path.join(out["Evaluate"]["evaluation"]["uri"], "metrics.json")))
    assert metrics["baseline_model"]["version"] == 1 and metrics["baseline_model"]["dir"] == str(serving / "1")
    rule = metrics["blessing"]["checks"][-1]
    assert rule["rule"] == "fid/domain<=baseline*1.05"
    assert rule["value"] == metrics["feature_spaces"]["domain"]["fid"]
    assert rule["baseline"] == metrics["baseline_model"]["feature_spaces"]["domain"]["fid"]
    assert rule["passed"] == (rule["value"] <= rule["baseline"] * 1.05)
    assert metrics["blessing"]["blessed"] == rule["passed"]
    if rule["passed"]:
        assert lines["pushed"] == str(serving / "2")
        served = json.load(open(serving / "2" / "assets" / "config.json"))
        assert served["metadata"]["ingest"]["input_dir"] == out["IngestImages"]["images"]["uri"]  # span 2's
    else:
        assert lines["pushed"].startswith("no (not blessed: fid/domain=") and sorted(os.listdir(serving)) == ["1"]
