"""CF-EBM figures of `benchmarks.langevin`: the smooth-MCMC sampler and the train step at the
final stage, in the same run and against the same measured peak as the multi-grid figures.

The model is the one the trainer builds: the preset (`celeba64-cfebm` by default: 64-px RGB,
stages 8 -> 16 -> 32 -> 64, Swish, spectral norm, noisy Langevin with linearly decaying noise)
with `model.width` and `sampler.steps` overridden, built by `trainers.train.build_model` (the
family registry's `build`, then `compile`), then moved to its final stage after the fade
(`images_seen` = `cfebm_spec.final_stage_images`, stage K, beta = 1).

- sampler: the export's `sample` signature (`model.export_signatures(cap)["sample"]`, a
  tf.function), i.e. the full chain as users run it: uniform noise at 8 px, T Langevin steps per
  stage, upsampled plus noise into the next stage, up to 64 px. Variant "function"; "eager" is
  the same signature under `tf.config.run_functions_eagerly`.
- train step: the trainer's own step function (`trainers.train._make_step_fn`) on a random
  pyramid batch at the final stage: the chain through every stage, the loss at 64 px, one Adam
  step.
- FLOPs: `common.cfebm_chain_flops` / `common.cfebm_train_step_flops` (multiply-add = 2 FLOPs,
  convs and dense only; the fade branch of the last stage is counted, since the model computes
  it: beta is a tensor, 1 after the fade).
- torch: `benchmarks.reference_torch --cfebm JSON` in a subprocess, the same network and chain
  in PyTorch eager.

Width: `model.width` 0.5 (64 channels per conv) by default with `--quick` (at the preset's 1.0,
128 channels, one chain of 64 images costs 2.6 TFLOP, half a minute per call on 2 cores), 1.0
with `--full`.
"""

from __future__ import annotations

import contextlib
import json
import time

import numpy as np
import tensorflow as tf

from benchmarks import common
from pipeline.presets import load_preset
from trainers import pyramid_ops
from trainers import train as train_lib
from trainers.families import cfebm_spec

PRESET = "celeba64-cfebm"


@contextlib.contextmanager
def _eagerly(on: bool):
    previous = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(on)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(previous)


def build(width: float, steps: int, preset: str = PRESET, seed: int = 0):
    """(config, compiled CFEBM) of `preset` with model.width and sampler.steps overridden, as the
    trainer builds it, at its last stage with the fade finished (stage K, beta 1)."""
    cfg = load_preset(preset, [f"model.width={width}", f"sampler.steps={steps}", f"train.seed={seed}"])
    metadata = {"grids": list(cfg.pyramid.grids), "image_size": cfg.data.image_size,
                "channels": cfg.data.channels}
    model = train_lib.build_model(cfg, metadata)
    model.images_seen.assign(cfebm_spec.final_stage_images(model.num_stages, cfg.train.fade_images,
                                                          cfg.train.stable_images))
    model.stage.assign(model.num_stages - 1)
    model.beta.assign(1.0)
    return cfg, model


def _geometry(model) -> tuple:
    return list(model.sizes), model.num_stages - 1, model.channels, model.net.width


def bench_sampler(model, batch: int, variant: str = "function", repeats: int = 1, seed: int = 0) -> dict:
    """Time the `sample` signature (the full smooth-MCMC chain) for `batch` images.

    Returns:
      dict with first_call_s (trace + run; the eager variant has none), best_s, images_per_s,
      image_steps_per_s (steps counted over every stage), flops_per_call, gflops,
      traces_after_first (tracing count of the signature after its first call, including one
      call with 2 images).
    """
    sample = model.export_signatures(batch)["sample"]
    num, seed_t = tf.constant(batch, tf.int32), tf.constant(seed, tf.int32)
    eager = variant == "eager"

    def call():
        return sample(num, seed_t)["images"].numpy()

    first, retraces = None, 0
    with _eagerly(eager):
        if not eager:
            start = time.perf_counter()
            call()
            first = time.perf_counter() - start
        traces = sample.experimental_get_tracing_count()
        timing = common.time_calls(call, repeats, warmup=0)
        if not eager:
            sample(tf.constant(2, tf.int32), seed_t)["images"].numpy()
            retraces = sample.experimental_get_tracing_count() - traces
    sizes, stage, channels, width = _geometry(model)
    flops = common.cfebm_chain_flops(sizes, stage, channels, width, batch, model.sampler.steps)
    best = timing["best_s"]
    return {"kind": "cfebm_sampler", "grid": sizes[-1], "sizes": sizes, "width": width, "batch": batch,
            "steps": model.sampler.steps, "variant": variant, "policy": "float32", "first_call_s": first,
            **timing, "images_per_s": batch / best,
            "image_steps_per_s": batch * model.sampler.steps * len(sizes) / best,
            "flops_per_call": flops, "gflops": flops / best / 1e9, "traces_after_first": retraces}


