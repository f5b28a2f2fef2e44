"""Langevin and train-step throughput of the multi-grid and CF-EBM models, as a fraction of the
machine's measured peak.

`python -m benchmarks.langevin --quick` (< 5 min on 2 CPU cores): the 64-px energy net's Langevin
loop and the whole multi-grid train step (grids 1, 4, 16, 64) at batch 64, float32, with the
fastest compiled variant (tf.function vs tf.function + XLA, chosen by a small probe measured in
this run), the eager loop, and the PyTorch eager reference when torch is importable (or given by
`--torch-python`) and, in that interpreter, the compiled peers (`benchmarks/peers.py`: the same
nets and Langevin loops under `torch.compile` and `jax.jit`; `--peer-train-steps` adds their
train steps, `--no-peers` leaves them out); then the
CF-EBM section (`benchmarks/langevin_cfebm.py`): the `celeba64-cfebm` model at its final stage
(64-px RGB, stages 8-16-32-64, batch 64, 4 Langevin steps per stage, model.width 0.5 = 64
channels; `--cfebm-width`, `--cfebm-steps`), its full smooth-MCMC sampler (the export's `sample`
signature) and its train step (the trainer's step function, beta = 1), and the same network in
PyTorch eager. `--full` adds 32 px, batch 16 / 64 / 256, every variant and mixed precision for
the multi-grid net, and CF-EBM at width 1.0 with its eager sampler.

Figures (one JSON document on stdout, a short table on stderr):
- `peak_gflops`: the best float32 GFLOP/s of the peak probes (`benchmarks/peak.py`: the 64-px
  net's own conv layers at batch 64, a 3x3 256->256 conv at batch 16, a 2048^3 matmul; each
  repeated until its best settles), in rounds at the start, between the measurements and at the
  end (`peaks`: every round; `peak_spread`: the rounds' peaks, min / median / max, and the
  probe that set the peak); `theoretical_peak`: cores x clock x float32 FLOPs per cycle.
- `achieved_gflops`: analytic FLOPs of the Langevin loop (see benchmarks/common.py: multiply-add
  = 2 FLOPs, convs and dense layers only, one Langevin step = 2x the forward FLOPs, plus the
  sampler's final energy evaluation) over the best wall time of a call.
- `fraction_of_peak`, `train_step_fraction_of_peak`: achieved over peak; `..._range`: [median
  call / best round's peak, best call / lowest round's peak]; `adjacent_peak_fraction` (--quick):
  each over the mean peak of the rounds just before and after it (`peak.adjacent_fraction`);
  `paired_fraction` (--quick, a diagnostic too): call by call, over the GFLOP/s that the first
  round's best probe reached right after that call (`peak.paired_fraction`: median, quartiles).
- `speedup_vs_eager`, `speedup_vs_torch`, `speedup_vs_torch_compile`, `speedup_vs_jax` (and
  `train_step_...`): images/s ratios, null where that peer is absent; `peers`: their documents.
- `retraces`: traces after the first call (sampler `trace_count` and tf.function
  `experimental_get_tracing_count()`), including one call with a different batch size.
- `cfebm` (null with `--no-cfebm`): the same figures for CF-EBM (the sampler and the train step)
  against the same `peak_gflops` (`speedup_vs_eager` null unless `--full` or `--cfebm-eager`),
  images/s, the geometry, `results`, `torch` (`langevin_cfebm.assemble`; `common.cfebm_forward_flops`).
Timings are the best of the repeats (other processes only ever add time); with --quick every
workload and peer is timed until its best settles, by the peak probes' rule (`--max-repeats`),
or until its timed calls add up to 20 s (`--max-timed-s`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks import common, langevin_cfebm, langevin_report, peak, peers
from benchmarks.peers import torch_python
from trainers import pyramid_ops
from trainers.langevin import LangevinSampler
from trainers.families.multigrid import build_model
from trainers.networks import build_energy_net, layer_specs

GRIDS = {32: (1, 4, 16, 32), 64: (1, 4, 16, 64)}
STEP_SIZE = 0.3
_PROBES = []  # the peak probes, built on first use


def peak_probes() -> dict:
    """One round of the peak probes ({probe: best GFLOP/s}; `benchmarks.peak`): the 64-px RGB
    net's conv layers at batch 64, a 3x3 256->256 conv at batch 16 and a 2048^3 matmul, each
    repeated until its best settles. Rounds run between the measurements, so load hits both."""
    if not _PROBES:
        _PROBES.extend(peak.default_probes(64, 3, 64))
    return peak.peak_round(_PROBES)


def probe_right_after(rounds: list[dict]) -> tuple:
    """(name, `peak.probe_now` callable) of the probe that set the best peak of `rounds`: timed
    right after each measured call, for the fraction of peak call by call."""
    best = peak.summarize(rounds)["best_probe"]
    return best, peak.probe_now(next(p for p in _PROBES if p[0] == best))


@contextlib.contextmanager
def precision(policy: str):
    """Keras dtype policy for the block: "float32" or "mixed" (bfloat16 on CPU, float16 on GPU)."""
    previous = keras.mixed_precision.global_policy()
    if policy == "mixed":
        gpu = bool(tf.config.list_logical_devices("GPU"))
        keras.mixed_precision.set_global_policy("mixed_float16" if gpu else "mixed_bfloat16")
    try:
        yield keras.mixed_precision.global_policy().name
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def eager_mode(on: bool):
    """tf.config.run_functions_eagerly(on) for the block (the 'eager' variant of the same code)."""
    previous = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(on)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(previous)


def bench_langevin(grid: int, channels: int, batch: int, steps: int, variant: str, policy: str = "float32",
                   repeats: int = 2, seed: int = 0, max_repeats: int = 0, probe=None, max_timed_s: float = 0) -> dict:
    """Time `LangevinSampler.run` of one energy net.

    Args:
      grid, channels: the net's input [N, grid, grid, channels]. batch: N. steps: T.
      variant: "eager", "function" or "xla". policy: "float32" or "mixed".
      repeats, max_repeats, probe, max_timed_s: timed calls (`common.time_calls`; probe:
        `peak.probe_now`).

    Returns:
      dict with first_call_s (trace + compile + run), best_s, image_steps_per_s, images_per_s
      (chains finished per second), gflops, flops_per_call, traces_after_first.
    """
    with precision(policy) as policy_name:
        keras.utils.set_random_seed(seed)
        net = build_energy_net(grid, channels)
    sampler = LangevinSampler(steps, STEP_SIZE, jit_compile=(variant == "xla"))
    energy_fn = lambda x: net(x)  # noqa: E731  one object, so the traced loop is reused
    x0 = tf.random.stateless_uniform([batch, grid, grid, channels], [seed, 1])
    seed_t = tf.constant([seed, 2], tf.int32)
    with eager_mode(variant == "eager"):
        def call():
            return sampler.run(energy_fn, x0, seed_t)[0].numpy()
        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        traces = sampler.trace_count
        timing = common.time_calls(call, repeats, warmup=0, max_repeats=max_repeats, probe=probe,
                                   max_timed_s=max_timed_s)
        # A different batch size must not retrace either (the loop has a dynamic batch dimension).
        sampler.run(energy_fn, x0[:2], seed_t)[0].numpy()
        retraces = sampler.trace_count - traces if variant != "eager" else 0
    forward = common.forward_flops(grid, channels, layer_specs(grid))["total"]
    flops = common.sampler_call_flops(forward, batch, steps)
    best = timing["best_s"]
    return {"kind": "langevin", "grid": grid, "channels": channels, "batch": batch, "steps": steps,
            "variant": variant, "policy": policy_name, "first_call_s": first, **timing,
            "image_steps_per_s": batch * steps / best, "images_per_s": batch / best,
            "flops_per_call": flops, "gflops": flops / best / 1e9, "traces_after_first": retraces}


def bench_train_step(grid: int, channels: int, batch: int, steps: int, variant: str = "function",
                     policy: str = "float32", repeats: int = 2, seed: int = 0, grids=None,
                     max_repeats: int = 0, probe=None, max_timed_s: float = 0) -> dict:
    """Time one whole multi-grid training step (all grids: sampling, losses, Adam updates).

    The step function is the trainer's own (`trainers.train._make_step_fn`, what `train()` runs);
    variant "xla" XLA-compiles it (train.jit_compile). grids: default GRIDS[grid] (1, 4, 16, grid).
    Returns a dict like `bench_langevin`.
    """
    from trainers import train as train_lib  # pylint: disable=import-outside-toplevel
    grids = tuple(grids or GRIDS[grid])
    jit = variant == "xla"
    with precision(policy) as policy_name:
        model = build_model(grids, channels, variant="multigrid", steps=steps, step_size=STEP_SIZE,
                            jit_compile=jit, seed=seed)
        model.compile(learning_rate=1e-4, beta_1=0.5)
    strategy = tf.distribute.get_strategy()
    step_fn = train_lib._make_step_fn(model, strategy, jit)  # pylint: disable=protected-access
    images = tf.random.stateless_uniform([batch, grid, grid, channels], [seed, 3])
    batch_dict = {f"grid_{g}": v for g, v in pyramid_ops.build_pyramid(images, grids).items()}
    with eager_mode(variant == "eager"):
        def call():
            return {k: float(v) for k, v in step_fn(batch_dict).items()}
        start = time.perf_counter()
        first_metrics = call()
        first = time.perf_counter() - start
        traces = step_fn.experimental_get_tracing_count()
        timing = common.time_calls(call, repeats, warmup=0, max_repeats=max_repeats, probe=probe,
                                   max_timed_s=max_timed_s)
        retraces = step_fn.experimental_get_tracing_count() - traces if variant != "eager" else 0
    forwards = {g: common.forward_flops(g, channels, layer_specs(g))["total"] for g in grids if g > 1}
    flops = common.train_step_flops(forwards, batch, steps)
    best = timing["best_s"]
    return {"kind": "train_step", "grid": grid, "grids": list(grids), "channels": channels, "batch": batch,
            "steps": steps, "variant": variant, "policy": policy_name, "first_call_s": first, **timing,
            "images_per_s": batch / best, "flops_per_call": flops, "gflops": flops / best / 1e9,
            "traces_after_first": retraces, "finite_metrics": all(np.isfinite(v) for v in first_metrics.values())}


def pick_compiled(grid: int, channels: int, steps: int = 2, batch: int = 8) -> dict:
    """Probe tf.function vs tf.function + XLA on a small batch; the faster one's name and both figures."""
    probes = {v: bench_langevin(grid, channels, batch, steps, v, repeats=1) for v in ("function", "xla")}
    rates = {v: p["image_steps_per_s"] for v, p in probes.items()}
    return {"fastest": max(rates, key=rates.get), "probe_batch": batch, "probe_steps": steps,
            "image_steps_per_s": rates}


