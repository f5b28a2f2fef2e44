"""Shared helpers of the benchmarks: machine facts, load, timing, analytic FLOP counts, output.

FLOP convention (used by every benchmark and by docs/BENCHMARKS.md): a multiply-add is 2 FLOPs;
only convolutions and dense layers are counted (bias adds, activations, clipping and the optimizer
are left out, so the counts are slight underestimates). A conv with kernel k, stride s, 'same'
padding on an S x S x C_in input costs 2 * ceil(S/s)^2 * k^2 * C_in * C_out per image. One
Langevin step is counted as 2x the forward FLOPs (the forward pass plus the gradient with respect
to the input). A training update of one net on its 2N observed + synthesized images is counted as
3x the forward FLOPs per image (forward, input-gradient and weight-gradient passes).

The CF-EBM net (`trainers.families.cfebm_net.ExpandingEnergyNet`) is counted by the same rule
(`cfebm_forward_flops`): per stage its from-RGB 1x1 conv, per residual block two 3x3 convs and
the 1x1 skip conv, all at the block's input size (the skip runs before its average pool), and
the final dense layer; pooling, the spatial sum, Swish and the spectral norm's power iteration
(per weight, not per image) are left out. The fade branch (from-RGB of the previous stage on the
2x2-averaged image) is counted whenever the model computes it: the trainer and the export pass
beta as a tensor, so the last stage's energy computes both branches even at beta = 1.

The PatchGenCN net (`trainers.families.patchgen_net.PatchEnergyNet`) is counted by the same rule
(`patchgen_forward_flops`): the input h x w is padded by P = len(channels) px on every side and
conv i (valid 3x3, i = 1..P) runs at out (h + 2P - 2i) x (w + 2P - 2i), so the last map is h x w;
ELU, the spatial sum and the spectral norm's power iteration are left out. A chain of T steps on
one image costs T * 2F + F (the sampler's final energy, as for the other samplers);
`patchgen_chain_flops` and `patchgen_train_step_flops` add these up over the scales.

This module imports neither TensorFlow nor torch, so the PyTorch reference and the tests can use
it in any environment.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time


def forward_flops(grid_size: int, channels: int, specs) -> dict:
    """Analytic forward FLOPs of one energy net on ONE image.

    Args:
      grid_size: S, the input side in pixels.
      channels: C of the input (1 or 3).
      specs: list of (kernel, stride, out_channels) conv layers ('same' padding), then a dense
        layer from the flattened last feature map to one scalar.

    Returns:
      {"layers": [{"kernel", "stride", "in", "out", "out_size", "flops"}...], "dense_flops",
       "total"}; FLOPs as Python ints (multiply-add = 2 FLOPs).
    """
    if grid_size < 1 or channels < 1:
        raise ValueError(f"grid_size={grid_size} and channels={channels} must be >= 1")
    size, cin, layers, total = grid_size, channels, [], 0
    for kernel, stride, cout in specs:
        size = int(math.ceil(size / stride))
        flops = 2 * size * size * kernel * kernel * cin * cout
        layers.append({"kernel": kernel, "stride": stride, "in": cin, "out": cout,
                       "out_size": size, "flops": flops})
        total += flops
        cin = cout
    dense = 2 * size * size * cin
    return {"layers": layers, "dense_flops": dense, "total": total + dense}


def langevin_step_flops(forward: int) -> int:
    """FLOPs of one Langevin step on one image: forward + input-gradient = 2x forward."""
    return 2 * int(forward)


def sampler_call_flops(forward: int, batch: int, steps: int) -> int:
    """FLOPs of one sampler call: per chain T Langevin steps plus the final energy (one forward)."""
    return int(batch) * (int(steps) * langevin_step_flops(forward) + int(forward))


def train_step_flops(forwards: dict, batch: int, steps: int, family: str = "multigrid") -> int:
    """FLOPs of one whole training step of a MultiGridEBM (all trained grids).

    Per trained grid with forward cost F: `steps` Langevin steps on N chains (2F each), one final
    energy evaluation of the chains (F, the sampler's `energy_end`), and the update on the 2N
    observed + synthesized images (3F each). cd1 runs one Langevin step.

    Args:
      forwards: dict trained grid -> forward FLOPs per image.
      batch: N. steps: T. family: "multigrid", "single_grid", "cd1" or "pcd".
    """
    t = 1 if family == "cd1" else int(steps)
    return int(sum(batch * (t * 2 * f + f) + 2 * batch * 3 * f for f in forwards.values()))


def cfebm_forward_flops(sizes, stage: int, channels: int, width: int, fade: bool = False) -> dict:
    """Analytic forward FLOPs of the CF-EBM energy net at `stage` on ONE image.

    Args:
      sizes: the stage sizes s_0 < ... < s_K (each twice the previous), e.g. (8, 16, 32, 64).
      stage: k in [0, K]; the input is [s_k, s_k, channels].
      channels: C of the input (1 or 3). width: W, the channels of every conv.
      fade: count the fade branch (from-RGB of stage k-1 on the 2x2-averaged input; k >= 1).

    Returns:
      {"layers": [{"name", "kernel", "in", "out", "size", "flops"}...] (size = the side the conv
       runs at), "dense_flops", "total"}; FLOPs as Python ints (multiply-add = 2 FLOPs).
    """
    sizes = [int(s) for s in sizes]
    if not 0 <= stage < len(sizes) or channels < 1 or width < 1:
        raise ValueError(f"stage={stage} must be in [0, {len(sizes) - 1}], channels={channels} and "
                         f"width={width} >= 1")
    layers = []

    def conv(name, kernel, cin, size):
        layers.append({"name": name, "kernel": kernel, "in": cin, "out": width, "size": size,
                       "flops": 2 * size * size * kernel * kernel * cin * width})

    conv(f"from_rgb_{sizes[stage]}", 1, channels, sizes[stage])
    if fade and stage >= 1:
        conv(f"from_rgb_{sizes[stage - 1]}", 1, channels, sizes[stage - 1])
    for k in range(stage, -1, -1):  # block k runs at s_k and halves it; block 0 is the head
        for name, kernel in (("conv1", 3), ("conv2", 3), ("skip", 1)):
            conv(f"block_{sizes[k]}/{name}", kernel, width, sizes[k])
    dense = 2 * width
    return {"layers": layers, "dense_flops": dense, "total": sum(v["flops"] for v in layers) + dense}


def cfebm_chain_flops(sizes, stage: int, channels: int, width: int, batch: int, steps: int,
                      fade: bool = True) -> int:
    """FLOPs of one smooth-MCMC chain of N images through the stages 0..`stage`.

    Per stage j: `steps` Langevin steps (2 F_j each) and the sampler's final energy (F_j), where
    F_j has no fade branch except at the last stage when `fade` (beta given as a tensor).
    """
    return int(sum(batch * (steps * 2 * f + f) for f in
                   (cfebm_forward_flops(sizes, j, channels, width, fade and j == stage)["total"]
                    for j in range(stage + 1))))


def cfebm_train_step_flops(sizes, stage: int, channels: int, width: int, batch: int, steps: int,
                           fade: bool = True) -> int:
    """FLOPs of one CF-EBM training step at `stage`: the chain (`cfebm_chain_flops`) plus the
    update on the 2N observed + synthesized images at 3x the stage's forward FLOPs each."""
    forward = cfebm_forward_flops(sizes, stage, channels, width, fade)["total"]
    return cfebm_chain_flops(sizes, stage, channels, width, batch, steps, fade) + 2 * batch * 3 * forward


def patchgen_forward_flops(height: int, width: int, image_channels: int, channels) -> dict:
    """Analytic forward FLOPs of one PatchGenCN scale net on ONE image of height x width.

    Args:
      height, width: the image's size in pixels (any, fully convolutional).
      image_channels: C of the input (1 or 3). channels: the conv outputs, the last one 1.

    Returns:
      {"layers": [{"kernel", "in", "out", "out_h", "out_w", "flops"}...], "total"}; FLOPs as
      Python ints (multiply-add = 2 FLOPs; valid 3x3 convs on the input padded by len(channels)).
    """
    channels = [int(c) for c in channels]
    if height < 1 or width < 1 or image_channels < 1 or not channels:
        raise ValueError(f"height={height}, width={width}, image_channels={image_channels} must be >= 1 "
                         f"and channels={channels} non-empty")
    pad = len(channels)
    h, w, cin, layers = height + 2 * pad, width + 2 * pad, int(image_channels), []
    for cout in channels:
        h, w = h - 2, w - 2
        layers.append({"kernel": 3, "in": cin, "out": cout, "out_h": h, "out_w": w,
                       "flops": 2 * 3 * 3 * cin * cout * h * w})
        cin = cout
    return {"layers": layers, "total": sum(v["flops"] for v in layers)}


def patchgen_chain_flops(scales, image_channels: int, channels, steps: int, coarse_steps: int,
                         batch: int = 1, first: int = 0, last: int | None = None) -> int:
    """FLOPs of N = `batch` PatchGenCN chains through scales first..last (default all):
    per scale k, T_k Langevin steps (2 F_k each) and the sampler's final energy (F_k), with
    T_0 = coarse_steps and T_k = steps for k > 0; scales [(h, w)], coarsest first."""
    last = len(scales) - 1 if last is None else last
    total = 0
    for k in range(first, last + 1):
        f = patchgen_forward_flops(*scales[k], image_channels, channels)["total"]
        t = coarse_steps if k == 0 else steps
        total += sampler_call_flops(f, batch, t)
    return int(total)


def patchgen_train_step_flops(scales, scale: int, image_channels: int, channels, steps: int,
                              coarse_steps: int, batch: int = 1, recovery: bool = True) -> int:
    """FLOPs of one PatchGenCN training step at `scale` k (`trainers.families.patchgen`): N chains
    through scales 0..k, the recovery chain of one image at scale k (when `recovery`), and the
    update of net k on the 2N (+ 1 recovered) images at 3x its forward FLOPs each."""
    f = patchgen_forward_flops(*scales[scale], image_channels, channels)["total"]
    total = patchgen_chain_flops(scales, image_channels, channels, steps, coarse_steps, batch, 0, scale)
    if recovery:
        total += patchgen_chain_flops(scales, image_channels, channels, steps, coarse_steps, 1, scale, scale)
    return int(total + (2 * batch + int(recovery)) * 3 * f)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() as a fallback)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for FLOP/s (avx2, fma, avx512*, amx*) of the first CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return sorted(f for f in flags if f in ("avx2", "fma") or f.startswith(("avx512", "amx")))
    except OSError:
        pass
    return []


