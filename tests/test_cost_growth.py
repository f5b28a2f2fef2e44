"""Fast checks of benchmarks.cost_growth on tiny shapes: JSON fields, output shapes, equal gradient
evaluations in the multi-grid vs single-grid comparison, and the analytic FLOPs against
benchmarks/common.py's formula. No timing assertions."""

import json
import math
import os

import pytest

from benchmarks import common
from benchmarks import cost_growth
from trainers.networks import layer_specs


def _forward(size, channels=3):
    return common.forward_flops(size, channels, layer_specs(size))["total"]


def test_layout_grids_and_errors():
    assert cost_growth.layout_grids("1-4-16-S", 64) == (1, 4, 16, 64)
    assert cost_growth.layout_grids("1-s", 128) == (1, 128)
    for bad in ("4-16-S", "1-16-S", "1-x-S", "1-3-S"):
        with pytest.raises(ValueError, match="layout"):
            cost_growth.layout_grids(bad, 8)


def test_plan_pairs_every_multigrid_row_with_an_equal_budget_single_grid_row():
    rows = cost_growth.plan([32, 64], [2, 5], ["1-4-16-S", "1-16-S", "1-S"])
    keys = [(s, g, t) for s, g, t, _ in rows]
    assert len(keys) == len(set(keys))
    for size, grids, steps, _ in rows:
        if len(grids) > 2:
            budget = steps * (len(grids) - 1)
            assert (size, (1, size), budget) in keys
    # 1-16-S at T=5 needs 10 single-grid steps; the 1-4-16-S row at T=2 needs 6.
    assert (32, (1, 32), 10, "equal_budget") in rows and (64, (1, 64), 6, "equal_budget") in rows


def test_row_flops_follow_common_formula():
    got = cost_growth.row_flops(16, (1, 4, 16), 3, 2, 3)
    f4, f16 = _forward(4), _forward(16)
    assert got["variant"] == "multigrid" and got["trained_grids"] == [4, 16] and got["grad_evals"] == 6
    assert got["forward_flops"] == {4: f4, 16: f16}
    assert got["sample_flops"] == 2 * sum(3 * common.langevin_step_flops(f) + f for f in (f4, f16))
    assert got["train_flops"] == common.train_step_flops({4: f4, 16: f16}, 2, 3)
    single = cost_growth.row_flops(16, (1, 16), 6, 2, 3)
    assert single["variant"] == "single_grid" and single["trained_grids"] == [16] and single["grad_evals"] == 6
    assert single["sample_flops"] == 2 * (6 * 2 * f16 + f16)
    assert single["train_flops"] == common.train_step_flops({16: f16}, 2, 6, "single_grid")


def test_measure_row_generation_only_16px():
    row = cost_growth.measure_row(16, (1, 4, 16), 1, batch=2, repeats=1, train=False)
    assert row["output_shape"] == [2, 16, 16, 3] and row["output_finite"]
    assert row["train"] is None and row["grad_evals"] == 2
    assert math.isclose(row["gflop_per_image"] * 1e9, 3 * (_forward(4) + _forward(16)))  # T=1: 2F + F per grid
    assert row["sample"]["retraces"] == 0 and len(row["sample"]["times_s"]) == 1


def test_main_tiny_json_comparison_and_plot(tmp_path, capsys):
    plot = os.path.join(tmp_path, "cost.png")
    assert cost_growth.main(["--sizes", "8", "--steps", "1", "--layouts", "1-4-S,1-S", "--batch", "2",
                             "--repeats", "1", "--plot", plot]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["batch"] == 2 and doc["sizes"] == [8] and doc["retraces"] == 0
    assert [(r["layout"], r["steps_per_grid"], r["role"]) for r in doc["rows"]] == [
        ("1-4-8", 1, "sweep"), ("1-8", 2, "equal_budget"), ("1-8", 1, "sweep")]
    for row in doc["rows"]:
        assert row["output_shape"] == [2, 8, 8, 3] and row["output_finite"]
        for part in ("sample", "train"):
            timing = row[part]
            for key in ("first_call_s", "best_s", "median_s", "s_per_image", "gflops"):
                assert timing[key] > 0 and math.isfinite(timing[key])
            assert timing["spread"] >= 0 and timing["retraces"] == 0
        assert row["train"]["finite_metrics"] and row["train"]["s_per_step"] == row["train"]["best_s"]
        flops = cost_growth.row_flops(8, tuple(row["grids"]), row["steps_per_grid"], 2, 3)
        assert math.isclose(row["gflop_per_image"], flops["sample_flops"] / 2 / 1e9)
        assert math.isclose(row["train_gflop_per_step"], flops["train_flops"] / 1e9)
    (cmp,) = doc["comparisons"]
    multi, single = doc["rows"][0], doc["rows"][1]
    assert multi["grad_evals"] == single["grad_evals"] == cmp["grad_evals"] == 2
    assert cmp["single_steps"] == 2 and cmp["steps_per_grid"] == 1
    assert cmp["sample_time_ratio_single_over_multi"] > 0 and cmp["train_time_ratio_single_over_multi"] > 0
    assert doc["plot"] == plot and doc["plot_note"] is None and os.path.getsize(plot) > 1000
