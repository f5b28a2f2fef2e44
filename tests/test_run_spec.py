"""`mgebm run-spec` (pipeline/run_spec.py) on small KFP V2 specs whose containers are plain Python:
dependency order, placeholders, artifacts passed on from each task's ExecutorOutput, the pod's
environment, and one-line errors for a wrong image or executor class path. The compiled spec of a
real preset runs from a wheel in tests/test_run_spec_wheel.py (slow)."""

import json
import os
import re
import subprocess
import sys

import pytest

from pipeline import run_spec
from pipeline.run_spec import SpecError, TaskFailed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = run_spec.DEFAULT_IMAGE

# A container that behaves as TFX's entrypoint does: reads the ExecutorInput ({{$}}), writes into
# its output artifact's folder and reports the artifact (with metadata) in the ExecutorOutput.
STEP = r"""
import json, os, sys
x = json.loads(sys.argv[1])
src = sys.argv[2] if len(sys.argv) > 2 else None
out = x["outputs"]["artifacts"]["out"]["artifacts"][0]
text = x["inputs"]["parameterValues"]["text"]
if src:
    text = open(os.path.join(src, "data.txt")).read() + "+" + text
with open(os.path.join(out["uri"], "data.txt"), "w") as f:
    f.write(text)
seen = {"cwd": os.getcwd(), "pythonpath": os.environ.get("PYTHONPATH"), "path0": sys.path[0],
        "legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS"), "inputs": x["inputs"]["artifacts"]}
with open(os.path.join(out["uri"], "seen.json"), "w") as f:
    json.dump(seen, f)
report = {"artifacts": {"out": {"artifacts": [{"uri": out["uri"], "metadata": {"chars": len(text)}}]}}}
with open(x["outputs"]["outputFile"], "w") as f:
    json.dump(report, f)
"""


def _component(with_input: bool) -> dict:
    schema = {"instanceSchema": "title: tfx.Examples\ntype: object\n"}
    spec = {"executorLabel": "", "inputDefinitions": {"parameters": {"text": {"type": "STRING"}}},
            "outputDefinitions": {"artifacts": {"out": {"artifactType": schema}}}}
    if with_input:
        spec["inputDefinitions"]["artifacts"] = {"src": {"artifactType": schema}}
    return spec


def make_spec(root, image=IMAGE, args=None, producer="Write") -> dict:
    """Two tasks: Write (text -> artifact) and Read (Write's artifact + text -> artifact); Read is
    listed first, so only the dependencies put Write before it. `image` and extra `args` go to
    Read's container only (Write's is always right)."""
    components, executors, tasks = {}, {}, {}
    for name, reads in (("Read", True), ("Write", False)):
        components[name] = dict(_component(reads), executorLabel=f"{name}_executor")
        step_args = ["{{$}}"] + (["{{$.inputs.artifacts['src'].uri}}"] if reads else [])
        executors[f"{name}_executor"] = {"container": {
            "image": image if reads else IMAGE, "command": ["python", "-c", STEP],
            "args": step_args + (args or [] if reads else [])}}
        tasks[name] = {"componentRef": {"name": name}, "taskInfo": {"name": name},
                       "inputs": {"parameters": {"text": {"runtimeValue": {"constantValue": {
                           "stringValue": name.lower()}}}}}}
    tasks["Read"]["inputs"]["artifacts"] = {"src": {"taskOutputArtifact": {
        "outputArtifactKey": "out", "producerTask": producer}}}
    return {"displayName": "p", "runtimeConfig": {"gcsOutputDirectory": str(root)},
            "pipelineSpec": {"pipelineInfo": {"name": "mgebm-test"}, "schemaVersion": "2.0.0",
                             "components": components, "deploymentSpec": {"executors": executors},
                             "root": {"dag": {"tasks": tasks}}}}


