"""Plain PyTorch eager reference of the energy nets, the Langevin samplers, the multi-grid step
and the CF-EBM net, chain and train step.

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
- CF-EBM (`--cfebm JSON`, `run_cfebm`): `TorchCFEBMNet`, the layers of
  `trainers.families.cfebm_net.ExpandingEnergyNet` (per stage a from-RGB 1x1 conv and a residual
  block: 3x3 conv, activation, 3x3 conv, 2x2 average pool, plus the average-pooled 1x1 skip;
  spatial sum, linear layer with bias), Swish, spectral norm on every conv through
  `torch.nn.utils.parametrizations.spectral_norm` (power iteration in train mode only, as Keras'
  `SpectralNormalization` with training=True). The smooth MCMC chain: uniform noise at the
  coarsest stage, T noisy Langevin steps per stage (noise eta * delta decaying linearly to 0),
  nearest x2 upsampling + upsample_noise * N(0, 1) between stages, the last stage with its fade
  branch at beta = 1 (as the TF model computes it). Train step at the last stage: the chain in
  eval mode, loss mean f(synth) - mean f(obs) on one forward of the 2N images in train mode, one
  Adam step (lr and beta1 from the spec). NCHW.
- PatchGenCN (`--patchgen JSON`, `run_patchgen`): `TorchPatchEnergyNet`, the layers of
  `trainers.families.patchgen_net.PatchEnergyNet` (u = 2x - 1 padded by len(channels) px with 0,
  valid 3x3 convs with bias, ELU after all but the last, the sum over positions). Plain convs:
  the TF chains call the net with training=False, which runs the spectral-normalised kernels as
  stored (no power iteration), so the same kernels give the same function and the same work.
  The chain of `PatchGenInference.synthesize`: one uniform gray plane per image at the coarsest
  scale repeated over the channels, per scale T_k noisy Langevin steps (`noisy_langevin`:
  coarse_steps at scale 0, steps after), bicubic upsampling clipped to [0, 1] between scales
  (torch's bicubic kernel, a = -0.75, differs slightly from TF's a = -0.5: same work, not the
  same pixels). Weights do not require grad (the TF sampler differentiates the input only).

Run: `python -m benchmarks.reference_torch --grid 64 --channels 3 --batch 64 --steps 4 \
--grids 1,4,16,64 --specs '{"4": [[5,2,96],...], ...}'` prints one JSON document; without
`--specs` the specs are read from `trainers.networks.layer_specs` (imports TensorFlow).
`python -m benchmarks.reference_torch --cfebm '{"sizes": [8, 16, 32, 64], "channels": 3, "width": 64,
...}' --batch 64 --steps 4` times the CF-EBM chain and train step instead (the JSON that
`benchmarks.langevin_cfebm.torch_spec` writes).
`python -m benchmarks.reference_torch --patchgen '{"scales": [[27, 40], ...], "image_channels": 3,
"channels": [64, 32, 32, 32, 1], ...}' --batches 1,8` times the PatchGenCN chain (the JSON that
`benchmarks.patchgen.torch_spec` writes).
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from benchmarks import common, peers


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


def multigrid_step(nets: dict, optimizers: dict, obs: dict, steps: int, step_size: float = 0.3,
                   synth: dict | None = None) -> dict:
    """One training step of all grids; obs: dict grid -> [N, C, S, S] (grid 1 included); synth:
    the chains' samples per grid when drawn already (the torch.compile peer's compiled chains)."""
    if synth is None:
        x, synth = obs[1], {}
        for g in sorted(nets):
            x, _ = langevin(nets[g], F.interpolate(x, size=(g, g), mode="nearest"), steps, step_size)
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


_ACTIVATIONS = {"swish": F.silu, "relu": F.relu, "elu": F.elu, "leaky_relu": lambda h: F.leaky_relu(h, 0.2)}


def _cf_conv(cin: int, cout: int, kernel: int, spectral: bool):
    conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)  # 'same' for odd kernels, stride 1
    return spectral_norm(conv) if spectral else conv


class TorchResidualDown(nn.Module):
    """act(pool(conv3(act(conv3(x)))) + pool(conv1(x))): [N, Cin, H, W] -> [N, width, H/2, W/2]."""

    def __init__(self, cin: int, width: int, activation: str, spectral: bool):
        super().__init__()
        self.act = _ACTIVATIONS[activation]
        self.conv1 = _cf_conv(cin, width, 3, spectral)
        self.conv2 = _cf_conv(width, width, 3, spectral)
        self.skip = _cf_conv(cin, width, 1, spectral)

    def forward(self, x):
        h = F.avg_pool2d(self.conv2(self.act(self.conv1(x))), 2)
        return self.act(h + F.avg_pool2d(self.skip(x), 2))


class TorchCFEBMNet(nn.Module):
    """The CF-EBM expanding energy net (`trainers.families.cfebm_net`): per stage a from-RGB 1x1
    conv and a residual block (all `width` channels), the spatial sum, a linear layer (with
    bias, as Keras' Dense). energy(x [N, C, s_k, s_k] in [0, 1], k, beta) -> [N]."""

    def __init__(self, sizes, channels: int, width: int, activation: str = "swish", spectral: bool = True):
        super().__init__()
        self.sizes, self.act = [int(v) for v in sizes], _ACTIVATIONS[activation]
        self.from_rgb = nn.ModuleList(_cf_conv(channels, width, 1, spectral) for _ in self.sizes)
        self.blocks = nn.ModuleList(TorchResidualDown(width, width, activation, spectral) for _ in self.sizes)
        self.dense = nn.Linear(width, 1)

    def _rgb(self, k: int, x):
        return self.act(self.from_rgb[k]((x - 0.5) * 2.0))

    def energy(self, x, stage: int, beta=None):
        """f at `stage`; beta None = no fade branch, else beta * Primal + (1 - beta) * Fade."""
        if stage == 0:
            h = self._rgb(0, x)
        else:
            h = self.blocks[stage](self._rgb(stage, x))
            if beta is not None:
                h = beta * h + (1.0 - beta) * self._rgb(stage - 1, F.avg_pool2d(x, 2))
        for k in range(stage - 1 if stage else 0, -1, -1):  # the coarser blocks; block 0 is the head
            h = self.blocks[k](h)
        return self.dense(h.sum(dim=(2, 3))).reshape(-1)

    def forward(self, x):
        return self.energy(x, len(self.sizes) - 1)


def noisy_langevin(energy_fn, x, steps: int, step_size: float, noise_scale: float,
                   noise_schedule: str = "linear", step_size_schedule: str = "constant", clip: bool = True):
    """`trainers.langevin.LangevinSampler` with noise on, no reference term: T steps of
    x <- clip(x + delta_i^2 / 2 grad f(x) + eta_i delta_i N(0, I)), then f(x); returns (x, f(x))."""
    deltas = [step_size * ((steps - i) / steps if step_size_schedule == "linear" else 1.0) for i in range(steps)]
    noise = [noise_scale * d * ((steps - 1 - i) / max(steps - 1, 1) if noise_schedule == "linear" else 1.0)
             for i, d in enumerate(deltas)]
    for i in range(steps):
        x = x.detach().requires_grad_(True)
        grad, = torch.autograd.grad(energy_fn(x).sum(), x)
        with torch.no_grad():
            x = x + (0.5 * deltas[i] ** 2) * grad + noise[i] * torch.randn_like(x)
            if clip:
                x = x.clamp_(0.0, 1.0)
    with torch.no_grad():
        return x, energy_fn(x)


def cfebm_chain(net, n: int, spec: dict, steps: int):
    """Smooth MCMC to the last stage (beta = 1 given, so its fade branch is computed as in TF):
    uniform noise at s_0, T steps per stage, nearest x2 upsampling + upsample_noise between."""
    sizes, last = net.sizes, len(net.sizes) - 1
    x = torch.rand(n, spec["channels"], sizes[0], sizes[0])
    for j in range(len(sizes)):
        if j:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = x + spec["upsample_noise"] * torch.randn_like(x)
            x = x.clamp(0.0, 1.0) if spec["clip"] else x
        x, _ = noisy_langevin(lambda v, j=j: net.energy(v, j, 1.0 if j == last else None), x, steps,
                              spec["step_size"], spec["noise_scale"], spec["noise_schedule"],
                              spec["step_size_schedule"], spec["clip"])
    return x


def cfebm_step(net, opt, obs, spec: dict, steps: int) -> float:
    """One CF-EBM training step at the last stage after the fade: the chain (eval mode: spectral
    norm without power iteration, as TF's training=False), the loss mean f(synth) - mean f(obs)
    on one forward of the 2N images (train mode: one power iteration), one Adam step."""
    net.eval()
    synth = cfebm_chain(net, obs.shape[0], spec, steps)
    net.train()
    e = net.energy(torch.cat([obs, synth], 0), len(net.sizes) - 1, 1.0)
    loss = e[obs.shape[0]:].mean() - e[:obs.shape[0]].mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss)


