"""Fast checks of the benchmarks: FLOP counts against hand counts and TF's own profiler, the
smallest configuration of each benchmark, and well-formed JSON figures. No timing assertions."""

import argparse
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import common
from benchmarks import langevin as bench_langevin
from benchmarks import langevin_cfebm, langevin_report
from benchmarks import pipeline as bench_pipeline
from benchmarks import quality as bench_quality
from trainers.families.cfebm_net import ExpandingEnergyNet
from trainers.networks import build_energy_net, layer_specs


def _finite_positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_forward_flops_tiny_net_equals_hand_count():
    # 8x8x1 input; conv 3x3/1 -> 8x8x2; conv 3x3/2 -> 4x4x4; dense 64 -> 1.
    got = common.forward_flops(8, 1, [(3, 1, 2), (3, 2, 4)])
    conv1 = 2 * 8 * 8 * 9 * 1 * 2
    conv2 = 2 * 4 * 4 * 9 * 2 * 4
    dense = 2 * 4 * 4 * 4
    assert [layer["flops"] for layer in got["layers"]] == [conv1, conv2]
    assert got["dense_flops"] == dense
    assert got["total"] == conv1 + conv2 + dense == 4736


def test_forward_flops_64px_reference_net_hand_count():
    got = common.forward_flops(64, 3, layer_specs(64))
    hand = (2 * 32 * 32 * 25 * 3 * 64 + 2 * 16 * 16 * 25 * 64 * 128 + 2 * 8 * 8 * 25 * 128 * 256
            + 2 * 4 * 4 * 25 * 256 * 512 + 2 * 4 * 4 * 512)
    assert got["total"] == hand == 324_419_584
    assert common.langevin_step_flops(got["total"]) == 2 * hand
    assert common.sampler_call_flops(hand, 3, 4) == 3 * (4 * 2 * hand + hand)  # T steps + the final forward


def test_forward_flops_match_tf_profiler():
    """The analytic count equals TF's graph profiler on the Conv2D and MatMul ops of a real net."""
    net = build_energy_net(16, 1, width=0.25)
    fn = tf.function(lambda x: net(x)).get_concrete_function(tf.TensorSpec([1, 16, 16, 1], tf.float32))
    opts = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
            .with_empty_output().account_displayed_op_only(True)
            .select(["float_ops"]).with_node_names(show_name_regexes=[".*"]).build())
    opts["account_type_regexes"] = ["Conv2D", "MatMul"]
    prof = tf.compat.v1.profiler.profile(fn.graph, options=opts)
    assert prof.total_float_ops == common.forward_flops(16, 1, layer_specs(16, 0.25))["total"]


def _profiled_flops(fn, spec):
    """TF's graph-profiler FLOPs of the Conv2D and MatMul ops of tf.function `fn` at `spec`."""
    graph = tf.function(fn).get_concrete_function(spec).graph
    opts = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
            .with_empty_output().account_displayed_op_only(True)
            .select(["float_ops"]).with_node_names(show_name_regexes=[".*"]).build())
    opts["account_type_regexes"] = ["Conv2D", "MatMul"]
    return tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops


def test_profiled_flops_helper_matches_the_multigrid_count():
    net = build_energy_net(8, 1, width=0.25)
    assert _profiled_flops(lambda x: net(x), tf.TensorSpec([1, 8, 8, 1])) == \
        common.forward_flops(8, 1, layer_specs(8, 0.25))["total"]


def test_cfebm_forward_flops_tiny_net_equals_hand_count():
    # Stages 4 -> 8 px, C = 1, W = 2, at stage 1 (input 8x8x1):
    rgb8 = 2 * 8 * 8 * 1 * 1 * 1 * 2            # from-RGB 1x1 at 8 px
    block8 = 2 * (2 * 8 * 8 * 9 * 2 * 2) + 2 * 8 * 8 * 1 * 2 * 2  # two 3x3 + 1x1 skip at 8 px
    block4 = 2 * (2 * 4 * 4 * 9 * 2 * 2) + 2 * 4 * 4 * 1 * 2 * 2  # the head at 4 px
    dense = 2 * 2
    fade = 2 * 4 * 4 * 1 * 2                    # from-RGB of stage 0 on the 2x2-averaged image
    got = common.cfebm_forward_flops((4, 8), 1, 1, 2)
    assert got["total"] == rgb8 + block8 + block4 + dense == 12420
    assert got["dense_flops"] == dense and len(got["layers"]) == 7
    assert common.cfebm_forward_flops((4, 8), 1, 1, 2, fade=True)["total"] == 12420 + fade
    assert common.cfebm_forward_flops((4, 8), 0, 1, 2)["total"] == 2 * 4 * 4 * 2 + block4 + dense == 2500
    assert common.cfebm_forward_flops((4, 8), 0, 1, 2, fade=True)["total"] == 2500  # no fade at stage 0
    with pytest.raises(ValueError, match="stage"):
        common.cfebm_forward_flops((4, 8), 2, 1, 2)