def _write(tmp_path, spec) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_tasks_run_in_order_and_read_what_the_previous_task_wrote(tmp_path):
    root = tmp_path / "root"
    summary = run_spec.run_spec(_write(tmp_path, make_spec(root)), str(root), log=lambda m: None)
    assert list(summary["tasks"]) == ["Write", "Read"]
    write_out = summary["tasks"]["Write"]["outputs"]["out"]
    read_out = summary["tasks"]["Read"]["outputs"]["out"]
    assert write_out["uri"] == os.path.join(summary["run_dir"], "Write", "out")
    assert write_out["metadata"] == {"chars": 5}  # from Write's ExecutorOutput
    assert open(os.path.join(read_out["uri"], "data.txt")).read() == "write+read"
    seen = json.load(open(os.path.join(read_out["uri"], "seen.json")))
    # Read's ExecutorInput carries Write's artifact as Write reported it, typed by Read's inputs
    [given] = seen["inputs"]["src"]["artifacts"]
    assert given["uri"] == write_out["uri"] and given["metadata"] == {"chars": 5}
    assert given["type"] == {"instanceSchema": "title: tfx.Examples\ntype: object\n"}
    # the pod: an empty folder outside the checkout, no PYTHONPATH, the image's environment
    assert not seen["cwd"].startswith(REPO) and seen["pythonpath"] is None and not os.path.exists(seen["cwd"])
    assert seen["path0"] in ("", seen["cwd"]) and seen["legacy_keras"] == run_spec.IMAGE_ENV["TF_USE_LEGACY_KERAS"]
    for task in ("Write", "Read"):
        inputs = json.load(open(os.path.join(summary["run_dir"], task, "executor_input.json")))
        assert inputs["inputs"]["parameters"]["text"] == {"stringValue": task.lower()}
        assert inputs["inputs"]["parameterValues"]["text"] == task.lower()
        assert os.path.exists(os.path.join(summary["run_dir"], task, "pod.log"))
    assert run_spec.pushed_line(summary) == "pushed:  no (no PushModel task ran)"


def test_placeholders_are_filled_or_refused():
    inputs = {"inputs": {"parameterValues": {"n": 3}, "artifacts": {"a": {"artifacts": [{"uri": "/r/a"}]}}},
              "outputs": {"artifacts": {"m": {"artifacts": [{"uri": "/r/m"}]}}, "outputFile": "/r/o.json",
                          "parameters": {"p": {"outputFile": "/r/p"}}}}
    context = {"outputs.output_file": "/r/o.json", "pipeline_root": "/r", "pipeline_task_name": "T"}
    fill = lambda text: run_spec.fill(text, "T", inputs, context)
    assert json.loads(fill("{{$}}")) == inputs
    assert fill("--out={{$.outputs.output_file}}") == "--out=/r/o.json"
    assert fill("{{$.pipeline_root}}/{{$.pipeline_task_name}}") == "/r/T"
    assert fill("{{$.inputs.artifacts['a'].uri}} {{$.outputs.artifacts['m'].path}}") == "/r/a /r/m"
    assert fill("{{$.inputs.parameters['n']}}") == "3"
    assert fill("{{$.outputs.parameters['p'].output_file}}") == "/r/p"
    with pytest.raises(SpecError, match=r"^task T: placeholder \{\{\$.inputs.artifacts\['zz'\].uri\}\} is not"):
        fill("{{$.inputs.artifacts['zz'].uri}}")


def test_a_wrong_image_fails_naming_the_task_before_anything_runs(tmp_path):
    root = tmp_path / "root"
    spec = make_spec(root, image="tensorflow/tfx:1.16.0")
    with pytest.raises(SpecError, match=r"^task Read: image 'tensorflow/tfx:1.16.0' is not "
                                        + re.escape(IMAGE)) as err:
        run_spec.run_spec(_write(tmp_path, spec), str(root), log=lambda m: None)
    assert "\n" not in str(err.value) and not root.exists()
    # the installed version under any registry is this image too
    assert run_spec.image_ok("gcr.io/p/multigrid-ebm:0.1.0", IMAGE, "0.1.0")
    assert not run_spec.image_ok("gcr.io/p/multigrid-ebm:0.2.0", IMAGE, "0.1.0")
    assert not run_spec.image_ok("gcr.io/p/other:0.1.0", IMAGE, "0.1.0")