def run_cfebm(spec: dict, batch: int, steps: int, repeats: int = 2, seed: int = 0, threads="auto") -> dict:
    """Time the CF-EBM chain (N = batch, T = steps per stage) and train step; a JSON-able dict.

    spec: {"sizes", "channels", "width", "activation", "spectral", "step_size", "noise_scale",
    "noise_schedule", "step_size_schedule", "clip", "upsample_noise", "learning_rate", "beta_1"}.
    """
    torch.manual_seed(seed)
    sizes, c, w = spec["sizes"], spec["channels"], spec["width"]
    net = TorchCFEBMNet(sizes, c, w, spec["activation"], spec["spectral"]).eval()
    out = {"torch": torch.__version__, "model": "cfebm", "sizes": sizes, "width": w, "channels": c,
           "grid": sizes[-1], "batch": batch, "steps": steps, "spectral_norm": "parametrizations.spectral_norm"}
    _set_threads(threads, lambda: cfebm_chain(net, batch, spec, steps), out)
    timing = common.time_calls(lambda: cfebm_chain(net, batch, spec, steps), repeats, warmup=1)
    flops = common.cfebm_chain_flops(sizes, len(sizes) - 1, c, w, batch, steps)
    out["langevin"] = {**timing, "images_per_s": batch / timing["best_s"],
                       "image_steps_per_s": batch * steps * len(sizes) / timing["best_s"],
                       "gflops": flops / timing["best_s"] / 1e9}
    opt = torch.optim.Adam(net.parameters(), lr=spec["learning_rate"], betas=(spec["beta_1"], 0.999))
    obs = torch.rand(batch, c, sizes[-1], sizes[-1])
    timing = common.time_calls(lambda: cfebm_step(net, opt, obs, spec, steps), repeats, warmup=1)
    flops = common.cfebm_train_step_flops(sizes, len(sizes) - 1, c, w, batch, steps)
    out["train_step"] = {**timing, "images_per_s": batch / timing["best_s"], "gflops": flops / timing["best_s"] / 1e9}
    return out


