"""Plain PyTorch eager reference of the energy nets, the Langevin sampler and the multi-grid step.

Benchmark-only (torch is an optional dependency: `requirements/bench-torch-py311.txt`, installed in
the Python 3.11 environment). It mirrors the TF code's work one for one, so images per second can be
compared on the same batch:

- Energy net per grid: the conv layers of `trainers.networks.layer_specs` (passed in as specs),
  TF-style 'same' padding (for a stride-2 5x5 conv: 1 pixel before, 2 after), leaky ReLU 0.2,
  then flatten and a linear layer (no bias, as in Keras) to one scalar; the input is centred as
  (x - 0.5) * 2. NCHW layout (PyTorch's default; `--channels-last` switches the memory format).
- Langevin: T steps of x <- clip(x + (delta^2 / 2) grad f(x), 0, 1) (no noise, no reference term:
  the default sampler), then one more energy evaluation (the TF sampler's `energy_end`).
- Multi-grid train step: for each grid > 1, upsample the previous grid's samples (nearest) and run
  T Langevin steps; loss_S = mean f_S(synth) - mean f_S(obs) on one forward of the 2N images; one
  backward; one Adam step per grid (lr 1e-4, beta1 0.5).

Run: `python -m benchmarks.reference_torch --grid 64 --channels 3 --batch 64 --steps 4 \
--grids 1,4,16,64 --specs '{"4": [[5,2,96],...], ...}'` prints one JSON document; without
`--specs` the specs are read from `trainers.networks.layer_specs` (imports TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import common


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TorchEnergyNet(nn.Module):
    """f(x) for x float32 [N, C, S, S] in [0, 1] -> [N]; same layer shapes as the Keras EnergyNet."""

    def __init__(self, grid_size: int, channels: int, specs, dense_bias: bool = False):
        super().__init__()
        self.pads, convs, size, cin = [], [], grid_size, channels
        for kernel, stride, cout in specs:
            before, after = _same_pad(size, kernel, stride)
            self.pads.append((before, after, before, after))
            convs.append(nn.Conv2d(cin, cout, kernel, stride=stride))
            size, cin = -(-size // stride), cout
        self.convs = nn.ModuleList(convs)
        self.dense = nn.Linear(size * size * cin, 1, bias=dense_bias)

    def forward(self, x):
        h = (x - 0.5) * 2.0
        for pad, conv in zip(self.pads, self.convs):
            h = F.leaky_relu(conv(F.pad(h, pad)), 0.2)
        return self.dense(torch.flatten(h, 1)).reshape(-1)


def langevin(net, x, steps: int, step_size: float = 0.3):
    """T gradient-ascent Langevin steps with clipping, then the final energies; returns (x, f(x))."""
    drift = 0.5 * step_size ** 2
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        grad, = torch.autograd.grad(net(x).sum(), x)
        with torch.no_grad():
            x = (x + drift * grad).clamp_(0.0, 1.0)
    with torch.no_grad():
        return x, net(x)


def multigrid_step(nets: dict, optimizers: dict, obs: dict, steps: int, step_size: float = 0.3) -> dict:
    """One training step of all grids; obs: dict grid -> [N, C, S, S] (grid 1 included)."""
    x, synth = obs[1], {}
    for g in sorted(nets):
        x = F.interpolate(x, size=(g, g), mode="nearest")
        x, _ = langevin(nets[g], x, steps, step_size)
        synth[g] = x
    total, losses = 0.0, {}
    for g, net in nets.items():
        n = obs[g].shape[0]
        e = net(torch.cat([obs[g], synth[g]], 0))
        losses[g] = e[n:].mean() - e[:n].mean()
        total = total + losses[g]
    for opt in optimizers.values():
        opt.zero_grad(set_to_none=True)
    total.backward()
    for opt in optimizers.values():
        opt.step()
    return {g: float(v) for g, v in losses.items()}


def _layout(t, channels_last: bool):
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def run(grid: int, channels: int, batch: int, steps: int, grids, specs: dict, repeats: int = 2,
        channels_last: bool = False, train: bool = True, seed: int = 0, threads="auto") -> dict:
    """Time the Langevin loop of the `grid` net and (if train) the multi-grid step; a JSON-able dict.

    threads: "auto" (the faster of 1 and torch's default, by one Langevin call), an int, or 0/None
    for torch's default.
    """
    torch.manual_seed(seed)
    mem = torch.channels_last if channels_last else torch.contiguous_format
    net = TorchEnergyNet(grid, channels, specs[grid]).to(memory_format=mem)
    x0 = _layout(torch.rand(batch, channels, grid, grid), channels_last)
    forward = common.forward_flops(grid, channels, specs[grid])["total"]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "layout":
           "channels_last" if channels_last else "NCHW", "grid": grid, "channels": channels, "batch": batch,
           "steps": steps}
    if threads == "auto":
        # OpenMP threads that busy-wait are slow on an oversubscribed machine: try 1 thread and
        # torch's default, keep the faster for everything below (both figures are reported).
        default, tried = torch.get_num_threads(), {}
        for n in sorted({1, default}):
            torch.set_num_threads(n)
            tried[n] = common.time_calls(lambda: langevin(net, x0, steps), 1, warmup=1)["best_s"]
        torch.set_num_threads(min(tried, key=tried.get))
        out["threads_probe_s"] = {str(k): v for k, v in tried.items()}
        out["threads"] = torch.get_num_threads()
    elif threads:
        torch.set_num_threads(int(threads))
        out["threads"] = torch.get_num_threads()
    timing = common.time_calls(lambda: langevin(net, x0, steps), repeats, warmup=1)
    flops = batch * (steps * common.langevin_step_flops(forward) + forward)
    out["langevin"] = {**timing, "image_steps_per_s": batch * steps / timing["best_s"],
                       "images_per_s": batch / timing["best_s"], "gflops": flops / timing["best_s"] / 1e9}
    if train:
        trained = [g for g in grids if g > 1]
        nets = {g: TorchEnergyNet(g, channels, specs[g]).to(memory_format=mem) for g in trained}
        opts = {g: torch.optim.Adam(n.parameters(), lr=1e-4, betas=(0.5, 0.999)) for g, n in nets.items()}
        full = torch.rand(batch, channels, grid, grid)
        obs = {g: _layout(F.adaptive_avg_pool2d(full, g), channels_last) for g in grids}
        timing = common.time_calls(lambda: multigrid_step(nets, opts, obs, steps), repeats, warmup=1)
        forwards = {g: common.forward_flops(g, channels, specs[g])["total"] for g in trained}
        flops = common.train_step_flops(forwards, batch, steps)
        out["train_step"] = {**timing, "images_per_s": batch / timing["best_s"], "grids": list(grids),
                             "gflops": flops / timing["best_s"] / 1e9}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--grid", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--grids", default="", help="comma list for the train step, e.g. 1,4,16,64 ('' = none)")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--specs", default="", help="JSON {grid: [[kernel, stride, channels], ...]}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", default="auto",
                        help="torch threads: auto (faster of 1 and the default), 0 = default, or a count")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    grids = [int(g) for g in args.grids.split(",")] if args.grids else []
    if args.specs:
        specs = {int(k): [tuple(v) for v in layers] for k, layers in json.loads(args.specs).items()}
    else:
        from trainers.networks import layer_specs  # pylint: disable=import-outside-toplevel
        specs = {g: layer_specs(g, args.width) for g in set(grids + [args.grid]) if g > 1}
    missing = [g for g in set(grids + [args.grid]) if g > 1 and g not in specs]
    if missing:
        parser.error(f"--specs lacks grids {missing}")
    start = time.perf_counter()
    result = run(args.grid, args.channels, args.batch, args.steps, grids, specs, args.repeats,
                 args.channels_last, train=bool(grids),
                 threads=args.threads if args.threads == "auto" else int(args.threads))
    result["wall_s"] = time.perf_counter() - start
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
