"""Ingest + pyramid throughput and peak memory against data set size and Beam runner mode.

`python -m benchmarks.pipeline [--sizes 1000,10000,60000] [--modes in_memory,multi_processing]`
runs, for every size N and mode, one fresh subprocess that ingests the first N Fashion-MNIST
training images (Debian's dataset-fashion-mnist, idx:/usr/share/datasets/fashion-mnist/train) at
32x32x1 with `components.ingest.run_ingest`, then builds the 1/4/16/32 pyramid with
`components.pyramid_beam.run_pyramid`: on the DirectRunner in memory (Beam's in-process runner,
mode `in_memory`) or with `--direct_num_workers=2 --direct_running_mode=multi_processing`
(`multi_processing`), or on Beam's DaskRunner with a local dask.distributed cluster of 2 worker
processes that the stage starts and closes (`dask`, needs dask[distributed];
components/pyramid_dask.py). DirectRunner against DaskRunner at 10k and 60k images:
`python -m benchmarks.pipeline --sizes 10000,60000 --modes in_memory,dask`.

Per configuration it reports seconds and images per second of each stage, microseconds per
image, and peak memory two ways: the largest summed RSS of the subprocess tree (psutil, sampled
every 0.1 s by this process; `peak_pyramid_tree_rss_mib` over the pyramid stage alone, which the
worker marks with files in its work folder) and `resource.getrusage` ru_maxrss of the subprocess
itself and of its finished children (Beam's workers). Targets: per-image cost flat within 20% from 10k to 60k
(`per_image_ratio` within 0.8-1.2; `not_growing` when <= 1.2; `marginal_us_per_image` is the
cost of the images between the two sizes, free of fixed start-up costs; with three or more sizes
`affine_fit` splits total seconds into a fixed start-up and a cost per image, with the largest
relative residual as the test of linearity) and peak memory not growing with N
(`peak_memory_ratio` <= 1.2). One JSON document on stdout, a short table on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import common

SOURCE = "idx:/usr/share/datasets/fashion-mnist/train"
GRIDS = (1, 4, 16, 32)
# mode -> (pyramid.runner, Beam args)
MODES = {"in_memory": ("DirectRunner", ()),
         "multi_processing": ("DirectRunner", ("--direct_num_workers=2", "--direct_running_mode=multi_processing")),
         "dask": ("DaskRunner", ())}
PYRAMID_MARKS = (".pyramid-started", ".pyramid-done")  # in the worker's work folder


def worker(size: int, mode: str, workdir: str, source: str) -> dict:
    """Ingest + pyramid of `size` images in this process; timings and ru_maxrss (KiB on Linux)."""
    from components.ingest import run_ingest  # pylint: disable=import-outside-toplevel
    from components.pyramid_beam import run_pyramid  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    ingest_dir, pyramid_dir = os.path.join(workdir, "ingest"), os.path.join(workdir, "pyramid")
    rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    summary = run_ingest(source, ingest_dir, 32, 1, limit=size, num_shards=2, progress_every=0)
    t_ingest = time.perf_counter() - start
    rss_ingest = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    open(os.path.join(workdir, PYRAMID_MARKS[0]), "w").close()
    start = time.perf_counter()
    metadata = run_pyramid(ingest_dir, pyramid_dir, GRIDS, runner=MODES[mode][0], beam_args=MODES[mode][1])
    t_pyramid = time.perf_counter() - start
    open(os.path.join(workdir, PYRAMID_MARKS[1]), "w").close()
    count = summary["counts"]["train"] + summary["counts"]["eval"]
    out_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(pyramid_dir) for f in fs)
    return {"images": count, "pyramid_counts": metadata["counts"], "ingest_s": t_ingest, "pyramid_s": t_pyramid,
            "maxrss_self_kib_after_import": rss_import, "maxrss_self_kib_after_ingest": rss_ingest,
            "maxrss_self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "maxrss_children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            "pyramid_bytes": out_bytes, "tensorflow": tf.__version__}


def _tree_rss(proc) -> int:
    import psutil  # pylint: disable=import-outside-toplevel
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_one(size: int, mode: str, source: str, keep: str | None = None, timeout: float = 3600) -> dict:
    """One configuration in a fresh subprocess, with psutil sampling of its process tree."""
    import psutil  # pylint: disable=import-outside-toplevel
    workdir = tempfile.mkdtemp(prefix=f"bench-pipeline-{size}-{mode}-", dir=keep)
    cmd = [sys.executable, "-m", "benchmarks.pipeline", "--worker", "--sizes", str(size), "--modes", mode,
           "--workdir", workdir, "--source", source]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        popen = subprocess.Popen(cmd, cwd=root, stdout=out, stderr=err, text=True)
        proc, peak, peak_pyramid = psutil.Process(popen.pid), 0, 0
        started, done = (os.path.join(workdir, name) for name in PYRAMID_MARKS)
        while popen.poll() is None:
            rss = _tree_rss(proc)
            peak = max(peak, rss)
            if os.path.exists(started) and not os.path.exists(done):
                peak_pyramid = max(peak_pyramid, rss)
            if time.perf_counter() - start > timeout:
                popen.kill()
                break
            time.sleep(0.1)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    if popen.returncode != 0:
        tail = stderr.strip().splitlines()[-3:]
        return {"size": size, "mode": mode, "error": f"rc {popen.returncode}: {' | '.join(tail)}"}
    res = json.loads(stdout.strip().splitlines()[-1])
    n = res["images"]
    total = res["ingest_s"] + res["pyramid_s"]
    res.update({"size": size, "mode": mode, "wall_s": wall, "total_s": total, "images_per_s": n / total,
                "ingest_images_per_s": n / res["ingest_s"], "pyramid_images_per_s": n / res["pyramid_s"],
                "us_per_image": 1e6 * total / n, "pyramid_us_per_image": 1e6 * res["pyramid_s"] / n,
                "peak_tree_rss_mib": peak / 2 ** 20, "peak_pyramid_tree_rss_mib": peak_pyramid / 2 ** 20,
                "runner": MODES[mode][0],
                "peak_maxrss_mib": max(res["maxrss_self_kib"], res["maxrss_children_kib"]) / 1024})
    return res


def affine_fit(points: list) -> dict:
    """Least-squares `seconds = fixed_s + us_per_image * 1e-6 * images` over (images, seconds) points.

    `max_residual_fraction` = the largest |measured - fitted| / measured: near 0 when the cost is
    linear in the number of images (a fixed start-up plus a constant cost per image)."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    n = np.array([p[0] for p in points], dtype=np.float64)
    t = np.array([p[1] for p in points], dtype=np.float64)
    slope, fixed = np.polyfit(n, t, 1)
    residual = np.abs(t - (fixed + slope * n)) / t
    return {"fixed_s": float(fixed), "us_per_image": float(1e6 * slope),
            "max_residual_fraction": float(residual.max())}


