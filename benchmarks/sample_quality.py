"""Which settings make a preset's samples look like its data: variants at equal step budgets.

`python -m benchmarks.sample_quality --variants base: decay:sampler.noise_schedule=linear
--steps 200,400` on the demo preset (`mnist5k-multigrid`, the built-in offline digits):

1. ingest, pyramid and the `domain` classifier exactly as the demo builds them (the preset's
   data, grids and `eval.classifier_epochs`), once per WORKDIR;
2. per variant (`NAME:section.key=value,...`, applied on top of the preset): train to each
   step count in `--steps` in turn (a fixed step budget, not minutes, so machine load cannot
   change what is compared; later budgets resume the same run), or with `--minutes 9,30,90` to
   each wall-clock budget (quality against time, as a user gets it on this machine), then draw `eval.num_samples`
   images through the exported `sample` signature with the evaluator's seed and score them
   against the preset's `eval.num_real` held-out images in the `domain` and
   `efficientnet_lite0` spaces: FID, KID, precision, recall, with the real-vs-real floor the
   demo's report uses (two disjoint halves of the real images);
3. an 8x8 grid of samples per variant and budget in `--docs`.

Results go to WORKDIR/sample_quality.json after every evaluation and are printed as JSON with a
table on stderr. Lower FID/KID and higher precision/recall are better.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from benchmarks import common
from benchmarks.quality import tile, write_png

SPACES = ("domain", "efficientnet_lite0")
_KEYS = ("fid", "kid", "kid_std", "precision", "recall")


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`NAME:a.b=1,c.d=x` -> ("NAME", ["a.b=1", "c.d=x"]); `NAME:` is the preset unchanged."""
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise ValueError(f"variant {text!r} must look like NAME:section.key=value,... (NAME: alone = preset)")
    return name, [item for item in rest.split(",") if item]


def scores(real, fake, spaces, kid_subsets: int, seed: int) -> dict:
    """Model-vs-real metrics per space and the real-vs-real floor of two halves of `real`."""
    from evaluators.fid import compare_activations  # pylint: disable=import-outside-toplevel
    out = {}
    order = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    for name, space in spaces.items():
        real_feats, _ = space.extract(real, batch_size=64)
        fake_feats, _ = space.extract(fake, batch_size=64)
        res = compare_activations(real_feats, fake_feats, kid_subsets)
        floor = compare_activations(real_feats[order[:half]], real_feats[order[half:2 * half]], kid_subsets)
        out[name] = {k: res.get(k) for k in _KEYS}
        out[name]["floor"] = {k: floor.get(k) for k in _KEYS}
    return out


def prepare(cfg, workdir: str):
    """Ingest + pyramid + domain classifier as the demo makes them (reused when present)."""
    from components.ingest import run_ingest  # pylint: disable=import-outside-toplevel
    from components.pyramid_beam import run_pyramid  # pylint: disable=import-outside-toplevel
    from components.sources import load_images  # pylint: disable=import-outside-toplevel
    from evaluators.domain_classifier import train_classifier  # pylint: disable=import-outside-toplevel
    from evaluators.features import get_feature_space  # pylint: disable=import-outside-toplevel
    d = cfg.data
    ingest_dir, pyramid_dir, classifier_dir = (os.path.join(workdir, n) for n in ("ingest", "pyramid", "classifier"))
    if not tf.io.gfile.exists(os.path.join(ingest_dir, "summary.json")):
        run_ingest(d.source, ingest_dir, d.image_size, d.channels, eval_fraction=d.eval_fraction,
                   limit=d.limit, num_shards=d.num_shards, progress_every=0)
    if not tf.io.gfile.exists(os.path.join(pyramid_dir, "metadata.json")):
        run_pyramid(ingest_dir, pyramid_dir, cfg.pyramid.grids)
    train_images, train_labels = load_images(f"ingested:{ingest_dir}:train", d.image_size, d.channels)
    real, _ = load_images(f"ingested:{ingest_dir}:eval", d.image_size, d.channels, limit=cfg.eval.num_real)
    if not tf.io.gfile.exists(os.path.join(classifier_dir, "info.json")):
        train_classifier(train_images, train_labels, classifier_dir, epochs=cfg.eval.classifier_epochs,
                         seed=cfg.train.seed, trained_on=d.source)
    spaces = {"domain": get_feature_space("domain", classifier_dir=classifier_dir),
              "efficientnet_lite0": get_feature_space("efficientnet_lite0")}
    return pyramid_dir, spaces, real


def run_variant(args, name: str, extra: list[str], budget: float, pyramid_dir: str, spaces, real) -> dict:
    """Train (or resume) one variant to `budget` (steps, or minutes with --minutes), sample, score,
    draw; a JSON-able dict."""
    import keras  # pylint: disable=import-outside-toplevel
    from evaluators.model_client import ExportedModel  # pylint: disable=import-outside-toplevel
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel
    from trainers.train import train  # pylint: disable=import-outside-toplevel
    keras.backend.clear_session()
    run_dir = os.path.join(args.workdir, name)
    clock_path = os.path.join(run_dir, "trained_minutes.json")
    trained = json.load(open(clock_path)) if os.path.exists(clock_path) else {"minutes": 0.0}
    if args.minutes:  # a wall-clock budget: train this leg for what is left of it
        limits = ["train.max_steps=0", f"train.max_minutes={max(budget - trained['minutes'], 0.01):.4f}"]
    else:
        limits = ["train.max_minutes=0", f"train.max_steps={int(budget)}"]
    overrides = limits + ["train.epochs=100000", f"train.seed={args.seed}", "train.image_log_every=100000"] + extra
    cfg = load_preset(args.preset, overrides)
    start = time.perf_counter()
    result = train(cfg, pyramid_dir, run_dir, resume=True)
    train_s = time.perf_counter() - start
    trained["minutes"] += train_s / 60.0
    with open(clock_path, "w") as handle:
        json.dump(trained, handle)
    model = ExportedModel(result.export_dir, batch_size=250)
    fake = model.sample(cfg.eval.num_samples, seed=args.seed)["images"]
    label = f"{budget:g}min" if args.minutes else f"{int(budget)}"
    picture = os.path.join(args.docs, f"sample_quality_{name}_{label}.png")
    write_png(picture, tile(fake[:64]))
    return {"variant": name, "overrides": extra, "steps": result.steps, "minutes": trained["minutes"],
            "budget": budget, "budget_kind": "minutes" if args.minutes else "steps",
            "train_s_this_leg": train_s, "num_samples": int(len(fake)), "num_real": int(len(real)),
            "picture": picture, "metrics": scores(real, fake, spaces, cfg.eval.kid_subsets, args.seed)}


