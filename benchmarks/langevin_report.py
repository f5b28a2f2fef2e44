"""The table and the summary lines that `benchmarks.langevin` prints on stderr, from its JSON
document alone (no TensorFlow here, so they can be checked on any document)."""

from __future__ import annotations

from benchmarks import common, peers

HEADER = ["what", "px", "batch", "variant", "policy", "img/s", "GFLOP/s", "of peak", ""]


def table_rows(doc: dict) -> list[list]:
    """One row per measured workload (`results`, else `results_headline`), then the torch
    reference and the compiled peers, then the CF-EBM section; columns as HEADER."""
    rows = [[r.get("kind"), r.get("grid"), r.get("batch"), r.get("variant"), r.get("policy"),
             common.fmt(r.get("images_per_s")), common.fmt(r.get("gflops")),
             common.fmt(common.ratio(r.get("gflops"), doc["peak_gflops"])), r.get("skipped", "")]
            for r in doc.get("results", doc["results_headline"])]
    rows += peers.table_rows(doc)
    if doc.get("cfebm"):
        rows += cfebm_rows(doc["cfebm"], doc["peak_gflops"])
    return rows


def cfebm_rows(section: dict, peak: float) -> list[list]:
    """Rows for the `cfebm` section (`langevin_cfebm.assemble`) against `peak` GFLOP/s."""
    rows = [[r["kind"], r["grid"], r["batch"], r["variant"], r["policy"], common.fmt(r["images_per_s"]),
             common.fmt(r["gflops"]), common.fmt(r["gflops"] / peak), f"width {r['width']}"]
            for r in section["results"]]
    for name in ("langevin", "train_step"):
        ref = section["torch"].get(name)
        if ref:
            rows.append([f"torch cfebm {name}", section["sizes"][-1], section["batch"], "eager", "float32",
                         common.fmt(ref["images_per_s"]), common.fmt(ref["gflops"]),
                         common.fmt(ref["gflops"] / peak), ""])
    if section["torch"].get("error"):
        rows.append(["torch cfebm", "", "", "", "", "", "", "", section["torch"]["error"][:60]])
    return rows


def summary_lines(doc: dict) -> list[str]:
    """The headline line (peak, fractions, speedups, retraces, load, wall time) and, with a CF-EBM
    section, its line; fractions of peak as decimals (0.87), speedups as ratios (1.5x)."""
    spread, low_high = doc["peak_spread"]["spread"], doc["fraction_of_peak_range"]
    theory, machine, fmt = doc.get("theoretical_peak") or {}, doc.get("machine") or {}, common.fmt
    two = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731  fractions of peak
    x = lambda v: "-" if v is None else f"{fmt(v)}x"  # noqa: E731  speedups, "-" where not measured
    lines = [f"peak {doc['peak_gflops']:.1f} GFLOP/s (rounds {spread['min']:.0f}-{spread['max']:.0f}; ISA "
             f"{fmt(theory.get('gflops'))} at {fmt(theory.get('ghz'))} GHz), Langevin "
             f"{doc['fraction_of_peak']:.2f} of peak ({low_high[0]:.2f}-{low_high[1]:.2f}), train step "
             f"{two(doc['train_step_fraction_of_peak'])}, vs eager {x(doc['speedup_vs_eager'])}, "
             f"vs torch {x(doc['speedup_vs_torch'])} (compiled {x(doc['speedup_vs_torch_compile'])}, "
             f"jax {x(doc['speedup_vs_jax'])}), retraces {doc['retraces']}, load "
             f"{machine.get('loadavg_start')} -> {machine.get('loadavg_end')}, {doc['wall_s']:.0f} s"]
    cf = doc.get("cfebm")
    if cf:
        lines.append(f"CF-EBM ({cf['sizes'][-1]} px, width {cf['width']}, {cf['steps_per_stage']} steps per stage): "
                     f"sampler {cf['fraction_of_peak']:.2f} of peak, train step "
                     f"{two(cf['train_step_fraction_of_peak'])}, vs eager {x(cf['speedup_vs_eager'])}, "
                     f"vs torch {x(cf['speedup_vs_torch'])} / {x(cf['train_step_speedup_vs_torch'])}, "
                     f"retraces {cf['retraces']}")
    return lines
