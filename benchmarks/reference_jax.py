"""JAX `jax.jit` peer of the multi-grid figures: the Keras energy nets, the Langevin loop and the
multi-grid train step, each call one XLA-compiled function.

Benchmark-only (jax is optional: `requirements/bench-torch-py311.txt`, installed in
`.venv-latest` beside torch); `benchmarks.langevin` runs it in a subprocess (`benchmarks.peers`).

- Energy net per grid: TF's layout and rules, so the Keras weights load as they are
  (`params_from_keras`): NHWC input, HWIO kernels, `lax.conv_general_dilated` with padding
  "SAME" (TF's: for a stride-2 5x5 conv, 1 pixel before and 2 after), bias, leaky ReLU 0.2;
  flatten (row-major NHWC, as keras.layers.Flatten) and the Dense kernel [D, 1] (no bias). The
  input is centred as (x - 0.5) * 2. Initialisation as Keras' (Glorot uniform, zero biases).
- Langevin (`langevin`, jitted whole): `lax.fori_loop` over T steps of
  x <- clip(x + (delta^2 / 2) grad f(x), 0, 1), the gradient `jax.grad` of the summed energy
  with respect to x only; then f(x) (the sampler's `energy_end`).
- Multi-grid train step (`make_train_step`, jitted whole): per grid > 1 nearest upsampling of
  the previous grid's samples and T Langevin steps; loss_S = mean f_S(synth) - mean f_S(obs) on
  one forward of the 2N images; `jax.grad` with respect to every net's parameters; one Adam
  step per grid (lr 1e-4, beta1 0.5, beta2 0.999, epsilon 1e-7 as Keras').
- Compile time: the first call (trace + XLA compile + one run) is reported as `compile_s` and
  left out of the timing; then one warm-up call and the best of the repeats.
- Threads: `--threads 1` runs XLA's CPU backend single-threaded (XLA_FLAGS
  --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1, set before jax is
  imported); otherwise XLA's default thread pool.

Run: `python -m benchmarks.reference_jax --grid 64 --channels 3 --batch 64 --steps 4 --grids
1,4,16,64 --specs '{"4": [[5,2,96],...], ...}'` prints one JSON document (command line:
`benchmarks.peers.worker_args`).
"""

from __future__ import annotations

import math
import os
import sys

from benchmarks import common, peers

SINGLE_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

_ARGV = sys.argv[1:]
if __name__ == "__main__" and ("--threads=1" in _ARGV or ("--threads", "1") in zip(_ARGV, _ARGV[1:])):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SINGLE_THREAD_FLAGS}".strip()  # before jax imports

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

LEAKY_SLOPE = 0.2


