"""Kill `mgebm run` at a random point inside each stage, rerun it, and check the outcome.

`python -m benchmarks.faults [--stages ingest,pyramid,classifier,train,evaluate,push]
[--seed 0] [--limit 300] [--preset mnist5k-multigrid:smoke] > faults.json`

First one uninterrupted reference run (its own work folder under a temporary folder) gives the
result to compare with and each stage's duration, read from when the stage's output folder
(`tfx/<Component>/<output>/`) appears (the push ends at its `[push] ...` line). Then, per stage,
a fresh work folder: the same command is started in its own process group, and once the
stage's output folder appears the whole group is killed with SIGKILL after a delay drawn
uniformly from [0, 0.9 x the reference stage duration] (a `random.Random(seed)`, so the kill
points repeat). The same command is then run again to the end and this script records:

- `rerun_ok`: exit code 0 and a `pushed:` line;
- `reexecuted` / `cached`: the components the rerun executed again or reused from the TFX cache
  (ML Metadata states COMPLETE and CACHED of the rerun's executions);
- `partial_used`: inputs of the rerun's executions whose producing execution never completed, or
  that lack their completion files (`summary.json`, `metadata.json`, `saved_model.pb`,
  `metrics.json`, a blessing marker), and metrics / pushed folders the run's final lines name
  that belong to an unfinished execution; any entry here is a defect;
- `serving`: the version folders under `serving/` and whether each holds a whole SavedModel,
  plus hidden temporary folders left behind (TF Serving never loads those) and the export's
  temporary folders left under `train_state/`;
- `served_loads`: `tf.saved_model.load` of the largest version in a fresh process;
- `equal_to_reference`: same served versions, the same training step count and the same FID in
  the `domain` space (relative 1e-4) as the uninterrupted run.

One JSON document on stdout, a table on stderr (`--markdown` prints the Markdown table instead).
Each row costs one partial and one whole smoke run (about 1.5 min each on a 2-core machine).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from benchmarks import common

# stage -> (TFX component, the output folder that appears when its execution starts)
STAGES = {
    "ingest": ("IngestImages", "images"),
    "pyramid": ("BuildPyramid", "pyramid"),
    "classifier": ("TrainDomainClassifier", "classifier"),
    "train": ("Train", "model"),
    "evaluate": ("Evaluate", "evaluation"),
    "push": ("PushModel", "pushed_model"),
}
# Files whose presence says an output artifact was written to the end.
COMPLETE_FILES = {
    "Examples": ["summary.json"],
    "components.Pyramid": ["metadata.json"],
    "components.DomainClassifier": [],  # classifier.keras or unavailable.json, checked below
    "Model": ["saved_model.pb", "variables/variables.index"],
    "ModelRun": ["random_init_model/saved_model.pb"],
    "ModelEvaluation": ["metrics.json"],
    "ModelBlessing": [],  # BLESSED or NOT_BLESSED, checked below
    "PushedModel": [],
}
COMPLETE, CACHED = 3, 5  # ML Metadata Execution.State
INPUT, OUTPUT = 3, 4  # ML Metadata Event.Type
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(preset: str, workdir: str, limit: int) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "run", "--preset", preset, "--workdir", workdir,
            "--set", "eval.features=domain", "--set", f"data.limit={limit}"]


def _stage_dir(workdir: str, stage: str) -> str:
    comp, out = STAGES[stage]
    return os.path.join(workdir, "tfx", comp, out)


def _start(cmd: list[str], log_prefix: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    out = open(log_prefix + ".out", "w", encoding="utf-8")  # noqa: SIM115 (closed by the child's exit)
    err = open(log_prefix + ".err", "w", encoding="utf-8")  # noqa: SIM115
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, start_new_session=True)


def reference_run(cmd: list[str], workdir: str, timeout: float) -> dict:
    """Run to the end, polling when each stage's output folder appears."""
    start = time.monotonic()
    proc = _start(cmd, workdir + "-log")
    seen, pushed_at = {}, None
    while proc.poll() is None:
        for stage in STAGES:
            if stage not in seen and os.path.isdir(_stage_dir(workdir, stage)):
                seen[stage] = time.monotonic() - start
        if pushed_at is None and "push" in seen:  # the push ends with its "[push] ..." line
            with open(workdir + "-log.out", encoding="utf-8", errors="replace") as f:
                if "[push]" in f.read():
                    pushed_at = time.monotonic() - start
        if time.monotonic() - start > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"the reference run took over {timeout} s")
        time.sleep(0.02)
    end = pushed_at or (time.monotonic() - start)
    order = sorted(seen, key=seen.get)
    durations = {s: (seen[order[i + 1]] if i + 1 < len(order) else end) - seen[s]
                 for i, s in enumerate(order)}
    return {"rc": proc.returncode, "wall_s": round(time.monotonic() - start, 1),
            "stage_start_s": {s: round(v, 2) for s, v in seen.items()},
            "stage_duration_s": {s: round(v, 2) for s, v in durations.items()}}


