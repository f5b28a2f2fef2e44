"""PatchGenCN on this CPU: time per training step at each scale and per image, time and gradient
evaluations per generated image, the sampler against the measured peak and against PyTorch eager.

`python -m benchmarks.patchgen` (a few minutes on 2 cores): the `chelsea-patchgen` preset's real
geometry: a 96x64 (WxH, chelsea's shape after `max_side` 96) RGB image, its scales
`trainers.pyramid_ops.scale_sizes(64, 96, 0.75, 25)` = 27x40, 36x54, 48x72, 64x96 (HxW), the
preset's nets (5 valid 3x3 convs, 64-32-32-32-1, ELU, spectral norm), its chains (60 steps at the
coarsest scale, 30 at the others, noise decaying to 0), batch 1 and `train.steps_per_scale`
from the preset. `--quick` (< 1 min): a 48x36 image (2 scales), 2 steps per chain.

The model is built as the trainer builds it (the family registry's `build` from the preset, then
`compile`); the image is random (uniform noise resized to each scale with
`pyramid_ops.scale_pyramid`: the work does not depend on the content).

Figures (one JSON document on stdout, a short table on stderr):
- `train_steps`: per scale k, the trainer's step function (`trainers.train._make_step_fn`, a
  tf.function of `model.train_step`) with the step counter set inside scale k (its branch of the
  `tf.switch_case`): chains through the frozen scales 0..k-1 and scale k, the recovery chain, one
  Adam step. Warmed (trace + one call), then `--repeats` calls: median, best, times, spread
  (max - min) and the analytic FLOPs and GFLOP/s of the best call.
- `train_s_per_image`: sum over scales of `steps_per_scale` x the median step time: the time to
  learn one image at the preset's budget (the preset's `max_minutes` may cut it).
- `synthesize`: `model.synthesize` (a tf.function, training size) at batch 1 and 8: time per
  image, images/s, GFLOP/s, fraction of peak; `sampler_scales`: each scale's chain alone (batch 1).
- `grad_evals_per_image` = coarse_steps + steps x (L - 1); `grad_evals_per_image_pixel_weighted`
  = sum_k T_k h_k w_k / (H W) (the work in units of full-size gradient evaluations).
- `flops`: per scale the forward FLOPs, one Langevin step (`common.langevin_step_flops`, 2x the
  forward), the training step, and the whole synthesis per image (`common.patchgen_*`).
- `peak_gflops`: `benchmarks.langevin.peak_probes`, measured at the start, between the training
  steps and the sampler, and at the end (the best; every probe is kept in `peaks`, the range of
  the three in `peak_gflops_range`: a fraction of peak is only as good as its peak).
- `speedup_vs_torch`: images/s of the TF sampler over the PyTorch eager chain
  (`benchmarks.reference_torch --patchgen`, same net, same chain, same batch) at batch 8
  (`speedup_vs_torch_by_batch` for both); null with a reason in `torch` when no interpreter with
  torch is available (`--torch-python`).
Timings are wall clock with the result copied to the host; GFLOP/s and fractions of peak use the
best call (other processes only ever add time), the per-image training time the median.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import keras
import tensorflow as tf

from benchmarks import common
from benchmarks.langevin import peak_probes, torch_python
from pipeline.presets import load_preset
from trainers import families, pyramid_ops
from trainers import train as train_lib

PRESET = "chelsea-patchgen"
DEFAULT_SIZE = (64, 96)  # chelsea (300x451) with max_side 96
QUICK_SIZE = (36, 48)
SYNTH_BATCHES = (1, 8)


def build(preset: str, height: int, width: int, steps: int = 0, coarse_steps: int = 0, seed: int = 0):
    """(config, compiled PatchGenCN, scales) of `preset` for a height x width image, as the trainer
    builds it; steps / coarse_steps override the preset's chains when > 0."""
    overrides = [f"train.seed={seed}"]
    overrides += [f"sampler.steps={steps}"] if steps else []
    overrides += [f"sampler.coarse_steps={coarse_steps}"] if coarse_steps else []
    cfg = load_preset(preset, overrides)
    scales = pyramid_ops.scale_sizes(height, width, cfg.pyramid.scale_factor, cfg.pyramid.min_side)
    metadata = {"grids": [], "image_size": max(height, width), "channels": cfg.data.channels,
                "scales": [list(s) for s in scales], "scale_factor": cfg.pyramid.scale_factor}
    model = families.get_family(cfg.model.family).build(cfg, metadata)
    model.compile(learning_rate=cfg.train.learning_rate, beta_1=cfg.train.beta_1)
    return cfg, model, scales


