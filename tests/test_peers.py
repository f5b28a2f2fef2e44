"""The compiled peers of `benchmarks.langevin` (torch.compile, jax.jit) compute what the Keras net
and the TF sampler compute, from the same weights: energies, a 2-step Langevin chain, and the
multi-grid train step's losses over two steps against the PyTorch eager reference. Each test is
skipped where its library is not importable (torch and jax are optional, benchmark-only:
`requirements/bench-torch-py311.txt`, in `.venv-latest`). Plus the ratios and the worker command
line, which need neither. Tolerances: float32 (1e-4; 1e-3 relative on the train-step losses)."""

import json

import numpy as np
import pytest

from benchmarks import peers
from trainers.networks import build_energy_net

REASON = "{} is not importable here (optional, benchmark-only: requirements/bench-torch-py311.txt in .venv-latest)"
TOL = {"rtol": 1e-4, "atol": 1e-4}
EPS = 1e-12  # Adam epsilon of the train-step checks (see _train_case)


def _torch():
    return pytest.importorskip("torch", reason=REASON.format("torch"))


def _jax():
    return pytest.importorskip("jax", reason=REASON.format("jax"))


def _keras_arrays(net):
    """The Keras energy net's weights as numpy: ([(kernel HWIO, bias)], Dense kernel [D, 1])."""
    return [(c.kernel.numpy(), c.bias.numpy()) for c in net.convs], net.dense.kernel.numpy()


def _torch_net(net):
    """`reference_torch.TorchEnergyNet` with the Keras net's weights (OIHW kernels; the Dense
    kernel's rows reordered from NHWC to NCHW flattening)."""
    torch = _torch()
    from benchmarks import reference_torch  # pylint: disable=import-outside-toplevel
    ref = reference_torch.TorchEnergyNet(net.grid_size, net.channels, net.specs)
    convs, dense = _keras_arrays(net)
    with torch.no_grad():
        for (kernel, bias), tconv in zip(convs, ref.convs):
            tconv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            tconv.bias.copy_(torch.from_numpy(bias))
        c = net.specs[-1][2]
        s = int(round((dense.shape[0] / c) ** 0.5))
        ref.dense.weight.copy_(torch.from_numpy(dense.reshape(s, s, c).transpose(2, 0, 1).reshape(1, -1).copy()))
    return ref


def _nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def keras_case():
    """A 16-px RGB net (width 0.25: 24-128 channels), 3 images, the TF sampler's 2-step chain."""
    import keras  # pylint: disable=import-outside-toplevel
    from trainers.langevin import LangevinSampler  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(0)
    net = build_energy_net(16, 3, width=0.25)
    x = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
    out, diag = LangevinSampler(2, 0.3).run(lambda v: net(v), x, [0, 0])
    return net, x, net(x).numpy(), out.numpy(), diag["energy_end"].numpy()


def test_torch_compile_matches_keras_net(keras_case):
    torch = _torch()
    from benchmarks import reference_torch_compile as rtc  # pylint: disable=import-outside-toplevel
    net, x, energy, chain_x, chain_e = keras_case
    ref = _torch_net(net)
    np.testing.assert_allclose(torch.compile(ref, dynamic=False)(_nchw(torch, x)).detach().numpy(), energy, **TOL)
    got_x, got_e = rtc.compiled_chain(ref, 2, 0.3)(_nchw(torch, x))
    np.testing.assert_allclose(got_x.numpy().transpose(0, 2, 3, 1), chain_x, **TOL)
    np.testing.assert_allclose(got_e.numpy(), chain_e, **TOL)


def test_jax_matches_keras_net(keras_case):
    jax = _jax()
    from benchmarks import reference_jax as rj  # pylint: disable=import-outside-toplevel
    net, x, energy, chain_x, chain_e = keras_case
    params = rj.params_from_keras(*_keras_arrays(net))
    np.testing.assert_allclose(np.asarray(jax.jit(rj.energy_fn(net.specs))(params, x)), energy, **TOL)
    got_x, got_e = rj.jit_chain(net.specs, 2, 0.3)(params, x)
    np.testing.assert_allclose(np.asarray(got_x), chain_x, **TOL)
    np.testing.assert_allclose(np.asarray(got_e), chain_e, **TOL)