def verdicts(results: list) -> dict:
    """Per mode: per-image cost ratio 60k vs 10k (<= 1.2 is the target), memory growth and, with
    three or more sizes, the affine fit of total seconds against images (`affine_fit`)."""
    out = {}
    for mode in MODES:
        by = {r["size"]: r for r in results if r.get("mode") == mode and "error" not in r}
        sizes = sorted(by)
        if len(sizes) < 2:
            continue
        small, big = (10000, 60000) if {10000, 60000} <= set(sizes) else (sizes[-2], sizes[-1])
        ratio = by[big]["us_per_image"] / by[small]["us_per_image"]
        mem = by[big]["peak_tree_rss_mib"] / by[small]["peak_tree_rss_mib"]
        marginal = 1e6 * (by[big]["total_s"] - by[small]["total_s"]) / max(1, by[big]["images"] - by[small]["images"])
        out[mode] = {"compared": [small, big], "per_image_ratio": ratio, "flat_within_20pct": abs(ratio - 1) <= 0.2,
                     "not_growing": ratio <= 1.2, "marginal_us_per_image": marginal,
                     "pyramid_per_image_ratio": by[big]["pyramid_us_per_image"] / by[small]["pyramid_us_per_image"],
                     "peak_memory_ratio": mem, "memory_bounded": mem <= 1.2}
        if by[big].get("peak_pyramid_tree_rss_mib") and by[small].get("peak_pyramid_tree_rss_mib"):
            out[mode]["pyramid_peak_memory_ratio"] = (by[big]["peak_pyramid_tree_rss_mib"]
                                                      / by[small]["peak_pyramid_tree_rss_mib"])
        if len(sizes) >= 3:
            out[mode]["affine_fit"] = affine_fit([(by[s]["images"], by[s]["total_s"]) for s in sizes])
            out[mode]["pyramid_affine_fit"] = affine_fit([(by[s]["images"], by[s]["pyramid_s"]) for s in sizes])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--sizes", default="1000,10000,60000", help="comma list of image counts")
    parser.add_argument("--modes", default="in_memory,multi_processing", help=f"comma list of {list(MODES)}")
    parser.add_argument("--source", default=SOURCE, help="ingest source (default Fashion-MNIST train idx)")
    parser.add_argument("--keep", default=None, help="keep the outputs under this folder")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not sizes or min(sizes) < 1:
        parser.error(f"--modes must be from {list(MODES)} (got {bad}) and --sizes positive integers")
    if args.worker:
        print(json.dumps(worker(sizes[0], modes[0], args.workdir, args.source)), flush=True)
        return 0
    machine = common.machine_info()
    start = time.perf_counter()
    results = []
    for size in sizes:
        for mode in modes:
            results.append(run_one(size, mode, args.source, args.keep))
            r = results[-1]
            print(f"[pipeline] {size} {mode}: " + (r.get("error") or f"{r['images_per_s']:.0f} img/s, "
                  f"pyramid {r['pyramid_s']:.1f} s, peak {r['peak_tree_rss_mib']:.0f} MiB (pyramid "
                  f"{r['peak_pyramid_tree_rss_mib']:.0f} MiB)"), file=sys.stderr, flush=True)
    machine["loadavg_end"] = common.load_average()
    doc = {"machine": machine, "source": args.source, "image_size": 32, "channels": 1, "grids": list(GRIDS),
           "results": results, "verdicts": verdicts(results), "wall_s": time.perf_counter() - start}
    rows = [[r["size"], r["mode"], common.fmt(r.get("ingest_images_per_s")), common.fmt(r.get("pyramid_s")),
             common.fmt(r.get("pyramid_images_per_s")), common.fmt(r.get("images_per_s")),
             common.fmt(r.get("us_per_image")), common.fmt(r.get("peak_tree_rss_mib")),
             common.fmt(r.get("peak_pyramid_tree_rss_mib")), r.get("error", "")] for r in results]
    common.emit(doc, rows, ["images", "mode", "ingest img/s", "pyramid s", "pyramid img/s", "total img/s",
                            "us/img", "peak MiB", "pyramid peak MiB", ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