def bench_train_step(model, cfg, batch: int, variant: str = "function", repeats: int = 1,
                     seed: int = 0) -> dict:
    """Time the trainer's step function at the model's current (final) stage.

    Returns:
      dict like `bench_sampler` plus stage and beta (what the step trained with) and
      finite_metrics.
    """
    step_fn = train_lib._make_step_fn(  # pylint: disable=protected-access
        model, tf.distribute.get_strategy(), variant == "xla")
    s, c = model.image_size, model.channels
    images = tf.random.stateless_uniform([batch, s, s, c], [seed, 3])
    batch_dict = {f"grid_{g}": v for g, v in pyramid_ops.build_pyramid(images, cfg.pyramid.grids).items()}

    def call():
        return {k: float(v) for k, v in step_fn(batch_dict).items()}

    with _eagerly(variant == "eager"):
        start = time.perf_counter()
        first_metrics = call()
        first = time.perf_counter() - start
        traces = step_fn.experimental_get_tracing_count()
        timing = common.time_calls(call, repeats, warmup=0)
        retraces = step_fn.experimental_get_tracing_count() - traces if variant != "eager" else 0
    sizes, stage, channels, width = _geometry(model)
    flops = common.cfebm_train_step_flops(sizes, stage, channels, width, batch, model.sampler.steps)
    best = timing["best_s"]
    return {"kind": "cfebm_train_step", "grid": sizes[-1], "sizes": sizes, "width": width, "batch": batch,
            "steps": model.sampler.steps, "variant": variant, "policy": "float32", "first_call_s": first,
            **timing, "images_per_s": batch / best, "flops_per_call": flops, "gflops": flops / best / 1e9,
            "traces_after_first": retraces, "stage": int(first_metrics["stage"]),
            "beta": first_metrics["beta"],
            "finite_metrics": all(np.isfinite(v) for v in first_metrics.values())}


def torch_spec(cfg, model) -> dict:
    """The JSON handed to `benchmarks.reference_torch --cfebm`: geometry, sampler, optimizer."""
    s = cfg.sampler
    return {"sizes": list(model.sizes), "channels": model.channels, "width": model.net.width,
            "activation": cfg.model.activation, "spectral": cfg.model.norm == "spectral",
            "step_size": s.step_size, "noise_scale": s.noise_scale, "noise_schedule": s.noise_schedule,
            "step_size_schedule": s.step_size_schedule, "clip": s.clip, "upsample_noise": s.upsample_noise,
            "learning_rate": cfg.train.learning_rate, "beta_1": cfg.train.beta_1}


def torch_command(python: str, cfg, model, batch: int, repeats: int, threads=None) -> list[str]:
    """The reference's command line; threads None = its own probe ("auto")."""
    return [python, "-m", "benchmarks.reference_torch", "--cfebm", json.dumps(torch_spec(cfg, model)),
            "--batch", str(batch), "--steps", str(model.sampler.steps), "--repeats", str(repeats),
            "--threads", "auto" if threads is None else str(threads)]


def measure(width: float, steps: int, batch: int, repeats: int, eager: bool, torch_python=None,
            torch_threads=None, preset: str = PRESET, timeout: float = 900) -> dict:
    """Every CF-EBM measurement of one run: {"results": [sampler, (eager sampler), train step],
    "torch": the reference's dict or None, "preset", "width_factor"}."""
    cfg, model = build(width, steps, preset)
    results = [bench_sampler(model, batch, "function", repeats)]
    if eager:
        results.append(bench_sampler(model, batch, "eager", 1))
    results.append(bench_train_step(model, cfg, batch, "function", repeats))
    ref = None
    if torch_python:
        ref = common.run_json(torch_command(torch_python, cfg, model, batch, repeats, torch_threads), timeout)
    return {"results": results, "torch": ref, "preset": preset, "width_factor": width}


def assemble(measured: dict, peak: float) -> dict:
    """The `cfebm` section of the document, against the run's peak GFLOP/s."""
    results = measured["results"]
    find = lambda kind, variant: next((r for r in results if r["kind"] == kind  # noqa: E731
                                       and r["variant"] == variant), None)
    lang, eager = find("cfebm_sampler", "function"), find("cfebm_sampler", "eager")
    train = find("cfebm_train_step", "function")
    ref = measured.get("torch") or {}
    ref_lang, ref_train = ref.get("langevin"), ref.get("train_step")
    return {
        "preset": measured["preset"], "width_factor": measured["width_factor"], "width": lang["width"],
        "sizes": lang["sizes"], "batch": lang["batch"], "steps_per_stage": lang["steps"],
        "stage": train["stage"] if train else None, "beta": train["beta"] if train else None,
        "variant": "function",
        "achieved_gflops": lang["gflops"],
        "fraction_of_peak": lang["gflops"] / peak,
        "train_step_gflops": train["gflops"] if train else None,
        "train_step_fraction_of_peak": train["gflops"] / peak if train else None,
        "speedup_vs_eager": common.ratio(lang["images_per_s"], eager["images_per_s"]) if eager else None,
        "speedup_vs_torch": common.ratio(lang["images_per_s"], ref_lang["images_per_s"]) if ref_lang else None,
        "train_step_speedup_vs_torch": (common.ratio(train["images_per_s"], ref_train["images_per_s"])
                                        if ref_train and train else None),
        "retraces": sum(r.get("traces_after_first", 0) for r in results),
        "sampler_images_per_s": lang["images_per_s"],
        "sampler_image_steps_per_s": lang["image_steps_per_s"],
        "train_images_per_s": train["images_per_s"] if train else None,
        "results": results,
        "torch": measured.get("torch") or {"available": False},
        "flop_convention": ("analytic (benchmarks.common.cfebm_forward_flops): per stage from-RGB 1x1 "
                            "conv, per residual block two 3x3 convs and the 1x1 skip at the block's "
                            "input size, the dense layer; the last stage's fade branch is counted "
                            "(beta is a tensor, computed at beta = 1 too); sampler call = per stage "
                            "T steps x 2 forward + 1 forward; train step = the chain + 3x forward on "
                            "the 2N images"),
    }
