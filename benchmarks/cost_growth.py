"""How the cost of the multi-grid EBM grows with image size, number of grids and steps per grid.

    python -m benchmarks.cost_growth --quick [--plot docs/pictures/cost_growth.png] > cost_growth.json
    python -m benchmarks.cost_growth [--plot PATH] > cost_growth.json          # the fuller default
    python -m benchmarks.cost_growth [--quick] --estimate                     # the plan, runs nothing

--quick: 18 rows (32, 64, 128 px; T = 2, 4; layouts 1-4-16-S and 1-S; batch 8; best of 2), about
4 min on 2 CPU cores (estimated from the analytic FLOPs and trace times measured on a loaded
machine). The default: 39 rows (T = 5, 10, 20; layouts 1-4-16-S, 1-16-S, 1-S; batch 8; best of 3),
about 20 min (15 min at 80 GFLOP/s of compute plus tracing, 25 at 50).

What is measured, with the project's real code (`trainers.families.multigrid.build_model`, its
`LangevinSampler`, `MultiGridEBM.synthesize` and `train_step`, float32, no XLA), for every row
(image size S, grid layout, T Langevin steps per trained grid, batch N of random images):
- generation: `model.synthesize` from N 1x1 starts, wrapped in one `tf.function` (as the export's
  `sample` signature runs it; the sampler's loops are built inline); seconds per generated image
  = seconds per call / N.
- training: one whole train step (`trainers.train._make_step_fn`, what `train()` runs: the chains,
  the losses and the Adam updates of every trained grid) on the observed pyramid of N images.
Timing: the first call traces and runs (the warm-up, reported as `first_call_s`), then the best
of `--repeats` calls (wall clock, result copied to the host); on a shared machine other processes
only ever add time, so the best is the figure used and `spread` = (max - min) / min shows the noise.
`retraces` counts traces after the first call (0 expected).

Layouts (`--layouts`, "S" = the image size): "1-4-16-S" (the paper's 1-4-16-64: T steps on each
of 3 grids), "1-16-S" (2 grids), "1-S" (the `single_grid` family: only the finest net). Every
multi-grid row with k trained grids gets an equal-budget partner: the single-grid row with k*T
steps at the full size, the same number of Langevin gradient evaluations per chain (`grad_evals`),
so `comparisons` shows what the coarse grids cost and what they save.

FLOPs: the analytic convention of `benchmarks/common.py` (multiply-add = 2 FLOPs, convs and dense
layers only, a Langevin step = 2x the forward FLOPs, plus the sampler's final energy per grid; a
train step as `common.train_step_flops`), from `trainers.networks.layer_specs` of each grid.
`gflop_per_image` = generation FLOPs / N; `gflops` = FLOPs per call / best seconds.
One JSON document on stdout, a short table on stderr, and a PNG with `--plot PATH` (matplotlib).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402
from trainers import pyramid_ops  # noqa: E402
from trainers.families.multigrid import build_model  # noqa: E402
from trainers.networks import layer_specs  # noqa: E402

STEP_SIZE = 0.3
QUICK = {"sizes": "32,64,128", "steps": "2,4", "layouts": "1-4-16-S,1-S", "batch": 8, "repeats": 2}
FULL = {"sizes": "32,64,128", "steps": "5,10,20", "layouts": "1-4-16-S,1-16-S,1-S", "batch": 8,
        "repeats": 3}
ASSUMED_GFLOPS = 80.0  # for the run-time estimate only (batch 8 on 2 cores runs well under peak)
TRACE_S = {"sample": 1.0, "train": 2.5}  # per trained grid (measured 0.5 and 2 s, loaded), for the estimate only


def layout_grids(layout: str, size: int) -> tuple:
    """The grids of a layout such as "1-4-16-S" at image size S, e.g. (1, 4, 16, 64).

    Raises:
      ValueError: a layout that does not start at 1, end at S, and increase with each grid
        dividing the next (at this size).
    """
    try:
        grids = tuple(size if t.strip().upper() == "S" else int(t) for t in layout.split("-"))
    except ValueError as err:
        raise ValueError(f"layout={layout!r} must be sizes joined by '-', e.g. '1-4-16-S'") from err
    if (len(grids) < 2 or grids[0] != 1 or grids[-1] != size
            or any(b <= a or b % a for a, b in zip(grids, grids[1:]))):
        raise ValueError(f"layout={layout!r} gives grids {list(grids)} at size {size}: they must start at 1, "
                         "end at S and increase, each dividing the next")
    return grids


def row_flops(size: int, grids, steps: int, batch: int, channels: int) -> dict:
    """Analytic FLOPs of one row (benchmarks/common.py's convention).

    Returns:
      {"variant", "trained_grids", "grad_evals" (Langevin gradient evaluations per chain),
       "forward_flops" {grid: F}, "sample_flops" (one generation call of `batch` chains),
       "train_flops" (one train step)}.
    """
    variant = "single_grid" if len(grids) == 2 else "multigrid"
    trained = [g for g in grids if g > 1] if variant == "multigrid" else [grids[-1]]
    forwards = {g: common.forward_flops(g, channels, layer_specs(g))["total"] for g in trained}
    sample = sum(common.sampler_call_flops(f, batch, steps) for f in forwards.values())
    return {"variant": variant, "trained_grids": trained, "grad_evals": steps * len(trained),
            "forward_flops": forwards, "sample_flops": int(sample),
            "train_flops": common.train_step_flops(forwards, batch, steps, variant)}


def _timed(call, repeats: int) -> dict:
    start = time.perf_counter()
    out = call()
    first = time.perf_counter() - start
    timing = common.time_calls(call, repeats, warmup=0)
    times = timing["times_s"]
    return {"first_call_s": first, "best_s": timing["best_s"], "median_s": timing["median_s"],
            "times_s": times, "spread": (max(times) - min(times)) / max(min(times), 1e-12), "output": out}


def measure_row(size: int, grids, steps: int, batch: int, channels: int = 3, repeats: int = 2,
                train: bool = True, seed: int = 0, role: str = "sweep") -> dict:
    """Time generation (and one train step) of one configuration; see the module docstring.

    Args:
      size: S, the image side. grids: the layout's grids, (1, ..., S). steps: T per trained grid.
      batch: N chains / images. channels: C. repeats: timed calls after the first.
      train: also time the train step. seed: weights and starts. role: a label for the row.

    Returns:
      A JSON-ready dict: the configuration, `grad_evals`, `gflop_per_image`, `sample` {first_call_s,
      best_s, median_s, times_s, spread, s_per_image, s_per_image_median, gflops, retraces},
      `train` (the same with s_per_step, or None), `output_shape` [N, S, S, C], `output_finite`.
    """
    grids = tuple(int(g) for g in grids)
    flops = row_flops(size, grids, steps, batch, channels)
    model = build_model(grids, channels, variant=flops["variant"], steps=steps, step_size=STEP_SIZE, seed=seed)
    model.compile(learning_rate=1e-4, beta_1=0.5)
    sample_fn = tf.function(lambda coarse, s: model.synthesize(coarse, s)[size], autograph=False,
                            input_signature=[tf.TensorSpec([None, 1, 1, channels], tf.float32),
                                             tf.TensorSpec([2], tf.int32)])
    coarse = model.sample_coarse(batch, [seed, 0])
    seed_t = tf.constant([seed, 1], tf.int32)
    sample = _timed(lambda: sample_fn(coarse, seed_t).numpy(), repeats)
    x = sample.pop("output")
    traces = sample_fn.experimental_get_tracing_count()
    sample.update({"s_per_image": sample["best_s"] / batch, "s_per_image_median": sample["median_s"] / batch,
                   "gflops": flops["sample_flops"] / sample["best_s"] / 1e9, "retraces": traces - 1})
    result = None
    if train:
        from trainers import train as train_lib  # pylint: disable=import-outside-toplevel
        step_fn = train_lib._make_step_fn(model, tf.distribute.get_strategy(), False)  # pylint: disable=protected-access
        images = tf.random.stateless_uniform([batch, size, size, channels], [seed, 3])
        data = {f"grid_{g}": v for g, v in pyramid_ops.build_pyramid(images, grids).items()}
        result = _timed(lambda: {k: float(v) for k, v in step_fn(data).items()}, repeats)
        metrics = result.pop("output")
        result.update({"s_per_step": result["best_s"], "s_per_image": result["best_s"] / batch,
                       "gflops": flops["train_flops"] / result["best_s"] / 1e9,
                       "retraces": step_fn.experimental_get_tracing_count() - 1,
                       "finite_metrics": bool(all(np.isfinite(v) for v in metrics.values()))})
    return {"role": role, "size": size, "grids": list(grids), "layout": "-".join(map(str, grids)),
            "variant": flops["variant"], "trained_grids": flops["trained_grids"], "steps_per_grid": steps,
            "grad_evals": flops["grad_evals"], "batch": batch, "channels": channels, "repeats": repeats,
            "gflop_per_image": flops["sample_flops"] / batch / 1e9,
            "train_gflop_per_step": flops["train_flops"] / 1e9,
            "forward_flops": {str(g): f for g, f in flops["forward_flops"].items()},
            "sample": sample, "train": result, "output_shape": list(x.shape),
            "output_finite": bool(np.isfinite(x).all())}


def plan(sizes, steps_list, layouts) -> list[tuple]:
    """The rows to run, (size, grids, steps, role), in order, without duplicates: every layout
    at every T, and for each multi-grid row with k trained grids the single-grid row with k*T
    steps ("equal_budget", unless the sweep already has it)."""
    rows, seen = [], set()

    def add(size, grids, steps, role):
        if (size, grids, steps) not in seen:
            seen.add((size, grids, steps))
            rows.append((size, grids, steps, role))

    for size in sizes:
        for steps in steps_list:
            for layout in layouts:
                grids = layout_grids(layout, size)
                add(size, grids, steps, "sweep")
                if len(grids) > 2:
                    add(size, (1, size), steps * (len(grids) - 1), "equal_budget")
    return rows


def estimate_s(rows, batch: int, channels: int, repeats: int, train: bool) -> float:
    """A rough run-time estimate: analytic FLOPs of 1 + repeats calls at ASSUMED_GFLOPS plus
    TRACE_S per trained grid (the real figures are in the output)."""
    total = 0.0
    for size, grids, steps, _ in rows:
        f = row_flops(size, grids, steps, batch, channels)
        k = len(f["trained_grids"])
        total += (1 + repeats) * f["sample_flops"] / 1e9 / ASSUMED_GFLOPS + TRACE_S["sample"] * k
        if train:
            total += (1 + repeats) * f["train_flops"] / 1e9 / ASSUMED_GFLOPS + TRACE_S["train"] * k
    return total


def comparisons(results) -> list[dict]:
    """Each multi-grid row against the single-grid row at the same size and `grad_evals`:
    ratios single / multi of seconds per image (> 1: multi-grid is cheaper) and of FLOPs."""
    out = []
    for multi in (r for r in results if r["variant"] == "multigrid"):
        single = next((r for r in results if r["variant"] == "single_grid" and r["size"] == multi["size"]
                       and r["grad_evals"] == multi["grad_evals"]), None)
        if single is None:
            continue
        item = {"size": multi["size"], "multi_layout": multi["layout"], "steps_per_grid": multi["steps_per_grid"],
                "single_steps": single["steps_per_grid"], "grad_evals": multi["grad_evals"],
                "multi_s_per_image": multi["sample"]["s_per_image"],
                "single_s_per_image": single["sample"]["s_per_image"],
                "sample_time_ratio_single_over_multi": common.ratio(single["sample"]["s_per_image"],
                                                                    multi["sample"]["s_per_image"]),
                "flop_ratio_single_over_multi": common.ratio(single["gflop_per_image"], multi["gflop_per_image"]),
                "train_time_ratio_single_over_multi": None}
        if multi["train"] and single["train"]:
            item["train_time_ratio_single_over_multi"] = common.ratio(single["train"]["s_per_step"],
                                                                      multi["train"]["s_per_step"])
        out.append(item)
    return out


def plot(results, path: str) -> str | None:
    """Seconds per generated image and per train step against gradient evaluations per chain,
    one line per (size, layout), log-log; None when written, else why not."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
        from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
        from matplotlib.ticker import NullFormatter  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        return f"no plot: matplotlib does not import ({err})"
    fig = Figure(figsize=(11, 4), dpi=90)
    FigureCanvasAgg(fig)
    panels = [("sample", "s_per_image", "seconds per generated image"),
              ("train", "s_per_step", "seconds per train step")]
    sizes = sorted({r["size"] for r in results})
    colours = {s: f"C{i}" for i, s in enumerate(sizes)}
    styles = {"multigrid": "o-", "single_grid": "s--"}
    for i, (part, key, title) in enumerate(panels):
        ax = fig.add_subplot(1, 2, i + 1)
        for size in sizes:
            for layout in sorted({r["layout"] for r in results if r["size"] == size}):
                pts = sorted((r["grad_evals"], r[part][key]) for r in results
                             if r["size"] == size and r["layout"] == layout and r[part])
                if pts:
                    variant = next(r["variant"] for r in results if r["layout"] == layout)
                    ax.plot(*zip(*pts), styles[variant], color=colours[size], label=f"{size} px {layout}",
                            alpha=1.0 if variant == "multigrid" else 0.7, ms=4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("Langevin gradient evaluations per chain (T x trained grids)", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
    fig.suptitle(f"cost growth, batch {results[0]['batch']}, float32 (best of repeats)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    return None


def table_rows(results) -> list[list]:
    """The stderr table's rows."""
    out = []
    for r in results:
        s, t = r["sample"], r["train"] or {}
        out.append([r["size"], r["layout"], r["steps_per_grid"], r["grad_evals"], r["role"],
                    common.fmt(s["s_per_image"]), f"{s['spread']:.0%}", common.fmt(r["gflop_per_image"]),
                    common.fmt(s["gflops"]), common.fmt(t.get("s_per_step")), common.fmt(t.get("gflops")),
                    s["retraces"] + t.get("retraces", 0)])
    return out


def run_rows(rows, batch: int, channels: int, repeats: int, train: bool, start: float) -> list[dict]:
    """`measure_row` for each planned row, with a progress line each on stderr. TF's warning about
    new tf.functions is silenced meanwhile: every row builds its own on purpose (retraces are counted)."""
    level = tf.get_logger().level
    tf.get_logger().setLevel("ERROR")
    results = []
    try:
        for size, grids, steps, role in rows:
            results.append(measure_row(size, grids, steps, batch, channels, repeats, train, role=role))
            gc.collect()  # the row's model and traced functions
            r = results[-1]
            print(f"[cost_growth] {size} px {r['layout']} T={steps}: {r['sample']['s_per_image']:.4f} s/image, "
                  f"train {common.fmt((r['train'] or {}).get('s_per_step'))} s/step "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    finally:
        tf.get_logger().setLevel(level)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"sizes {QUICK['sizes']}, T {QUICK['steps']}, layouts {QUICK['layouts']}")
    parser.add_argument("--sizes", default=None, help=f"image sizes (default {FULL['sizes']})")
    parser.add_argument("--steps", default=None, help=f"Langevin steps per grid (default {FULL['steps']})")
    parser.add_argument("--layouts", default=None, help=f"grid layouts, S = size (default {FULL['layouts']})")
    parser.add_argument("--batch", type=int, default=0, help="chains / images per call (default 8)")
    parser.add_argument("--repeats", type=int, default=0, help="timed calls after the first (default 3; quick 2)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--no-train", action="store_true", help="time generation only")
    parser.add_argument("--plot", default=None, help="write the plot PNG here (default: no plot)")
    parser.add_argument("--estimate", action="store_true", help="print the plan and estimated time, run nothing")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    batch, repeats = args.batch or base["batch"], args.repeats or base["repeats"]
    try:
        sizes = [int(v) for v in (args.sizes or base["sizes"]).split(",") if v]
        steps_list = [int(v) for v in (args.steps or base["steps"]).split(",") if v]
        layouts = [v for v in (args.layouts or base["layouts"]).split(",") if v]
        rows = plan(sizes, steps_list, layouts)
    except ValueError as err:
        parser.error(str(err))
    if min(sizes) < 2 or min(steps_list) < 1 or batch < 1:
        parser.error("--sizes must be >= 2, --steps and --batch >= 1")
    estimate = estimate_s(rows, batch, args.channels, repeats, not args.no_train)
    print(f"[cost_growth] {len(rows)} rows, batch {batch}, {repeats} repeats: estimated {estimate / 60:.1f} min "
          f"(at {ASSUMED_GFLOPS:.0f} GFLOP/s)", file=sys.stderr, flush=True)
    if args.estimate:
        for row in rows:
            print(f"  {row[0]} px {'-'.join(map(str, row[1]))} T={row[2]} ({row[3]})", file=sys.stderr)
        return 0
    start = time.perf_counter()
    machine = common.machine_info({"tensorflow": tf.__version__, "keras": keras.__version__,
                                   "device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU"})
    results = run_rows(rows, batch, args.channels, repeats, not args.no_train, start)
    machine["loadavg_end"] = common.load_average()
    doc = {"mode": "quick" if args.quick else "full", "machine": machine, "batch": batch, "repeats": repeats,
           "channels": args.channels, "sizes": sizes, "steps_per_grid": steps_list, "layouts": layouts,
           "precision": "float32", "compiled": "tf.function (no XLA)", "step_size": STEP_SIZE,
           "rows": results, "comparisons": comparisons(results),
           "retraces": sum(r["sample"]["retraces"] + (r["train"] or {}).get("retraces", 0) for r in results),
           "estimated_s": estimate, "plot": None, "plot_note": None,
           "flop_convention": ("benchmarks/common.py: multiply-add = 2 FLOPs, convs and dense layers only; "
                               "generation = per trained grid T Langevin steps (2x forward) + 1 forward, per "
                               "chain; train step = common.train_step_flops"),
           "timing": "first call = trace + warm-up; then best of the repeats (wall clock, result on the host)"}
    if args.plot:
        doc["plot_note"] = plot(results, args.plot)
        doc["plot"] = None if doc["plot_note"] else args.plot
    doc["wall_s"] = time.perf_counter() - start
    common.emit(doc, table_rows(results), ["px", "grids", "T", "grads", "role", "s/img", "spread", "GFLOP/img",
                                           "GFLOP/s", "train s/step", "train GFLOP/s", "retraces"])
    for c in doc["comparisons"]:
        print(f"{c['size']} px, {c['grad_evals']} gradient evaluations: {c['multi_layout']} T={c['steps_per_grid']} "
              f"vs 1-{c['size']} T={c['single_steps']}: single/multi time "
              f"{common.fmt(c['sample_time_ratio_single_over_multi'])} "
              f"(FLOPs {common.fmt(c['flop_ratio_single_over_multi'])}), train "
              f"{common.fmt(c['train_time_ratio_single_over_multi'])}", file=sys.stderr)
    print(f"retraces {doc['retraces']}, load {machine['loadavg_start']} -> {machine['loadavg_end']}, "
          f"{doc['wall_s']:.0f} s{', ' + doc['plot_note'] if doc['plot_note'] else ''}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
