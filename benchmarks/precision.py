"""float32 against mixed precision (bfloat16 on CPU, float16 on GPU) for the Langevin loop and
the multi-grid train step, in interleaved rounds so machine load hits both alike.

`python -m benchmarks.precision` (about 4 minutes on 2 CPU cores): the `--quick` workload of
`benchmarks.langevin` (64-px RGB energy net, batch 64, 4 Langevin steps per call; the train step
over grids 1, 4, 16, 64), `tf.function`, no XLA, measured by that module's `bench_langevin` and
`bench_train_step` with policy `float32` and `mixed` (`mixed_bfloat16` here: Keras computes the
convs in bfloat16 with float32 variables; the sampler keeps its chains in float32). `--rounds` R
(default 3) rounds of (float32, mixed), each a fresh net and trace, best of `--repeats` calls.

JSON on stdout: per policy and kind the GFLOP/s of every round (analytic FLOPs of
benchmarks/common.py; the same count for both policies, so a bfloat16 FLOP counts as one FLOP)
and their min / median / max; `speedup_median`: the median mixed GFLOP/s over the median float32
GFLOP/s; whether the CPU reports AVX512_BF16 / AMX (`bf16_flags`).
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks import common
from benchmarks.langevin import bench_langevin, bench_train_step

POLICIES = ("float32", "mixed")


def spread(values: list[float]) -> dict:
    """{min, median, max, values} of a list of numbers."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "values": values}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-train", action="store_true", help="only the Langevin loop")
    args = parser.parse_args(argv)
    kinds = ("langevin",) if args.no_train else ("langevin", "train_step")
    gflops = {k: {p: [] for p in POLICIES} for k in kinds}
    names, load = {}, [common.load_average()]
    for _ in range(args.rounds):
        for policy in POLICIES:
            lang = bench_langevin(args.grid, args.channels, args.batch, args.steps, "function", policy,
                                  repeats=args.repeats)
            gflops["langevin"][policy].append(lang["gflops"])
            names[policy] = lang["policy"]
            if not args.no_train:
                step = bench_train_step(args.grid, args.channels, args.batch, args.steps, "function", policy,
                                        repeats=args.repeats)
                gflops["train_step"][policy].append(step["gflops"])
        load.append(common.load_average())
    doc = {"workload": {"grid": args.grid, "channels": args.channels, "batch": args.batch, "steps": args.steps,
                        "rounds": args.rounds, "repeats": args.repeats},
           "machine": common.machine_info(), "load": load, "policies": names,
           "bf16_flags": [f for f in common.cpu_flags() if "bf16" in f or "amx" in f]}
    rows = []
    for kind in kinds:
        per = {p: spread(gflops[kind][p]) for p in POLICIES}
        doc[kind] = {**{names[p]: per[p] for p in POLICIES},
                     "speedup_median": common.ratio(per["mixed"]["median"], per["float32"]["median"])}
        rows += [[kind, names[p], common.fmt(per[p]["min"]), common.fmt(per[p]["median"]), common.fmt(per[p]["max"])]
                 for p in POLICIES]
    common.emit(doc, rows, ["kind", "policy", "GFLOP/s min", "median", "max"])


if __name__ == "__main__":
    main()