def test_cfebm_chain_and_train_step_flops_hand_count():
    f0 = common.cfebm_forward_flops((4, 8), 0, 1, 2)["total"]
    f1 = common.cfebm_forward_flops((4, 8), 1, 1, 2, fade=True)["total"]
    # N = 3, T = 2: per stage N * (T * 2F + F); the update 2N * 3 * F of the last stage.
    assert common.cfebm_chain_flops((4, 8), 1, 1, 2, 3, 2) == 3 * 5 * f0 + 3 * 5 * f1
    assert common.cfebm_train_step_flops((4, 8), 1, 1, 2, 3, 2) == 3 * 5 * (f0 + f1) + 18 * f1
    f1_plain = common.cfebm_forward_flops((4, 8), 1, 1, 2)["total"]
    assert common.cfebm_chain_flops((4, 8), 1, 1, 2, 3, 2, fade=False) == 15 * (f0 + f1_plain)


@pytest.mark.parametrize("stage,beta", [(0, None), (1, None), (1, 0.5), (2, 1.0)])
def test_cfebm_forward_flops_match_the_built_net(stage, beta):
    """The analytic count equals TF's profiler on the real net's graph (spectral norm on), and
    at the last stage with fade its layer list is exactly the net's conv kernels."""
    sizes, width = (4, 8, 16), 3
    net = ExpandingEnergyNet(sizes, 3, width=width)
    net.build_all()
    s = sizes[stage]
    fn = (lambda x: net.energy(x, stage)) if beta is None else \
        (lambda x: net.energy(x, stage, tf.constant(beta)))
    got = common.cfebm_forward_flops(sizes, stage, 3, width, fade=beta is not None)
    assert _profiled_flops(fn, tf.TensorSpec([1, s, s, 3])) == got["total"]
    if stage == len(sizes) - 1 and beta is not None:
        # Every conv kernel of the net, less the from-RGB convs of stages 0..K-2 (unused at K).
        kernels = sorted(tuple(v.shape) for v in net.trainable_variables if len(v.shape) == 4)
        counted = [(c["kernel"], c["kernel"], c["in"], c["out"]) for c in got["layers"]]
        assert kernels == sorted(counted + [(1, 1, 3, width)] * (len(sizes) - 2))
        dense = [v for v in net.trainable_variables if tuple(v.shape) == (width, 1)]
        assert len(dense) == 1 and got["dense_flops"] == 2 * width


def test_cfebm_smallest_config_is_well_formed():
    """The CF-EBM section on the 32-px preset at width 6: final stage, no retraces, FLOPs."""
    measured = langevin_cfebm.measure(0.05, 1, 2, 1, eager=True, preset="mnist5k-cfebm")
    sampler, eager, train = measured["results"]
    assert (sampler["variant"], eager["variant"], train["kind"]) == ("function", "eager", "cfebm_train_step")
    assert sampler["sizes"] == [8, 16, 32] and sampler["width"] == 6
    assert sampler["flops_per_call"] == common.cfebm_chain_flops((8, 16, 32), 2, 1, 6, 2, 1)
    assert train["flops_per_call"] == common.cfebm_train_step_flops((8, 16, 32), 2, 1, 6, 2, 1)
    assert train["stage"] == 2 and train["beta"] == 1.0 and train["finite_metrics"]
    assert sampler["traces_after_first"] == 0 and train["traces_after_first"] == 0
    doc = langevin_cfebm.assemble(measured, 50.0)
    assert doc["fraction_of_peak"] == pytest.approx(sampler["gflops"] / 50.0)
    assert _finite_positive(doc["speedup_vs_eager"]) and doc["speedup_vs_torch"] is None
    assert doc["torch"] == {"available": False} and doc["retraces"] == 0
    assert langevin_report.cfebm_rows(doc, 50.0)
    json.dumps(doc)


