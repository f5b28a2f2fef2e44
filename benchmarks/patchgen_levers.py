"""PatchGenCN's training levers, each against the same step budget on one photo: SIFID, the
high-frequency energy ratio, diversity, super-resolution and harmonization, and training time.

    python -m benchmarks.patchgen_levers --image chelsea --max-side 64 --min-side 18 \\
        --steps-per-scale 60 --seeds 0 --out levers.json [--arms as_shipped,lr_decay] [--pictures DIR]

Every arm is the preset (`--preset`, default chelsea-patchgen) plus its overrides (the same
`--set section.key=value` strings `mgebm run` takes), trained in this process
(`benchmarks.patchgen_train.train_ours`) with `train.steps_per_scale` = `--steps-per-scale` P
and evaluated by the single-image evaluator's code (`evaluate_ours`). The arms (ARMS; P-relative
step counts are filled in from `--steps-per-scale`):

- as_shipped: the preset.
- lr_decay: the reference's learning rate, 4e-4 -> 5e-5 over 80% of each scale.
- noise_annealed: the reference's Langevin noise: constant along a chain, annealed over each
  scale's training to 0 at 25% of it (sampling after training is then noise-free).
- noise_annealed_chain_linear: the same annealing over training, our within-chain decay kept.
- coarse_noise: a training step's chains through the coarser scales with their sampling noise
  (sampling after training has it; the reference's training chains there are noise-free).
- coarse_pyramid_noise: both.
- coarse_heavy: the steps shared toward the cheap coarse scales: 3P, 2P, P, ..., the finest P/2.
- coarse_batch: 4 chains per step at the coarsest scale, 2 at the next (batch 1 elsewhere).
- coarse_rf: a 19 px receptive field at the coarsest scale (9 valid 3x3 convs instead of 5).
- coarse_pyramid: a coarser pyramid, the coarsest shorter side 11 px instead of 25 (7 scales at
  96 px: 11x17 ... 64x96), so the 11 px receptive field spans the coarsest image as the paper's
  (250 px down to 25 px) does; the three added scales cost little per step.
- no_init: every scale's net from its own random start (the reference's), not a copy.
- wide_nets: the reference's 128-64-64-64-1 nets at scales of 64 px and more.
- reference_settings: the reference's learning rate, noise, wide nets and fresh nets together.
`--arm NAME=OVERRIDE;OVERRIDE` adds an arm of your own.

Output: one JSON document (`--out`, else stdout): the geometry, and per arm and seed the
overrides, the training time (all steps, the first call's tracing included) and per scale, the
summary numbers and the full metrics; a markdown table on stderr. `--pictures DIR` writes each
run's samples (the photo first) as DIR/ARM_sSEED.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from benchmarks import patchgen_train as pt


def coarse_heavy_steps(p: int, num_scales: int) -> list[int]:
    """Steps per scale of the coarse_heavy arm: 3P, 2P, P, ..., P, and P // 2 at the finest."""
    if num_scales == 1:
        return [p]
    return ([3 * p, 2 * p] + [p] * max(0, num_scales - 3))[:num_scales - 1] + [max(1, p // 2)]


def _coarse_heavy(p: int, num_scales: int) -> list[str]:
    return [f"train.scale_steps={','.join(str(s) for s in coarse_heavy_steps(p, num_scales))}"]


REFERENCE = ["train.lr_schedule=linear", "sampler.train_noise_schedule=linear", "sampler.noise_schedule=constant",
             "model.wide_from_side=64", "train.init_from_previous=false"]
ARMS = {
    "as_shipped": lambda p, n: [],
    "lr_decay": lambda p, n: ["train.lr_schedule=linear"],
    "noise_annealed": lambda p, n: ["sampler.train_noise_schedule=linear", "sampler.noise_schedule=constant"],
    "noise_annealed_chain_linear": lambda p, n: ["sampler.train_noise_schedule=linear"],
    "coarse_heavy": _coarse_heavy,
    "coarse_batch": lambda p, n: ["train.scale_batch=4,2"],
    "coarse_rf": lambda p, n: ["model.coarse_patch_layers=9"],
    "coarse_pyramid": lambda p, n: ["pyramid.min_side=11"],
    "coarse_noise": lambda p, n: ["sampler.train_coarse_noise=true"],
    "coarse_pyramid_noise": lambda p, n: ["pyramid.min_side=11", "sampler.train_coarse_noise=true"],
    "no_init": lambda p, n: ["train.init_from_previous=false"],
    "wide_nets": lambda p, n: ["model.wide_from_side=64"],
    "reference_settings": lambda p, n: list(REFERENCE),
}


def parse_arms(names: str, custom: list[str]) -> dict:
    arms = {}
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name not in ARMS:
            raise SystemExit(f"--arms: unknown arm {name!r}; known: {sorted(ARMS)}")
        arms[name] = ARMS[name]
    for spec in custom:
        name, sep, rest = spec.partition("=")
        if not sep or not name:
            raise SystemExit(f"--arm {spec!r} must look like NAME=section.key=value;section.key=value")
        overrides = [o.strip() for o in rest.split(";") if o.strip()]
        arms[name] = lambda p, n, overrides=overrides: list(overrides)
    if not arms:
        raise SystemExit("--arms: give at least one arm")
    return arms


def sr_sweep(model, image, seed: int, steps_list) -> dict:
    """{"MODE:STEPS": {"x2": psnr, "x4": psnr, "x2_bicubic", "x4_bicubic"}}: super-resolution of
    the trained model with each upsampling mode (`sampler.sr_upsampling`: cascade, direct) and
    each count of noise-free refinement steps (`sampler.sr_steps`)."""
    from evaluators import single_image_eval as ev  # pylint: disable=import-outside-toplevel

    kept, out = (model.sr_sampler, model.sr_upsampling), {}
    low = int(np.ceil(3.0 / model.factor ** (model.num_scales - 1) - 1e-9))
    try:
        for mode in ("cascade", "direct"):
            for steps in steps_list:
                model.sr_sampler = model.sampler.replace(steps=int(steps), noise=False)
                model.sr_upsampling = mode
                table, _ = ev.super_resolution(pt.InProcessClient(model), image, seed, low, [])
                out[f"{mode}:{steps}"] = {f"{k}{suffix}": v[side]["psnr"] for k, v in table.items()
                                          for side, suffix in (("model", ""), ("bicubic", "_bicubic"))}
    finally:
        model.sr_sampler, model.sr_upsampling = kept
    return out


def harmonization_sweep(model, image, seed: int) -> dict:
    """{start_scale: colour distance after harmonize} for every start scale, and "before": the
    evaluator's composite (a flat disc) and ring (`single_image_eval.manipulations`)."""
    from evaluators import image_statistics  # pylint: disable=import-outside-toplevel
    from evaluators import single_image_eval as ev  # pylint: disable=import-outside-toplevel

    _, (composite, mask), _ = ev._edits(image, seed)  # pylint: disable=protected-access
    ring = ev.harmonization_ring(*image.shape[:2])
    client = pt.InProcessClient(model)

    def distance(picture):
        return image_statistics.colour_distance(picture.astype(np.float64) / 255.0, mask, ring)

    out = {"before": distance(composite)}
    for start in range(model.num_scales):
        result = client.call("harmonize", images=composite[None], mask=mask[None], seed=seed, start_scale=start)
        out[str(start)] = distance(result[0])
    return out


def run_arm(image, preset: str, overrides: list[str], seed: int, applications: bool, num_samples: int,
            sr_steps=()) -> dict:
    full = [*overrides, f"train.seed={seed}"]
    trained = pt.train_ours(image, preset, full, log_every=100)
    metrics, pictures, _ = pt.evaluate_ours(trained["model"], image, num_samples, seed, applications)
    if sr_steps:
        metrics["sr_steps_sweep"] = sr_sweep(trained["model"], image, seed, sr_steps)
        metrics["harmonization_sweep"] = harmonization_sweep(trained["model"], image, seed)
    return {"overrides": overrides, "seed": seed, "scales": [list(s) for s in trained["scales"]],
            "train_s": trained["train_s"], "scale_s": trained["scale_s"],
            "steps": trained["steps"], "scale_steps": list(trained["model"].scale_steps),
            "summary": pt.summary(metrics), "metrics": metrics, "final_train_metrics": trained["final_metrics"],
            "_pictures": pictures}


def mean_of(runs: list[dict]) -> dict:
    out = {}
    for key in runs[0]["summary"]:
        values = [r["summary"][key] for r in runs if r["summary"][key] is not None]
        out[key] = float(np.mean(values)) if values else None
    out["train_s"] = float(np.mean([r["train_s"] for r in runs]))
    return out


def table(doc: dict) -> str:
    cols = ("sifid", "sifid_quilting", "hf_ratio", "diversity", "sr_x2_psnr", "sr_x2_bicubic", "harm_before",
            "harm_after", "train_s")
    lines = ["| arm | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, arm in doc["arms"].items():
        m = arm["mean"]
        cells = [("-" if m.get(c) is None else f"{m[c]:.3g}") for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default="chelsea", help=f"one of {list(pt.PHOTOS)} or a file path")
    parser.add_argument("--preset", default="chelsea-patchgen")
    parser.add_argument("--max-side", type=int, default=96)
    parser.add_argument("--min-side", type=int, default=0, help="pyramid.min_side (0: the preset's)")
    parser.add_argument("--steps-per-scale", type=int, default=60)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--arm", action="append", default=[], help="NAME=OVERRIDE;OVERRIDE (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="an override for every arm (repeatable)")
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--no-applications", action="store_true", help="skip super-resolution and harmonization")
    parser.add_argument("--sr-steps", default="",
                        help="also super-resolve with these sampler.sr_steps (both sampler.sr_upsampling), e.g. 1,3,5")
    parser.add_argument("--out", default="")
    parser.add_argument("--pictures", default="")
    args = parser.parse_args(argv)
    arms = parse_arms(args.arms, args.arm)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    image = pt.load_image(args.image, args.max_side)
    common = [f"train.steps_per_scale={args.steps_per_scale}", f"data.max_side={args.max_side}", *args.set]
    if args.min_side:
        common.append(f"pyramid.min_side={args.min_side}")
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel

    cfg = load_preset(args.preset, common)
    scales = pt.scales_of(image, cfg.pyramid.scale_factor, cfg.pyramid.min_side)
    doc = {"image": args.image, "image_size": list(image.shape), "preset": args.preset, "scales": scales,
           "steps_per_scale": args.steps_per_scale, "common_overrides": common, "seeds": seeds,
           "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_before": os.getloadavg(), "arms": {}}
    for name, make in arms.items():
        overrides = [*common, *make(args.steps_per_scale, len(scales))]
        runs = []
        for seed in seeds:
            print(f"[levers] {name} seed {seed}: {overrides}", file=sys.stderr, flush=True)
            run = run_arm(image, args.preset, overrides, seed, not args.no_applications, args.num_samples,
                          [int(v) for v in args.sr_steps.split(",") if v.strip()])
            pictures = run.pop("_pictures")
            if args.pictures:
                pt.save_png(os.path.join(args.pictures, f"{name}_s{seed}.png"), pictures["samples"])
            runs.append(run)
            print(f"[levers] {name} seed {seed}: {json.dumps(run['summary'])} train {run['train_s']:.0f} s",
                  file=sys.stderr, flush=True)
        doc["arms"][name] = {"runs": runs, "mean": mean_of(runs)}
        if args.out:  # after every arm, so a long run leaves what it has
            with open(args.out, "w") as f:
                json.dump(doc, f, indent=1)
    doc["load_after"] = os.getloadavg()
    text = json.dumps(doc, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)
    print(table(doc), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
