"""PatchGenCN beside its authors' code (zilongzheng/PatchGenCN) on the same image, scale pyramid
and steps per scale, both evaluated by this project's single-image evaluator.

    python -m benchmarks.reference_patchgen --reference-checkout /path/to/PatchGenCN \\
        [--image chelsea] [--max-side 96] [--steps-per-scale 250] [--out side_by_side.json] \\
        [--pictures DIR] [--set section.key=value ...]

The user brings the checkout (the project never contains or downloads the authors' code). The
photo is fitted as the `file:` source fits it (longer side `--max-side`, area), its scales are
the preset's (`pyramid.scale_factor`, `pyramid.min_side`: 64x96 chelsea -> 27x40, 36x54, 48x72,
64x96). The authors' code runs first, in a child process with TF_USE_LEGACY_KERAS=1
(`benchmarks.reference_patchgen_worker`: its own `build_models`, `train_single_scale` and
`multi_scale_sample`, every setting at its default, the schedules scaled to the budget); then
ours in this process (`benchmarks.patchgen_train.train_ours`: the preset plus `--set`
overrides, e.g. the reference's settings, `benchmarks.patchgen_levers.REFERENCE`). Each side
gets the machine to itself while it trains (one after the other). Both sides' samples
(`--num-samples`, training size) go through `evaluators.single_image.single_image_metrics`
(SIFID in efficientnet_lite0, diversity, nearest patch, the high-frequency energy ratio, beside
patch shuffling and image quilting); ours also through super-resolution and harmonization.

Output (JSON): geometry, the checkout's commit, per side the training time (total and per
scale), whether every scale trained (the reference stops a scale early when its recovery error
explodes), the metrics; `ratio_train_s` = reference / ours. `--pictures DIR` writes
DIR/reference_samples.png and DIR/ours_samples.png (the photo first).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import patchgen_train as pt


def checkout_commit(path: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_reference(checkout: str, image: np.ndarray, scales, factor: float, steps: int, num_samples: int,
                  seed: int, python: str, timeout_s: float | None) -> dict:
    """Train and sample the authors' code in a child process; returns its figures and samples."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    work = tempfile.mkdtemp(prefix="reference_patchgen_")
    png, out = os.path.join(work, "image.png"), os.path.join(work, "reference.npz")
    Image.fromarray(image).save(png)
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [python, "-m", "benchmarks.reference_patchgen_worker", "--checkout", checkout, "--image", png,
           "--num-scales", str(len(scales)), "--scale-factor", str(factor), "--steps-per-scale", str(steps),
           "--num-samples", str(num_samples), "--seed", str(seed), "--out", out]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=work, timeout=timeout_s, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").splitlines()[-15:])
        raise SystemExit(f"the reference code failed (exit {proc.returncode}):\n{tail}")
    data = np.load(out)
    got = [tuple(int(v) for v in s) for s in data["scales"]]
    if got != [tuple(s) for s in scales]:
        raise SystemExit(f"the reference built scales {got}, ours are {list(scales)}: not the same pyramid")
    return {"samples": np.round(data["samples"] * 255).astype(np.uint8), "train_s": float(data["train_s"]),
            "scale_s": [float(v) for v in data["scale_s"]], "completed": bool(data["completed"]),
            "process_wall_s": wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-checkout", required=True, help="a checkout of zilongzheng/PatchGenCN")
    parser.add_argument("--image", default="chelsea", help=f"one of {list(pt.PHOTOS)} or a file path")
    parser.add_argument("--preset", default="chelsea-patchgen", help="our settings (and the pyramid's)")
    parser.add_argument("--max-side", type=int, default=96)
    parser.add_argument("--steps-per-scale", type=int, default=250)
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="an override of ours (repeatable)")
    parser.add_argument("--skip-reference", action="store_true", help="ours only (e.g. to compare settings)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter for the reference")
    parser.add_argument("--timeout-min", type=float, default=0, help="limit on the reference's run (0 = none)")
    parser.add_argument("--out", default="")
    parser.add_argument("--pictures", default="")
    args = parser.parse_args(argv)
    checkout = os.path.abspath(args.reference_checkout)
    if not all(os.path.isfile(os.path.join(checkout, name)) for name in ("train.py", "models.py")):
        raise SystemExit(f"--reference-checkout {checkout}: no train.py / models.py; give a checkout of "
                         "zilongzheng/PatchGenCN (git clone https://github.com/zilongzheng/PatchGenCN)")
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel

    overrides = [f"train.steps_per_scale={args.steps_per_scale}", f"data.max_side={args.max_side}", *args.set]
    cfg = load_preset(args.preset, overrides)
    image = pt.load_image(args.image, args.max_side)
    scales = pt.scales_of(image, cfg.pyramid.scale_factor, cfg.pyramid.min_side)
    if len(scales) < 2:
        raise SystemExit(f"the image {image.shape[:2]} gives one scale; raise --max-side")
    doc = {"image": args.image, "image_size": list(image.shape), "scales": [list(s) for s in scales],
           "scale_factor": cfg.pyramid.scale_factor, "steps_per_scale": args.steps_per_scale,
           "num_samples": args.num_samples, "reference_checkout": checkout,
           "reference_commit": checkout_commit(checkout), "our_preset": args.preset, "our_overrides": overrides,
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": os.getloadavg()}
    pictures = {}
    if not args.skip_reference:
        print(f"[side-by-side] the reference code: {len(scales)} scales x {args.steps_per_scale} steps",
              file=sys.stderr, flush=True)
        ref = run_reference(checkout, image, scales, cfg.pyramid.scale_factor, args.steps_per_scale,
                            args.num_samples, args.seed + 1, args.python,
                            args.timeout_min * 60 if args.timeout_min else None)
        samples = ref.pop("samples")
        ref["metrics"] = pt.sample_metrics(image, samples, args.seed)
        ref["summary"] = pt.summary(ref["metrics"])
        doc["reference"] = ref
        pictures["reference"] = samples
    print("[side-by-side] ours", file=sys.stderr, flush=True)
    trained = pt.train_ours(image, args.preset, [*overrides, f"train.seed={args.seed}"], log_every=100)
    metrics, ours_pictures, samples = pt.evaluate_ours(trained["model"], image, args.num_samples, args.seed)
    doc["ours"] = {"train_s": trained["train_s"], "scale_s": trained["scale_s"], "completed": True,
                   "metrics": metrics, "summary": pt.summary(metrics)}
    pictures["ours"] = samples
    if "reference" in doc:
        doc["ratio_train_s"] = doc["reference"]["train_s"] / doc["ours"]["train_s"]
    doc["load_after"] = os.getloadavg()
    if args.pictures:
        from evaluators import report_parts as parts  # pylint: disable=import-outside-toplevel

        for side, samples in pictures.items():
            pt.save_png(os.path.join(args.pictures, f"{side}_samples.png"),
                        parts.tile_images(np.concatenate([image[None], samples]), 3))
    text = json.dumps(doc, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)
    for side in ("reference", "ours"):
        if side in doc:
            s = doc[side]["summary"]
            print(f"[side-by-side] {side}: SIFID {s['sifid']:.1f} (quilting {s['sifid_quilting']:.1f}), "
                  f"hf ratio {s['hf_ratio']:.2f}, train {doc[side]['train_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