def test_cfebm_assemble_ratios():
    base = {"sizes": [8, 16], "width": 4, "batch": 2, "steps": 1, "policy": "float32", "grid": 16}
    results = [
        {**base, "kind": "cfebm_sampler", "variant": "function", "gflops": 20.0, "images_per_s": 4.0,
         "image_steps_per_s": 8.0, "traces_after_first": 0},
        {**base, "kind": "cfebm_train_step", "variant": "function", "gflops": 10.0, "images_per_s": 1.0,
         "traces_after_first": 1, "stage": 1, "beta": 1.0},
    ]
    ref = {"langevin": {"images_per_s": 2.0, "gflops": 10.0}, "train_step": {"images_per_s": 0.5, "gflops": 5.0}}
    doc = langevin_cfebm.assemble({"results": results, "torch": ref, "preset": "p", "width_factor": 0.5}, 40.0)
    assert doc["fraction_of_peak"] == pytest.approx(0.5)
    assert doc["train_step_fraction_of_peak"] == pytest.approx(0.25)
    assert doc["speedup_vs_torch"] == pytest.approx(2.0) and doc["train_step_speedup_vs_torch"] == pytest.approx(2.0)
    assert doc["speedup_vs_eager"] is None and doc["retraces"] == 1 and doc["stage"] == 1
    assert len(langevin_report.cfebm_rows(doc, 40.0)) == 4