def _stdout_has(workdir: str, text: str) -> bool:
    with open(workdir + "-killed.out", encoding="utf-8", errors="replace") as f:
        return text in f.read()


def killed_run(cmd: list[str], workdir: str, stage: str, delay: float, timeout: float,
               after_line: str = "") -> dict:
    """Start, wait for `stage` to begin (and for `after_line` on stdout, when given), sleep
    `delay`, SIGKILL the process group."""
    start = time.monotonic()
    proc = _start(cmd, workdir + "-killed")
    while not os.path.isdir(_stage_dir(workdir, stage)) or (after_line and not _stdout_has(workdir, after_line)):
        if proc.poll() is not None:
            return {"killed": False, "why": f"exited rc {proc.returncode} before {stage} began"}
        if time.monotonic() - start > timeout:
            break
        time.sleep(0.02)
    began = time.monotonic()
    time.sleep(delay)
    running = proc.poll() is None
    # The stage really running at the kill: the last stage whose output folder exists.
    current = [s for s in STAGES if os.path.isdir(_stage_dir(workdir, s))]
    if running:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    last = {}
    for stream in ("out", "err"):
        with open(f"{workdir}-killed.{stream}", encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        last[stream] = lines[-1][:160] if lines else ""
    return {"killed": running, "stage_began_s": round(began - start, 2),
            "delay_s": round(delay, 2), "stage_at_kill": current[-1] if current else None,
            "last_stdout_line": last["out"], "last_stderr_line": last["err"]}


def _db(workdir: str) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(workdir, "metadata.sqlite"))


def _type_names(con) -> dict:
    return dict(con.execute("SELECT id, name FROM Type").fetchall())


def max_execution_id(workdir: str) -> int:
    if not os.path.exists(os.path.join(workdir, "metadata.sqlite")):
        return 0
    con = _db(workdir)
    try:
        return con.execute("SELECT COALESCE(MAX(id), 0) FROM Execution").fetchone()[0]
    finally:
        con.close()


def _artifact_complete(type_name: str, uri: str) -> bool:
    if not os.path.isdir(uri):
        return False
    if type_name == "components.DomainClassifier":
        return any(os.path.exists(os.path.join(uri, n)) for n in ("classifier.keras", "unavailable.json"))
    if type_name == "ModelBlessing":
        return any(os.path.exists(os.path.join(uri, n)) for n in ("BLESSED", "NOT_BLESSED"))
    return all(os.path.exists(os.path.join(uri, n)) for n in COMPLETE_FILES.get(type_name, []))


def audit_rerun(workdir: str, since_id: int) -> dict:
    """Which components the rerun executed / reused, and every input that was not whole."""
    con = _db(workdir)
    try:
        names = _type_names(con)
        execs = con.execute("SELECT id, type_id, last_known_state FROM Execution WHERE id > ?",
                            (since_id,)).fetchall()
        state_of = dict(con.execute("SELECT id, last_known_state FROM Execution").fetchall())
        reexecuted, cached, partial = [], [], []
        for eid, type_id, state in execs:
            comp = names[type_id].rsplit(".", 1)[-1]
            (reexecuted if state == COMPLETE else cached if state == CACHED else []).append(comp)
            if state not in (COMPLETE, CACHED):
                partial.append(f"{comp}: the rerun's execution ended in state {state}")
            rows = con.execute(
                "SELECT a.id, a.type_id, a.uri, a.state FROM Event e JOIN Artifact a "
                "ON a.id = e.artifact_id WHERE e.execution_id = ? AND e.type = ?", (eid, INPUT)).fetchall()
            for aid, atype, uri, astate in rows:
                producers = [r[0] for r in con.execute(
                    "SELECT execution_id FROM Event WHERE artifact_id = ? AND type = ?", (aid, OUTPUT))]
                tname = names[atype]
                if not any(state_of.get(p) == COMPLETE for p in producers):
                    partial.append(f"{comp} read {tname} {uri} from an unfinished execution")
                if astate != 2:
                    partial.append(f"{comp} read {tname} {uri} in artifact state {astate} (not LIVE)")
                if not _artifact_complete(tname, uri):
                    partial.append(f"{comp} read {tname} {uri} without its completion files")
        return {"reexecuted": reexecuted, "cached": cached, "partial_used": partial}
    finally:
        con.close()


