"""Seconds per training step of a preset's model: eager vs `tf.function` vs `tf.function` + XLA.

    python -m benchmarks.train_step [--preset mnist5k-multigrid] [--batch 64] [--repeats 3]

Runs the real training step (`trainers.train` step function around `MultiGridEBM.train_step`) on
a batch of random images turned into their pyramid, with the preset's networks and sampler.
Eager runs every `tf.function` eagerly (`tf.config.run_functions_eagerly`). Prints one JSON
document: seconds per step (best of `--repeats` after one warm-up step) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipeline.presets import load_preset  # noqa: E402
from trainers import pyramid_ops  # noqa: E402
from trainers.train import _make_step_fn, build_model  # noqa: E402


def time_variant(config, batch, variant: str, repeats: int) -> float:
    """Best seconds per step of one variant (`eager`, `function`, `xla`)."""
    grids = config.pyramid.grids
    metadata = {"grids": list(grids), "image_size": grids[-1], "channels": config.data.channels,
                "coarse_mean": [0.13] * config.data.channels,
                "coarse_std": [0.04] * config.data.channels}
    model = build_model(config, metadata)
    step = _make_step_fn(model, tf.distribute.get_strategy(), jit_compile=(variant == "xla"))
    tf.config.run_functions_eagerly(variant == "eager")
    try:
        step(batch)  # warm-up: tracing and compilation
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            out = step(batch)
            float(next(iter(out.values())))  # wait for the result
            best = min(best, time.perf_counter() - start)
        return best
    finally:
        tf.config.run_functions_eagerly(False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mnist5k-multigrid")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="eager,function,xla")
    args = parser.parse_args(argv)
    config = load_preset(args.preset)
    size, channels = config.data.image_size, config.data.channels
    images = np.random.default_rng(0).uniform(0, 1, (args.batch, size, size, channels))
    pyramid = pyramid_ops.build_pyramid(tf.constant(images, tf.float32), config.pyramid.grids)
    batch = {f"grid_{s}": x for s, x in pyramid.items()}
    seconds = {}
    for variant in args.variants.split(","):
        seconds[variant] = time_variant(config, batch, variant, args.repeats)
        print(f"{variant:9s} {seconds[variant]:.3f} s/step", file=sys.stderr, flush=True)
    result = {
        "preset": args.preset, "batch": args.batch, "grids": list(config.pyramid.grids),
        "langevin_steps_per_grid": config.sampler.steps, "width": config.model.width,
        "seconds_per_step": seconds,
        "speedup_function_vs_eager": seconds.get("eager", np.nan) / seconds.get("function", np.nan),
        "speedup_xla_vs_function": seconds.get("function", np.nan) / seconds.get("xla", np.nan),
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "tensorflow": tf.__version__,
                    "loadavg": os.getloadavg()},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