def net_channels(model) -> list[int]:
    return list(model.nets[0].layer_channels)


def grad_evals(scales, steps: int, coarse_steps: int) -> dict:
    """Gradient evaluations per generated image: plain and weighted by each scale's pixels."""
    h, w = scales[-1]
    per = [coarse_steps if k == 0 else steps for k in range(len(scales))]
    return {"grad_evals_per_image": sum(per),
            "grad_evals_per_image_pixel_weighted": sum(t * a * b for t, (a, b) in zip(per, scales)) / (h * w)}


def _spread(timing: dict) -> dict:
    times = timing["times_s"]
    return {"spread_s": max(times) - min(times), "spread_rel": (max(times) - min(times)) / timing["median_s"]}


def bench_train_steps(model, cfg, scales, repeats: int, seed: int = 0) -> list[dict]:
    """Time the trainer's step function at every scale (see the module docstring)."""
    step_fn = train_lib._make_step_fn(model, tf.distribute.get_strategy(), False)  # pylint: disable=protected-access
    h, w = scales[-1]
    image = tf.random.stateless_uniform([1, h, w, model.channels], [seed, 1])
    batch = cfg.train.batch_size
    levels = pyramid_ops.scale_pyramid(image, scales)
    data = {f"scale_{k}": tf.repeat(v, batch, axis=0) for k, v in enumerate(levels)}
    channels, per_scale = net_channels(model), model.steps_per_scale
    out = []
    for k, (sh, sw) in enumerate(scales):
        metrics = {}

        def call(k=k, metrics=metrics):
            model.train_counter.assign(k * per_scale + 1)  # inside scale k, past its net copy
            metrics.update({m: float(v) for m, v in step_fn(data).items()})

        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        traces = step_fn.experimental_get_tracing_count()
        timing = common.time_calls(call, repeats, warmup=1)
        flops = common.patchgen_train_step_flops(scales, k, model.channels, channels, model.sampler.steps,
                                                 model.coarse_steps, batch, model.recovery_weight > 0)
        out.append({"scale": k, "height": sh, "width": sw, "batch": batch, "first_call_s": first, **timing,
                    **_spread(timing), "flops_per_call": flops, "gflops": flops / timing["best_s"] / 1e9,
                    "trained_scale": int(metrics["scale"]),
                    "finite_metrics": all(v == v and abs(v) != float("inf") for v in metrics.values()),
                    "traces_after_first": step_fn.experimental_get_tracing_count() - traces})
        print(f"[patchgen] train step scale {k} ({sh}x{sw}): median {timing['median_s']:.3f} s",
              file=sys.stderr, flush=True)
    return out


def bench_synthesize(model, scales, batches, repeats: int, seed: int = 0) -> tuple[dict, int]:
    """Time `synthesize` at the training size for each batch; ({batch: figures}, retraces)."""
    fn = tf.function(lambda num, s: model.synthesize(num, s))
    seed_t = tf.constant([seed, 7], tf.int64)
    channels = net_channels(model)
    out, traces = {}, None
    for n in batches:
        num = tf.constant(n, tf.int32)

        def call(num=num):
            return fn(num, seed_t).numpy()

        start = time.perf_counter()
        shape = call().shape
        first = time.perf_counter() - start
        traces = fn.experimental_get_tracing_count() if traces is None else traces
        timing = common.time_calls(call, repeats if n == 1 else max(1, repeats - 1), warmup=0)
        flops = common.patchgen_chain_flops(scales, model.channels, channels, model.sampler.steps,
                                            model.coarse_steps, n)
        best = timing["best_s"]
        out[str(n)] = {"batch": n, "shape": list(shape), "first_call_s": first, **timing, **_spread(timing),
                       "s_per_image": best / n, "images_per_s": n / best, "flops_per_call": flops,
                       "gflops": flops / best / 1e9}
        print(f"[patchgen] synthesize batch {n}: {best / n:.3f} s per image", file=sys.stderr, flush=True)
    return out, fn.experimental_get_tracing_count() - traces


