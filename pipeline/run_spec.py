"""`mgebm run-spec`: run a compiled Kubeflow Pipelines V2 spec task by task, as its pods run.

For every task of `mgebm compile --engine kubeflow`'s spec, in dependency order, this does what
a KFP V2 pod does with the task's container: it takes the container's `command` and `args` from
the spec's deploymentSpec, fills the KFP placeholders (`{{$}}`: the ExecutorInput JSON with the
task's parameters, the input artifacts the producing tasks wrote, and the output artifacts' URIs
under the pipeline root; `{{$.outputs.output_file}}`, `{{$.pipeline_root}}`, ...) and runs it,
here with this environment's Python (`python` of the command) from an empty working folder
outside any checkout, PYTHONPATH unset, and the image's environment (`IMAGE_ENV`, the Dockerfile's
ENV lines). Each output artifact is then what the task's ExecutorOutput (`executor_output.json`)
says it wrote, URI and metadata, and that is what the next task reads, as the KFP launcher passes
it on through ML Metadata.

Before anything runs, every task is checked: its container image must be the image this
environment stands in for (`--image`, default `DEFAULT_IMAGE`, or `[REGISTRY/]multigrid-ebm:` the
installed version), and each `--executor_class_path` and each custom artifact type (TFX's
entrypoint imports it from its schema title) must name a module and class this environment has;
a wrong one fails with one line naming the task and the missing piece.

Layout on local disk: ROOT/<pipeline name>/<run id>/<task>/ holds the task's output artifacts
(one folder per output key), `executor_input.json` (what the pod received), `executor_output.json`
(what TFX's entrypoint wrote) and `pod.log` (its stdout and stderr).

Not done here (a cluster adds it): the KFP driver's input resolution from ML Metadata and its
cache (every task runs every time), the launcher's copies between object storage and the pod,
pod resources, retries and credentials.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

DEFAULT_IMAGE = "multigrid-ebm:0.1.0"  # the Dockerfile's image; `mgebm compile --image` default
IMAGE_NAME = "multigrid-ebm"
# The Dockerfile's ENV lines (tests/test_run_spec.py checks they match): the Keras setting that
# `mgebm` makes for itself (pipeline/cli.py), so a task runs as under `mgebm run`.
IMAGE_ENV = {"TF_USE_LEGACY_KERAS": "0", "PYTHONUNBUFFERED": "1"}
_PLACEHOLDER = re.compile(r"\{\{\$[^{}]*\}\}")
_KEYED = re.compile(r"^\{\{\$\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](?:\.(\w+))?\}\}$")


class SpecError(ValueError):
    """The spec cannot run here; the message names the task and what is missing."""


class TaskFailed(RuntimeError):
    """A task's container exited non-zero; the message names the task and its log."""


def load_spec(path: str) -> tuple[dict, dict]:
    """(pipelineSpec, runtimeConfig) of a PipelineJob JSON (what `mgebm compile` writes) or of a
    bare PipelineSpec."""
    try:
        with open(path) as f:
            job = json.load(f)
    except (OSError, ValueError) as err:
        raise SpecError(f"{path}: not a readable pipeline spec JSON ({err})") from None
    spec = job.get("pipelineSpec", job) if isinstance(job, dict) else None
    if not isinstance(spec, dict) or "root" not in spec or "deploymentSpec" not in spec:
        raise SpecError(f"{path}: no pipelineSpec with root and deploymentSpec; give the JSON that "
                        "`mgebm compile --engine kubeflow` writes")
    return spec, job.get("runtimeConfig", {})


def task_order(tasks: dict) -> list[str]:
    """Task names in dependency order (dependentTasks and artifact producers; ties by name)."""
    deps = {}
    for name, task in tasks.items():
        producers = {a["taskOutputArtifact"]["producerTask"] for a in
                     task.get("inputs", {}).get("artifacts", {}).values() if "taskOutputArtifact" in a}
        producers |= {p["taskOutputParameter"]["producerTask"] for p in
                      task.get("inputs", {}).get("parameters", {}).values() if "taskOutputParameter" in p}
        deps[name] = set(task.get("dependentTasks", [])) | producers
        for dep in sorted(deps[name] - set(tasks)):
            raise SpecError(f"task {name}: depends on task {dep}, which the spec does not have")
    order, done = [], set()
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in done and deps[n] <= done)
        if not ready:
            raise SpecError(f"tasks {sorted(set(tasks) - done)} depend on each other in a cycle")
        order.append(ready[0])
        done.add(ready[0])
    return order


