"""Two model families at the same wall-clock budget, several seeds: train, then evaluate.

`python -m benchmarks.compare_families --phase all` on Fashion-MNIST at 32x32 (Debian's
dataset-fashion-mnist; MNIST digits from the built-in set as the other domain):

1. prepare (once): ingest the first `--limit` training images, one pyramid per family's grids
   (multigrid 1/4/16/32, CF-EBM, LAPGAN, DCGAN 1/8/16/32), the domain classifier on the train split;
2. train: every (family, seed) with `mgebm train` in its own process, for the SAME budget
   `train.max_minutes`, runs interleaved (multigrid s0, cfebm s0, multigrid s1, ...) so a drift
   in machine load hits both families alike; each family at the settings of its 2-core preset
   (`FAMILY_RUNS`: the preset and the overrides of the 9-minute mnist5k presets);
3. evaluate: every export with `evaluators.evaluate.evaluate_model` (the evaluator users run):
   FID / KID / precision / recall in the `domain` and `efficientnet_lite0` spaces against
   `--num-samples` held-out images, out-of-distribution AUROC (MNIST digits, uniform noise,
   constant images, interpolations), denoising and translation (MNIST digits -> this model's
   domain) where the family exports those signatures, diversity from shared coarse starts
   (`sample_from_coarse`), the memorization check against the training images (pixels and
   `domain`), and for class-conditional exports per-class FID and the domain classifier's label
   accuracy (`conditional`); a report.html per run;
4. summary: mean and sample standard deviation over seeds per family and metric, in
   WORKDIR/comparison.json and printed as JSON with a table on stderr. A run whose training
   exits non-zero (the divergence guard out of retries, for one) is counted, not fatal: its exit
   code and last `[train]` line go to `training` and `failed`, it is left out of the means, and
   the other runs go on.

Every phase skips work already done in WORKDIR, so an interrupted comparison resumes.
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
# family -> (preset, pyramid grids, overrides). Multigrid: the settings of the 15-minute
# Fashion-MNIST run in docs/BENCHMARKS.md section 3.1 (quarter width, 15 steps per grid), with the
# demo's decaying noise; CF-EBM: its preset at quarter width, with a fade schedule that reaches
# the 32-px stage, fully faded in, after 16,000 images (about 6 of the 15 minutes here).
FAMILY_RUNS = {
    "multigrid": ("fashion-mnist-multigrid", [1, 4, 16, 32],
                  ["model.width=0.25", "sampler.steps=15", "sampler.noise_schedule=linear",
                   "train.learning_rate=1e-4"]),
    "cfebm": ("fashion-mnist-cfebm", [1, 8, 16, 32],
              ["model.width=0.25", "train.fade_images=4000", "train.stable_images=4000"]),
    # The GAN baselines at half width: LAPGAN 8 -> 16 -> 32, DCGAN at 32, and the
    # class-conditional LAPGAN (per-class FID and the domain classifier's label accuracy), with
    # the one-hot discriminators of docs/BENCHMARKS.md section 3.4's table (the preset projects).
    "lapgan": ("fashion-mnist-lapgan", [1, 8, 16, 32], ["model.width=0.5"]),
    "dcgan": ("fashion-mnist-dcgan", [1, 8, 16, 32], ["model.width=0.5"]),
    "lapgan_cond": ("fashion-mnist-lapgan-cond", [1, 8, 16, 32],
                    ["model.width=0.5", "model.class_conditioning=concat", "model.coarse_updates=1"]),
}
SPACES = ("domain", "efficientnet_lite0")
HEADLINE = [("feature_spaces", s, k) for s in SPACES for k in ("fid", "kid", "precision", "recall")]


FAILED_MARKER = "train_failed.json"


def run_name(family: str, seed: int) -> str:
    return f"{family}-s{seed}"


def train_overrides(args, family: str, seed: int) -> list[str]:
    """The `--set` values of one training run: the family's, then the command line's `--set`
    (a lever under test, for every family), then the budget, seed, batch and logging shared."""
    return FAMILY_RUNS[family][2] + list(args.set) + [
        f"train.max_minutes={args.minutes}", "train.epochs=1000", f"train.seed={seed}",
        f"train.batch_size={args.batch}", "train.checkpoint_every=50", "train.log_every=10",
        "train.image_log_every=100000"]


def prepare(args, families=None) -> dict:
    """Ingest, the pyramids of `families` (default all) and the domain classifier (each reused
    when already in WORKDIR)."""
    from components.ingest import run_ingest  # pylint: disable=import-outside-toplevel
    from components.pyramid_beam import run_pyramid  # pylint: disable=import-outside-toplevel
    from components.sources import load_images  # pylint: disable=import-outside-toplevel
    from evaluators.domain_classifier import train_classifier  # pylint: disable=import-outside-toplevel
    ingest_dir = os.path.join(args.workdir, "ingest")
    if not os.path.exists(os.path.join(ingest_dir, "summary.json")):
        run_ingest(args.data, ingest_dir, 32, 1, eval_fraction=0.1, limit=args.limit, progress_every=0)
    for family, (_, grids, _) in FAMILY_RUNS.items():
        if families is not None and family not in families:
            continue
        pyramid = os.path.join(args.workdir, f"pyramid_{family}")
        if not os.path.exists(os.path.join(pyramid, "metadata.json")):
            run_pyramid(ingest_dir, pyramid, grids)
    classifier_dir = os.path.join(args.workdir, "classifier")
    if not os.path.exists(os.path.join(classifier_dir, "info.json")):
        images, labels = load_images(f"ingested:{ingest_dir}:train", 32, 1)
        train_classifier(images, labels, classifier_dir, epochs=args.classifier_epochs, seed=0,
                         trained_on=args.data)
    return {"ingest": ingest_dir, "classifier": classifier_dir}


def train_all(args, families, seeds) -> dict:
    """`mgebm train` per (family, seed), interleaved; {run: {steps, stopped_by, wall_s, ...}}, or
    {failed: True, exit_code, reason, ...} for a run whose training exited non-zero (recorded in
    its folder's `train_failed.json`, so a rerun counts it again instead of retraining it)."""
    done = {}
    for seed in seeds:
        for family in families:
            name = run_name(family, seed)
            workdir = os.path.join(args.workdir, "runs", name)
            marker = os.path.join(workdir, "train_result.json")
            recorded = _recorded(workdir)
            if recorded is not None:  # a failed run stays failed: delete its folder to train it again
                done[name] = recorded
                continue
            os.makedirs(workdir, exist_ok=True)
            cmd = [sys.executable, "-m", "pipeline.cli", "train", "--preset", FAMILY_RUNS[family][0],
                   "--pyramid", os.path.join(args.workdir, f"pyramid_{family}"), "--workdir", workdir,
                   "--resume"]
            for value in train_overrides(args, family, seed):
                cmd += ["--set", value]
            print(f"[compare] training {name} for {args.minutes} min", file=sys.stderr, flush=True)
            load_before = common.load_average()
            start = time.perf_counter()
            with open(os.path.join(workdir, "train.log"), "a") as log:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, check=False)
                log.write(proc.stdout)  # the progress lines and, on failure, what stopped the run
            if proc.returncode == 0:
                text = proc.stdout
                result = json.loads(text[text.rfind("\n{") + 1:])  # the last JSON document printed
            else:  # an outcome to count (e.g. the divergence guard gave up), not a reason to stop
                result = {"failed": True, "exit_code": proc.returncode, "steps": None,
                          "reason": _last_line(os.path.join(workdir, "train.log"))}
                print(f"[compare] training {name} failed (exit {proc.returncode}): {result['reason']}; "
                      f"see {workdir}/train.log; going on", file=sys.stderr, flush=True)
                marker = os.path.join(workdir, FAILED_MARKER)
            result.update(family=family, seed=seed, wall_s=time.perf_counter() - start,
                          command=" ".join(cmd), loadavg_before=load_before,
                          loadavg_after=common.load_average())
            with open(marker, "w") as handle:
                json.dump(result, handle, indent=2)
            done[name] = result
    return done


