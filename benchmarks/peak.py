"""The machine's float32 peak: measured so that it cannot be under-measured, and from the ISA.

A fraction of peak is only as good as its denominator. One probe measured once under-measures
the peak whenever the machine is busy during that probe, or the probe's shape is not the one
the kernels run best; then the fraction rises with no change to the loop. So:

- the measured peak is the best over several probes (`default_probes`): every conv layer of the
  benchmarked energy net at its own shape and batch (the 64-px net includes the 5x5 stride-2
  128 -> 256 conv at batch 64), a 3x3 256 -> 256 conv on 32x32 at batch 16, and a 2048^3 matmul;
- each probe is warmed, then repeated until its best stops moving (`measure_probe`: at least
  `min_repeats` calls, and the last `patience` calls improved the best by less than `settle`);
- a benchmark runs a round of probes several times, between its own measurements, so machine
  load hits the peak and the loop alike; `summarize` gives the peak (the best of every round),
  the spread of the rounds' peaks and the probe that set it;
- `theoretical_peak`: cores x clock x float32 FLOPs per cycle from the ISA flags, stated beside
  the measured one with its assumptions.

FLOPs: multiply-add = 2; a conv with 'same' padding does 2 * N * Ho * Wo * k * k * Cin * Cout.
"""

from __future__ import annotations

import os
import statistics
import time

import tensorflow as tf

from benchmarks import common
from trainers.networks import layer_specs


