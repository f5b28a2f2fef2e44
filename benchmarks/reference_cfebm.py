"""CF-EBM beside its authors' code: the same images, stages, budgets, and this project's evaluator.

`python -m benchmarks.reference_cfebm --reference-checkout PATH` trains, per seed and budget, the
authors' ProEBM (`YangNaruto/ProEBM`, PyTorch, imported from PATH by the worker
`benchmarks.reference_cfebm_torch` in the `--torch-python` interpreter) and this project's
`cfebm` family (`mgebm train` on the preset, `--preset`), then evaluates both sample sets the same
way: FID / KID / precision / recall in the `domain` and `efficientnet_lite0` spaces
(`evaluators.feature_metrics.space_metrics`) and the collapse rule (`evaluators.collapse`),
against the same held-out images.

Equalised: the images (the first `--limit` training images of `--data`, Fashion-MNIST where
Debian's dataset-fashion-mnist is installed, else the built-in MNIST digits; both read the same
32 px images and their box-average pyramid 8 / 16 / 32), the stages 8 -> 16 -> 32, the images of
the first stage (`--stable-images`) and of every fade and stabilisation after it (their code
fades over as many images as it stabilises, so both are `--stable-images`), the Langevin steps
per stage (`--langevin-steps`), the batch (`--batch`), and the budget: `--budgets` lists
`updates:N` (N parameter updates each: fidelity) and `minutes:M` (M minutes of training each:
what a user gets). Not equalised (each side's own, the differences this comparison measures):
the nets, the sampler's step and noise, the learning rate, the data noise, and anything given to
ours with `--set` (e.g. `--set sampler.step_size=1.0`).

Every phase skips work already in WORKDIR (runs are resumable); runs are interleaved (ours s0,
theirs s0, ours s1, ...) so drifts in machine load hit both alike. Output: WORKDIR/result.json
and one JSON document on stdout (machine, settings, the reference commit, every run's training
facts and metrics, and per budget and side the mean and sample standard deviation over seeds),
with a table on stderr (`--label L` names ours `ours-L`, for runs of ours with other `--set`
values in the same WORKDIR); `--docs DIR` gets `reference_cfebm_<side>_<budget>_s<seed>.png` (64
samples) for the first seed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import common

FASHION = "idx:/usr/share/datasets/fashion-mnist/train"
DIGITS = "builtin:mnist5k"
SPACES = ("domain", "efficientnet_lite0")
KEYS = ("fid", "kid", "precision", "recall")


def default_data() -> str:
    return FASHION if os.path.exists(FASHION.split(":", 1)[1] + "-images-idx3-ubyte.gz") else DIGITS


def parse_budgets(text: str) -> list[tuple[str, float]]:
    """`updates:300,minutes:5` -> [("updates", 300), ("minutes", 5.0)]; ValueError names a bad one."""
    out = []
    for item in filter(None, text.split(",")):
        kind, _, value = item.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if kind not in ("updates", "minutes") or number <= 0 or (kind == "updates" and number != int(number)):
            raise ValueError(f"--budgets item {item!r} must be updates:N (N a positive integer) or "
                             "minutes:M (M > 0), e.g. updates:300,minutes:5")
        out.append((kind, int(number) if kind == "updates" else number))
    if not out:
        raise ValueError("--budgets is empty; give e.g. updates:300,minutes:5")
    return out


def budget_name(kind: str, value) -> str:
    return f"{kind}{value:g}" if isinstance(value, float) else f"{kind}{value}"


def reference_commit(checkout: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def prepare(args) -> dict:
    """Ingest, the 1/8/16/32 pyramid, the domain classifier and the training images as npz."""
    from components.ingest import run_ingest  # pylint: disable=import-outside-toplevel
    from components.pyramid_beam import run_pyramid  # pylint: disable=import-outside-toplevel
    from components.sources import load_images  # pylint: disable=import-outside-toplevel
    from evaluators.domain_classifier import train_classifier  # pylint: disable=import-outside-toplevel
    paths = {k: os.path.join(args.workdir, k) for k in ("ingest", "pyramid", "classifier")}
    paths["train_npz"] = os.path.join(args.workdir, "train_images.npz")
    if not os.path.exists(os.path.join(paths["ingest"], "summary.json")):
        run_ingest(args.data, paths["ingest"], 32, 1, eval_fraction=0.1, limit=args.limit, progress_every=0)
    if not os.path.exists(os.path.join(paths["pyramid"], "metadata.json")):
        run_pyramid(paths["ingest"], paths["pyramid"], [1, 8, 16, 32])
    train_images = None
    if not os.path.exists(os.path.join(paths["classifier"], "info.json")):
        train_images, labels = load_images(f"ingested:{paths['ingest']}:train", 32, 1)
        train_classifier(train_images, labels, paths["classifier"], epochs=args.classifier_epochs, seed=0,
                         trained_on=args.data)
    if not os.path.exists(paths["train_npz"]):
        if train_images is None:
            train_images, _ = load_images(f"ingested:{paths['ingest']}:train", 32, 1)
        np.savez(paths["train_npz"], train=train_images)
    return paths


def our_command(args, paths, seed: int, kind: str, value, workdir: str) -> list[str]:
    sets = [f"train.fade_images={args.stable_images}", f"train.stable_images={args.stable_images}",
            f"sampler.steps={args.langevin_steps}", f"train.batch_size={args.batch}",
            f"train.seed={seed}", "train.epochs=100000", "train.checkpoint_every=50",
            "train.log_every=10", "train.image_log_every=100000"]
    sets += [f"train.max_steps={value}", "train.max_minutes=0"] if kind == "updates" else \
        [f"train.max_minutes={value}", "train.max_steps=0"]
    cmd = [sys.executable, "-m", "pipeline.cli", "train", "--preset", args.preset, "--pyramid",
           paths["pyramid"], "--workdir", workdir, "--resume"]
    for item in sets + list(args.set):
        cmd += ["--set", item]
    return cmd


def their_command(args, paths, seed: int, kind: str, value, out: str) -> list[str]:
    cmd = [args.torch_python, "-m", "benchmarks.reference_cfebm_torch", "--checkout", args.reference_checkout,
           "--images", paths["train_npz"], "--out", out, "--seed", str(seed), "--batch", str(args.batch),
           "--stable-images", str(args.stable_images), "--fade-images", str(args.stable_images),
           "--langevin-steps", str(args.langevin_steps), "--num-samples", str(args.num_samples),
           "--base-channel", str(args.base_channel)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return cmd + (["--updates", str(value)] if kind == "updates" else ["--minutes", str(value)])


def _last_json(text: str) -> dict:
    start = text.rfind("\n{")
    return json.loads(text[start + 1:] if start >= 0 else text)


def side_name(args, side: str) -> str:
    return f"ours-{args.label}" if side == "ours" and args.label else side


def train_run(args, paths, side: str, seed: int, kind: str, value) -> dict:
    """One training run (skipped when WORKDIR has its result); returns its facts."""
    name = f"{side_name(args, side)}-{budget_name(kind, value)}-s{seed}"
    folder = os.path.join(args.workdir, "runs", name)
    marker = os.path.join(folder, "train_result.json")
    if os.path.exists(marker):
        with open(marker) as handle:
            return json.load(handle)
    os.makedirs(folder, exist_ok=True)
    samples = os.path.join(folder, "samples.npz")
    cmd = (our_command(args, paths, seed, kind, value, folder) if side == "ours"
           else their_command(args, paths, seed, kind, value, samples))
    print(f"[reference_cfebm] training {name}", file=sys.stderr, flush=True)
    load_before, start = common.load_average(), time.perf_counter()
    with open(os.path.join(folder, "train.log"), "a") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, check=False,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise RuntimeError(f"training {name} failed (exit {proc.returncode}); see {folder}/train.log")
    result = _last_json(proc.stdout)
    result.update(side=side_name(args, side), seed=seed, budget=budget_name(kind, value),
                  wall_s=time.perf_counter() - start, command=" ".join(cmd), loadavg_before=load_before,
                  loadavg_after=common.load_average())
    if side == "ours":
        result["samples"] = _our_samples(result["export"], args.num_samples, seed, samples)
        result.update(_our_schedule(result["export"]))
    else:
        result["samples"] = samples
    with open(marker, "w") as handle:
        json.dump(result, handle, indent=2)
    return result


def _our_samples(export: str, num: int, seed: int, out: str) -> str:
    from evaluators.model_client import ExportedModel  # pylint: disable=import-outside-toplevel
    np.savez_compressed(out, samples=ExportedModel(export).sample(num, seed)["images"])
    return out


def _our_schedule(export: str) -> dict:
    with open(os.path.join(export, "assets", "config.json")) as handle:
        info = json.load(handle)
    return {k: info.get(k) for k in ("stage", "beta", "images_seen", "final_stage_reached")}


def evaluate(args, paths, runs: dict) -> dict:
    """{run: {space: {fid, kid, precision, recall}, collapse: {...}}} on the same held-out images."""
    from components.sources import load_images  # pylint: disable=import-outside-toplevel
    from evaluators.features import get_feature_space  # pylint: disable=import-outside-toplevel
    real, _ = load_images(f"ingested:{paths['ingest']}:eval", 32, 1)
    real = real[np.sort(np.random.default_rng(0).permutation(len(real))[:args.num_samples])]
    spaces = {"domain": get_feature_space("domain", classifier_dir=paths["classifier"]),
              "efficientnet_lite0": get_feature_space("efficientnet_lite0")}
    return evaluate_runs(runs, real, spaces, os.path.join(args.workdir, "runs"))


def evaluate_runs(runs: dict, real: np.ndarray, spaces: dict, folder: str) -> dict:
    """The metrics of every run's samples (its npz `samples`) against `real` in each feature
    space, and the collapse rule; each run's `folder/RUN/metrics.json` is reused when present."""
    from evaluators.collapse import collapse_rule  # pylint: disable=import-outside-toplevel
    from evaluators.feature_metrics import space_metrics  # pylint: disable=import-outside-toplevel
    out = {}
    for name, run in runs.items():
        path = os.path.join(folder, name, "metrics.json")
        if not os.path.exists(path):
            fake = np.load(run["samples"])["samples"]
            metrics = {s: {k: v for k, v in space_metrics(s, space, real, fake, 10, [], seed=0).items()
                           if k in KEYS} for s, space in spaces.items()}
            metrics["collapse"] = collapse_rule(fake, real)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as handle:
                json.dump(metrics, handle, indent=2)
        with open(path) as handle:
            out[name] = json.load(handle)
    return out


