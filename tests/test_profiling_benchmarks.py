"""The profiling and lever benchmarks on tiny shapes: a real TF profiler trace read back into op
time by kernel, and the lever and precision drivers' argument checks. No timing assertions."""

import json

import pytest

from benchmarks import levers, precision, profile_sampler


def test_profile_of_a_tiny_sampler_names_its_conv_kernels(tmp_path):
    out = profile_sampler.profile_sampler(16, 3, 2, 1, calls=1, logdir=str(tmp_path))
    kernels = {row["op"]: row for row in out["by_kernel"]}
    assert out["wall_s"] > 0 and out["op_thread_s"] > 0
    assert sum(row["share"] for row in out["by_kernel"]) == pytest.approx(1.0)
    # The forward and the input-gradient convolutions are both in the trace, with their rates.
    assert any(k in kernels for k in profile_sampler.FORWARD_CONVS)
    assert any(k in kernels for k in profile_sampler.INPUT_GRAD_CONVS)
    assert profile_sampler.STEM_GRAD in kernels  # the first conv's input gradient, found by its op name
    assert out["conv_gflops"]["forward"] > 0 and out["conv_gflops"]["input_gradient"] > 0
    assert out["trace"].startswith(str(tmp_path))


def test_read_trace_names_a_missing_trace(tmp_path):
    with pytest.raises(FileNotFoundError, match="no \\*.xplane.pb under"):
        profile_sampler.read_trace(str(tmp_path))


def test_levers_refuse_unknown_variants_and_run_a_worker(capsys):
    with pytest.raises(SystemExit):
        levers.main(["--variants", "baseline,warp_drive"])
    assert "unknown ['warp_drive']" in capsys.readouterr().err
    assert set(levers.VARIANTS) >= {"baseline", "inter_op_1", "onednn_off", "batch_32"}


def test_levers_paired_times_every_arm_on_the_same_chains():
    doc = levers.paired(3, batch=2)
    assert doc["pairs"] == 3 and set(doc["arms"]) == {"baseline", "tf_stem_gradient", "all_ones_mask"}
    assert set(doc["ratio"]) == {"tf_stem_gradient", "all_ones_mask"}
    assert doc["max_abs_chain_diff"]["all_ones_mask"] == 0.0  # an all-ones mask changes nothing
    assert doc["max_abs_chain_diff"]["tf_stem_gradient"] < 1e-4  # the same function, to rounding
    for ratio in doc["ratio"].values():
        assert ratio["q1"] <= ratio["median"] <= ratio["q3"]
    for arm in doc["arms"].values():
        assert 0 < arm["best_s"] <= arm["median_s"] and arm["best_gflops"] >= arm["median_gflops"] > 0
    kernel = levers.stem_kernel(batch=2, rounds=2, calls=2)
    assert len(kernel["tf_ms"]) == len(kernel["ours_ms"]) == 2
    assert all(v > 0 for v in kernel["gflops"].values())


def test_precision_spread():
    assert precision.spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
    assert json.dumps(precision.spread([1.0]))