def test_quick_document_keeps_multigrid_keys_and_adds_cfebm(monkeypatch, capsys):
    """main --quick end to end with the measurements stubbed: the multi-grid keys as before, the
    `cfebm` section against the same peak, the CF-EBM flags handed through."""
    lang = {"kind": "langevin", "variant": "function", "policy": "float32", "gflops": 30.0, "images_per_s": 6.0,
            "image_steps_per_s": 24.0, "traces_after_first": 0, "grid": 64, "batch": 64,
            "flops_per_call": 30e9, "times_s": [1.0, 2.0, 1.0]}
    calls = {}

    def measure(width, steps, batch, repeats, eager, torch_python=None, torch_threads=None):
        calls.update(width=width, steps=steps, batch=batch, repeats=repeats, eager=eager)
        base = {"sizes": [8, 16, 32, 64], "width": 64, "batch": batch, "steps": steps, "policy": "float32",
                "grid": 64, "traces_after_first": 0}
        return {"results": [{**base, "kind": "cfebm_sampler", "variant": "function", "gflops": 25.0,
                             "images_per_s": 2.0, "image_steps_per_s": 32.0},
                            {**base, "kind": "cfebm_train_step", "variant": "function", "gflops": 20.0,
                             "images_per_s": 1.0, "stage": 3, "beta": 1.0}],
                "torch": None, "preset": langevin_cfebm.PRESET, "width_factor": width}

    monkeypatch.setattr(bench_langevin, "peak_probes", lambda: {"conv3x3_gflops": 50.0})
    monkeypatch.setattr(bench_langevin, "pick_compiled", lambda *a, **k: {"fastest": "function"})
    monkeypatch.setattr(bench_langevin, "probe_right_after", lambda rounds: ("conv3x3_gflops", lambda: 50.0))
    timed = []  # (variant, max_repeats, max_timed_s) of every bench_langevin call

    def fake_langevin(g, c, b, s, variant, **k):
        timed.append((variant, k.get("max_repeats", 0), k.get("max_timed_s", 0)))
        probed = {"probe_after": [k["probe"]() for _ in lang["times_s"]]} if k.get("probe") else {}
        return {**lang, "variant": variant, **probed}

    def fake_train_step(*a, **k):
        return {**lang, "kind": "train_step", "gflops": 40.0, "images_per_s": 2.0, "flops_per_call": 40e9,
                "times_s": [1.0], "probe_after": [k["probe"]()]}

    monkeypatch.setattr(bench_langevin, "bench_langevin", fake_langevin)
    monkeypatch.setattr(bench_langevin, "bench_train_step", fake_train_step)
    monkeypatch.setattr(bench_langevin, "torch_python", lambda explicit: None)
    monkeypatch.setattr(langevin_cfebm, "measure", measure)
    assert bench_langevin.main(["--quick", "--cfebm-steps", "2"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["fraction_of_peak"] == pytest.approx(0.6) and doc["train_step_fraction_of_peak"] == pytest.approx(0.8)
    assert doc["adjacent_peak_fraction"] == {"langevin": pytest.approx(0.6), "train_step": pytest.approx(0.8)}
    # call by call: 30 GFLOP in 1, 2, 1 s against a 50 GFLOP/s probe; the train step's one call
    paired = doc["paired_fraction"]
    assert paired["langevin"] == {"median": pytest.approx(0.6), "q1": pytest.approx(0.3), "q3": pytest.approx(0.6),
                                  "calls": 3, "probe": "conv3x3_gflops", "ratios": [0.6, 0.3, 0.6]}
    assert paired["train_step"]["median"] == pytest.approx(0.8) and paired["train_step"]["calls"] == 1
    summary = captured.err
    assert "Langevin 0.60 of peak (" in summary and "train step 0.80, vs eager" in summary
    assert "sampler 0.50 of peak, train step 0.40, vs eager" in summary and "Exception ignored" not in summary
    assert "vs torch - (compiled -, jax -)" in summary  # peers absent: "-", not "-x"
    cf = doc["cfebm"]
    assert cf["fraction_of_peak"] == pytest.approx(0.5) and cf["train_step_fraction_of_peak"] == pytest.approx(0.4)
    assert cf["sizes"] == [8, 16, 32, 64] and cf["stage"] == 3 and cf["torch"] == {"available": False}
    assert calls == {"width": 0.5, "steps": 2, "batch": 64, "repeats": 1, "eager": False}
    assert timed == [("function", 16, 20.0), ("eager", 0, 0)]  # the loop timed until its best settles
    assert bench_langevin.main(["--quick", "--no-cfebm"]) == 0
    assert json.loads(capsys.readouterr().out)["cfebm"] is None


def test_train_step_flops_hand_count():
    # One grid, F = 10, N = 4, T = 3: 4 * (3 * 20 + 10) + 2 * 4 * 30 = 520; cd1 uses T = 1.
    assert common.train_step_flops({8: 10}, 4, 3) == 520
    assert common.train_step_flops({8: 10}, 4, 3, family="cd1") == 4 * 30 + 240
    assert common.train_step_flops({4: 10, 8: 5}, 1, 1) == (30 + 60) + (15 + 30)


def test_forward_flops_rejects_bad_input():
    with pytest.raises(ValueError, match="grid_size"):
        common.forward_flops(0, 1, [(3, 1, 2)])


@pytest.mark.parametrize("variant", ["function", "eager"])
def test_langevin_smallest_config_is_well_formed(variant):
    res = bench_langevin.bench_langevin(4, 1, batch=2, steps=1, variant=variant, repeats=1)
    for key in ("best_s", "image_steps_per_s", "images_per_s", "gflops", "flops_per_call"):
        assert _finite_positive(res[key]), key
    forward = common.forward_flops(4, 1, layer_specs(4))["total"]
    assert res["flops_per_call"] == 2 * (2 * forward + forward)
    assert res["traces_after_first"] == 0
    json.dumps(res)


def test_train_step_smallest_config_is_well_formed():
    res = bench_langevin.bench_train_step(4, 1, batch=2, steps=1, repeats=1, grids=(1, 2, 4))
    assert res["finite_metrics"] and res["traces_after_first"] == 0
    assert _finite_positive(res["gflops"]) and _finite_positive(res["images_per_s"])


def test_assemble_headline_ratios():
    results = [
        {"kind": "langevin", "variant": "function", "policy": "float32", "gflops": 30.0, "images_per_s": 6.0,
         "image_steps_per_s": 24.0, "traces_after_first": 0},
        {"kind": "langevin", "variant": "eager", "policy": "float32", "gflops": 15.0, "images_per_s": 3.0,
         "traces_after_first": 0},
        {"kind": "train_step", "variant": "function", "policy": "float32", "gflops": 20.0, "images_per_s": 1.0,
         "traces_after_first": 1},
    ]
    ref = {"langevin": {"images_per_s": 4.0}, "train_step": {"images_per_s": 0.5}}
    doc = bench_langevin.assemble(results, ref, [{"a": 40.0, "b": 35.0}, {"a": 38.0, "b": 50.0}], None, "function")
    assert doc["peak_gflops"] == 50.0
    assert doc["fraction_of_peak"] == pytest.approx(0.6)
    assert doc["train_step_fraction_of_peak"] == pytest.approx(0.4)
    # Without per-call timings the range runs from the best round's peak (50) to the lowest's (40).
    assert doc["fraction_of_peak_range"] == pytest.approx([0.6, 0.75])
    assert doc["peak_spread"]["round_peaks"] == [40.0, 50.0] and doc["peak_spread"]["best_probe"] == "b"
    assert doc["speedup_vs_eager"] == pytest.approx(2.0)
    assert doc["speedup_vs_torch"] == pytest.approx(1.5)
    assert doc["train_step_speedup_vs_torch"] == pytest.approx(2.0)
    assert doc["retraces"] == 1
    json.dumps(doc)
    no_torch = bench_langevin.assemble(results, None, [{"a": 40.0}], None, "function")
    assert no_torch["speedup_vs_torch"] is None and no_torch["speedup_vs_jax"] is None
    assert no_torch["peers"] == {"torch_compile": {"available": False}, "jax": {"available": False}}
    compiled = {"torch_compile": {"langevin": {"images_per_s": 12.0}, "train_step": {"images_per_s": 0.5}},
                "jax": {"error": "No module named 'jax'"}}
    doc = bench_langevin.assemble(results, ref, [{"a": 40.0}], None, "function", compiled)
    assert doc["speedup_vs_torch_compile"] == pytest.approx(0.5) and doc["speedup_vs_jax"] is None
    assert doc["train_step_speedup_vs_torch_compile"] == pytest.approx(2.0) and doc["peers"] == compiled


def test_torch_reference_matches_keras_net():
    """Same weights -> same energies and the same Langevin step as the TF sampler (torch optional)."""
    torch = pytest.importorskip("torch")
    from benchmarks import reference_torch  # pylint: disable=import-outside-toplevel
    from trainers.langevin import LangevinSampler  # pylint: disable=import-outside-toplevel
    net = build_energy_net(16, 1, width=0.25)
    ref = reference_torch.TorchEnergyNet(16, 1, net.specs, dense_bias=net.dense.bias is not None)
    with torch.no_grad():
        for conv, tconv in zip(net.convs, ref.convs):
            kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
            tconv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            tconv.bias.copy_(torch.from_numpy(bias))
        kernel = net.dense.kernel.numpy()
        c = net.specs[-1][2]
        s = int(round((kernel.shape[0] / c) ** 0.5))  # last feature map side (8 for the 16-px net)
        ref.dense.weight.copy_(torch.from_numpy(kernel.reshape(s, s, c).transpose(2, 0, 1).reshape(1, -1).copy()))
        if net.dense.bias is not None:
            ref.dense.bias.copy_(torch.from_numpy(net.dense.bias.numpy()))
    x = np.random.default_rng(0).uniform(size=(3, 16, 16, 1)).astype(np.float32)
    x_t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    np.testing.assert_allclose(ref(x_t).detach().numpy(), net(x).numpy(), rtol=1e-4, atol=1e-4)
    out_tf, _ = LangevinSampler(2, 0.3).run(lambda v: net(v), x, [0, 0])
    out_t, _ = reference_torch.langevin(ref, x_t, 2, 0.3)
    np.testing.assert_allclose(out_t.numpy().transpose(0, 2, 3, 1), out_tf.numpy(), atol=1e-4)
    res = reference_torch.run(4, 1, 2, 1, [1, 2, 4], {2: layer_specs(2), 4: layer_specs(4)}, repeats=1, threads=1)
    assert _finite_positive(res["langevin"]["gflops"]) and _finite_positive(res["train_step"]["images_per_s"])


def test_torch_cfebm_reference_matches_keras_net():
    """Same weights -> same CF-EBM energies (with and without fade) and input gradients as the
    Keras net (spectral norm off on both sides, so the copied kernels are used as they are)."""
    torch = pytest.importorskip("torch", reason="torch is not importable here (optional, benchmark-only: "
                                "requirements/bench-torch-py311.txt)")
    from benchmarks import reference_torch  # pylint: disable=import-outside-toplevel
    sizes, width = (4, 8), 3
    net = ExpandingEnergyNet(sizes, 3, width=width, spectral=False)
    net.build_all()
    ref = reference_torch.TorchCFEBMNet(sizes, 3, width, "swish", spectral=False)

    def copy(conv, tconv):
        tconv.weight.copy_(torch.from_numpy(conv.kernel.numpy().transpose(3, 2, 0, 1).copy()))
        tconv.bias.copy_(torch.from_numpy(conv.bias.numpy()))

    with torch.no_grad():
        for k in range(len(sizes)):
            copy(net.from_rgb[k], ref.from_rgb[k])
            for name in ("conv1", "conv2", "skip"):
                copy(getattr(net.blocks[k], name), getattr(ref.blocks[k], name))
        ref.dense.weight.copy_(torch.from_numpy(net.dense.kernel.numpy().T.copy()))
        ref.dense.bias.copy_(torch.from_numpy(net.dense.bias.numpy()))
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    x_t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    for stage, beta, inp, inp_t in ((1, None, x, x_t), (1, 0.25, x, x_t), (0, None, x[:, ::2, ::2], None)):
        if inp_t is None:
            inp_t = torch.from_numpy(np.ascontiguousarray(inp.transpose(0, 3, 1, 2)))
        want = net.energy(inp, stage, None if beta is None else tf.constant(beta)).numpy()
        got = ref.energy(inp_t, stage, beta)
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-4, atol=1e-4)
    x_tf = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tf)
        e = tf.reduce_sum(net.energy(x_tf, 1))
    grad_t, = torch.autograd.grad(ref.energy(x_t, 1).sum(), x_t)
    np.testing.assert_allclose(grad_t.numpy().transpose(0, 2, 3, 1), tape.gradient(e, x_tf).numpy(),
                               rtol=1e-3, atol=1e-4)
    spec = {"sizes": [4, 8], "channels": 3, "width": 3, "activation": "swish", "spectral": True,
            "step_size": 0.7, "noise_scale": 0.007, "noise_schedule": "linear", "step_size_schedule": "constant",
            "clip": True, "upsample_noise": 0.05, "learning_rate": 1e-3, "beta_1": 0.5}
    res = reference_torch.run_cfebm(spec, batch=2, steps=1, repeats=1, threads=1)
    assert _finite_positive(res["langevin"]["gflops"]) and _finite_positive(res["train_step"]["images_per_s"])
    json.dumps(res)


