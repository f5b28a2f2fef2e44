"""The peers of `benchmarks.langevin`'s multi-grid figures: how it runs them and turns their
figures into ratios, and the command line the peer workers share.

Peers (each a worker module run in its own subprocess by the interpreter of `--torch-python`,
so that no two thread pools, and no TensorFlow, share a process):
- `torch`: `benchmarks.reference_torch`, PyTorch eager (it also picks the thread count: the
  faster of 1 and torch's default).
- `torch_compile`: `benchmarks.reference_torch_compile`, the same nets and loops under
  `torch.compile` (inductor, CPU).
- `jax`: `benchmarks.reference_jax`, the same nets and loops under `jax.jit`.
The compiled peers run with the thread count the eager reference chose (inductor bakes it into
its kernels at compile time; for JAX, 1 thread = XLA's single-threaded Eigen, else its default
pool). A peer that is not importable in that interpreter (or fails) comes back as
{"error": ...}, and its ratios are null.

Worker command line (all three): `--grid 64 --channels 3 --batch 64 --steps 4 --repeats 2
--max-repeats 16 --max-timed-s 20 --grids 1,4,16,64 --specs '{"4": [[5, 2, 96], ...], ...}'
--threads N`; without `--specs` the specs come from `trainers.networks.layer_specs` (imports
TensorFlow). One JSON document on stdout: {"langevin": {best_s, images_per_s, gflops, ...},
"train_step": {...}, ...}.

This module imports neither TensorFlow, torch nor JAX.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time

from benchmarks import common

WORKERS = {"torch": "benchmarks.reference_torch", "torch_compile": "benchmarks.reference_torch_compile",
           "jax": "benchmarks.reference_jax"}
COMPILED = ("torch_compile", "jax")


def torch_python(explicit: str | None) -> str | None:
    """The interpreter that runs the torch reference: --torch-python, else this one if torch imports."""
    if explicit:
        return explicit
    return sys.executable if importlib.util.find_spec("torch") is not None else None


def command(python: str, peer: str, grid: int, channels: int, batch: int, steps: int, specs: dict,
            grids=None, repeats: int = 2, threads=None, max_repeats: int = 0, max_timed_s: float = 0) -> list[str]:
    """The worker's command line; specs {grid: [(kernel, stride, channels), ...]}, grids for the
    train step (None = the Langevin loop only), threads None = the worker's default; repeats,
    max_repeats, max_timed_s as `common.time_calls`'."""
    cmd = [python, "-m", WORKERS[peer], "--grid", str(grid), "--channels", str(channels), "--batch", str(batch),
           "--steps", str(steps), "--repeats", str(repeats), "--max-repeats", str(max_repeats),
           "--max-timed-s", str(max_timed_s),
           "--specs", json.dumps({str(k): [list(v) for v in layers] for k, layers in specs.items()})]
    if grids:
        cmd += ["--grids", ",".join(map(str, grids))]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    return cmd


def run_torch(python: str, grid: int, channels: int, batch: int, steps: int, specs: dict, grids=None,
              repeats: int = 2, max_repeats: int = 0, timeout: float = 900, max_timed_s: float = 0) -> dict:
    """The PyTorch eager reference (`benchmarks.reference_torch`, its own process and thread pool):
    its JSON document, or {"error": ...}; arguments as `command`."""
    return common.run_json(command(python, "torch", grid, channels, batch, steps, specs, grids, repeats,
                                   max_repeats=max_repeats, max_timed_s=max_timed_s), timeout)


def run_peers(python: str, grid: int, channels: int, batch: int, steps: int, specs: dict, grids=None,
              repeats: int = 2, threads=None, peers=COMPILED, timeout: float = 900,
              max_repeats: int = 0, max_timed_s: float = 0) -> dict:
    """{peer: its worker's JSON document, or {"error": ...}} for each of `peers`, one after the other."""
    return {p: common.run_json(command(python, p, grid, channels, batch, steps, specs, grids, repeats, threads,
                                       max_repeats, max_timed_s), timeout) for p in peers}


def speedups(lang: dict | None, train: dict | None, peers: dict | None) -> dict:
    """`speedup_vs_<peer>` (Langevin) and `train_step_speedup_vs_<peer>`: TF images/s over the
    peer's, null when either side is missing."""
    out = {}
    for name in COMPILED:
        doc = (peers or {}).get(name) or {}
        for key, ours, kind in (("speedup_vs_", lang, "langevin"), ("train_step_speedup_vs_", train, "train_step")):
            theirs = (doc.get(kind) or {}).get("images_per_s")
            out[key + name] = common.ratio((ours or {}).get("images_per_s"), theirs) if ours else None
    return out