def conv_probe(batch: int, size: int, cin: int, cout: int, kernel: int, stride: int = 1):
    """(name, fn, flops): a float32 'same' conv [batch, size, size, cin] -> cout channels."""
    gen = tf.random.Generator.from_seed(0)
    x, w = gen.uniform([batch, size, size, cin]), gen.uniform([kernel, kernel, cin, cout])
    conv = tf.function(lambda x, w: tf.nn.conv2d(x, w, stride, "SAME"))
    out = -(-size // stride)
    flops = 2 * batch * out * out * kernel * kernel * cin * cout
    return f"conv{kernel}x{kernel}s{stride}_{cin}to{cout}_{size}px_b{batch}", lambda: conv(x, w).numpy(), flops


def matmul_probe(n: int = 2048):
    """(name, fn, flops): a float32 [n, n] x [n, n] matmul."""
    gen = tf.random.Generator.from_seed(1)
    a, b = gen.uniform([n, n]), gen.uniform([n, n])
    matmul = tf.function(lambda a, b: tf.matmul(a, b))
    return f"matmul{n}", lambda: matmul(a, b).numpy(), 2 * n ** 3


def default_probes(grid: int = 64, channels: int = 3, batch: int = 64) -> list:
    """The energy net's conv layers at (grid, channels, batch), then the fixed probes; no duplicates."""
    probes, size, cin = [], grid, channels
    for kernel, stride, cout in layer_specs(grid):
        probes.append(conv_probe(batch, size, cin, cout, kernel, stride))
        size, cin = -(-size // stride), cout
    probes += [conv_probe(64, 16, 128, 256, 5, 2), conv_probe(16, 32, 256, 256, 3), matmul_probe(2048)]
    seen, unique = set(), []
    for probe in probes:
        if probe[0] not in seen:
            seen.add(probe[0])
            unique.append(probe)
    return unique


def measure_probe(fn, flops: int, min_repeats: int = 3, max_repeats: int = 20, patience: int = 3,
                  settle: float = 0.01, warmup: int = 2) -> dict:
    """Best GFLOP/s of `fn` (which blocks until its result exists), repeated until the best settles.

    Stops after max_repeats calls, or once at least min_repeats were timed and the last `patience`
    calls raised the best by less than the fraction `settle`.

    Returns:
      {"best_gflops", "gflops": per timed call (rounded), "calls"}.
    """
    for _ in range(warmup):
        fn()
    rates, best_s = [], []
    for _ in range(max(1, max_repeats)):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        rates.append(flops / elapsed / 1e9)
        best_s.append(min(elapsed, best_s[-1]) if best_s else elapsed)
        if common.settled(best_s, min_repeats, patience, settle):
            break
    return {"best_gflops": max(rates), "gflops": [round(r, 1) for r in rates], "calls": len(rates)}


def peak_round(probes, **kwargs) -> dict:
    """{probe name: best GFLOP/s} of one round over `probes` [(name, fn, flops)]."""
    return {name: measure_probe(fn, flops, **kwargs)["best_gflops"] for name, fn, flops in probes}


def summarize(rounds: list[dict]) -> dict:
    """The peak over rounds [{probe: GFLOP/s}]: {"peak_gflops", "best_probe", "round_peaks",
    "spread": {"min", "median", "max"} of the rounds' peaks, "relative_spread" (max-min)/max}."""
    if not rounds or not all(rounds):
        raise ValueError("summarize needs at least one non-empty round of probes")
    peaks = [max(r.values()) for r in rounds]
    best_round = rounds[peaks.index(max(peaks))]
    return {"peak_gflops": max(peaks), "best_probe": max(best_round, key=best_round.get),
            "round_peaks": [round(p, 1) for p in peaks],
            "spread": {"min": min(peaks), "median": statistics.median(peaks), "max": max(peaks)},
            "relative_spread": (max(peaks) - min(peaks)) / max(peaks)}


def adjacent_fraction(gflops: float, before: dict, after: dict) -> float:
    """A workload's GFLOP/s over the mean of the peaks of the rounds measured right before and after
    it ({probe: GFLOP/s} each): a diagnostic where the machine's speed drifts over minutes, since
    the drift then hits numerator and denominator alike. The headline fraction divides by the
    best round of the whole run instead (`summarize`), which cannot be under-measured."""
    return gflops / ((max(before.values()) + max(after.values())) / 2.0)


def probe_now(probe, calls: int = 6, warmup: int = 1):
    """A zero-argument callable for `common.time_calls(probe=...)`: the best GFLOP/s of `calls`
    calls of probe (name, fn, flops) right now (`measure_probe` with exactly that many calls),
    after `warmup` untimed calls (the first call after a big workload pays for its memory again)."""
    _, fn, flops = probe
    return lambda: measure_probe(fn, flops, min_repeats=calls, max_repeats=calls, warmup=warmup)["best_gflops"]


def paired_fraction(flops: float, times_s, probe_gflops, probe: str) -> dict:
    """A workload's fraction of peak call by call: each call's GFLOP/s (flops / its time) over the
    GFLOP/s that the peak's probe reached right after it (`probe_now`). Drift over minutes hits
    both sides of each ratio alike; a slow spell shorter than a call does not (docs/BENCHMARKS.md,
    section 1), so, like `adjacent_fraction`, it is a diagnostic.

    Returns:
      {"median", "q1", "q3"} over the calls (`common.median_quartiles`), "calls", "probe", and
      "ratios" (rounded, in call order).
    """
    if len(times_s) != len(probe_gflops) or not times_s:
        raise ValueError(f"paired_fraction needs one probe figure per call: {len(times_s)} calls, "
                         f"{len(probe_gflops)} probe figures")
    ratios = [flops / t / 1e9 / p for t, p in zip(times_s, probe_gflops)]
    return {**common.median_quartiles(ratios), "calls": len(ratios), "probe": probe,
            "ratios": [round(r, 3) for r in ratios]}


def flops_per_cycle(flags, vendor: str = "", family: int = 0) -> tuple[int, str]:
    """(float32 FLOPs per cycle per core, the assumption) from the CPU's ISA flags and, for AMD,
    its family (/proc/cpuinfo's `vendor_id` and `cpu family`).

    AVX-512 Intel server cores: two 512-bit FMA units = 2 x 16 lanes x 2 = 64; AMD Zen 4 (family
    25 with AVX-512) runs each 512-bit FMA as two halves on its two 256-bit FMA units = 32; Zen 5
    (family 26) has 512-bit units on server parts = 64; AVX2 with FMA: two 256-bit FMA units = 32;
    AVX without FMA: 16; otherwise SSE: 8. Parts with one FMA unit (some Xeon Silver/Bronze, Zen 5
    mobile) do half: the figure is an upper bound stated as such.
    """
    flags = set(flags)
    if "avx512f" in flags and "fma" in flags:
        if vendor == "AuthenticAMD" and family == 25:
            return 32, "AMD Zen 4: AVX-512 split over two 256-bit FMA units (2 x 8 float32 lanes x 2 FLOPs)"
        return 64, "AVX-512 with two 512-bit FMA units per core (2 x 16 float32 lanes x 2 FLOPs)"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 with two FMA units per core (2 x 8 float32 lanes x 2 FLOPs)"
    if "avx" in flags:
        return 16, "AVX, separate multiply and add (8 lanes x 2)"
    return 8, "SSE (4 lanes x 2)"


def theoretical_peak(cores: int, mhz: float, flags, vendor: str = "", family: int = 0) -> dict:
    """{"gflops", "cores", "ghz", "flops_per_cycle", "assumption"}: cores x clock x FLOPs/cycle."""
    if cores < 1 or not mhz > 0:
        raise ValueError(f"cores={cores} must be >= 1 and mhz={mhz} > 0")
    per_cycle, assumption = flops_per_cycle(flags, vendor, family)
    return {"gflops": cores * mhz / 1000.0 * per_cycle, "cores": int(cores), "ghz": mhz / 1000.0,
            "flops_per_cycle": per_cycle,
            "assumption": f"{assumption}; the clock is /proc/cpuinfo's 'cpu MHz' (boost clocks exceed it: "
                          "a measured peak above this figure means the cores ran faster)"}


def machine_theoretical_peak() -> dict | None:
    """`theoretical_peak` of this machine (the physical cores this process may use, the first
    CPU's clock and flags from /proc/cpuinfo); None where /proc/cpuinfo is unreadable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first CPU's
    if "cpu MHz" not in fields or "flags" not in fields:
        return None
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # Hyper-threads share their core's FMA units: count physical cores (cpu cores / siblings).
    per_core = int(fields.get("siblings", 1)) // max(1, int(fields.get("cpu cores", 1)))
    return theoretical_peak(max(1, logical // max(1, per_core)), float(fields["cpu MHz"]), fields["flags"].split(),
                            fields.get("vendor_id", ""), int(fields.get("cpu family", 0) or 0))