def quick(args) -> dict:
    """The --quick document (see the module docstring)."""
    grid, batch, steps, c = 64, args.batch or 64, args.steps or 4, args.channels
    rounds, choice = [peak_probes()], pick_compiled(grid, c)
    variant, (best, paired) = choice["fastest"], probe_right_after(rounds)
    settle = {"max_repeats": args.max_repeats, "max_timed_s": args.max_timed_s}
    lang = bench_langevin(grid, c, batch, steps, variant, repeats=args.repeats, probe=paired, **settle)
    rounds.append(peak_probes())
    eager = bench_langevin(grid, c, batch, steps, "eager", repeats=1)
    train = bench_train_step(grid, c, batch, steps, "function" if variant == "xla" and args.no_xla_train else variant,
                             repeats=max(1, args.repeats - 1), probe=paired, **settle)
    rounds.append(peak_probes())
    py, specs = torch_python(args.torch_python), {g: layer_specs(g) for g in GRIDS[grid] if g > 1}
    ref = peers.run_torch(py, grid, c, batch, steps, specs, GRIDS[grid], args.repeats, **settle) if py else None
    threads = (ref or {}).get("threads")
    peer_grids = GRIDS[grid] if args.peer_train_steps else None  # None: their Langevin loops only
    compiled = None if args.no_peers or not py else peers.run_peers(py, grid, c, batch, steps, specs, peer_grids,
                                                                    args.repeats, threads, **settle)
    cf = cfebm(args, batch, py, threads)
    rounds.append(peak_probes())
    doc = with_cfebm(assemble([lang, eager, train], ref, rounds, choice, variant, compiled), cf)
    doc["adjacent_peak_fraction"] = {"langevin": peak.adjacent_fraction(lang["gflops"], *rounds[0:2]),
                                     "train_step": peak.adjacent_fraction(train["gflops"], *rounds[1:3])}
    doc["paired_fraction"] = {r["kind"]: peak.paired_fraction(r["flops_per_call"], r["times_s"], r["probe_after"], best)
                              for r in (lang, train)}
    return doc


