"""The multi-grid EBM beside its authors' code: same images, grids, updates and chains.

`python -m benchmarks.reference_multigrid --reference-checkout PATH [--size 16] [--updates 90]
[--seeds 0,1,2] [--settings authors,project] [--workdir DIR] [--docs DIR]`

PATH is a checkout of github.com/ruiqigao/Multigrid_learning (TF1 code; the project never holds
or downloads it). Per setting and seed, both implementations train on the same images for the
same number of parameter updates with the same Langevin steps per grid, then draw samples from
the 1x1 averages of the same held-out images, and this project's evaluator scores both sample
sets against those held-out images (FID / KID / precision / recall in `domain` and
`efficientnet_lite0`, with the real-vs-real floor of two halves of the held-out images).

Data: the built-in digits (default, `--data builtin:mnist5k`) or any source, ingested at
`--size` px (grids 1-4-`size`: the authors have nets for 4, 16 and 64 px only) as RGB, since the
authors' code is RGB only; samples of both sides are turned to gray (the channel mean) before
they are scored.

Settings (`--settings`):
- `authors`: the authors' defaults on both sides: batch 100, T = 90 (`--authors-T`), noise-free
  gradient steps x += (delta^2 / 2) grad f on [0, 255] pixels with delta = 0.3, Adam lr 0.3,
  beta1 0.5, BatchNorm in training mode in the chains too, full width. This project's side runs
  them as `model.norm=batch_stats` with delta = 0.3 / 255 on [0, 1] pixels (the same chain: a
  batch-normalised first conv makes the energy blind to the pixel scale).
- `project`: the `mnist5k-multigrid` preset's settings (T 30, step 0.3 on [0, 1] pixels, decaying
  noise, batch 64, half width, no norm) with the paper's Adam lr 1e-4 and no preconditioning on
  both sides, where each code allows: the authors' code takes its T, batch, lr and the same step
  (delta = 0.3 * 255 on [0, 255]), and keeps its full width, BatchNorm and noise-free chains.

`--equal-time` then trains this project's side on (resumed) until it has used the authors'
training time, and scores it again: the same minutes instead of the same updates.

Everything lands in WORKDIR (skipped when present, so a run resumes): the prepared data,
`runs/<impl>-<setting>-s<seed>/result.json` and `samples.npz`, and WORKDIR/reference.json with
the mean and standard deviation over seeds; sample sheets go to `--docs`.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import common

SPACES = ("domain", "efficientnet_lite0")
KEYS = ("fid", "kid", "precision", "recall")
AUTHORS_DELTA = 0.3


def settings(name: str, authors_t: int) -> dict:
    """One setting: the authors' worker arguments and this project's preset overrides."""
    if name == "authors":
        return {"worker": ["--T", str(authors_t), "--delta", str(AUTHORS_DELTA), "--learning-rate", "0.3",
                           "--beta1", "0.5", "--batch-size", "100"],
                "ours": ["model.norm=batch_stats", "model.width=1.0", f"sampler.steps={authors_t}",
                         f"sampler.step_size={AUTHORS_DELTA / 255}", "sampler.noise=false", "sampler.clip=true",
                         "train.learning_rate=0.3", "train.beta_1=0.5", "train.batch_size=100"],
                "batch": 100}
    if name == "project":
        return {"worker": ["--T", "30", "--delta", str(0.3 * 255), "--learning-rate", "1e-4", "--beta1", "0.5",
                           "--batch-size", "64"],
                "ours": ["train.learning_rate=1e-4", "sampler.grid_preconditions="], "batch": 64}
    raise ValueError(f"setting {name!r} is not allowed; allowed values: ['authors', 'project']")


def prepare(args) -> dict:
    """Ingest and pyramid (RGB, grids 1-4-size), the domain classifier, the data files."""
    from components.ingest import run_ingest  # pylint: disable=import-outside-toplevel
    from components.pyramid_beam import run_pyramid  # pylint: disable=import-outside-toplevel
    from components.sources import load_images  # pylint: disable=import-outside-toplevel
    from evaluators.domain_classifier import train_classifier  # pylint: disable=import-outside-toplevel

    root = os.path.join(args.workdir, "prepared")
    paths = {k: os.path.join(root, k) for k in ("ingest", "pyramid", "classifier")}
    paths.update(train=os.path.join(root, "train.npz"), held_out=os.path.join(root, "held_out.npz"))
    if not os.path.exists(os.path.join(paths["ingest"], "summary.json")):
        run_ingest(args.data, paths["ingest"], args.size, 3, limit=args.limit, progress_every=0)
    if not os.path.exists(os.path.join(paths["pyramid"], "metadata.json")):
        run_pyramid(paths["ingest"], paths["pyramid"], grids(args))
    if not os.path.exists(paths["held_out"]):
        train_images, train_labels = load_images(f"ingested:{paths['ingest']}:train", args.size, 3)
        held_out, _ = load_images(f"ingested:{paths['ingest']}:eval", args.size, 3, limit=args.num_samples)
        gray = train_images[..., :1]
        train_classifier(gray, train_labels, paths["classifier"], epochs=3, seed=0, trained_on=args.data)
        np.savez_compressed(paths["train"], images=train_images)
        np.savez_compressed(paths["held_out"], images=held_out)
    return paths


def grids(args) -> list[int]:
    return [1, 4, args.size] if args.size <= 16 else [1, 4, 16, args.size]


def to_gray(images: np.ndarray) -> np.ndarray:
    """uint8 [N, S, S, 3] -> uint8 [N, S, S, 1], the channel mean (both sides alike)."""
    return np.round(images.astype(np.float32).mean(axis=-1, keepdims=True)).astype(np.uint8)


def run_authors(args, paths, setting: str, seed: int, out_dir: str) -> dict:
    out = os.path.join(out_dir, "samples.npz")
    cmd = [sys.executable, "-m", "benchmarks.multigrid_authors", "--reference-checkout", args.reference_checkout,
           "--data", paths["train"], "--starts", paths["held_out"], "--output", out, "--updates",
           str(args.updates), "--seed", str(seed), "--grids", ",".join(map(str, grids(args)))]
    cmd += settings(setting, args.authors_t)["worker"]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))] + sys.path))
    with open(os.path.join(out_dir, "log.txt"), "w", encoding="utf-8") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    with np.load(out) as f:
        return {"info": json.loads(str(f["info"])), "samples": f["samples"]}


def _our_config(args, setting: str, seed: int, steps: int, minutes: float = 0.0):
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel
    overrides = [f"data.image_size={args.size}", "data.channels=3", f"pyramid.grids={','.join(map(str, grids(args)))}",
                 f"train.max_steps={steps}", f"train.max_minutes={minutes}", "train.epochs=100000",
                 f"train.seed={seed}", "train.image_log_every=100000", "train.checkpoint_every=100000"]
    return load_preset("mnist5k-multigrid", overrides + settings(setting, args.authors_t)["ours"])


def run_ours(args, paths, setting: str, seed: int, out_dir: str, steps: int, minutes: float = 0.0) -> dict:
    """Train (or resume) this project's model to `steps` updates (or `minutes`), sample, return."""
    import keras  # pylint: disable=import-outside-toplevel

    from evaluators.model_client import ExportedModel  # pylint: disable=import-outside-toplevel
    from trainers import pyramid_ops  # pylint: disable=import-outside-toplevel
    from trainers.train import train  # pylint: disable=import-outside-toplevel

    keras.backend.clear_session()
    cfg = _our_config(args, setting, seed, steps, minutes)
    start = time.perf_counter()
    result = train(cfg, paths["pyramid"], os.path.join(out_dir, "train"), resume=True)
    train_s = time.perf_counter() - start
    with np.load(paths["held_out"]) as f:
        held_out = f["images"]
    coarse = pyramid_ops.box_downsample(held_out.astype(np.float32) / 255.0, 1).numpy()
    model = ExportedModel(result.export_dir, batch_size=settings(setting, args.authors_t)["batch"])
    start = time.perf_counter()
    samples = model.sample_from_coarse(coarse, seed=seed)["images"]
    sample_s = time.perf_counter() - start
    return {"info": {"updates": result.steps, "train_s": train_s, "sample_s": sample_s,
                     "s_per_update": train_s / max(result.steps, 1), "stopped_by": result.stopped_by},
            "samples": samples}