def table_rows(doc: dict) -> list[list]:
    """Table rows of the torch reference and the compiled peers of a `benchmarks.langevin` document."""
    rows = []
    for peer, label, variant in (("torch", "torch", "eager"), ("torch_compile", "torch.compile", "inductor"),
                                 ("jax", "jax", "jit")):
        ref = doc["torch"] if peer == "torch" else (doc.get("peers") or {}).get(peer)
        if not isinstance(ref, dict):
            continue
        if ref.get("error"):
            rows.append([f"{label} {variant}", "-", "-", variant, "float32", "-", "-", "-", ref["error"][:60]])
        for name in ("langevin", "train_step"):
            if ref.get(name):
                rows.append([f"{label} {name}", ref["grid"], ref["batch"], variant, "float32",
                             common.fmt(ref[name]["images_per_s"]), common.fmt(ref[name]["gflops"]),
                             common.fmt(ref[name]["gflops"] / doc["peak_gflops"]), ""])
    return rows


def worker_parser(description: str, threads: str = "0") -> argparse.ArgumentParser:
    """The options every peer worker takes (the geometry, --specs, --repeats, --max-repeats, --threads)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--grids", default="", help="comma list for the train step, e.g. 1,4,16,64 ('' = none)")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--specs", default="", help="JSON {grid: [[kernel, stride, channels], ...]}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-repeats", type=int, default=0,
                        help="above --repeats: time until the best settles, at most this many calls")
    parser.add_argument("--max-timed-s", type=float, default=0.0,
                        help="above --repeats: also stop once the timed calls add up to this many seconds "
                        "(0 = no limit)")
    parser.add_argument("--threads", default=threads, help="threads (0 = the library's default)"
                        + (", auto = the faster of 1 and the default" if threads == "auto" else ""))
    return parser


def worker_specs(parser: argparse.ArgumentParser, args) -> tuple[dict, list[int]]:
    """(specs {grid: [(kernel, stride, channels)]}, train-step grids) of parsed worker options."""
    grids = [int(g) for g in args.grids.split(",")] if args.grids else []
    if args.specs:
        specs = {int(k): [tuple(v) for v in layers] for k, layers in json.loads(args.specs).items()}
    else:
        from trainers.networks import layer_specs  # pylint: disable=import-outside-toplevel
        specs = {g: layer_specs(g, args.width) for g in set(grids + [args.grid]) if g > 1}
    missing = [g for g in set(grids + [args.grid]) if g > 1 and g not in specs]
    if missing:
        parser.error(f"--specs lacks grids {missing}")
    return specs, grids


def worker_args(argv, description: str):
    """Parse a compiled peer's command line: (args, specs, grids); --threads an int."""
    parser = worker_parser(description)
    args = parser.parse_args(argv)
    args.threads = int(args.threads)
    return (args, *worker_specs(parser, args))


def train_step_result(timing: dict, batch: int, grids, channels: int, specs: dict, steps: int) -> dict:
    """A worker's `train_step` entry: its timing, images/s and GFLOP/s (common.train_step_flops)."""
    forwards = {g: common.forward_flops(g, channels, specs[g])["total"] for g in grids if g > 1}
    flops = common.train_step_flops(forwards, batch, steps)
    return {**timing, "images_per_s": batch / timing["best_s"], "grids": list(grids),
            "gflops": flops / timing["best_s"] / 1e9}


def worker_main(run, argv, description: str) -> int:
    """A compiled peer's entry point: parse `worker_args`, call run(grid, channels, batch, steps,
    grids, specs, repeats, train=, threads=, max_repeats=, max_timed_s=) and print its dict, with
    `wall_s`, as one JSON line."""
    args, specs, grids = worker_args(argv, description)
    start = time.perf_counter()
    result = run(args.grid, args.channels, args.batch, args.steps, grids, specs, args.repeats,
                 train=bool(grids), threads=args.threads, max_repeats=args.max_repeats, max_timed_s=args.max_timed_s)
    result["wall_s"] = time.perf_counter() - start
    json.dump(result, sys.stdout)
    print()
    return 0