def _train_case(lr):
    """Keras nets for grids 4 and 8 (width 1/8), observations for grids 1, 4, 8 (NHWC), and the
    eager torch reference's losses over two steps from those weights. Adam's epsilon is 1e-12 on
    both sides: torch adds it to sqrt(v_hat), Keras (and the JAX peer) to sqrt(v), which at lr 1e-2
    moves the second step's losses by ~0.1% through the smallest gradients."""
    torch = _torch()
    import keras  # pylint: disable=import-outside-toplevel
    from benchmarks import reference_torch  # pylint: disable=import-outside-toplevel
    keras.utils.set_random_seed(1)
    nets = {g: build_energy_net(g, 3, width=0.125) for g in (4, 8)}
    full = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype(np.float32)
    obs = {g: full.reshape(2, g, 8 // g, g, 8 // g, 3).mean(axis=(2, 4)) for g in (1, 4, 8)}
    tnets = {g: _torch_net(n) for g, n in nets.items()}
    opts = {g: torch.optim.Adam(n.parameters(), lr=lr, betas=(0.5, 0.999), eps=EPS) for g, n in tnets.items()}
    tobs = {g: _nchw(torch, v) for g, v in obs.items()}
    want = [reference_torch.multigrid_step(tnets, opts, tobs, 2) for _ in range(2)]
    return nets, obs, want


def _close(got: dict, want: dict):
    for g, loss in want.items():
        assert float(got[g]) == pytest.approx(loss, rel=1e-3, abs=1e-4), (g, float(got[g]), loss)


def test_torch_compile_train_step_matches_eager_reference():
    torch = _torch()
    from benchmarks import reference_torch_compile as rtc  # pylint: disable=import-outside-toplevel
    nets, obs, want = _train_case(lr=1e-2)
    tnets = {g: _torch_net(n) for g, n in nets.items()}
    opts = {g: torch.optim.Adam(n.parameters(), lr=1e-2, betas=(0.5, 0.999), eps=EPS) for g, n in tnets.items()}
    step = rtc.compiled_step(tnets, opts, 2)
    tobs = {g: _nchw(torch, v) for g, v in obs.items()}
    for expected in want:  # the second step's losses see the first step's Adam update
        _close(step(tobs), expected)


def test_jax_train_step_matches_eager_reference():
    _jax()
    from benchmarks import reference_jax as rj  # pylint: disable=import-outside-toplevel
    nets, obs, want = _train_case(lr=1e-2)
    params = {g: rj.params_from_keras(*_keras_arrays(n)) for g, n in nets.items()}
    step = rj.make_train_step({g: n.specs for g, n in nets.items()}, 2, lr=1e-2, epsilon=EPS)
    opt = rj.adam_init(params)
    for expected in want:
        params, opt, losses = step(params, opt, obs)
        _close(losses, expected)


def test_speedups_and_rows_without_a_peer():
    lang, train = {"images_per_s": 6.0}, {"images_per_s": 2.0}
    doc = {"torch_compile": {"langevin": {"images_per_s": 3.0}, "train_step": {"images_per_s": 4.0}},
           "jax": {"error": "No module named 'jax'"}}
    assert peers.speedups(lang, train, doc) == {
        "speedup_vs_torch_compile": 2.0, "train_step_speedup_vs_torch_compile": 0.5,
        "speedup_vs_jax": None, "train_step_speedup_vs_jax": None}
    assert set(peers.speedups(lang, None, None).values()) == {None}
    full = {"peak_gflops": 10.0, "torch": {"available": False},
            "peers": {"jax": doc["jax"], "torch_compile": {**doc["torch_compile"], "grid": 64, "batch": 64}}}
    full["peers"]["torch_compile"]["langevin"]["gflops"] = 5.0
    full["peers"]["torch_compile"]["train_step"]["gflops"] = 1.0
    rows = peers.table_rows(full)
    assert [r[0] for r in rows] == ["torch.compile langevin", "torch.compile train_step", "jax jit"]


def test_worker_command_round_trips():
    specs = {4: [(5, 2, 8)], 8: [(5, 2, 8), (3, 1, 16)]}
    cmd = peers.command("python", "jax", 8, 3, 4, 2, specs, grids=(1, 4, 8), repeats=1, threads=1,
                        max_repeats=16, max_timed_s=20.0)
    assert cmd[:3] == ["python", "-m", "benchmarks.reference_jax"]
    args, got, grids = peers.worker_args(cmd[3:], "test")
    assert got == specs and grids == [1, 4, 8] and (args.batch, args.steps, args.threads) == (4, 2, 1)
    assert (args.repeats, args.max_repeats, args.max_timed_s) == (1, 16, 20.0)
    json.dumps(cmd)