def pictures(args, runs: dict, seed: int) -> None:
    from benchmarks.quality import tile, write_png  # pylint: disable=import-outside-toplevel
    for run in runs.values():
        if run["seed"] == seed:
            write_png(os.path.join(args.docs, f"reference_cfebm_{run['side']}_{run['budget']}_s{seed}.png"),
                      tile(np.load(run["samples"])["samples"][:64]))


def summarize(runs: dict, metrics: dict) -> dict:
    """{budget: {side: {metric: {mean, std, values}}}} (std: sample standard deviation)."""
    table = {}
    for name, run in runs.items():
        flat = {f"{k}/{s}": metrics[name][s][k] for s in metrics[name] if s != "collapse" for k in KEYS}
        flat["collapsed"] = float(metrics[name]["collapse"]["collapsed"])
        for key in ("updates", "steps", "train_s", "wall_s"):
            if run.get(key) is not None:
                flat[key] = float(run[key])
        flat["final_stage_reached"] = float(bool(run.get("final_stage_reached")))
        for key, value in flat.items():
            table.setdefault(run["budget"], {}).setdefault(run["side"], {}).setdefault(key, []).append(value)
    return {b: {side: {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None,
                           "values": v} for k, v in by.items()} for side, by in sides.items()}
            for b, sides in table.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--reference-checkout", required=True, help="a checkout of YangNaruto/ProEBM")
    parser.add_argument("--torch-python", default=None,
                        help="Python with torch (default: this one if torch imports, else .venv-latest/bin/python)")
    parser.add_argument("--data", default=None, help=f"default {FASHION} where installed, else {DIGITS}")
    parser.add_argument("--preset", default=None, help="ours: default fashion-mnist-cfebm (mnist5k-cfebm on digits)")
    parser.add_argument("--set", action="append", default=[], help="an override of ours, section.key=value")
    parser.add_argument("--label", default="", help="names ours as ours-LABEL (runs with other --set values)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budgets", default="updates:300,minutes:5")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--stable-images", type=int, default=4000,
                        help="images of the 8 px stage and of every fade and stabilisation after it")
    parser.add_argument("--langevin-steps", type=int, default=15)
    parser.add_argument("--base-channel", type=int, default=16, help="theirs: --base_channel (run_mnist.sh: 16)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = its default)")
    parser.add_argument("--limit", type=int, default=20000, help="training images ingested")
    parser.add_argument("--classifier-epochs", type=int, default=3)
    parser.add_argument("--num-samples", type=int, default=1000, help="samples = held-out images compared")
    parser.add_argument("--sides", default="ours,theirs")
    parser.add_argument("--workdir", default="/tmp/mgebm-reference-cfebm")
    parser.add_argument("--docs", default="", help="folder for the sample pictures (empty: none)")
    args = parser.parse_args(argv)
    try:
        budgets = parse_budgets(args.budgets)
    except ValueError as err:
        parser.error(str(err))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    sides = [s for s in args.sides.split(",") if s]
    if not seeds or not set(sides) <= {"ours", "theirs"} or not sides:
        parser.error("--seeds non-empty, --sides from ours,theirs")
    if not os.path.exists(os.path.join(args.reference_checkout, "train_v0.py")):
        parser.error(f"--reference-checkout {args.reference_checkout} has no train_v0.py: give a checkout "
                     "of YangNaruto/ProEBM")
    args.data = args.data or default_data()
    args.preset = args.preset or ("fashion-mnist-cfebm" if args.data == FASHION else "mnist5k-cfebm")
    if "theirs" in sides:
        from benchmarks.peers import torch_python  # pylint: disable=import-outside-toplevel
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        args.torch_python = torch_python(args.torch_python) or os.path.join(root, ".venv-latest", "bin", "python")
        if not os.path.exists(args.torch_python):
            parser.error(f"no Python with torch: {args.torch_python} is missing; pass --torch-python "
                         "(docs: pip install -r requirements/bench-torch-py311.txt into .venv-latest)")
    os.makedirs(args.workdir, exist_ok=True)
    paths = prepare(args)
    runs = {}
    for kind, value in budgets:
        for seed in seeds:
            for side in sides:
                run = train_run(args, paths, side, seed, kind, value)
                runs[f"{run['side']}-{run['budget']}-s{seed}"] = run
    metrics = evaluate(args, paths, runs)
    if args.docs:
        pictures(args, runs, seeds[0])
    doc = {"machine": common.machine_info(), "args": vars(args), "reference_commit":
           reference_commit(args.reference_checkout), "runs": runs, "metrics": metrics,
           "summary": summarize(runs, metrics)}
    with open(os.path.join(args.workdir, "result.json"), "w") as handle:
        json.dump(doc, handle, indent=2)
    rows = []
    for budget, by_side in doc["summary"].items():
        for side, m in by_side.items():
            rows.append([budget, side] + [_cell(m.get(k)) for k in
                                          ("updates", "steps", "fid/domain", "fid/efficientnet_lite0",
                                           "precision/domain", "recall/domain", "collapsed",
                                           "final_stage_reached")])
    common.emit(doc, rows, ["budget", "side", "updates (theirs)", "steps (ours)", "FID domain", "FID effnet",
                            "precision domain", "recall domain", "collapsed", "final stage"])
    return 0


def _cell(entry) -> str:
    if not entry:
        return "-"
    return common.fmt(entry["mean"]) + ("" if entry["std"] is None else f" ± {common.fmt(entry['std'])}")


if __name__ == "__main__":
    sys.exit(main())