def _container(spec: dict, name: str) -> dict:
    task = spec["root"]["dag"]["tasks"][name]
    ref = task.get("componentRef", {}).get("name")
    component = spec.get("components", {}).get(ref)
    if component is None:
        raise SpecError(f"task {name}: component {ref!r} is not in the spec's components")
    executor = spec["deploymentSpec"].get("executors", {}).get(component.get("executorLabel"))
    if executor is None or "container" not in executor:
        kind = sorted(executor)[0] if executor else "missing"
        raise SpecError(f"task {name}: executor {component.get('executorLabel')!r} is {kind}, not a "
                        "container; run-spec runs container steps only")
    return {"component": component, "container": executor["container"]}


def image_ok(image: str, expected: str, version: str | None) -> bool:
    """The spec's image is the one this environment stands in for: `expected` itself, or
    `[REGISTRY/]multigrid-ebm:VERSION` with VERSION the installed package's."""
    repo, _, tag = image.rpartition(":")
    return image == expected or (bool(version) and tag == version and repo.rsplit("/", 1)[-1] == IMAGE_NAME)


def _class_path(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg == "--executor_class_path" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--executor_class_path="):
            return arg.split("=", 1)[1]
    return None


_FIND = r"""
import ast, importlib.util, json, sys

def missing(path):
    module, _, name = path.rpartition(".")
    try:
        spec = importlib.util.find_spec(module) if module else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return "no module %s in this environment (%s)" % (module or path, sys.executable)
    tree = ast.parse(open(spec.origin).read())
    if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
        return None  # the module makes names on demand (PEP 562): they exist once it is imported
    names, components = set(), set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
            if isinstance(node, ast.FunctionDef) and any(
                    ast.unparse(d).split("(")[0].endswith("component") for d in node.decorator_list):
                components.add(node.name + "_Executor")
        elif isinstance(node, (ast.Assign, ast.ImportFrom, ast.Import)):
            names |= {t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)}
            names |= {a.asname or a.name for a in getattr(node, "names", [])}
    if name in names | components:
        return None
    return "module %s (%s) has no class %s (nor an @component function %s)" % (
        module, spec.origin, name, name[:-len("_Executor")] if name.endswith("_Executor") else name)

print(json.dumps({p: missing(p) for p in json.loads(sys.argv[1])}))
"""


def _custom_types(component: dict) -> dict:
    """Import path -> what names it, for the component's artifact types that are not TFX's own
    (`tfx.*`, `system.*`): TFX's entrypoint imports those from their schema title."""
    out = {}
    for side, word in (("inputDefinitions", "input"), ("outputDefinitions", "output")):
        for key, definition in component.get(side, {}).get("artifacts", {}).items():
            kind = definition.get("artifactType", {})
            title = kind.get("schemaTitle") or next(iter(re.findall(r"^title:\s*(\S+)", kind.get(
                "instanceSchema", ""), re.M)), "")
            if title and not title.startswith(("tfx.", "system.")):
                out[title] = f"artifact type {title} (its {word} {key})"
    return out


def check_spec(spec: dict, image: str, python: str, version: str | None) -> list[str]:
    """Raise SpecError (one line: the task and the missing piece) unless every task can run here;
    returns the dependency order."""
    tasks = spec["root"]["dag"]["tasks"]
    order = task_order(tasks)
    paths = {}
    for name in order:
        parts = _container(spec, name)
        container = parts["container"]
        for path, what in _custom_types(parts["component"]).items():
            paths.setdefault(path, (name, what))
        if not image_ok(container.get("image", ""), image, version):
            raise SpecError(f"task {name}: image {container.get('image')!r} is not {image}, the image "
                            f"this environment stands in for; compile with --image {image} (or pass "
                            "--image to run-spec if this environment is that image)")
        path = _class_path(container.get("args", []))
        if path:
            paths.setdefault(path, (name, f"executor class {path}"))
    if paths:
        with tempfile.TemporaryDirectory(prefix="mgebm-pod-check-") as cwd:  # where a task would run
            found = subprocess.run([python, "-c", _FIND, json.dumps(sorted(paths))], capture_output=True,
                                   text=True, cwd=cwd, env=pod_env(), check=False)
        if found.returncode != 0:
            raise SpecError(f"cannot check the executor classes with {python}: {found.stderr.strip()[-300:]}")
        for path, problem in sorted(json.loads(found.stdout).items(), key=lambda kv: order.index(paths[kv[0]][0])):
            if problem:
                raise SpecError(f"task {paths[path][0]}: {paths[path][1]} not found: {problem}")
    return order


def pod_env() -> dict:
    """This process's environment as a pod of the image sees it: IMAGE_ENV set, PYTHONPATH unset."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(IMAGE_ENV)
    return env


def _parameters(task: dict, component: dict, runtime: dict, name: str) -> tuple[dict, dict]:
    """(`parameters` as pipeline spec 2.0 Values, `parameterValues` as 2.1 JSON values)."""
    old, new = {}, {}
    for key, source in task.get("inputs", {}).get("parameters", {}).items():
        runtime_value = source.get("runtimeValue", {})
        if "constantValue" in runtime_value:
            old[key] = runtime_value["constantValue"]
        elif "constant" in runtime_value:
            new[key] = runtime_value["constant"]
        elif "componentInputParameter" in source:
            pipeline_key = source["componentInputParameter"]
            if pipeline_key in runtime.get("parameterValues", {}):
                new[key] = runtime["parameterValues"][pipeline_key]
            elif pipeline_key in runtime.get("parameters", {}):
                old[key] = runtime["parameters"][pipeline_key]
            else:
                raise SpecError(f"task {name}: parameter {key} reads the pipeline parameter "
                                f"{pipeline_key!r}, which runtimeConfig does not set")
        else:
            raise SpecError(f"task {name}: parameter {key} comes from {sorted(source)}; run-spec fills "
                            "constants and pipeline parameters only")
    for key, value in old.items():  # the same values in both forms, as either entrypoint reads them
        new.setdefault(key, next(iter(value.values())) if len(value) == 1 else value)
    for key, value in new.items():
        kind = component.get("inputDefinitions", {}).get("parameters", {}).get(key, {}).get("type")
        if key not in old and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            old[key] = ({"intValue": str(int(value))} if kind == "INT" else
                        {"doubleValue": float(value)} if kind == "DOUBLE" else {"stringValue": str(value)})
    return old, new


def executor_input(spec: dict, runtime: dict, name: str, task_dir: str, produced: dict,
                   run_id: str) -> dict:
    """The ExecutorInput JSON a pod of task `name` receives (`{{$}}`)."""
    task = spec["root"]["dag"]["tasks"][name]
    component = _container(spec, name)["component"]
    parameters, parameter_values = _parameters(task, component, runtime, name)
    definitions = component.get("inputDefinitions", {}).get("artifacts", {})
    artifacts = {}
    for key, source in task.get("inputs", {}).get("artifacts", {}).items():
        if "taskOutputArtifact" not in source:
            raise SpecError(f"task {name}: input artifact {key} comes from {sorted(source)}; run-spec "
                            "passes artifacts between tasks only")
        ref = source["taskOutputArtifact"]
        written = produced.get((ref["producerTask"], ref["outputArtifactKey"]))
        if written is None:
            raise SpecError(f"task {name}: input {key} is output {ref['outputArtifactKey']!r} of task "
                            f"{ref['producerTask']}, which wrote no such artifact")
        artifacts[key] = {"artifacts": [dict(written, type=definitions.get(key, {}).get("artifactType",
                                                                               written.get("type", {})))]}
    outputs = {key: {"artifacts": [{"name": f"{run_id}/{name}/{key}", "type": d["artifactType"],
                                    "uri": os.path.join(task_dir, key), "metadata": {}}]}
               for key, d in component.get("outputDefinitions", {}).get("artifacts", {}).items()}
    out_params = {key: {"outputFile": os.path.join(task_dir, "parameters", key)}
                  for key in component.get("outputDefinitions", {}).get("parameters", {})}
    return {"inputs": {"parameters": parameters, "parameterValues": parameter_values, "artifacts": artifacts},
            "outputs": {"artifacts": outputs, "parameters": out_params,
                        "outputFile": os.path.join(task_dir, "executor_output.json")}}


def fill(arg: str, name: str, inputs: dict, context: dict) -> str:
    """One command or args entry with its KFP placeholders filled; SpecError on one not filled here."""
    def one(match) -> str:
        text = match.group(0)
        if text == "{{$}}":
            return json.dumps(inputs, sort_keys=True)
        if text[4:-2] in context:
            return context[text[4:-2]]
        keyed = _KEYED.match(text)
        if keyed:
            side, kind, key, field = keyed.groups()
            entry = inputs[side]["parameterValues" if (side, kind) == ("inputs", "parameters") else kind].get(key)
            if entry is not None and kind == "parameters" and side == "inputs" and field is None:
                return entry if isinstance(entry, str) else json.dumps(entry)
            if entry is not None and kind == "parameters" and field == "output_file":
                return entry["outputFile"]
            if entry is not None and kind == "artifacts" and field in ("uri", "path"):
                return entry["artifacts"][0]["uri"]
        raise SpecError(f"task {name}: placeholder {text} is not one run-spec fills")
    return _PLACEHOLDER.sub(one, arg)


def _written_artifacts(inputs: dict, name: str) -> dict:
    """Output key -> RuntimeArtifact as the task's ExecutorOutput reports it (else as declared)."""
    path = inputs["outputs"]["outputFile"]
    reported = {}
    if os.path.exists(path):
        with open(path) as f:
            reported = json.load(f).get("artifacts", {})
    out = {}
    for key, declared in inputs["outputs"]["artifacts"].items():
        artifact = dict(declared["artifacts"][0])
        got = reported.get(key, {}).get("artifacts", [{}])[0]
        artifact.update({k: got[k] for k in ("uri", "metadata") if k in got})
        out[key] = artifact
    return out


def run_spec(spec_path: str, pipeline_root: str | None = None, image: str = DEFAULT_IMAGE,
             python: str = sys.executable, log=None) -> dict:
    """Run every task of the spec as its pod would (module docstring); returns
    {"run_dir", "tasks": {name: {"seconds", "outputs": {key: artifact}}}, "pushed": artifact | None}.

    Raises:
      SpecError: the spec cannot run here (bad image, class path, placeholder, dependency).
      TaskFailed: a task's container exited non-zero.
    """
    from importlib import metadata  # pylint: disable=import-outside-toplevel

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    spec, runtime = load_spec(spec_path)
    compiled_root = runtime.get("gcsOutputDirectory", "")
    root = pipeline_root or compiled_root
    if not root or "://" in root:
        raise SpecError(f"run-spec runs on local disk: give --pipeline-root DIR (the spec's root is "
                        f"{compiled_root or 'not set'})")
    try:
        version = metadata.version("multigrid-ebm")
    except metadata.PackageNotFoundError:
        version = None
    order = check_spec(spec, image, python, version)
    root = os.path.abspath(root)
    if compiled_root and os.path.abspath(compiled_root) != root:
        log(f"[run-spec] note: the spec was compiled for {compiled_root}; its parameters (serving and "
            f"training-state folders) still name folders there, the artifacts go under {root}")
    pipeline = spec.get("pipelineInfo", {}).get("name", "pipeline")
    run_id = time.strftime("run-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_dir = os.path.join(root, pipeline, run_id)
    produced, summary = {}, {"run_dir": run_dir, "tasks": {}, "pushed": None}
    for number, name in enumerate(order, 1):
        task_dir = os.path.join(run_dir, name)
        inputs = executor_input(spec, runtime, name, task_dir, produced, run_id)
        for artifact in inputs["outputs"]["artifacts"].values():  # object storage needs no folders
            os.makedirs(artifact["artifacts"][0]["uri"], exist_ok=True)
        with open(os.path.join(task_dir, "executor_input.json"), "w") as f:
            json.dump(inputs, f, indent=2, sort_keys=True)
        context = {"outputs.output_file": inputs["outputs"]["outputFile"], "pipeline_root": root,
                   "pipeline_job_name": f"{pipeline}-{run_id}", "pipeline_job_uuid": run_id,
                   "pipeline_task_name": name, "pipeline_task_uuid": f"{run_id}-{name}"}
        container = _container(spec, name)["container"]
        argv = [fill(a, name, inputs, context) for a in container.get("command", []) + container.get("args", [])]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = python
        log_path = os.path.join(task_dir, "pod.log")
        log(f"[run-spec] {number}/{len(order)} {name}: {' '.join(argv[:3])} ... (log: {log_path})")
        start = time.time()
        with tempfile.TemporaryDirectory(prefix=f"mgebm-pod-{name}-") as cwd, open(log_path, "w") as out:
            code = subprocess.run(argv, cwd=cwd, env=pod_env(), stdout=out, stderr=subprocess.STDOUT,
                                  check=False).returncode
        if code != 0:
            with open(log_path, errors="replace") as f:
                last = [ln.strip() for ln in f if ln.strip()][-1:] or ["(no output)"]
            raise TaskFailed(f"task {name} exited {code}: {last[0][:300]} (log: {log_path})")
        written = _written_artifacts(inputs, name)
        produced.update({(name, key): artifact for key, artifact in written.items()})
        summary["tasks"][name] = {"seconds": round(time.time() - start, 1), "outputs": written}
        log(f"[run-spec] {name}: done in {time.time() - start:.0f} s")
        for artifact in written.values():
            if "PushedModel" in json.dumps(artifact.get("type", {})):
                summary["pushed"] = artifact
    return summary


def pushed_line(summary: dict) -> str:
    """`pushed:  DIR` or `pushed:  no (REASON)`, as `mgebm run` prints it."""
    metadata = (summary.get("pushed") or {}).get("metadata", {})
    if metadata.get("pushed"):
        return f"pushed:  {metadata.get('pushed_destination')}"
    return f"pushed:  no ({metadata.get('reason') or 'no PushModel task ran'})"