def _named_outputs(stdout: str) -> dict:
    out = {}
    for line in stdout.splitlines():
        for key in ("metrics:", "pushed:"):
            if line.startswith(key):
                out[key.rstrip(":")] = line.split(None, 1)[1].strip() if len(line.split(None, 1)) > 1 else ""
    return out


def _uri_finished(workdir: str, uri: str) -> bool:
    con = _db(workdir)
    try:
        rows = con.execute(
            "SELECT x.last_known_state FROM Artifact a JOIN Event e ON e.artifact_id = a.id "
            "JOIN Execution x ON x.id = e.execution_id WHERE a.uri = ? AND e.type = ?",
            (uri, OUTPUT)).fetchall()
        return any(r[0] == COMPLETE for r in rows)
    finally:
        con.close()


def serving_state(workdir: str) -> dict:
    root = os.path.join(workdir, "serving")
    versions, hidden = {}, []
    for model in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for name in sorted(os.listdir(os.path.join(root, model))):
            path = os.path.join(root, model, name)
            if name.isdigit():
                versions[f"{model}/{name}"] = all(os.path.exists(os.path.join(path, n)) for n in
                                                  ("saved_model.pb", "variables/variables.index"))
            else:
                hidden.append(f"{model}/{name}")
    return {"versions": versions, "hidden_leftovers": hidden}