def load_average() -> list[float]:
    """os.getloadavg() (1, 5, 15 min) rounded; [] where unavailable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine_info(extra: dict | None = None) -> dict:
    """CPU model, logical cores, load average, Python and library versions."""
    info = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
            "loadavg_start": load_average(), "python": platform.python_version(),
            "platform": platform.platform()}
    if extra:
        info.update(extra)
    return info


def settled(bests: list[float], min_calls: int, patience: int = 3, settle: float = 0.01) -> bool:
    """True once at least max(min_calls, patience + 1) calls were timed and the running best
    (`bests`: the best time in seconds after each call) improved by less than the fraction `settle`
    over the last `patience` calls. The rule of the peak probes (`benchmarks.peak`)."""
    if len(bests) < max(min_calls, patience + 1):
        return False
    return bests[-1 - patience] < bests[-1] * (1.0 + settle)


def time_calls(fn, repeats: int, warmup: int = 1, max_timed_s: float | None = None, max_repeats: int = 0,
               probe=None) -> dict:
    """Time `fn()` (which must block until its result exists).

    Args:
      fn: a zero-argument callable. repeats: timed calls (>= 1). warmup: untimed calls first.
      max_repeats: when above `repeats`, `repeats` is the minimum and calls go on until the best
        settles (`settled`, the peak probes' rule) or max_repeats calls were timed, so that the
        figure is measured as carefully as the peak it is divided by.
      max_timed_s: past the first `repeats` calls, also stop once the timed calls add up to this
        many seconds (None or 0: no limit), so a slow workload on a noisy machine cannot keep
        the settling rule going for minutes.
      probe: a zero-argument callable run right after each timed call, outside its time (a peak
        probe: `peak.probe_now`); its return values come back as "probe_after", one per call.

    Returns:
      {"best_s", "median_s", "times_s", "warmup_s"} (and "probe_after"): the best (minimum) is
      the figure used, since other processes on a shared machine only ever add time.
    """
    warm = []
    for _ in range(warmup):
        start = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - start)
    times, bests, probed, spent = [], [], [], 0.0
    for _ in range(max(1, repeats, max_repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if probe is not None:
            probed.append(probe())
        bests.append(min(times))
        spent += times[-1]
        if len(times) >= repeats and (max_repeats <= repeats or settled(bests, repeats)
                                      or (max_timed_s and spent >= max_timed_s)):
            break
    out = {"best_s": min(times), "median_s": statistics.median(times), "times_s": [round(t, 4) for t in times],
           "warmup_s": [round(t, 3) for t in warm]}
    if probe is not None:
        out["probe_after"] = probed
    return out


def compiled_timing(fn, repeats: int, max_repeats: int = 0, max_timed_s: float | None = None) -> dict:
    """A compiled peer's timing: "compile_s" (the first call, which compiles) and `time_calls`
    (arguments as there) after one more warm-up call."""
    start = time.perf_counter()
    fn()
    compile_s = time.perf_counter() - start
    return {"compile_s": compile_s, **time_calls(fn, repeats, warmup=1, max_repeats=max_repeats,
                                                    max_timed_s=max_timed_s)}


def median_quartiles(values) -> dict:
    """{"median", "q1", "q3"} of a non-empty sequence; the quartiles are order statistics (the
    values at ranks floor(0.25 n) and floor(0.75 n) of the sorted list, so one value gives itself)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median_quartiles needs at least one value")
    rank = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"median": statistics.median(ordered), "q1": rank(0.25), "q3": rank(0.75)}


def run_json(cmd: list[str], timeout: float) -> dict:
    """Run a benchmark worker from the repository root; its last stdout line parsed as JSON, or
    {"error": the last stderr line | "timed out after ... s" | "rc N"}."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(a, b):
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or not b:
        return None
    return float(a) / float(b)


def emit(document: dict, table_rows: list[list], header: list[str]) -> None:
    """Print a short table on stderr and the JSON document on stdout (redirect it to keep it)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table_rows)] if table_rows else []
    if table_rows:
        print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)), file=sys.stderr)
        for row in table_rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)), file=sys.stderr)
    text = json.dumps(document, indent=2, sort_keys=False)
    print(text, flush=True)


def fmt(value, digits: int = 3) -> str:
    """A compact number for tables ('-' for None)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)