def test_pipeline_worker_and_verdicts(tmp_path, idx_files):
    # The benchmark's default source (Debian's dataset-fashion-mnist) is optional: the worker runs
    # here on a small Fashion-MNIST-shaped idx data set made by the test (28x28, 10 classes).
    data = idx_files(tmp_path / "data", n=48, rows=28, cols=28, gz=True, name="train")
    res = bench_pipeline.worker(40, "in_memory", str(tmp_path / "work"), f"idx:{data.prefix}")
    assert res["images"] == 40 and sum(res["pyramid_counts"].values()) == 40
    assert _finite_positive(res["ingest_s"]) and _finite_positive(res["pyramid_s"])
    assert res["maxrss_self_kib"] >= res["maxrss_self_kib_after_import"] > 0
    # the pyramid stage's start and end are marked for the memory sampler
    assert all(os.path.exists(tmp_path / "work" / name) for name in bench_pipeline.PYRAMID_MARKS)
    assert bench_pipeline.MODES["dask"] == ("DaskRunner", ()) and bench_pipeline.MODES["in_memory"][0] == "DirectRunner"
    rows = [{"size": 10000, "mode": "in_memory", "us_per_image": 100.0, "pyramid_us_per_image": 50.0,
             "peak_tree_rss_mib": 1000.0, "total_s": 1.0, "images": 10000, "peak_pyramid_tree_rss_mib": 800.0},
            {"size": 60000, "mode": "in_memory", "us_per_image": 130.0, "pyramid_us_per_image": 55.0,
             "peak_tree_rss_mib": 1100.0, "total_s": 7.8, "images": 60000, "peak_pyramid_tree_rss_mib": 840.0}]
    verdict = bench_pipeline.verdicts(rows)["in_memory"]
    assert verdict["pyramid_peak_memory_ratio"] == pytest.approx(1.05)
    assert verdict["per_image_ratio"] == pytest.approx(1.3) and not verdict["flat_within_20pct"]
    assert not verdict["not_growing"]
    assert verdict["peak_memory_ratio"] == pytest.approx(1.1) and verdict["memory_bounded"]
    assert verdict["marginal_us_per_image"] == pytest.approx(136.0)
    assert "affine_fit" not in verdict  # needs three sizes