def served_loads(workdir: str) -> bool | str:
    state = serving_state(workdir)["versions"]
    if not state:
        return "nothing served"
    latest = max(state, key=lambda k: int(k.rsplit("/", 1)[1]))
    code = ("import sys, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]); "
            "assert 'sample' in m.signatures; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code, os.path.join(workdir, "serving", latest)],
                          capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode == 0 and proc.stdout.strip().endswith("ok")


def final_result(workdir: str, stdout: str) -> dict:
    """Served versions, trained steps and FID of the run's newest outputs (for the comparison)."""
    named = _named_outputs(stdout)
    fid, steps = None, None
    if named.get("metrics") and os.path.exists(named["metrics"]):
        with open(named["metrics"], encoding="utf-8") as f:
            metrics = json.load(f)
        fid = metrics.get("feature_spaces", {}).get("domain", {}).get("fid")
    con = _db(workdir)
    try:
        row = con.execute(
            "SELECT p.int_value FROM ArtifactProperty p JOIN Artifact a ON a.id = p.artifact_id "
            "JOIN Type t ON t.id = a.type_id WHERE t.name = 'Model' AND p.name = 'steps' "
            "ORDER BY a.id DESC LIMIT 1").fetchone()
        steps = row[0] if row else None
    finally:
        con.close()
    return {"served_versions": sorted(serving_state(workdir)["versions"]), "steps": steps,
            "fid_domain": fid, "named": named}


def equal_results(a: dict, b: dict) -> bool:
    if a["served_versions"] != b["served_versions"] or a["steps"] != b["steps"]:
        return False
    if a["fid_domain"] is None or b["fid_domain"] is None:
        return a["fid_domain"] == b["fid_domain"]
    return abs(a["fid_domain"] - b["fid_domain"]) <= 1e-4 * max(1.0, abs(b["fid_domain"]))


def fault_row(cmd_for, base: str, stage: str, delay: float, reference: dict, timeout: float,
              after_line: str = "") -> dict:
    workdir = os.path.join(base, f"kill-{stage}")
    cmd = cmd_for(workdir)
    row = {"stage": stage, "after_line": after_line}
    row["kill"] = killed_run(cmd, workdir, stage, delay, timeout, after_line)
    row["after_kill"] = serving_state(workdir)
    since = max_execution_id(workdir)
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    row["rerun_s"] = round(time.monotonic() - start, 1)
    row["rerun_ok"] = proc.returncode == 0 and "pushed:" in proc.stdout
    resumed = [line for line in proc.stdout.splitlines() if line.startswith("[train] resumed from")]
    row["train_resumed_from"] = resumed[0].split("from", 1)[1].strip() if resumed else None
    if proc.returncode != 0:
        row["rerun_error"] = (proc.stderr.strip().splitlines() or [f"rc {proc.returncode}"])[-1][:300]
        return row
    row.update(audit_rerun(workdir, since))
    result = final_result(workdir, proc.stdout)
    metrics_path = result.pop("named").get("metrics", "")
    if metrics_path and not _uri_finished(workdir, os.path.dirname(metrics_path)):
        row["partial_used"].append(f"the run names {metrics_path}, written by an unfinished execution")
    row["serving"] = serving_state(workdir)
    row["serving"]["hidden_leftovers"] += sorted(
        os.path.relpath(p, workdir) for pattern in ("export.tmp-*", "export.old-*")
        for p in glob.glob(os.path.join(workdir, "train_state", "*", pattern)))
    for version, whole in row["serving"]["versions"].items():
        if not whole:
            row["partial_used"].append(f"served version {version} is not a whole SavedModel")
    row["result"] = result
    row["equal_to_reference"] = equal_results(result, reference)
    row["served_loads"] = served_loads(workdir)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=300, help="data.limit of every run")
    parser.add_argument("--preset", default="mnist5k-multigrid:smoke")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--keep", default="", help="keep the work folders here (default: deleted)")
    parser.add_argument("--after-line", action="append", default=[], metavar="STAGE=TEXT",
                        help="in STAGE, start the random delay once TEXT is on the run's stdout "
                             "(e.g. 'train=[train] step 3/': after a checkpoint), the delay then "
                             "drawn from [0, 0.45] s")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table on stderr")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES] + [
        a.split("=", 1)[0] for a in args.after_line if a.split("=", 1)[0] not in STAGES]
    if unknown:
        parser.error(f"--stages: unknown {unknown}; choose from {list(STAGES)}")
    rng = random.Random(args.seed)
    base_ctx = tempfile.TemporaryDirectory(prefix="mgebm-faults-") if not args.keep else None
    base = args.keep or base_ctx.name
    os.makedirs(base, exist_ok=True)
    started, load_start = time.monotonic(), common.load_average()
    cmd_for = lambda w: command(args.preset, w, args.limit)  # noqa: E731
    ref_dir = os.path.join(base, "reference")
    ref = reference_run(cmd_for(ref_dir), ref_dir, args.timeout)
    with open(ref_dir + "-log.out", encoding="utf-8") as f:
        ref_result = final_result(ref_dir, f.read())
    ref_result.pop("named")
    ref["result"] = ref_result
    after = dict(item.split("=", 1) for item in args.after_line)
    rows = []
    for stage in stages:
        span = 0.5 if stage in after else ref["stage_duration_s"].get(stage, 1.0)
        delay = rng.uniform(0.0, 0.9 * span)
        rows.append(fault_row(cmd_for, base, stage, delay, ref_result, args.timeout,
                              after.get(stage, "")))
        print(f"[faults] {stage}: {json.dumps(rows[-1])[:400]}", file=sys.stderr, flush=True)
    header = ["stage", "kill at (s into stage / of ref)", "killed in", "rerun", "re-executed",
              "reused (cache)", "partial artifact used", "equal to uninterrupted", "served loads",
              "left behind"]
    table = []
    for row in rows:
        kill = row["kill"]
        span = ref["stage_duration_s"].get(row["stage"])
        table.append([
            row["stage"] + (f" (after `{row['after_line']}`)" if row.get("after_line") else ""),
            f"{kill.get('delay_s', '-')} s after that line" if row.get("after_line")
            else f"{kill.get('delay_s', '-')} / {span}",
            kill.get("stage_at_kill") if kill.get("killed") else f"not killed ({kill.get('why', 'run ended')})",
            "ok" if row["rerun_ok"] else f"FAILED: {row.get('rerun_error', '')}",
            ", ".join(row.get("reexecuted", [])) or "-",
            ", ".join(row.get("cached", [])) or "-",
            "; ".join(row.get("partial_used", [])) or "none",
            "yes" if row.get("equal_to_reference") else "no",
            "yes" if row.get("served_loads") is True else str(row.get("served_loads")),
            ", ".join(row.get("serving", {}).get("hidden_leftovers", [])) or "-",
        ])
    document = {"benchmark": "faults", "command": " ".join(cmd_for("WORKDIR")), "seed": args.seed,
                "machine": common.machine_info({"loadavg_start": load_start,
                                                 "loadavg_end": common.load_average()}),
                "wall_s": round(time.monotonic() - started, 1), "reference": ref, "rows": rows}
    if args.markdown:
        print("| " + " | ".join(header) + " |", file=sys.stderr)
        print("|" + "---|" * len(header), file=sys.stderr)
        for cells in table:
            print("| " + " | ".join(str(c) for c in cells) + " |", file=sys.stderr)
    common.emit(document, table, header)
    if base_ctx is not None:
        base_ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
