"""Why XLA is slow on this CPU: the three passes of one stride-2 conv, with and without XLA, under
several `XLA_FLAGS` settings.

`python -m benchmarks.xla_cpu` (about 2 minutes on 2 CPU cores): the conv the 64-px energy net
spends most of its time in (5x5, stride 2, 'same', [batch, size, size, cin] -> cout; default
[8, 32, 32, 64] -> 128, the net's second layer), its forward, its input gradient (what every
Langevin step needs) and its filter gradient (the train step's update), each timed as a
`tf.function` and as a `tf.function(jit_compile=True)` (XLA), best of `--repeats` calls after a
warm-up; then the whole Langevin loop of the 64-px net (`benchmarks.langevin.bench_langevin`:
batch `--loop-batch`, 4 steps per call, best of 3) as a `tf.function` and with XLA. Every
`XLA_FLAGS` setting runs in its own process (XLA reads the flags once); a flag this
TensorFlow's XLA does not know aborts that process, which is reported as `error` for the setting.

JSON on stdout: per setting, per pass, `tf_s` / `xla_s` (best seconds) and `xla_slowdown` =
xla_s / tf_s, the GFLOP/s of each (analytic: 2 * N * Ho * Wo * k * k * cin * cout per pass) and
`max_rel_diff` (XLA's result against TF's, over TF's largest magnitude: the same computation);
`langevin`: the loop's GFLOP/s both ways and `xla_slowdown`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from benchmarks import common

# Settings tried: TF's default; XLA's oneDNN rewrites of dots and convs (newer XLA; the thunk
# runtime bypasses the rewriter in some versions); fast math (no effect on conv algorithms
# expected: a control).
SETTINGS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": "--xla_cpu_experimental_onednn_custom_call=true --xla_cpu_use_thunk_runtime=false",
    "fast_math": "--xla_cpu_enable_fast_math=true",
}
PASSES = ("forward", "input_grad", "filter_grad")


def measure(batch: int, size: int, cin: int, cout: int, kernel: int, stride: int, repeats: int) -> dict:
    """{pass: {tf_s, xla_s, xla_slowdown, tf_gflops, xla_gflops}} in this process."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    gen = tf.random.Generator.from_seed(0)
    x = gen.uniform([batch, size, size, cin])
    w = gen.uniform([kernel, kernel, cin, cout]) * 0.01
    out = -(-size // stride)
    dy = gen.uniform([batch, out, out, cout])

    def forward(x, w):
        return tf.nn.conv2d(x, w, stride, "SAME")

    def input_grad(x, w):
        return tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(x), filter=w, out_backprop=dy,
                                              strides=[1, stride, stride, 1], padding="SAME")

    def filter_grad(x, w):
        return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(w), out_backprop=dy,
                                               strides=[1, stride, stride, 1], padding="SAME")

    flops = 2 * batch * out * out * kernel * kernel * cin * cout
    result = {}
    for name, fn in zip(PASSES, (forward, input_grad, filter_grad)):
        times, values = {}, {}
        for variant, jit in (("tf", False), ("xla", True)):
            compiled = tf.function(fn, jit_compile=jit)
            values[variant] = compiled(x, w).numpy()
            times[variant] = common.time_calls(lambda c=compiled: c(x, w).numpy(), repeats, warmup=1)["best_s"]
        scale = float(abs(values["tf"]).max()) or 1.0
        result[name] = {"tf_s": times["tf"], "xla_s": times["xla"], "xla_slowdown": times["xla"] / times["tf"],
                        "tf_gflops": flops / times["tf"] / 1e9, "xla_gflops": flops / times["xla"] / 1e9,
                        "max_rel_diff": float(abs(values["xla"] - values["tf"]).max()) / scale}
    return result


def measure_loop(batch: int) -> dict:
    """The 64-px Langevin loop (4 steps per call) as a tf.function and with XLA: GFLOP/s, slowdown."""
    from benchmarks.langevin import bench_langevin  # pylint: disable=import-outside-toplevel

    rates = {v: bench_langevin(64, 3, batch, 4, v, repeats=3)["gflops"] for v in ("function", "xla")}
    return {"batch": batch, "tf_gflops": rates["function"], "xla_gflops": rates["xla"],
            "xla_slowdown": rates["function"] / rates["xla"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--cin", type=int, default=64)
    parser.add_argument("--cout", type=int, default=128)
    parser.add_argument("--kernel", type=int, default=5)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-batch", type=int, default=16, help="Langevin loop batch (0 = leave the loop out)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma list from {sorted(SETTINGS)}")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    geometry = dict(batch=args.batch, size=args.size, cin=args.cin, cout=args.cout, kernel=args.kernel,
                    stride=args.stride)
    if args.worker:  # one setting, in the environment the parent gave this process
        result = measure(**geometry, repeats=args.repeats)
        result["langevin"] = measure_loop(args.loop_batch) if args.loop_batch > 0 else None
        print(json.dumps(result))
        return 0
    names = [s for s in args.settings.split(",") if s]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings: unknown {unknown}; choose from {sorted(SETTINGS)}")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    doc = {"machine": common.machine_info({"tensorflow": tf.__version__}), "geometry": geometry, "settings": {}}
    cmd = [sys.executable, "-m", "benchmarks.xla_cpu", "--worker", "--repeats", str(args.repeats),
           "--loop-batch", str(args.loop_batch)]
    cmd += [f"--{k}={v}" for k, v in geometry.items()]
    rows = []
    for name in names:
        env = {**os.environ, "XLA_FLAGS": SETTINGS[name], "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or [f"rc {proc.returncode}"])[-1]
            doc["settings"][name] = {"xla_flags": SETTINGS[name], "error": tail[-300:]}
            rows.append([name, "error", tail[-80:], "", ""])
            continue
        doc["settings"][name] = {"xla_flags": SETTINGS[name], **json.loads(lines[-1])}
        for p in PASSES:
            r = doc["settings"][name][p]
            rows.append([name, p, f"{r['tf_gflops']:.1f}", f"{r['xla_gflops']:.1f}", f"{r['xla_slowdown']:.1f}x"])
        loop = doc["settings"][name]["langevin"]
        if loop:
            rows.append([name, f"Langevin b{loop['batch']}", f"{loop['tf_gflops']:.1f}", f"{loop['xla_gflops']:.1f}",
                         f"{loop['xla_slowdown']:.1f}x"])
    doc["machine"]["loadavg_end"] = common.load_average()
    common.emit(doc, rows, ["setting", "pass", "tf GFLOP/s", "xla GFLOP/s", "xla slower"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