def test_pipeline_affine_fit_recovers_fixed_and_per_image_cost():
    exact = bench_pipeline.affine_fit([(1000, 20.5), (10000, 25.0), (60000, 50.0)])  # 20 s + 500 us/img
    assert exact["fixed_s"] == pytest.approx(20.0) and exact["us_per_image"] == pytest.approx(500.0)
    assert exact["max_residual_fraction"] == pytest.approx(0.0, abs=1e-9)
    bent = bench_pipeline.affine_fit([(1000, 1.0), (10000, 10.0), (60000, 360.0)])  # quadratic-ish
    assert bent["max_residual_fraction"] > 0.5


def test_quality_overrides_differ_only_in_family_and_tile_shape():
    args = argparse.Namespace(
        width=0.25, steps=20, batch=32, minutes=5.0, seed=0, lr=1e-4, limit=1000)
    a, b = bench_quality.overrides(args, "multigrid"), bench_quality.overrides(args, "pcd")
    assert [x for x in a if x not in b] == ["model.family=multigrid"]
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel
    cfg = load_preset("fashion-mnist-multigrid", b)
    assert cfg.model.family == "pcd" and cfg.train.max_minutes == 5.0
    pic = bench_quality.tile(np.zeros((10, 32, 32, 1), np.uint8), rows=8, scale=2)
    assert pic.shape == (2 * (2 * 33 + 1), 2 * (8 * 33 + 1), 1) and pic.dtype == np.uint8