class TorchPatchEnergyNet(nn.Module):
    """`PatchEnergyNet` of one PatchGenCN scale: f(x [N, C, H, W] in [0, 1]) -> [N]."""

    def __init__(self, image_channels: int, channels, activation: str = "elu"):
        super().__init__()
        channels = [int(c) for c in channels]
        self.pad, self.act = len(channels), _ACTIVATIONS[activation]
        cins = [int(image_channels)] + channels[:-1]
        self.convs = nn.ModuleList(nn.Conv2d(cin, cout, 3) for cin, cout in zip(cins, channels))

    def energy_map(self, x):
        """Per-patch energies [N, 1, H, W]."""
        p = self.pad
        h = F.pad(x * 2.0 - 1.0, (p, p, p, p))
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = self.act(h)
        return h

    def forward(self, x):
        return self.energy_map(x).sum(dim=(1, 2, 3))


def patchgen_chain(nets, n: int, spec: dict):
    """`PatchGenInference.synthesize` at the spec's scales: [n, C, H, W] in [0, 1]."""
    scales, c = spec["scales"], spec["image_channels"]
    x = torch.rand(n, 1, *scales[0]).repeat(1, c, 1, 1)
    for k, (h, w) in enumerate(scales):
        if k:
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False).clamp(0.0, 1.0)
        x, _ = noisy_langevin(nets[k], x, spec["coarse_steps"] if k == 0 else spec["steps"], spec["step_size"],
                              spec["noise_scale"], spec["noise_schedule"], spec["step_size_schedule"],
                              spec["clip"])
    return x


def run_patchgen(spec: dict, batches=(1, 8), repeats: int = 2, seed: int = 0, threads="auto") -> dict:
    """Time the PatchGenCN chain for each batch (repeats at the first, repeats - 1 after); a
    JSON-able dict with {"synthesize": {batch: figures}}.

    spec: {"scales", "image_channels", "channels", "activation", "steps", "coarse_steps",
    "step_size", "noise_scale", "noise_schedule", "step_size_schedule", "clip"}.
    """
    torch.manual_seed(seed)
    nets = [TorchPatchEnergyNet(spec["image_channels"], spec["channels"], spec["activation"]).eval()
            for _ in spec["scales"]]
    for net in nets:
        net.requires_grad_(False)
    out = {"torch": torch.__version__, "model": "patchgen", "scales": spec["scales"],
           "channels": spec["channels"], "steps": spec["steps"], "coarse_steps": spec["coarse_steps"]}
    _set_threads(threads, lambda: patchgen_chain(nets, 1, spec), out)
    flops1 = common.patchgen_chain_flops(spec["scales"], spec["image_channels"], spec["channels"],
                                         spec["steps"], spec["coarse_steps"])
    out["synthesize"] = {}
    for i, n in enumerate(batches):
        timing = common.time_calls(lambda n=n: patchgen_chain(nets, n, spec), repeats if i == 0 else
                                   max(1, repeats - 1), warmup=1)
        best = timing["best_s"]
        out["synthesize"][str(n)] = {"batch": n, **timing, "s_per_image": best / n, "images_per_s": n / best,
                                     "gflops": n * flops1 / best / 1e9}
    return out