def load_trained(args, families, seeds) -> dict:
    """The train phase's records from WORKDIR/runs/*/ (train_result.json or the failure marker)."""
    trained = {}
    for seed in seeds:
        for family in families:
            workdir = os.path.join(args.workdir, "runs", run_name(family, seed))
            trained[run_name(family, seed)] = _recorded(workdir)
            if trained[run_name(family, seed)] is None:
                raise FileNotFoundError(f"{workdir}: not trained yet; run --phase train first")
    return trained


def _recorded(workdir: str):
    """A run folder's train record (train_result.json, else the failure marker), or None."""
    for marker in ("train_result.json", FAILED_MARKER):
        if os.path.exists(os.path.join(workdir, marker)):
            with open(os.path.join(workdir, marker)) as handle:
                return json.load(handle)
    return None


def _last_line(log_path: str) -> str:
    """What stopped a run: the last line of its log that names the error or the guard, else its
    last line (at most 400 characters)."""
    with open(log_path, errors="replace") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    tagged = [line for line in lines if line.startswith(("[train]", "mgebm")) or "rror" in line]
    return (tagged or lines or ["no output"])[-1][:400]


def evaluate_all(args, families, seeds, trained) -> dict:
    """`evaluate_model` on every trained export; {run: flat metrics} (metrics.json reused)."""
    from components.sources import load_images  # pylint: disable=import-outside-toplevel
    from evaluators.blessing import flatten_metrics  # pylint: disable=import-outside-toplevel
    from evaluators.evaluate import EvalData, EvalOptions, evaluate_model  # pylint: disable=import-outside-toplevel
    from evaluators.features import get_feature_space  # pylint: disable=import-outside-toplevel
    from evaluators.model_client import ExportedModel  # pylint: disable=import-outside-toplevel
    real, real_labels = load_images(f"ingested:{os.path.join(args.workdir, 'ingest')}:eval", 32, 1)
    train_images, _ = load_images(f"ingested:{os.path.join(args.workdir, 'ingest')}:train", 32, 1)
    digits, _ = load_images(args.other, 32, 1, limit=500)
    spaces = {"domain": get_feature_space("domain", classifier_dir=os.path.join(args.workdir, "classifier")),
              "efficientnet_lite0": get_feature_space("efficientnet_lite0")}
    flat, pictured = {}, set()
    for seed in seeds:
        for family in families:
            name = run_name(family, seed)
            if trained[name].get("failed"):
                continue
            out = os.path.join(args.workdir, "evals", name)
            path = os.path.join(out, "metrics.json")
            if not os.path.exists(path):
                print(f"[compare] evaluating {name}", file=sys.stderr, flush=True)
                start = time.perf_counter()
                # Labels only for class-conditional exports (per-class FID, label accuracy).
                labels = real_labels if ExportedModel(trained[name]["export"]).conditional else None
                data = EvalData(real, labels, ood_sets={"mnist_digits": digits}, translate_images=digits,
                                translate_name=f"MNIST digits ({args.other})", train_images=train_images)
                evaluate_model(trained[name]["export"], data, out, spaces, EvalOptions(
                    num_samples=args.num_samples, num_real=args.num_samples, kid_subsets=10, masks=(),
                    num_inpaint=0, num_diversity=args.num_diversity, num_ood=500, num_denoise=100,
                    num_memorization=500, memorization_spaces=("domain",), seed=seed,
                    log_dir=trained[name]["logs"]))
                print(f"[compare] evaluated {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
            with open(path) as handle:
                flat[name] = flatten_metrics(json.load(handle))
            if family not in pictured:
                pictured.add(family)
                pictures(args, family, trained[name]["export"], real, digits, seed)
    return flat


def pictures(args, family: str, export_dir: str, real, digits, seed: int) -> None:
    """docs/pictures/compare_<family>_{samples,denoising,translation}.png from the first seed's
    export that trained to its budget."""
    from benchmarks.quality import tile, write_png  # pylint: disable=import-outside-toplevel
    from evaluators.denoising import add_noise  # pylint: disable=import-outside-toplevel
    from evaluators.model_client import ExportedModel  # pylint: disable=import-outside-toplevel
    model = ExportedModel(export_dir)
    write_png(os.path.join(args.docs, f"compare_{family}_samples.png"),
              tile(model.sample(64, seed)["images"]))
    if model.has("denoise"):  # rows: clean, noisy (sigma 0.2), denoised
        noisy = add_noise(real[:8], 0.2, seed=seed)
        write_png(os.path.join(args.docs, f"compare_{family}_denoising.png"),
                  tile(np.concatenate([real[:8], noisy, model.denoise(noisy, seed)])))
    if model.has("translate"):  # rows: source, translated (twice)
        rows = [digits[:8], model.translate(digits[:8], seed), digits[8:16], model.translate(digits[8:16], seed)]
        write_png(os.path.join(args.docs, f"compare_{family}_translation.png"), tile(np.concatenate(rows)))


def summarize(flat: dict, families, seeds) -> dict:
    """{family: {metric: {"mean", "std", "values"}}} over seeds (std: sample standard deviation)."""
    out = {}
    for family in families:
        runs = [flat[run_name(family, s)] for s in seeds if run_name(family, s) in flat]
        keys = sorted(set.intersection(*(set(r) for r in runs))) if runs else []
        out[family] = {}
        for key in keys:
            values = [r[key] for r in runs]
            if any(v is None for v in values):
                continue
            out[family][key] = {"mean": statistics.fmean(values),
                                "std": statistics.stdev(values) if len(values) > 1 else None,
                                "values": values}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--phase", choices=("train", "evaluate", "all"), default="all")
    parser.add_argument("--families", default=",".join(FAMILY_RUNS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget per run")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workdir", default="/tmp/mgebm-compare")
    parser.add_argument("--data", default=FASHION)
    parser.add_argument("--limit", type=int, default=20000, help="training images ingested")
    parser.add_argument("--classifier-epochs", type=int, default=3)
    parser.add_argument("--other", default="builtin:mnist5k", help="the other domain (OOD set, translation source)")
    parser.add_argument("--num-samples", type=int, default=1000, help="samples = real images per metric")
    parser.add_argument("--docs", default="docs/pictures", help="folder for compare_<family>_*.png")
    parser.add_argument("--num-diversity", type=int, default=16,
                        help="samples from shared coarse starts (where the export has sample_from_coarse; 0 = skip)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="an override for every family's training runs, after the family's own "
                             "(repeatable), e.g. --set train.learning_rate=5e-4; use its own --workdir")
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    bad = [f for f in families if f not in FAMILY_RUNS]
    if bad or not seeds or args.minutes <= 0:
        parser.error(f"--families from {list(FAMILY_RUNS)} (got {bad}), --seeds non-empty, --minutes > 0")
    os.makedirs(args.workdir, exist_ok=True)
    prepare(args, families)
    trained = train_all(args, families, seeds) if args.phase in ("train", "all") else {}
    if args.phase == "train":
        return 0
    if not trained:
        trained = load_trained(args, families, seeds)
    flat = evaluate_all(args, families, seeds, trained)
    doc = {"machine": common.machine_info(), "budget_minutes": args.minutes, "args": vars(args),
           "family_runs": {f: {"preset": FAMILY_RUNS[f][0], "overrides": train_overrides(args, f, 0)[:-6]}
                           for f in families},
           "training": trained, "failed": sorted(n for n, t in trained.items() if t.get("failed")),
           "runs": flat, "summary": summarize(flat, families, seeds)}
    with open(os.path.join(args.workdir, "comparison.json"), "w") as handle:
        json.dump(doc, handle, indent=2)
    keys = [f"{k}/{s}" for _, s, k in HEADLINE] + ["ood/auroc/mnist_digits", "ood/auroc/uniform_noise",
                                                   "memorization/pixels/ratio", "diversity/ratio",
                                                   "conditional/label_accuracy"]
    rows = []
    for f in families:
        steps = [t["steps"] for t in trained.values() if t["family"] == f and not t.get("failed")]
        failed = sum(1 for t in trained.values() if t["family"] == f and t.get("failed"))
        rows.append([f, int(statistics.fmean(steps)) if steps else "-", failed]
                    + [_mean_std(doc["summary"][f].get(k)) for k in keys])
    common.emit(doc, rows, ["family", "steps", "failed"] + keys)
    return 0


def _mean_std(entry) -> str:
    if not entry:
        return "-"
    return common.fmt(entry["mean"]) + ("" if entry["std"] is None else f" ± {common.fmt(entry['std'])}")


if __name__ == "__main__":
    sys.exit(main())