def test_patchgen_flops_tiny_net_equals_hand_count():
    # 4x5x1 input, convs 1 -> 2 -> 1, padded by 2 px: 8x9 -> conv1 6x7x2 -> conv2 4x5x1.
    got = common.patchgen_forward_flops(4, 5, 1, (2, 1))
    conv1, conv2 = 2 * 9 * 1 * 2 * 6 * 7, 2 * 9 * 2 * 1 * 4 * 5
    assert [v["flops"] for v in got["layers"]] == [conv1, conv2]
    assert [(v["out_h"], v["out_w"]) for v in got["layers"]] == [(6, 7), (4, 5)]
    assert got["total"] == conv1 + conv2 == 2232
    f1 = 2 * 9 * 2 * 8 * 10 + 2 * 9 * 2 * 6 * 8  # the 6x8 scale: 10x12 padded
    assert common.patchgen_forward_flops(6, 8, 1, (2, 1))["total"] == f1 == 4608
    scales = [(4, 5), (6, 8)]
    # N = 2, 2 steps at the coarsest scale, 3 after: per scale N (T 2F + F).
    chain = 2 * (2 * 2 * 2232 + 2232) + 2 * (3 * 2 * f1 + f1)
    assert common.patchgen_chain_flops(scales, 1, (2, 1), 3, 2, batch=2) == chain == 86832
    # Train step at scale 1: the chains, the recovery chain of 1 image, 3x forward on 2N + 1.
    assert common.patchgen_train_step_flops(scales, 1, 1, (2, 1), 3, 2, batch=2) == chain + 7 * f1 + 5 * 3 * f1
    assert common.patchgen_train_step_flops(scales, 0, 1, (2, 1), 3, 2, batch=2, recovery=False) == \
        2 * 5 * 2232 + 4 * 3 * 2232
    with pytest.raises(ValueError, match="height"):
        common.patchgen_forward_flops(0, 5, 1, (2, 1))


def test_patchgen_forward_flops_match_tf_profiler():
    from trainers.families.patchgen_net import PatchEnergyNet  # pylint: disable=import-outside-toplevel
    net = PatchEnergyNet(3, (4, 3, 1))
    assert _profiled_flops(lambda x: net(x), tf.TensorSpec([1, 7, 9, 3])) == \
        common.patchgen_forward_flops(7, 9, 3, (4, 3, 1))["total"]


