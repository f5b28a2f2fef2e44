"""Which setting moves the Langevin loop: the `--quick` workload under each lever, in fresh
processes, interleaved rounds.

`python -m benchmarks.levers` (about 6 minutes on 2 CPU cores): for each variant below, a fresh
Python process (TensorFlow's thread pools and oneDNN are fixed at start-up) runs
`benchmarks.langevin.bench_langevin` (64-px RGB net, 4 Langevin steps, `tf.function`) and, with
`--train-step`, `bench_train_step`, best of `--repeats` calls; `--rounds` R rounds of all
variants, interleaved, so machine load hits every variant alike. Variants:
- `baseline`: batch 64, TensorFlow's default thread pools, the net as users train it (its first
  conv's input gradient by `trainers.stem_conv`);
- `tf_stem_gradient`: the first conv's input gradient by TF's own kernel (`Conv2DBackpropInput`;
  `EnergyNet.STEM_GRADIENT = False`), as before `trainers.stem_conv`;
- `inter_op_1`: `tf.config.threading.set_inter_op_parallelism_threads(1)` (one op at a time, each
  with every core);
- `intra_op_1_inter_op_2`: ops single-threaded, two side by side;
- `onednn_off`: `TF_ENABLE_ONEDNN_OPTS=0` (Eigen kernels, no oneDNN layouts or fusions);
- `batch_32`, `batch_128`: the batch per call (per core: half of it on 2 cores).
GFLOP/s by the FLOP convention of benchmarks/common.py. One JSON document on stdout: per variant
every round's GFLOP/s, the median and the median over the baseline's median (`vs_baseline`).

Fresh processes see the host's drift between them (8% between two rounds of the same variant
here), more than a lever worth a few percent. `--paired N` measures the levers that can change
inside a process call by call instead: N rounds of one Langevin call per arm, each arm first in
turn, so neighbouring calls see the same load. Arms: `baseline` (as above); `tf_stem_gradient`
(the same weights, TF's stem gradient); `all_ones_mask` (the baseline given an all-ones inpainting
mask, i.e. the two `SelectV2` per step that every call ran before `trainers/langevin.py` dropped
them when no mask is given). `paired`: per arm the time ratio to the baseline's call of the same
round (median, quartiles), best and median call, GFLOP/s; `stem_kernel`: the stem's input
gradient alone ([batch, 64, 64, 3], 5x5 stride 2 -> 64 channels), TF's `Conv2DBackpropInput`
against `trainers.stem_conv.input_gradient`, best ms of 10 calls each, in alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from benchmarks import common

VARIANTS = {
    "baseline": ({}, {}),
    "tf_stem_gradient": ({}, {"tf_stem_gradient": True}),
    "inter_op_1": ({}, {"inter": 1}),
    "intra_op_1_inter_op_2": ({}, {"intra": 1, "inter": 2}),
    "onednn_off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    "batch_32": ({}, {"batch": 32}),
    "batch_128": ({}, {"batch": 128}),
}


def worker(spec: dict) -> dict:
    """Run in the fresh process: set the threads, then time the workload; {kind: gflops}."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if spec.get("inter"):
        tf.config.threading.set_inter_op_parallelism_threads(spec["inter"])
    if spec.get("intra"):
        tf.config.threading.set_intra_op_parallelism_threads(spec["intra"])
    from benchmarks.langevin import bench_langevin, bench_train_step  # pylint: disable=import-outside-toplevel
    from trainers.networks import EnergyNet  # pylint: disable=import-outside-toplevel
    EnergyNet.STEM_GRADIENT = not spec.get("tf_stem_gradient")
    batch = spec.get("batch", 64)
    out = {"langevin": bench_langevin(64, 3, batch, 4, "function", repeats=spec["repeats"])["gflops"]}
    if spec.get("train_step"):
        out["train_step"] = bench_train_step(64, 3, batch, 4, "function", repeats=spec["repeats"])["gflops"]
    return out


