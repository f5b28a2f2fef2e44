"""`torch.compile` (inductor, CPU) peer of the multi-grid figures: the nets of
`benchmarks.reference_torch` (`TorchEnergyNet`, the same layers as the Keras energy net) and the
same Langevin loop and multi-grid train step, compiled.

Benchmark-only (torch is optional: `requirements/bench-torch-py311.txt`, installed in
`.venv-latest`); `benchmarks.langevin` runs it in a subprocess (`benchmarks.peers`).

- Langevin: the whole chain as one compiled function (`torch.compile(..., dynamic=False)`, T
  unrolled): per step the input gradient `torch.func.grad` of the summed energy through
  `torch.func.functional_call` with the net's parameters detached (the TF sampler differentiates
  the input only; a compiled module whose weights require grad would compute their gradients
  too), x <- clip(x + (delta^2 / 2) grad f(x), 0, 1); then f(x) (the sampler's `energy_end`).
- Multi-grid train step: per grid > 1 nearest upsampling of the previous grid's samples (eager)
  and that grid's compiled chain; the update as `reference_torch.multigrid_step` with each net
  compiled (`torch.compile(module)`: AOTAutograd compiles its forward and backward): loss_S =
  mean f_S(synth) - mean f_S(obs) on one forward of the 2N images, one backward, Adam (eager,
  lr 1e-4, beta1 0.5).
- Compile time: the first call (trace + inductor codegen + C++ build + one run) is reported as
  `compile_s` and left out of the timing; then one warm-up call and the best of the repeats.
- Threads: set before compiling, since inductor bakes the OpenMP thread count into its kernels
  (`--threads N`; 0 = torch's default).

Run: `python -m benchmarks.reference_torch_compile --grid 64 --channels 3 --batch 64 --steps 4
--grids 1,4,16,64 --specs '{"4": [[5,2,96],...], ...}' --threads 1` prints one JSON document
(command line: `benchmarks.peers.worker_args`).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad

from benchmarks import common, peers
from benchmarks.reference_torch import TorchEnergyNet, multigrid_step

MODE = "default"


def compiled_chain(net, steps: int, step_size: float = 0.3, mode: str = MODE):
    """x [N, C, S, S] in [0, 1] -> (x after T Langevin steps, f(x)): one compiled function of the
    net's current parameters (detached views: later in-place optimizer updates are seen)."""
    drift = 0.5 * step_size ** 2
    params = {k: v.detach() for k, v in net.named_parameters()}

    def energy_sum(x, params):
        return functional_call(net, params, (x,)).sum()

    def chain(x, params):
        for _ in range(steps):
            x = (x + drift * grad(energy_sum)(x, params)).clamp(0.0, 1.0)
        return x, functional_call(net, params, (x,))

    fn = torch.compile(chain, dynamic=False, mode=mode)
    return lambda x: fn(x, params)


def compiled_step(nets: dict, optimizers: dict, steps: int, step_size: float = 0.3, mode: str = MODE):
    """The multi-grid train step with compiled chains and compiled nets: obs {grid: [N, C, g, g]}
    (grid 1 included) -> {grid: loss}."""
    chains = {g: compiled_chain(net, steps, step_size, mode) for g, net in nets.items()}
    compiled = {g: torch.compile(net, dynamic=False, mode=mode) for g, net in nets.items()}

    def step(obs):
        x, synth = obs[1], {}
        for g in sorted(nets):
            x, _ = chains[g](F.interpolate(x, size=(g, g), mode="nearest"))
            synth[g] = x
        return multigrid_step(compiled, optimizers, obs, steps, step_size, synth=synth)
    return step


def run(grid: int, channels: int, batch: int, steps: int, grids, specs: dict, repeats: int = 2,
        train: bool = True, seed: int = 0, threads: int = 0, mode: str = MODE,
        max_repeats: int = 0, max_timed_s: float = 0) -> dict:
    """Time the compiled Langevin chain of the `grid` net and (if train) the compiled multi-grid
    step; a JSON-able dict shaped as `reference_torch.run`'s, plus `compile_s` per part."""
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    net = TorchEnergyNet(grid, channels, specs[grid])
    x0 = torch.rand(batch, channels, grid, grid)
    forward = common.forward_flops(grid, channels, specs[grid])["total"]
    out = {"torch": torch.__version__, "compiler": "torch.compile (inductor)", "mode": mode,
           "threads": torch.get_num_threads(), "layout": "NCHW", "grid": grid, "channels": channels,
           "batch": batch, "steps": steps}
    chain = compiled_chain(net, steps, mode=mode)
    timing = common.compiled_timing(lambda: chain(x0), repeats, max_repeats, max_timed_s)
    flops = common.sampler_call_flops(forward, batch, steps)
    out["langevin"] = {**timing, "image_steps_per_s": batch * steps / timing["best_s"],
                       "images_per_s": batch / timing["best_s"], "gflops": flops / timing["best_s"] / 1e9}
    if train:
        trained = [g for g in grids if g > 1]
        nets = {g: TorchEnergyNet(g, channels, specs[g]) for g in trained}
        opts = {g: torch.optim.Adam(n.parameters(), lr=1e-4, betas=(0.5, 0.999)) for g, n in nets.items()}
        full = torch.rand(batch, channels, grid, grid)
        obs = {g: F.adaptive_avg_pool2d(full, g) for g in grids}
        step = compiled_step(nets, opts, steps, mode=mode)
        timing = common.compiled_timing(lambda: step(obs), repeats, max_repeats, max_timed_s)
        out["train_step"] = peers.train_step_result(timing, batch, grids, channels, specs, steps)
    return out


def main(argv=None) -> int:
    return peers.worker_main(run, argv, __doc__.split("\n\n", 1)[0])


if __name__ == "__main__":
    sys.exit(main())