def test_patchgen_quick_document(monkeypatch, capsys):
    """main --quick end to end (peak probe stubbed): keys, geometry, gradient evaluations, FLOPs."""
    from benchmarks import patchgen as bench_patchgen  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(bench_patchgen, "peak_probes", lambda: {"conv3x3_gflops": 50.0})
    monkeypatch.setattr(bench_patchgen, "torch_python", lambda explicit: None)
    assert bench_patchgen.main(["--quick", "--repeats", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    geo = doc["geometry"]
    assert geo["scales"] == [[27, 36], [36, 48]] and (geo["steps"], geo["coarse_steps"]) == (2, 2)
    assert geo["net_channels"] == [64, 32, 32, 32, 1] and geo["steps_per_scale"] == 250
    assert doc["grad_evals_per_image"] == 4
    assert doc["grad_evals_per_image_pixel_weighted"] == pytest.approx((2 * 27 * 36 + 2 * 36 * 48) / (36 * 48))
    assert doc["flops"]["synthesize_per_image"] == common.patchgen_chain_flops(
        [(27, 36), (36, 48)], 3, (64, 32, 32, 32, 1), 2, 2)
    assert doc["flops"]["langevin_step_per_scale"] == [2 * f for f in doc["flops"]["forward_per_scale"]]
    train = doc["train_steps"]
    assert [r["trained_scale"] for r in train] == [0, 1] and all(r["finite_metrics"] for r in train)
    assert doc["train_s_per_image"] == pytest.approx(250 * sum(r["median_s"] for r in train))
    assert set(doc["synthesize"]) == {"1", "8"} and doc["synthesize"]["8"]["shape"] == [8, 36, 48, 3]
    assert doc["fraction_of_peak"] == pytest.approx(doc["synthesize"]["8"]["gflops"] / 50.0)
    for key in ("train_s_per_image", "sampler_gflops", "wall_s"):
        assert _finite_positive(doc[key]), key
    assert all(_finite_positive(v) for v in doc["synthesize_s_per_image"].values())
    assert doc["retraces"] == 0 and doc["speedup_vs_torch"] is None
    assert doc["torch"]["available"] is False and "torch" in doc["torch"]["skipped"]


def test_torch_patchgen_reference_matches_keras_net():
    """Same weights -> the same PatchGenCN energies and Langevin step as the Keras net and the TF
    sampler (the spectral-normalised kernels as stored, as the TF chains use them)."""
    torch = pytest.importorskip("torch", reason="torch is not importable here (optional, benchmark-only: "
                                "requirements/bench-torch-py311.txt)")
    from benchmarks import reference_torch  # pylint: disable=import-outside-toplevel
    from trainers.families.patchgen_net import PatchEnergyNet  # pylint: disable=import-outside-toplevel
    from trainers.langevin import LangevinSampler  # pylint: disable=import-outside-toplevel
    channels = (6, 4, 1)
    net = PatchEnergyNet(3, channels)
    net(tf.random.uniform([1, 9, 9, 3]), training=True)  # one power iteration: normalised kernels
    ref = reference_torch.TorchPatchEnergyNet(3, channels, "elu")
    with torch.no_grad():
        for conv, tconv in zip(net.convs, ref.convs):
            layer = getattr(conv, "layer", conv)
            tconv.weight.copy_(torch.from_numpy(layer.kernel.numpy().transpose(3, 2, 0, 1).copy()))
            tconv.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    x = np.random.default_rng(0).uniform(size=(2, 7, 10, 3)).astype(np.float32)
    x_t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    np.testing.assert_allclose(ref(x_t).detach().numpy(), net(x).numpy(), rtol=1e-4, atol=1e-4)
    out_tf, _ = LangevinSampler(1, 0.05, noise=False).run(net, x, [0, 0])
    out_t, _ = reference_torch.noisy_langevin(ref, x_t, 1, 0.05, 0.1, "linear")  # 1 step: no noise
    np.testing.assert_allclose(out_t.detach().numpy().transpose(0, 2, 3, 1), out_tf.numpy(), atol=1e-4)
    spec = {"scales": [[5, 6], [7, 8]], "image_channels": 3, "channels": list(channels), "activation": "elu",
            "steps": 2, "coarse_steps": 3, "step_size": 0.05, "noise_scale": 0.1, "noise_schedule": "linear",
            "step_size_schedule": "constant", "clip": True}
    res = reference_torch.run_patchgen(spec, batches=(1, 2), repeats=1, threads=1)
    assert set(res["synthesize"]) == {"1", "2"} and _finite_positive(res["synthesize"]["2"]["gflops"])
    json.dumps(res)
