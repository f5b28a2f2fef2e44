"""Where the Langevin loop's time goes: a TF profiler trace of sampler calls, op time by kernel.

`python -m benchmarks.profile_sampler` runs the `--quick` workload of `benchmarks.langevin`
(the 64-px RGB energy net, batch 64, 4 Langevin steps per call, float32, `tf.function`), warms it
up, traces `--calls` calls with `tf.profiler.experimental` and reads the trace (the XSpace
protobuf the profiler writes) back:

- `wall_s`: the traced calls' wall time; `op_thread_s`: the summed duration of every TF op event
  on the executor threads (an op's own intra-op parallelism is inside its duration, so
  op_thread_s / wall_s > 1 means ops ran side by side, < 1 means the threads idled);
- `by_kernel`: per op type (`_MklNativeFusedConv2D`, `_MklNativeConv2DBackpropInput`, ...; the
  first conv's input gradient, a forward-conv kernel since `trainers.stem_conv`, as `StemInputGradient`):
  seconds, share of op time, event count; `executor_overhead_s`: the executor's own
  `ExecutorState::Process` events minus the ops inside them, i.e. per-op dispatch;
- `conv_gflops`: analytic FLOPs of the forward convs (T + 1 forwards per chain) and of the
  input-gradient convs (T) (train step: also the filter gradients) over the time of the kernels
  that run them (`conv_seconds`), the per-kernel rate to set against the peak probes
  (`benchmarks.peak`).
`--train-step` profiles one whole multi-grid train step (grids 1, 4, 16, 64) instead.
FLOP convention: benchmarks/common.py. One JSON document on stdout; the trace stays in `--logdir`
(open it with TensorBoard's profile plugin where installed).
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import tempfile
import time

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from benchmarks import common
from trainers import stem_conv
from trainers.langevin import LangevinSampler
from trainers.networks import build_energy_net, layer_specs

STEP_SIZE = 0.3
FORWARD_CONVS = ("_MklNativeFusedConv2D", "_MklNativeConv2D", "Conv2D", "_FusedConv2D", "_MklFusedConv2D")
STEM_GRAD = "StemInputGradient"  # trainers.stem_conv's conv (a forward-conv kernel), found by its op name
INPUT_GRAD_CONVS = ("_MklNativeConv2DBackpropInput", "Conv2DBackpropInput", "_MklConv2DBackpropInput", STEM_GRAD)
FILTER_GRAD_CONVS = ("_MklNativeConv2DBackpropFilter", "Conv2DBackpropFilter", "_MklConv2DBackpropFilter",
                     "_MklNativeConv2DBackpropFilterWithBias", "_MklConv2DBackpropFilterWithBias")
KERNEL_CLASSES = {"forward": FORWARD_CONVS, "input_gradient": INPUT_GRAD_CONVS, "filter_gradient": FILTER_GRAD_CONVS}
EXECUTOR = "ExecutorState::Process"


def read_trace(logdir: str) -> dict:
    """{op type: [seconds, events]} and the executor's own seconds from the newest XSpace in logdir.

    Raises:
      FileNotFoundError: no `*.xplane.pb` under logdir (the profiler wrote nothing).
    """
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {logdir}: the profiler trace is missing")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    ops, executor_s = collections.defaultdict(lambda: [0.0, 0]), 0.0
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute") and not line.name.startswith("tf_"):
                continue
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                seconds = event.duration_ps * 1e-12
                if meta.name == EXECUTOR:
                    executor_s += seconds
                elif meta.display_name:
                    op = STEM_GRAD if stem_conv.OP_NAME in meta.name else meta.display_name
                    ops[op][0] += seconds
                    ops[op][1] += 1
    return {"ops": dict(ops), "executor_s": executor_s, "path": paths[-1]}


def summarize(trace: dict, wall_s: float, class_flops: dict) -> dict:
    """The JSON figures of the module docstring from `read_trace`'s output; class_flops: analytic
    FLOPs of each kernel class of KERNEL_CLASSES that the traced calls ran."""
    ops = trace["ops"]
    op_s = sum(v[0] for v in ops.values())
    by_kernel = sorted(((k, v[0], v[1]) for k, v in ops.items()), key=lambda r: -r[1])
    class_s = {c: sum(ops[k][0] for k in KERNEL_CLASSES[c] if k in ops) for c in class_flops}
    return {
        "wall_s": wall_s, "op_thread_s": op_s, "op_thread_over_wall": common.ratio(op_s, wall_s),
        "executor_overhead_s": max(0.0, trace["executor_s"] - op_s),
        "by_kernel": [{"op": k, "seconds": s, "share": common.ratio(s, op_s), "events": n}
                      for k, s, n in by_kernel],
        "conv_gflops": {c: common.ratio(f / 1e9, class_s[c]) for c, f in class_flops.items()},
        "conv_seconds": class_s,
        "trace": trace["path"],
    }


def profile_sampler(grid: int, channels: int, batch: int, steps: int, calls: int, logdir: str) -> dict:
    """Trace `calls` sampler calls after a warm-up; see the module docstring."""
    net = build_energy_net(grid, channels)
    sampler = LangevinSampler(steps, STEP_SIZE)
    energy_fn = lambda x: net(x)  # noqa: E731  one object, so the traced loop is reused
    x0 = tf.random.stateless_uniform([batch, grid, grid, channels], [0, 1])
    seed = tf.constant([0, 2], tf.int32)
    for _ in range(2):
        sampler.run(energy_fn, x0, seed)[0].numpy()
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(calls):
        sampler.run(energy_fn, x0, seed)[0].numpy()
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    forward = common.forward_flops(grid, channels, layer_specs(grid))["total"]
    out = summarize(read_trace(logdir), wall, {"forward": calls * batch * (steps + 1) * forward,
                                               "input_gradient": calls * batch * steps * forward})
    out["gflops"] = calls * common.sampler_call_flops(forward, batch, steps) / wall / 1e9
    return out


def profile_train_step(grid: int, channels: int, batch: int, steps: int, calls: int, logdir: str) -> dict:
    """Trace `calls` multi-grid train steps (benchmarks.langevin's workload) after a warm-up."""
    from benchmarks.langevin import GRIDS  # pylint: disable=import-outside-toplevel
    from trainers import pyramid_ops, train as train_lib  # pylint: disable=import-outside-toplevel
    from trainers.families.multigrid import build_model  # pylint: disable=import-outside-toplevel
    grids = GRIDS[grid]
    model = build_model(grids, channels, variant="multigrid", steps=steps, step_size=STEP_SIZE, seed=0)
    model.compile(learning_rate=1e-4, beta_1=0.5)
    step_fn = train_lib._make_step_fn(model, tf.distribute.get_strategy(), False)  # pylint: disable=protected-access
    images = tf.random.stateless_uniform([batch, grid, grid, channels], [0, 3])
    data = {f"grid_{g}": v for g, v in pyramid_ops.build_pyramid(images, grids).items()}
    for _ in range(2):
        {k: float(v) for k, v in step_fn(data).items()}
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(calls):
        {k: float(v) for k, v in step_fn(data).items()}
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    forwards = {g: common.forward_flops(g, channels, layer_specs(g))["total"] for g in grids if g > 1}
    # Per grid: T Langevin steps on N chains (T + 1 forwards, T input gradients) and the update on
    # 2N images (one forward, the input gradients of the layers above the first - counted as a
    # whole forward, a slight overestimate - and one filter gradient).
    total = sum(forwards.values())
    out = summarize(read_trace(logdir), wall, {
        "forward": calls * total * (batch * (steps + 1) + 2 * batch),
        "input_gradient": calls * total * (batch * steps + 2 * batch),
        "filter_gradient": calls * total * 2 * batch})
    out["gflops"] = calls * common.train_step_flops(forwards, batch, steps) / wall / 1e9
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--train-step", action="store_true", help="profile the multi-grid train step")
    parser.add_argument("--logdir", default=None, help="trace folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    logdir = args.logdir or tempfile.mkdtemp(prefix="profile_sampler_")
    run = profile_train_step if args.train_step else profile_sampler
    doc = {"workload": {"kind": "train_step" if args.train_step else "langevin", "grid": args.grid,
                        "channels": args.channels, "batch": args.batch, "steps": args.steps, "calls": args.calls},
           "machine": common.machine_info(), "load_before": common.load_average(),
           **run(args.grid, args.channels, args.batch, args.steps, args.calls, logdir)}
    doc["load_after"] = common.load_average()
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