def cfebm(args, batch: int, py, threads) -> dict | None:
    """The CF-EBM measurements (benchmarks.langevin_cfebm), None with --no-cfebm; the torch
    reference reuses the thread count the multi-grid reference chose."""
    if args.no_cfebm:
        return None
    width = args.cfebm_width or (1.0 if args.full else 0.5)
    return langevin_cfebm.measure(width, args.cfebm_steps, batch, args.cfebm_repeats or (2 if args.full else 1),
                                  eager=args.full or args.cfebm_eager, torch_python=py, torch_threads=threads)


def with_cfebm(doc: dict, measured: dict | None) -> dict:
    """doc plus its `cfebm` section against doc's peak (null with --no-cfebm)."""
    doc["cfebm"] = langevin_cfebm.assemble(measured, doc["peak_gflops"]) if measured else None
    return doc


def full(args) -> dict:
    """Every size / batch / variant / precision within the per-call time estimate --max-call-s."""
    c, steps = args.channels, args.steps or 4
    peaks = [peak_probes()]
    results, refs = [], []
    py = torch_python(args.torch_python)
    for grid in args.sizes:
        xla_probe = bench_langevin(grid, c, 8, 2, "xla", repeats=1)
        xla_rate = xla_probe["image_steps_per_s"]
        results.append({**xla_probe, "kind": "xla_probe"})
        for batch in args.batches:
            for variant, policy in (("function", "float32"), ("eager", "float32"), ("xla", "float32"),
                                    ("function", "mixed")):
                if variant == "xla" and batch * steps / xla_rate > args.max_call_s:
                    results.append({"kind": "langevin", "grid": grid, "batch": batch, "variant": "xla",
                                    "policy": "float32", "skipped": f"estimated {batch * steps / xla_rate:.0f} s "
                                    f"per call from the batch-8 probe ({xla_rate:.3g} image-steps/s)"})
                    continue
                results.append(bench_langevin(grid, c, batch, steps, variant, policy, repeats=args.repeats))
                print(f"[langevin] {grid}px b{batch} {variant} {policy}: "
                      f"{results[-1]['gflops']:.1f} GFLOP/s", file=sys.stderr, flush=True)
            results.append(bench_train_step(grid, c, batch, steps, "function", repeats=args.repeats))
            if py:
                specs = {g: layer_specs(g) for g in GRIDS[grid] if g > 1}
                refs.append(peers.run_torch(py, grid, c, batch, steps, specs, GRIDS[grid], args.repeats))
        peaks.append(peak_probes())
    hb = 64 if 64 in args.batches else max(args.batches)
    cf = cfebm(args, hb, py, next((r.get("threads") for r in refs if r.get("threads")), None))
    if cf:  # the peak at the end of the run again
        peaks.append(peak_probes())
    hg = 64 if 64 in args.sizes else max(args.sizes)
    head = [r for r in results if r.get("grid") == hg and r.get("batch") == hb and "skipped" not in r]
    compiled = [r for r in head if r["kind"] == "langevin" and r["variant"] in ("function", "xla")
                and r["policy"] == "float32"]
    variant = max(compiled, key=lambda r: r["images_per_s"])["variant"]
    doc = assemble(head, next((r for r in refs if r.get("grid") == hg and r.get("batch") == hb), None), peaks,
                   None, variant)
    doc["headline"] = {"grid": hg, "batch": hb}
    doc["results"] = results
    doc["torch_results"] = refs
    return with_cfebm(doc, cf)


