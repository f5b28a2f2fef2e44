"""The peak probes' FLOP counts, the settle rule, the spread over rounds and the ISA peak."""

import itertools

import numpy as np
import pytest

from benchmarks import common, peak


def test_conv_probe_counts_flops_and_runs_the_conv():
    name, fn, flops = peak.conv_probe(2, 8, 3, 4, 5, 2)
    assert name == "conv5x5s2_3to4_8px_b2"
    assert flops == 2 * 2 * 4 * 4 * 5 * 5 * 3 * 4  # 'same', stride 2: 8 -> 4
    out = fn()
    assert out.shape == (2, 4, 4, 4) and np.isfinite(out).all()
    name, fn, flops = peak.matmul_probe(16)
    assert (name, flops, fn().shape) == ("matmul16", 2 * 16 ** 3, (16, 16))


def test_default_probes_are_the_nets_layers_and_the_fixed_ones_without_duplicates():
    names = [p[0] for p in peak.default_probes(64, 3, 64)]
    assert names[:4] == ["conv5x5s2_3to64_64px_b64", "conv5x5s2_64to128_32px_b64",
                         "conv5x5s2_128to256_16px_b64", "conv5x5s2_256to512_8px_b64"]
    assert names[4:] == ["conv3x3s1_256to256_32px_b16", "matmul2048"]  # 5x5 s2 128->256 b64 not twice


def _clock(monkeypatch, durations):
    """perf_counter stepping by `durations` per timed call (two readings per call)."""
    ticks = itertools.accumulate(d for pair in ((0.0, d) for d in durations) for d in pair)
    monkeypatch.setattr(peak.time, "perf_counter", lambda: next(ticks))


def test_measure_probe_stops_once_the_best_settles(monkeypatch):
    _clock(monkeypatch, [2.0, 1.0, 1.0, 1.0, 1.0, 1.0] + [0.5] * 20)
    calls = []
    res = peak.measure_probe(lambda: calls.append(1), 1e9, min_repeats=3, patience=3, warmup=1)
    assert res["calls"] == 5  # best set at call 2, then 3 calls without a 1 % gain
    assert res["best_gflops"] == pytest.approx(1.0) and len(calls) == 6  # + the warm-up


def test_measure_probe_keeps_going_while_the_best_improves(monkeypatch):
    _clock(monkeypatch, [1.0 / (k + 1) for k in range(30)])
    res = peak.measure_probe(lambda: None, 1e9, max_repeats=8, warmup=0)
    assert res["calls"] == 8 and res["best_gflops"] == pytest.approx(8.0)


def test_time_calls_settles_the_workload_by_the_probes_rule(monkeypatch):
    # repeats=2 alone stops at 2 calls; max_repeats=12 goes on until 3 calls add < 1 % to the best.
    durations = [2.0, 1.5, 1.0, 0.999, 1.2, 0.995] + [0.5] * 20
    _clock(monkeypatch, durations)
    assert common.time_calls(lambda: None, 2, warmup=0)["times_s"] == pytest.approx([2.0, 1.5])
    _clock(monkeypatch, durations)
    got = common.time_calls(lambda: None, 2, warmup=0, max_repeats=12)
    assert got["times_s"] == pytest.approx(durations[:6]) and got["best_s"] == pytest.approx(0.995)
    _clock(monkeypatch, [1.0 / (k + 1) for k in range(30)])  # always improving: capped
    assert len(common.time_calls(lambda: None, 2, warmup=0, max_repeats=7)["times_s"]) == 7


def test_time_calls_budget_stops_a_slow_settling_workload_but_keeps_the_minimum(monkeypatch):
    improving = [10.0 / (k + 1) for k in range(30)]  # never settles: 10, 5, 3.33, 2.5, 2, ...
    _clock(monkeypatch, improving)
    got = common.time_calls(lambda: None, 2, warmup=0, max_repeats=16, max_timed_s=20.0)
    assert got["times_s"] == pytest.approx(improving[:4], abs=1e-3)  # 10 + 5 + 3.33 + 2.5 >= 20 s
    _clock(monkeypatch, [30.0, 25.0, 1.0])  # over budget at once: still the minimum 2 calls
    assert common.time_calls(lambda: None, 2, warmup=0, max_repeats=16, max_timed_s=20.0)["times_s"] == \
        pytest.approx([30.0, 25.0])
    _clock(monkeypatch, improving)  # 0: no limit, capped by max_repeats only
    assert len(common.time_calls(lambda: None, 2, warmup=0, max_repeats=7, max_timed_s=0)["times_s"]) == 7


def test_compiled_timing_reports_the_first_call_apart(monkeypatch):
    _clock(monkeypatch, [40.0, 2.0, 1.5, 1.0, 1.0, 1.0, 1.0])  # compile, warm-up, timed calls
    got = common.compiled_timing(lambda: None, 2, max_repeats=16)
    assert got["compile_s"] == pytest.approx(40.0) and got["warmup_s"] == [2.0]
    assert got["times_s"] == pytest.approx([1.5, 1.0, 1.0, 1.0, 1.0]) and got["best_s"] == pytest.approx(1.0)


