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
here), more than a lever worth a few percent. `--paired N` measures the one lever that can change
inside a process, the stem gradient, call by call instead: the two nets (same weights) in one
process, N pairs of single Langevin calls in alternating order, so neighbouring calls see the same
load; `paired`: the per-pair time ratios (TF's stem / ours: median and quartiles), each side's best
and median call and GFLOP/s.
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


def paired_stem(pairs: int, batch: int = 64) -> dict:
    """The `--paired` document: TF's stem gradient against `trainers.stem_conv`, call by call."""
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from benchmarks.langevin import STEP_SIZE  # pylint: disable=import-outside-toplevel
    from trainers.langevin import LangevinSampler  # pylint: disable=import-outside-toplevel
    from trainers.networks import EnergyNet, build_energy_net, layer_specs  # pylint: disable=import-outside-toplevel
    calls = {}
    for name, stem in (("tf_stem_gradient", False), ("baseline", True)):
        EnergyNet.STEM_GRADIENT = stem
        keras.utils.set_random_seed(0)
        net, sampler = build_energy_net(64, 3), LangevinSampler(4, STEP_SIZE)
        energy = lambda x, net=net: net(x)  # noqa: E731  one object per net: its traced loop is reused
        calls[name] = energy, sampler
    EnergyNet.STEM_GRADIENT = True
    x0, seed = tf.random.stateless_uniform([batch, 64, 64, 3], [0, 1]), tf.constant([0, 2])
    chains = {n: s.run(f, x0, seed)[0].numpy() for n, (f, s) in calls.items()}  # trace, warm up
    times = {n: [] for n in calls}
    for i in range(pairs):
        for name in (reversed(calls) if i % 2 else calls):
            fn, sampler = calls[name]
            start = time.perf_counter()
            sampler.run(fn, x0, seed)[0].numpy()
            times[name].append(time.perf_counter() - start)
    ratios = sorted(a / b for a, b in zip(times["tf_stem_gradient"], times["baseline"]))
    forward = common.forward_flops(64, 3, layer_specs(64))["total"]
    flops = batch * (4 * common.langevin_step_flops(forward) + forward)
    quartile = lambda q: ratios[min(len(ratios) - 1, int(q * len(ratios)))]  # noqa: E731
    return {"pairs": pairs, "batch": batch, "max_abs_chain_diff": float(abs(chains["baseline"] -
                                                                            chains["tf_stem_gradient"]).max()),
            "ratio": {"median": statistics.median(ratios), "q1": quartile(0.25), "q3": quartile(0.75)},
            **{n: {"best_s": min(t), "median_s": statistics.median(t), "best_gflops": flops / min(t) / 1e9,
                   "median_gflops": flops / statistics.median(t) / 1e9} for n, t in times.items()}}


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
        doc = {"machine": common.machine_info(), "paired": paired_stem(args.paired)}
        doc["load"] = load + [common.load_average()]
        ratio = doc["paired"]["ratio"]
        common.emit(doc, [["tf_stem_gradient / baseline", *(common.fmt(ratio[k]) for k in ("median", "q1", "q3"))]],
                    ["time ratio per pair", "median", "q1", "q3"])
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