def bench_scale_chains(model, scales, repeats: int, seed: int = 0) -> list[dict]:
    """Each scale's noisy chain alone on one image (a tf.function per scale)."""
    channels, out = net_channels(model), []
    seed_t = tf.constant([seed, 9], tf.int64)
    for k, (h, w) in enumerate(scales):
        fn = tf.function(lambda x, s, k=k: model.run_scale(k, x, s)[0])
        x = tf.random.stateless_uniform([1, h, w, model.channels], [seed, 10 + k])
        timing = common.time_calls(lambda fn=fn, x=x: fn(x, seed_t).numpy(), repeats, warmup=1)
        flops = common.patchgen_chain_flops(scales, model.channels, channels, model.sampler.steps,
                                            model.coarse_steps, 1, k, k)
        out.append({"scale": k, "height": h, "width": w, "steps": model.coarse_steps if k == 0 else
                    model.sampler.steps, **timing, "flops_per_call": flops,
                    "gflops": flops / timing["best_s"] / 1e9})
    return out


def torch_spec(model, scales) -> dict:
    """The JSON handed to `benchmarks.reference_torch --patchgen`."""
    s = model.sampler
    return {"scales": [list(v) for v in scales], "image_channels": model.channels,
            "channels": net_channels(model), "activation": "elu", "steps": s.steps,
            "coarse_steps": model.coarse_steps, "step_size": s.step_size, "noise_scale": s.noise_scale,
            "noise_schedule": s.noise_schedule, "step_size_schedule": s.step_size_schedule, "clip": s.clip}


def bench_torch(python: str | None, model, scales, batches, repeats: int, timeout: float = 900) -> dict:
    """The reference's figures, or {"available": False, "skipped": why}."""
    if not python:
        return {"available": False, "skipped": f"torch is not importable by {sys.executable} and no "
                "--torch-python was given (optional, benchmark-only: requirements/bench-torch-py311.txt)"}
    cmd = [python, "-m", "benchmarks.reference_torch", "--patchgen", json.dumps(torch_spec(model, scales)),
           "--batches", ",".join(map(str, batches)), "--repeats", str(repeats)]
    return common.run_json(cmd, timeout)


def flops_section(model, scales) -> dict:
    channels = net_channels(model)
    fwd = [common.patchgen_forward_flops(h, w, model.channels, channels)["total"] for h, w in scales]
    return {"forward_per_scale": fwd,
            "langevin_step_per_scale": [common.langevin_step_flops(f) for f in fwd],
            "train_step_per_scale": [common.patchgen_train_step_flops(
                scales, k, model.channels, channels, model.sampler.steps, model.coarse_steps,
                1, model.recovery_weight > 0) for k in range(len(scales))],
            "synthesize_per_image": common.patchgen_chain_flops(scales, model.channels, channels,
                                                                model.sampler.steps, model.coarse_steps)}