def run_variant(name: str, repeats: int, train_step: bool) -> dict:
    """One variant in a fresh process ({kind: gflops} or {"error": ...})."""
    env, spec = VARIANTS[name]
    spec = dict(spec, repeats=repeats, train_step=train_step)
    cmd = [sys.executable, "-m", "benchmarks.levers", "--worker", json.dumps(spec)]
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return common.run_json(cmd, timeout=900)
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def paired(pairs: int, batch: int = 64) -> dict:
    """The `--paired` document: each in-process lever's "before" arm against the baseline, call by
    call (module docstring); `arms` gives each arm's calls, `ratio` each arm's time over the
    baseline's in the same round (median, quartiles)."""
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from benchmarks.langevin import STEP_SIZE  # pylint: disable=import-outside-toplevel
    from trainers.langevin import LangevinSampler  # pylint: disable=import-outside-toplevel
    from trainers.networks import EnergyNet, build_energy_net, layer_specs  # pylint: disable=import-outside-toplevel
    x0, seed = tf.random.stateless_uniform([batch, 64, 64, 3], [0, 1]), tf.constant([0, 2])
    arms = {}
    for name, stem, mask in (("baseline", True, None), ("tf_stem_gradient", False, None),
                             ("all_ones_mask", True, tf.ones([batch, 64, 64, 1]))):
        EnergyNet.STEM_GRADIENT = stem
        keras.utils.set_random_seed(0)
        net, sampler = build_energy_net(64, 3), LangevinSampler(4, STEP_SIZE)
        energy = lambda x, net=net: net(x)  # noqa: E731  one object per net: its traced loop is reused
        arms[name] = lambda sampler=sampler, energy=energy, mask=mask: sampler.run(energy, x0, seed, mask)[0].numpy()
    EnergyNet.STEM_GRADIENT = True
    chains = {n: run() for n, run in arms.items()}  # trace and warm up
    times, names = {n: [] for n in arms}, list(arms)
    for i in range(pairs):
        for name in names[i % len(names):] + names[:i % len(names)]:  # each arm first in turn
            start = time.perf_counter()
            arms[name]()
            times[name].append(time.perf_counter() - start)
    forward = common.forward_flops(64, 3, layer_specs(64))["total"]
    flops = common.sampler_call_flops(forward, batch, 4)
    doc = {"pairs": pairs, "batch": batch, "ratio": {}, "max_abs_chain_diff": {}, "arms": {}}
    for name, t in times.items():
        doc["arms"][name] = {"best_s": min(t), "median_s": statistics.median(t), "best_gflops": flops / min(t) / 1e9,
                             "median_gflops": flops / statistics.median(t) / 1e9}
        if name != "baseline":
            doc["ratio"][name] = common.median_quartiles(a / b for a, b in zip(t, times["baseline"]))
            doc["max_abs_chain_diff"][name] = float(abs(chains[name] - chains["baseline"]).max())
    return doc


def stem_kernel(batch: int = 64, rounds: int = 5, calls: int = 10) -> dict:
    """The `stem_kernel` entry of `--paired`: {"tf_ms", "ours_ms"} (best per round), "gflops" (best)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from trainers.stem_conv import input_gradient  # pylint: disable=import-outside-toplevel
    gen = tf.random.Generator.from_seed(0)
    kernel, dy = gen.normal([5, 5, 3, 64]), gen.normal([batch, 32, 32, 64])
    fns = {"tf_ms": tf.function(lambda dy, w: tf.raw_ops.Conv2DBackpropInput(
               input_sizes=[batch, 64, 64, 3], filter=w, out_backprop=dy, strides=[1, 2, 2, 1], padding="SAME")),
           "ours_ms": tf.function(lambda dy, w: input_gradient(dy, w, (64, 64)))}
    out = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn(dy, kernel).numpy()
            out[name].append(1e3 * common.time_calls(lambda f=fn: f(dy, kernel).numpy(), calls, warmup=0)["best_s"])
    flops = 2 * batch * 32 * 32 * 25 * 3 * 64
    return {**out, "gflops": {name: flops / min(ms) / 1e6 for name, ms in out.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-step", action="store_true", help="also time the multi-grid train step")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--paired", type=int, default=0, metavar="N",
                        help="instead: N alternating call pairs, TF's stem gradient vs ours, in one process")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.paired:
        load = [common.load_average()]
        doc = {"machine": common.machine_info(), "paired": paired(args.paired), "stem_kernel": stem_kernel()}
        doc["load"] = load + [common.load_average()]
        rows = [[f"{arm} / baseline", *(common.fmt(r[k]) for k in ("median", "q1", "q3"))]
                for arm, r in doc["paired"]["ratio"].items()]
        common.emit(doc, rows, ["time ratio per round", "median", "q1", "q3"])
        return
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; allowed: {list(VARIANTS)}")
    results = {n: [] for n in names}
    load = [common.load_average()]
    for _ in range(args.rounds):
        for n in names:
            results[n].append(run_variant(n, args.repeats, args.train_step))
        load.append(common.load_average())
    doc = {"machine": common.machine_info(), "load": load, "rounds": args.rounds, "repeats": args.repeats,
           "variants": {}}
    kinds = ("langevin", "train_step") if args.train_step else ("langevin",)
    medians = {}
    for n in names:
        entry = {"errors": [r["error"] for r in results[n] if "error" in r]}
        for kind in kinds:
            values = [r[kind] for r in results[n] if kind in r]
            entry[kind] = values
            medians[(n, kind)] = statistics.median(values) if values else None
            entry[f"{kind}_median"] = medians[(n, kind)]
        doc["variants"][n] = entry
    rows = []
    for n in names:
        for kind in kinds:
            vs = common.ratio(medians[(n, kind)], medians.get(("baseline", kind)))
            doc["variants"][n][f"{kind}_vs_baseline"] = vs
            rows.append([n, kind, common.fmt(medians[(n, kind)]), common.fmt(vs)])
    common.emit(doc, rows, ["variant", "kind", "GFLOP/s median", "vs baseline"])


if __name__ == "__main__":
    main()