@pytest.mark.parametrize("path, missing", [
    ("components.pyramid_component.BuildPyramd_Executor",
     r"module components.pyramid_component \(.*pyramid_component.py\) has no class BuildPyramd_Executor "
     r"\(nor an @component function BuildPyramd\)"),
    ("components.pyramid_componnt.BuildPyramid_Executor", "no module components.pyramid_componnt in this environment"),
])
def test_a_wrong_executor_class_path_fails_naming_the_task_and_the_missing_piece(tmp_path, path, missing):
    root = tmp_path / "root"
    spec = make_spec(root, args=["--executor_class_path", path])
    with pytest.raises(SpecError, match=f"^task Read: executor class {re.escape(path)} not found: {missing}"):
        run_spec.run_spec(_write(tmp_path, spec), str(root), log=lambda m: None)
    assert not root.exists()
    good = make_spec(root, args=["--executor_class_path", "components.pyramid_component.BuildPyramid_Executor"])
    assert run_spec.check_spec(good["pipelineSpec"], IMAGE, sys.executable, None) == ["Write", "Read"]


def test_a_custom_artifact_type_must_import_from_its_schema_title(tmp_path):
    # TFX's entrypoint imports a custom type from its title: `mgebm.Pyramid` names no module.
    spec = make_spec(tmp_path / "root")
    component = spec["pipelineSpec"]["components"]["Read"]
    component["inputDefinitions"]["artifacts"]["src"]["artifactType"] = {
        "instanceSchema": "title: mgebm.Pyramid\ntype: object\n"}
    with pytest.raises(SpecError, match=r"^task Read: artifact type mgebm.Pyramid \(its input src\) not found: "
                                        "no module mgebm in this environment"):
        run_spec.check_spec(spec["pipelineSpec"], IMAGE, sys.executable, None)
    component["inputDefinitions"]["artifacts"]["src"]["artifactType"] = {
        "instanceSchema": "title: components.Pyramid\ntype: object\n"}
    assert run_spec.check_spec(spec["pipelineSpec"], IMAGE, sys.executable, None) == ["Write", "Read"]


def test_bad_dependencies_and_a_failing_task(tmp_path):
    root = tmp_path / "root"
    with pytest.raises(SpecError, match="^task Read: depends on task Nope, which the spec does not have"):
        run_spec.task_order(make_spec(root, producer="Nope")["pipelineSpec"]["root"]["dag"]["tasks"])
    cycle = make_spec(root)["pipelineSpec"]["root"]["dag"]["tasks"]
    cycle["Write"]["dependentTasks"] = ["Read"]
    with pytest.raises(SpecError, match=r"tasks \['Read', 'Write'\] depend on each other in a cycle"):
        run_spec.task_order(cycle)
    failing = make_spec(root)
    failing["pipelineSpec"]["deploymentSpec"]["executors"]["Write_executor"]["container"]["command"] = [
        "python", "-c", "import sys; print('disk full'); sys.exit(3)"]
    with pytest.raises(TaskFailed, match=r"^task Write exited 3: disk full \(log: .*Write/pod.log\)"):
        run_spec.run_spec(_write(tmp_path, failing), str(root), log=lambda m: None)
    with pytest.raises(SpecError, match="run-spec runs on local disk: give --pipeline-root DIR"):
        run_spec.run_spec(_write(tmp_path, make_spec("gs://b/root")), None, log=lambda m: None)


def test_cli_prints_one_line_for_a_bad_spec(tmp_path):
    spec = make_spec(tmp_path / "root", args=["--executor_class_path", "components.nope.X_Executor"])
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "run-spec", _write(tmp_path, spec),
                           "--pipeline-root", str(tmp_path / "root")], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "mgebm run-spec: error: task Read: executor class components.nope.X_Executor not found: no module "
        f"components.nope in this environment ({sys.executable})"]


def test_dockerfile_builds_the_default_image_the_way_the_tests_install():
    text = open(os.path.join(REPO, "Dockerfile")).read()
    assert re.search(r"^ARG BASE_IMAGE=tensorflow/tfx:1\.16\.0$", text, re.M) and "FROM ${BASE_IMAGE}" in text
    env = dict(kv.split("=", 1) for line in re.findall(r"^ENV (.+)$", text, re.M) for kv in line.split())
    assert env == run_spec.IMAGE_ENV  # what run-spec gives each task is what the image sets
    assert "pip wheel --no-cache-dir --no-deps -w dist ." in text and " -e " not in text
    assert "-r requirements/primary-py310.txt" in text and "[tfx,dask]" in text
    version = re.search(r'^version = "([^"]+)"', open(os.path.join(REPO, "pyproject.toml")).read(), re.M).group(1)
    assert IMAGE == f"multigrid-ebm:{version}" and f"multigrid-ebm:{version}" in text