def score(samples: np.ndarray, held_out: np.ndarray, spaces: dict) -> dict:
    """Both sets to gray, then FID/KID/precision/recall per space."""
    from evaluators.fid import compare_activations  # pylint: disable=import-outside-toplevel
    fake, real = to_gray(samples), to_gray(held_out)
    out = {}
    for name, space in spaces.items():
        real_feats, _ = space.extract(real, batch_size=64)
        fake_feats, _ = space.extract(fake, batch_size=64)
        res = compare_activations(real_feats, fake_feats, kid_subsets=10)
        out[name] = {k: res[k] for k in KEYS}
    return out


def floors(held_out: np.ndarray, spaces: dict) -> dict:
    from evaluators.fid import compare_activations  # pylint: disable=import-outside-toplevel
    real = to_gray(held_out)
    half = len(real) // 2
    out = {}
    for name, space in spaces.items():
        feats, _ = space.extract(real, batch_size=64)
        res = compare_activations(feats[:half], feats[half:2 * half], kid_subsets=10)
        out[name] = {k: res[k] for k in KEYS}
    return out


def one_run(args, paths, spaces, impl: str, setting: str, seed: int, held_out) -> dict:
    """One (implementation, setting, seed) cell, reused from WORKDIR when done."""
    from benchmarks.quality import tile, write_png  # pylint: disable=import-outside-toplevel
    name = f"{impl}-{setting}-s{seed}"
    out_dir = os.path.join(args.workdir, "runs", name)
    result_path = os.path.join(out_dir, "result.json")
    if os.path.exists(result_path):
        return json.load(open(result_path, encoding="utf-8"))
    os.makedirs(out_dir, exist_ok=True)
    print(f"[reference] {name}: training {args.updates} updates", file=sys.stderr, flush=True)
    if impl == "authors":
        got = run_authors(args, paths, setting, seed, out_dir)
    else:
        got = run_ours(args, paths, setting, seed, out_dir, args.updates)
    picture = os.path.join(args.docs, f"reference_multigrid_{args.size}px_{name}.png")
    write_png(picture, tile(to_gray(got["samples"][:64]), scale=max(1, 64 // args.size)))
    row = {"impl": impl, "setting": setting, "seed": seed, "budget": "updates", **got["info"],
           "picture": picture, "metrics": score(got["samples"], held_out, spaces)}
    if impl == "ours" and args.equal_time:
        authors = json.load(open(os.path.join(args.workdir, "runs", f"authors-{setting}-s{seed}", "result.json"),
                                 encoding="utf-8"))
        minutes = max(authors["train_s"] - row["train_s"], 1.0) / 60.0
        more = run_ours(args, paths, setting, seed, out_dir, 10 ** 7, minutes)
        row["equal_time"] = {**more["info"], "train_s": row["train_s"] + more["info"]["train_s"],
                             "metrics": score(more["samples"], held_out, spaces)}
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(row, handle, indent=2)
    return row


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds per (impl, setting, budget)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["impl"], r["setting"], "updates"), []).append((r["updates"], r["train_s"], r["metrics"]))
        if "equal_time" in r:
            e = r["equal_time"]
            groups.setdefault((r["impl"], r["setting"], "minutes"), []).append((e["updates"], e["train_s"],
                                                                              e["metrics"]))
    out = []
    for (impl, setting, budget), items in sorted(groups.items()):
        entry = {"impl": impl, "setting": setting, "budget": budget, "seeds": len(items)}
        for key, values in (("updates", [i[0] for i in items]), ("train_s", [i[1] for i in items])):
            entry[key] = statistics.mean(values)
        for space in SPACES:
            for k in KEYS:
                vals = [i[2][space][k] for i in items]
                entry[f"{k}/{space}"] = statistics.mean(vals)
                entry[f"{k}/{space}/std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(entry)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--reference-checkout", required=True, help="a checkout of ruiqigao/Multigrid_learning")
    parser.add_argument("--data", default="builtin:mnist5k")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images of --data (0 = all)")
    parser.add_argument("--size", type=int, default=16, choices=(16, 64))
    parser.add_argument("--updates", type=int, default=90)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default="authors,project")
    parser.add_argument("--impls", default="authors,ours")
    parser.add_argument("--authors-T", dest="authors_t", type=int, default=90)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--equal-time", action="store_true", help="also train ours on to the authors' minutes")
    parser.add_argument("--workdir", default="/tmp/mgebm-reference-multigrid")
    parser.add_argument("--docs", default="/tmp/mgebm-reference-multigrid/pictures")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.reference_checkout, "model.py")):
        parser.error(f"--reference-checkout {args.reference_checkout}: no model.py there; give a checkout of "
                     "github.com/ruiqigao/Multigrid_learning")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from evaluators.features import get_feature_space  # pylint: disable=import-outside-toplevel

    os.makedirs(args.docs, exist_ok=True)
    paths = prepare(args)
    spaces = {"domain": get_feature_space("domain", classifier_dir=paths["classifier"]),
              "efficientnet_lite0": get_feature_space("efficientnet_lite0")}
    with np.load(paths["held_out"]) as f:
        held_out = f["images"]
    doc = {"machine": common.machine_info({"tensorflow": tf.__version__}), "args": vars(args),
           "reference_commit": _commit(args.reference_checkout), "floor": floors(held_out, spaces), "runs": []}
    for setting in args.settings.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for impl in args.impls.split(","):
                one_run(args, paths, spaces, impl, setting, seed, held_out)
                # every cell of WORKDIR, so that cells run by separate invocations add up
                doc["runs"] = [json.load(open(path, encoding="utf-8")) for path in sorted(
                    glob.glob(os.path.join(args.workdir, "runs", "*", "result.json")))]
                doc["summary"] = summarize(doc["runs"])
                with open(os.path.join(args.workdir, "reference.json"), "w", encoding="utf-8") as handle:
                    json.dump(doc, handle, indent=2)
    rows = [[s["impl"], s["setting"], s["budget"], s["seeds"], f"{s['updates']:.0f}", f"{s['train_s']:.0f}"]
            + [f"{s[f'{k}/{sp}']:.3g}+-{s[f'{k}/{sp}/std']:.2g}"
               for sp in SPACES for k in ("fid", "precision", "recall")]
            for s in doc["summary"]]
    common.emit(doc, rows, ["impl", "setting", "budget", "seeds", "updates", "train s", "FID dom", "P dom", "R dom",
                            "FID eff", "P eff", "R eff"])
    return 0


def _commit(checkout: str) -> str:
    try:
        return subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


if __name__ == "__main__":
    sys.exit(main())