def _find(results, kind, variant, policy="float32"):
    return next((r for r in results if r.get("kind") == kind and r.get("variant") == variant
                 and r.get("policy") == policy and "skipped" not in r), None)


def _fraction_range(result, summary) -> list[float]:
    """[low, high] of a result's fraction of peak: its median call over the best round's peak,
    its best call over the lowest round's peak."""
    flops = result.get("flops_per_call")
    median = flops / result["median_s"] / 1e9 if flops and result.get("median_s") else result["gflops"]
    return [median / summary["spread"]["max"], result["gflops"] / summary["spread"]["min"]]


def assemble(results, ref, peaks, choice, variant, compiled=None) -> dict:
    """The headline figures from the 64-px batch-64 results; compiled: `peers.run_peers`' documents."""
    summary = peak.summarize(peaks)
    top = summary["peak_gflops"]
    lang = _find(results, "langevin", variant)
    eager = _find(results, "langevin", "eager")
    train = _find(results, "train_step", variant) or _find(results, "train_step", "function")
    ref_lang = (ref or {}).get("langevin")
    ref_train = (ref or {}).get("train_step")
    retraces = sum(r.get("traces_after_first", 0) for r in results)
    return {
        "peak_gflops": top,
        "achieved_gflops": lang["gflops"],
        "fraction_of_peak": lang["gflops"] / top,
        "fraction_of_peak_range": _fraction_range(lang, summary),
        "train_step_gflops": train["gflops"] if train else None,
        "train_step_fraction_of_peak": train["gflops"] / top if train else None,
        "train_step_fraction_of_peak_range": _fraction_range(train, summary) if train else None,
        "peak_spread": summary,
        "theoretical_peak": peak.machine_theoretical_peak(),
        "speedup_vs_eager": common.ratio(lang["images_per_s"], eager["images_per_s"]) if eager else None,
        "speedup_vs_torch": common.ratio(lang["images_per_s"], ref_lang["images_per_s"]) if ref_lang else None,
        "train_step_speedup_vs_torch": (common.ratio(train["images_per_s"], ref_train["images_per_s"])
                                        if ref_train and train else None),
        **peers.speedups(lang, train, compiled),
        "retraces": retraces,
        "variant": variant,
        "variant_choice": choice,
        "langevin_images_per_s": lang["images_per_s"],
        "langevin_image_steps_per_s": lang["image_steps_per_s"],
        "train_images_per_s": train["images_per_s"] if train else None,
        "peaks": peaks,
        "results_headline": results,
        "torch": ref if ref else {"available": False},
        "peers": compiled or {p: {"available": False} for p in peers.COMPILED},
        "flop_convention": ("analytic from trainers.networks.layer_specs: multiply-add = 2 FLOPs, convs "
                            "and dense layers only; Langevin step = 2x forward (forward + input "
                            "gradient); a sampler call = T steps + 1 forward (energy_end); train step "
                            "= per grid T Langevin steps + 1 forward on N chains + 3x forward on 2N "
                            "images (update)"),
        "timing": "best of the repeats (wall clock, result copied to host)",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="64 px, batch 64, float32 (default)")
    mode.add_argument("--full", action="store_true", help="32/64 px, batch 16/64/256, all variants")
    parser.add_argument("--channels", type=int, default=3, help="image channels (default 3, as CIFAR/CelebA)")
    parser.add_argument("--steps", type=int, default=0, help="Langevin steps per call (default 4)")
    parser.add_argument("--batch", type=int, default=0, help="--quick batch (default 64)")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed calls per configuration (default 4 with --quick, 2 with --full)")
    parser.add_argument("--max-repeats", type=int, default=-1, help="--quick: past --repeats until the best "
                        "settles, at most this many calls (default 16; 0 = exactly --repeats)")
    parser.add_argument("--max-timed-s", type=float, default=-1, help="--quick: past --repeats, also stop "
                        "once a workload's timed calls add up to this many seconds (default 20; 0 = no limit)")
    parser.add_argument("--torch-python", default=None,
                        help="interpreter with torch for the reference (default: this one if torch imports)")
    parser.add_argument("--no-peers", action="store_true", help="leave the torch.compile and JAX peers out")
    parser.add_argument("--peer-train-steps", action="store_true", help="--quick also times the compiled peers' "
                        "train steps (~3 more minutes on 2 cores, mostly torch.compile compiling)")
    parser.add_argument("--max-call-s", type=float, default=120.0,
                        help="--full skips XLA configurations estimated to take longer per call")
    parser.add_argument("--sizes", default="32,64", help="--full image sizes (32 and/or 64)")
    parser.add_argument("--batches", default="16,64,256", help="--full batch sizes")
    parser.add_argument("--no-xla-train", action="store_true",
                        help="time the train step with tf.function even if XLA wins the probe")
    parser.add_argument("--cfebm-width", type=float, default=0.0,
                        help="CF-EBM model.width (default 0.5 = 64 channels with --quick, 1.0 with --full)")
    parser.add_argument("--cfebm-steps", type=int, default=4, help="CF-EBM Langevin steps per stage")
    parser.add_argument("--cfebm-repeats", type=int, default=0,
                        help="CF-EBM timed calls (default 1 with --quick, 2 with --full)")
    parser.add_argument("--cfebm-eager", action="store_true", help="--quick also times the eager CF-EBM sampler")
    parser.add_argument("--no-cfebm", action="store_true", help="leave the CF-EBM section out")
    args = parser.parse_args(argv)
    # Best-of-2 swung the quick fraction of peak by 0.14 between runs on a quiet machine.
    args.repeats = args.repeats or (2 if args.full else 4)
    args.max_repeats = (0 if args.full else 16) if args.max_repeats < 0 else args.max_repeats
    args.max_timed_s = (0 if args.full else 20.0) if args.max_timed_s < 0 else args.max_timed_s
    args.sizes = [int(v) for v in args.sizes.split(",") if v]
    args.batches = [int(v) for v in args.batches.split(",") if v]
    if not set(args.sizes) <= set(GRIDS) or not args.batches or min(args.batches) < 1:
        parser.error(f"--sizes must be from {sorted(GRIDS)} and --batches positive integers")
    start = time.perf_counter()
    machine = common.machine_info({"tensorflow": tf.__version__, "keras": keras.__version__,
                                   "gpus": [d.name for d in tf.config.list_logical_devices("GPU")],
                                   "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU"})
    doc = full(args) if args.full else quick(args)
    machine["loadavg_end"] = common.load_average()
    doc = {"mode": "full" if args.full else "quick", "machine": machine, **doc,
           "wall_s": time.perf_counter() - start}
    common.emit(doc, langevin_report.table_rows(doc), langevin_report.HEADER)
    print("\n".join(langevin_report.summary_lines(doc)), file=sys.stderr)
    # Free the probes' and samplers' tf.functions while TensorFlow is whole: freed at interpreter
    # exit, each AtomicFunction.__del__ prints a TypeError (its module's globals are gone by then).
    _PROBES.clear()
    gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