def init_params(key, grid: int, channels: int, specs) -> dict:
    """Keras-initialised parameters {"convs": [(kernel [k, k, Cin, Cout], bias [Cout])], "dense": [D, 1]}."""
    convs, size, cin = [], grid, channels
    for kernel, stride, cout in specs:
        key, sub = jax.random.split(key)
        limit = math.sqrt(6.0 / (kernel * kernel * (cin + cout)))
        convs.append((jax.random.uniform(sub, (kernel, kernel, cin, cout), jnp.float32, -limit, limit),
                      jnp.zeros([cout], jnp.float32)))
        size, cin = -(-size // stride), cout
    dim = size * size * cin
    limit = math.sqrt(6.0 / (dim + 1))
    return {"convs": convs, "dense": jax.random.uniform(key, (dim, 1), jnp.float32, -limit, limit)}


def params_from_keras(convs, dense_kernel) -> dict:
    """Parameters from the Keras net's arrays: convs [(kernel HWIO, bias)], the Dense kernel [D, 1]."""
    return {"convs": [(jnp.asarray(k, jnp.float32), jnp.asarray(b, jnp.float32)) for k, b in convs],
            "dense": jnp.asarray(dense_kernel, jnp.float32)}


def energy_fn(specs):
    """f(params, x [N, S, S, C] in [0, 1]) -> [N] for the layers `specs` [(kernel, stride, channels)]."""
    strides = [int(s) for _, s, _ in specs]

    def energy(params, x):
        h = (x - 0.5) * 2.0
        for (kernel, bias), stride in zip(params["convs"], strides):
            h = lax.conv_general_dilated(h, kernel, (stride, stride), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
            h = jnp.where(h > 0, h, LEAKY_SLOPE * h)
        return (h.reshape(h.shape[0], -1) @ params["dense"]).reshape(-1)
    return energy


def langevin(energy, params, x, steps: int, step_size: float = 0.3):
    """T gradient-ascent Langevin steps with clipping, then the final energies; returns (x, f(x))."""
    drift = 0.5 * step_size ** 2
    input_grad = jax.grad(lambda v: energy(params, v).sum())
    x = lax.fori_loop(0, steps, lambda _, v: jnp.clip(v + drift * input_grad(v), 0.0, 1.0), x)
    return x, energy(params, x)


def jit_chain(specs, steps: int, step_size: float = 0.3):
    """jax.jit of `langevin` for one net: (params, x) -> (x, f(x))."""
    energy = energy_fn(specs)
    return jax.jit(lambda params, x: langevin(energy, params, x, steps, step_size))


def _upsample(x, size: int):
    factor = size // x.shape[1]
    if factor * x.shape[1] == size:
        return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "nearest")


def adam_init(params) -> dict:
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return {"m": zeros, "v": zeros, "t": jnp.zeros([], jnp.float32)}


def make_train_step(specs: dict, steps: int, step_size: float = 0.3, lr: float = 1e-4, beta_1: float = 0.5,
                    beta_2: float = 0.999, epsilon: float = 1e-7):
    """jax.jit of one multi-grid step: (params {grid: p}, opt, obs {grid: [N, g, g, C]}, grid 1
    included) -> (params, opt, {grid: loss})."""
    energies = {g: energy_fn(s) for g, s in specs.items()}
    trained = sorted(specs)

    def step(params, opt, obs):
        x, synth = obs[1], {}
        for g in trained:
            x, _ = langevin(energies[g], params[g], _upsample(x, g), steps, step_size)
            synth[g] = x

        def loss(params):
            losses = {}
            for g in trained:
                n = obs[g].shape[0]
                e = energies[g](params[g], jnp.concatenate([obs[g], synth[g]], 0))
                losses[g] = e[n:].mean() - e[:n].mean()
            return sum(losses.values()), losses

        grads, losses = jax.grad(loss, has_aux=True)(params)
        t = opt["t"] + 1.0
        m = jax.tree_util.tree_map(lambda m, g: beta_1 * m + (1 - beta_1) * g, opt["m"], grads)
        v = jax.tree_util.tree_map(lambda v, g: beta_2 * v + (1 - beta_2) * g * g, opt["v"], grads)
        rate = lr * jnp.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - rate * m / (jnp.sqrt(v) + epsilon), params, m, v)
        return params, {"m": m, "v": v, "t": t}, losses
    return jax.jit(step)


def run(grid: int, channels: int, batch: int, steps: int, grids, specs: dict, repeats: int = 2,
        train: bool = True, seed: int = 0, threads: int = 0, max_repeats: int = 0, max_timed_s: float = 0) -> dict:
    """Time the jitted Langevin chain of the `grid` net and (if train) the jitted multi-grid step;
    a JSON-able dict shaped as `reference_torch.run`'s, plus `compile_s` per part."""
    key = jax.random.PRNGKey(seed)
    params = init_params(key, grid, channels, specs[grid])
    x0 = jax.random.uniform(jax.random.fold_in(key, 1), (batch, grid, grid, channels), jnp.float32)
    forward = common.forward_flops(grid, channels, specs[grid])["total"]
    single = SINGLE_THREAD_FLAGS in os.environ.get("XLA_FLAGS", "")
    out = {"jax": jax.__version__, "compiler": "jax.jit (XLA)", "backend": jax.default_backend(),
           "threads": 1 if single else os.cpu_count(), "threads_requested": threads, "layout": "NHWC",
           "grid": grid, "channels": channels, "batch": batch, "steps": steps}
    chain = jit_chain(specs[grid], steps)
    timing = common.compiled_timing(lambda: jax.block_until_ready(chain(params, x0)), repeats, max_repeats,
                                    max_timed_s)
    flops = common.sampler_call_flops(forward, batch, steps)
    out["langevin"] = {**timing, "image_steps_per_s": batch * steps / timing["best_s"],
                       "images_per_s": batch / timing["best_s"], "gflops": flops / timing["best_s"] / 1e9}
    if train:
        trained = [g for g in grids if g > 1]
        nets = {g: init_params(jax.random.fold_in(key, 10 + g), g, channels, specs[g]) for g in trained}
        full = jax.random.uniform(jax.random.fold_in(key, 3), (batch, grid, grid, channels), jnp.float32)
        obs = {g: full.reshape(batch, g, grid // g, g, grid // g, channels).mean(axis=(2, 4)) for g in grids}
        step = make_train_step({g: specs[g] for g in trained}, steps)
        state = [nets, adam_init(nets)]

        def call():
            state[0], state[1], losses = step(state[0], state[1], obs)
            jax.block_until_ready(losses)

        timing = common.compiled_timing(call, repeats, max_repeats, max_timed_s)
        out["train_step"] = peers.train_step_result(timing, batch, grids, channels, specs, steps)
    return out


def main(argv=None) -> int:
    return peers.worker_main(run, argv, __doc__.split("\n\n", 1)[0])


if __name__ == "__main__":
    sys.exit(main())