def _layout(t, channels_last: bool):
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def _set_threads(threads, probe, out: dict) -> None:
    """Set torch's thread count: "auto" (the faster of 1 and the default for one untimed-warmup
    `probe()` call each), an int, or 0/None (torch's default); records it in out."""
    if threads == "auto":
        # OpenMP threads that busy-wait are slow on an oversubscribed machine: try 1 thread and
        # torch's default, keep the faster for everything below (both figures are reported).
        default, tried = torch.get_num_threads(), {}
        for n in sorted({1, default}):
            torch.set_num_threads(n)
            tried[n] = common.time_calls(probe, 1, warmup=1)["best_s"]
        torch.set_num_threads(min(tried, key=tried.get))
        out["threads_probe_s"] = {str(k): v for k, v in tried.items()}
    elif threads:
        torch.set_num_threads(int(threads))
    out["threads"] = torch.get_num_threads()


def run(grid: int, channels: int, batch: int, steps: int, grids, specs: dict, repeats: int = 2,
        channels_last: bool = False, train: bool = True, seed: int = 0, threads="auto",
        max_repeats: int = 0, max_timed_s: float = 0) -> dict:
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
    _set_threads(threads, lambda: langevin(net, x0, steps), out)
    timing = common.time_calls(lambda: langevin(net, x0, steps), repeats, warmup=1, max_repeats=max_repeats,
                               max_timed_s=max_timed_s)
    flops = common.sampler_call_flops(forward, batch, steps)
    out["langevin"] = {**timing, "image_steps_per_s": batch * steps / timing["best_s"],
                       "images_per_s": batch / timing["best_s"], "gflops": flops / timing["best_s"] / 1e9}
    if train:
        trained = [g for g in grids if g > 1]
        nets = {g: TorchEnergyNet(g, channels, specs[g]).to(memory_format=mem) for g in trained}
        opts = {g: torch.optim.Adam(n.parameters(), lr=1e-4, betas=(0.5, 0.999)) for g, n in nets.items()}
        full = torch.rand(batch, channels, grid, grid)
        obs = {g: _layout(F.adaptive_avg_pool2d(full, g), channels_last) for g in grids}
        timing = common.time_calls(lambda: multigrid_step(nets, opts, obs, steps), repeats, warmup=1,
                                   max_repeats=max_repeats, max_timed_s=max_timed_s)
        out["train_step"] = peers.train_step_result(timing, batch, grids, channels, specs, steps)
    return out


def main(argv=None) -> int:
    parser = peers.worker_parser(__doc__.split("\n\n", 1)[0], threads="auto")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--cfebm", default="", help="JSON spec: time the CF-EBM net instead (see run_cfebm)")
    parser.add_argument("--patchgen", default="",
                        help="JSON spec: time the PatchGenCN chain instead (see run_patchgen)")
    parser.add_argument("--batches", default="1,8", help="--patchgen batch sizes")
    args = parser.parse_args(argv)
    threads = args.threads if args.threads == "auto" else int(args.threads)
    start = time.perf_counter()
    if args.patchgen:
        result = run_patchgen(json.loads(args.patchgen), [int(b) for b in args.batches.split(",") if b],
                              args.repeats, threads=threads)
    elif args.cfebm:
        result = run_cfebm(json.loads(args.cfebm), args.batch, args.steps, args.repeats, threads=threads)
    else:
        specs, grids = peers.worker_specs(parser, args)
        result = run(args.grid, args.channels, args.batch, args.steps, grids, specs, args.repeats,
                     args.channels_last, train=bool(grids), threads=threads, max_repeats=args.max_repeats,
                     max_timed_s=args.max_timed_s)
    result["wall_s"] = time.perf_counter() - start
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