def test_settled_needs_min_calls_and_a_flat_best():
    assert not common.settled([1.0, 1.0, 1.0, 1.0], min_calls=5)
    assert common.settled([1.0, 1.0, 1.0, 1.0], min_calls=3)
    assert not common.settled([1.0, 0.9, 0.9, 0.9], min_calls=3)  # 10 % better 3 calls ago
    assert common.settled([1.0, 0.995, 0.995, 0.995, 0.995], min_calls=3)


def test_summarize_takes_the_best_round_and_reports_the_spread():
    got = peak.summarize([{"a": 100.0, "b": 90.0}, {"a": 80.0, "b": 120.0}, {"a": 110.0}])
    assert got["peak_gflops"] == 120.0 and got["best_probe"] == "b"
    assert got["spread"] == {"min": 100.0, "median": 110.0, "max": 120.0}
    assert got["relative_spread"] == pytest.approx(20 / 120)
    with pytest.raises(ValueError, match="at least one"):
        peak.summarize([])


def test_adjacent_fraction_divides_by_the_mean_of_the_neighbouring_rounds_best_probes():
    before, after = {"a": 100.0, "b": 200.0}, {"a": 300.0, "b": 150.0}
    assert peak.adjacent_fraction(125.0, before, after) == pytest.approx(125.0 / 250.0)


def test_time_calls_runs_the_probe_after_each_timed_call_outside_its_time(monkeypatch):
    _clock(monkeypatch, [1.0, 2.0, 3.0, 1.0])
    order = []
    got = common.time_calls(lambda: order.append("call"), 3, warmup=0,
                            probe=lambda: order.append("probe") or len(order))
    assert order == ["call", "probe"] * 3 and got["probe_after"] == [2, 4, 6]
    assert got["times_s"] == pytest.approx([1.0, 2.0, 3.0])  # the probe's time is not the call's
    assert "probe_after" not in common.time_calls(lambda: None, 1, warmup=0)


def test_probe_now_is_the_best_of_its_calls(monkeypatch):
    _clock(monkeypatch, [0.5, 0.25, 1.0])
    calls = []
    rate = peak.probe_now(("p", lambda: calls.append(1), 2e9), calls=3, warmup=1)
    assert rate() == pytest.approx(8.0) and len(calls) == 4  # 2 GFLOP in 0.25 s; + the warm-up


def test_paired_fraction_divides_each_call_by_the_probe_right_after_it():
    # 10 GFLOP per call in 0.1, 0.2, 0.1, 0.05 s = 100, 50, 100, 200 GFLOP/s; probes 200, 100, 125, 250
    got = peak.paired_fraction(10e9, [0.1, 0.2, 0.1, 0.05], [200.0, 100.0, 125.0, 250.0], "conv")
    assert got["ratios"] == [0.5, 0.5, 0.8, 0.8] and got["calls"] == 4 and got["probe"] == "conv"
    assert (got["median"], got["q1"], got["q3"]) == pytest.approx((0.65, 0.5, 0.8))
    with pytest.raises(ValueError, match="one probe figure per call"):
        peak.paired_fraction(1.0, [0.1, 0.2], [1.0], "conv")


def test_median_quartiles_are_order_statistics():
    assert common.median_quartiles([3.0]) == {"median": 3.0, "q1": 3.0, "q3": 3.0}
    assert common.median_quartiles([4, 1, 3, 2, 5, 6, 8, 7]) == {"median": 4.5, "q1": 3, "q3": 7}
    with pytest.raises(ValueError, match="at least one"):
        common.median_quartiles([])


def test_theoretical_peak_from_isa_flags():
    # 2 cores x 2.6 GHz x 64 (two AVX-512 FMA units) = 332.8 GFLOP/s.
    assert peak.theoretical_peak(2, 2600.0, ["avx512f", "fma", "avx2"])["gflops"] == pytest.approx(332.8)
    assert peak.theoretical_peak(4, 3000.0, ["avx2", "fma", "avx"])["gflops"] == pytest.approx(384.0)
    assert peak.theoretical_peak(1, 1000.0, ["sse2"])["flops_per_cycle"] == 8
    # AMD Zen 4 (family 25) splits AVX-512 over 256-bit units; Zen 5 (family 26) does not.
    zen4 = peak.theoretical_peak(2, 2600.0, ["avx512f", "fma"], "AuthenticAMD", 25)
    assert zen4["flops_per_cycle"] == 32 and "Zen 4" in zen4["assumption"]
    assert peak.theoretical_peak(2, 2600.0, ["avx512f", "fma"], "AuthenticAMD", 26)["flops_per_cycle"] == 64
    with pytest.raises(ValueError, match="cores"):
        peak.theoretical_peak(0, 2600.0, [])
    mine = peak.machine_theoretical_peak()
    assert mine is None or mine["gflops"] > 0