def measure(args) -> dict:
    """Every measurement of one run (see the module docstring), assembled."""
    height, width = QUICK_SIZE if args.quick else DEFAULT_SIZE
    steps = args.steps or (2 if args.quick else 0)
    cfg, model, scales = build(args.preset, height, width, steps, steps)
    peaks = [peak_probes()]
    train = bench_train_steps(model, cfg, scales, args.repeats)
    peaks.append(peak_probes())
    chains = bench_scale_chains(model, scales, args.repeats)
    synth, retraces = bench_synthesize(model, scales, SYNTH_BATCHES, args.repeats)
    ref = bench_torch(torch_python(args.torch_python), model, scales, SYNTH_BATCHES, args.repeats)
    peaks.append(peak_probes())
    peak = max(max(p.values()) for p in peaks)
    for row in [*train, *chains, *synth.values()]:
        row["fraction_of_peak"] = row["gflops"] / peak
    head = synth[str(SYNTH_BATCHES[-1])]
    ref_synth = ref.get("synthesize") or {}
    by_batch = {b: common.ratio(synth[b]["images_per_s"], (ref_synth.get(b) or {}).get("images_per_s"))
                for b in synth}
    per_scale = model.steps_per_scale
    return {
        "preset": args.preset,
        "geometry": {"height": height, "width": width, "scales": [list(s) for s in scales],
                     "scale_factor": model.factor, "image_channels": model.channels,
                     "net_channels": net_channels(model), "steps": model.sampler.steps,
                     "coarse_steps": model.coarse_steps, "steps_per_scale": per_scale,
                     "train_batch": cfg.train.batch_size, "recovery_weight": model.recovery_weight},
        "peak_gflops": peak,
        "peak_gflops_range": [min(max(p.values()) for p in peaks), peak],
        "train_step_median_s": [r["median_s"] for r in train],
        "train_s_per_image": sum(per_scale * r["median_s"] for r in train),
        "train_s_per_image_best": sum(per_scale * r["best_s"] for r in train),
        "preset_max_minutes": cfg.train.max_minutes,
        "synthesize_s_per_image": {b: r["s_per_image"] for b, r in synth.items()},
        **grad_evals(scales, model.sampler.steps, model.coarse_steps),
        "sampler_gflops": head["gflops"],
        "fraction_of_peak": head["gflops"] / peak,
        "speedup_vs_torch": by_batch[str(SYNTH_BATCHES[-1])],
        "speedup_vs_torch_by_batch": by_batch,
        "retraces": retraces + sum(r["traces_after_first"] for r in train),
        "flops": flops_section(model, scales),
        "train_steps": train,
        "synthesize": synth,
        "sampler_scales": chains,
        "peaks": peaks,
        "torch": ref,
        "flop_convention": ("analytic (benchmarks.common.patchgen_forward_flops): valid 3x3 convs on the "
                            "input padded by len(channels) px, multiply-add = 2 FLOPs, convs only; "
                            "Langevin step = 2x forward (common.langevin_step_flops); a chain of T "
                            "steps = T x 2F + F (final energy); synthesis = the chains of every scale; "
                            "train step at k = chains 0..k on N images + the recovery chain at k + "
                            "3x forward on the 2N + 1 images"),
        "timing": ("wall clock, result copied to host; GFLOP/s and fractions of peak from the best "
                   "call, train_s_per_image from the median step time"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a 48x36 image, 2 scales, 2 steps per chain")
    parser.add_argument("--preset", default=PRESET, help=f"a patchgen preset (default {PRESET})")
    parser.add_argument("--steps", type=int, default=0,
                        help="Langevin steps of every chain (default: the preset's; 2 with --quick)")
    parser.add_argument("--repeats", type=int, default=0, help="timed calls (default 2 with --quick, 4)")
    parser.add_argument("--torch-python", default=None,
                        help="interpreter with torch for the reference (default: this one if torch imports)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 4)
    start = time.perf_counter()
    machine = common.machine_info({"tensorflow": tf.__version__, "keras": keras.__version__,
                                   "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU"})
    doc = measure(args)
    machine["loadavg_end"] = common.load_average()
    doc = {"mode": "quick" if args.quick else "default", "machine": machine, **doc,
           "wall_s": time.perf_counter() - start}
    peak = doc["peak_gflops"]
    rows = [[f"train step scale {r['scale']}", f"{r['height']}x{r['width']}", r["batch"], common.fmt(r["median_s"]),
             common.fmt(r["spread_s"]), common.fmt(r["gflops"]), common.fmt(r["gflops"] / peak)]
            for r in doc["train_steps"]]
    rows += [[f"chain scale {r['scale']}", f"{r['height']}x{r['width']}", 1, common.fmt(r["median_s"]),
              common.fmt(max(r["times_s"]) - min(r["times_s"])), common.fmt(r["gflops"]),
              common.fmt(r["gflops"] / peak)] for r in doc["sampler_scales"]]
    rows += [["synthesize", f"{doc['geometry']['height']}x{doc['geometry']['width']}", r["batch"],
              common.fmt(r["median_s"]), common.fmt(r["spread_s"]), common.fmt(r["gflops"]),
              common.fmt(r["gflops"] / peak)] for r in doc["synthesize"].values()]
    for b, r in (doc["torch"].get("synthesize") or {}).items():
        rows.append(["torch synthesize", "", b, common.fmt(r["median_s"]), "", common.fmt(r["gflops"]),
                     common.fmt(r["gflops"] / peak)])
    common.emit(doc, rows, ["what", "HxW", "batch", "median s", "spread s", "GFLOP/s", "of peak"])
    print(f"peak {peak:.1f} GFLOP/s; training {doc['train_s_per_image'] / 60:.1f} min per image "
          f"({doc['geometry']['steps_per_scale']} steps x {len(doc['train_steps'])} scales); synthesis "
          f"{common.fmt(doc['synthesize_s_per_image']['1'])} s per image at batch 1, "
          f"{common.fmt(doc['synthesize_s_per_image'][str(SYNTH_BATCHES[-1])])} at batch {SYNTH_BATCHES[-1]}, "
          f"{doc['grad_evals_per_image']} gradient evaluations ({doc['grad_evals_per_image_pixel_weighted']:.1f} "
          f"full-size), {doc['fraction_of_peak']:.0%} of peak, vs torch {common.fmt(doc['speedup_vs_torch'])}x, "
          f"retraces {doc['retraces']}, load {machine['loadavg_start']} -> {machine['loadavg_end']}, "
          f"{doc['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