def plot_curves(runs: list[dict], path: str, seconds_per_step: float | None = None) -> None:
    """One PNG: FID (both spaces, with the floors) and EfficientNet precision/recall against
    training steps, one line per variant; a second x axis in minutes when seconds_per_step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
    from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
    fig = Figure(figsize=(12, 3.6), dpi=90)
    FigureCanvasAgg(fig)
    panels = [("domain", "fid", "FID domain"), ("efficientnet_lite0", "fid", "FID efficientnet_lite0"),
              ("efficientnet_lite0", "precision", "precision / recall efficientnet_lite0")]
    variants = sorted({r["variant"] for r in runs})
    for i, (space, key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        for name in variants:
            rows = sorted((r for r in runs if r["variant"] == name), key=lambda r: r["steps"])
            by_minutes = all(r.get("budget_kind") == "minutes" for r in rows)
            steps = [r["minutes"] if by_minutes else r["steps"] for r in rows]
            ax.plot(steps, [r["metrics"][space][key] for r in rows], "o-", label=f"{name} {key}")
            if key == "precision":
                ax.plot(steps, [r["metrics"][space]["recall"] for r in rows], "s--", label=f"{name} recall")
            else:
                ax.axhline(rows[-1]["metrics"][space]["floor"][key], color="gray", lw=0.8, ls=":",
                           label="real vs real")
        if key == "precision":
            ax.axhline(0.3, color="red", lw=0.8, ls=":", label="target 0.3")
        ax.set_title(title, fontsize=9)
        minutes = all(r.get("budget_kind") == "minutes" for r in runs)
        ax.set_xlabel("minutes of training" if minutes else "training steps" + (
            f" (x {seconds_per_step / 60:.3f} = minutes)" if seconds_per_step else ""), fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--preset", default="mnist5k-multigrid")
    parser.add_argument("--variants", nargs="+", default=["preset:"], help="NAME:section.key=value,...")
    parser.add_argument("--steps", default="400", help="comma-separated increasing step budgets")
    parser.add_argument("--minutes", help="comma-separated increasing budgets in minutes of training (by the "
                        "wall clock, as train.max_minutes counts them; later budgets resume the run) instead of "
                        "--steps: quality against time, which depends on the machine and its load")
    parser.add_argument("--workdir", default="/tmp/mgebm-sample-quality")
    parser.add_argument("--docs", default="/tmp/mgebm-sample-quality/pictures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="also draw the curves of every run (metric against steps) to this PNG")
    parser.add_argument("--plot-only", metavar="JSON", help="draw --plot from the runs of earlier sample_quality "
                        "JSON files (comma-separated) and exit")
    args = parser.parse_args(argv)
    if args.plot_only:
        runs = [r for path in args.plot_only.split(",") for r in json.load(open(path))["runs"]]
        plot_curves(runs, args.plot or "sample_quality.png")
        return 0
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel
    variants = [parse_variant(v) for v in args.variants]
    budgets = sorted(float(s) if args.minutes else int(s) for s in (args.minutes or args.steps).split(",") if s)
    tf.io.gfile.makedirs(args.docs)
    out_path = os.path.join(args.workdir, "sample_quality.json")
    doc = {"machine": common.machine_info({"tensorflow": tf.__version__}), "args": vars(args), "runs": []}
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        pyramid_dir, spaces, real = prepare(load_preset(args.preset), args.workdir)
    for budget in budgets:
        for name, extra in variants:
            unit = "minutes" if args.minutes else "steps"
            print(f"[sample_quality] {name} to {budget} {unit}", file=sys.stderr, flush=True)
            with contextlib.redirect_stdout(sys.stderr):
                row = run_variant(args, name, extra, budget, pyramid_dir, spaces, real)
            row["loadavg_after"] = common.load_average()
            doc["runs"].append(row)
            with tf.io.gfile.GFile(out_path, "w") as handle:
                handle.write(json.dumps(doc, indent=2))
    doc["wall_s"] = time.perf_counter() - start
    with tf.io.gfile.GFile(out_path, "w") as handle:
        handle.write(json.dumps(doc, indent=2))
    if args.plot:
        plot_curves(doc["runs"], args.plot)
    rows = []
    for r in doc["runs"]:
        m = r["metrics"]
        rows.append([r["variant"], r["steps"], f"{r.get('minutes', 0):.1f}"]
                    + [common.fmt(m[s][k]) for s in SPACES for k in ("fid", "precision", "recall")]
                    + [common.fmt(m[s]["floor"]["fid"]) for s in SPACES])
    common.emit(doc, rows, ["variant", "steps", "minutes", "FID dom", "P dom", "R dom", "FID eff", "P eff", "R eff",
                            "floor dom", "floor eff"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
