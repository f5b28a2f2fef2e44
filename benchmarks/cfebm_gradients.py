"""How far one Langevin step moves a pixel at each CF-EBM stage, at initialisation: this project's
energy net (`model.residual` scaled and plain) beside the authors' (ProEBM's `module.networks.EBM`,
imported from `--reference-checkout` by a torch Python).

`python -m benchmarks.cfebm_gradients --reference-checkout PATH` prints JSON: per net and stage
(8, 16, 32 px), over `--seeds` initialisations, the mean L2 norm of grad f(x) per image on
uniform-noise images x (the chains' start) and the mean absolute pixel move of one step,
drift * |df/dx| (ours: delta^2 / 2 with `--step-size`, 0.7 in the presets; theirs: their
`langevin_lr`, 1.0 in run_mnist.sh, on the same [0, 1] pixels). The spectral norms' power
iterations are settled first (20 training-mode passes), as after a few training steps.

Seconds of CPU; no training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STAGES = (8, 16, 32)
_THEIRS = """
import json, sys, torch
sys.path.insert(0, {checkout!r})
from module import networks
out = []
for seed in {seeds!r}:
    torch.manual_seed(seed)
    net = networks.EBM(base_channel={base}, spectral=True, res=True, projection=False, activation_fn='swish')
    net.train()
    for _ in range(20):
        for step, s in ((1, 8), (2, 16), (3, 32)):
            net(torch.rand(8, 1, s, s), step=step, alpha=1)
    net.eval()
    row = []
    for step, s in ((1, 8), (2, 16), (3, 32)):
        x = torch.rand({batch}, 1, s, s, requires_grad=True)
        g = torch.autograd.grad(net(x, step=step, alpha=1).sum(), [x])[0]
        row.append([g.view({batch}, -1).norm(dim=1).mean().item(), g.abs().mean().item()])
    out.append(row)
print(json.dumps(out))
"""


def ours(residual: str, seeds, width: int, batch: int) -> list:
    """[[per stage: [grad norm, mean |df/dx|]] per seed] of this project's net."""
    import keras  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from trainers.families.cfebm_net import ExpandingEnergyNet  # pylint: disable=import-outside-toplevel
    out = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        net = ExpandingEnergyNet(STAGES, 1, width=width, residual=residual)
        net.build_all()
        for _ in range(20):
            for k, s in enumerate(STAGES):
                net.energy(tf.random.uniform([8, s, s, 1]), k, training=True)
        row = []
        for k, s in enumerate(STAGES):
            x = tf.random.uniform([batch, s, s, 1])
            with tf.GradientTape() as tape:
                tape.watch(x)
                e = net.energy(x, k)
            g = tape.gradient(e, x)
            row.append([float(tf.reduce_mean(tf.norm(tf.reshape(g, [batch, -1]), axis=1))),
                        float(tf.reduce_mean(tf.abs(g)))])
        out.append(row)
    return out


def summarize(rows: list, drift: float) -> dict:
    """{stage: {grad_norm, pixel_move_per_step: {mean, values}}} over seeds."""
    out = {}
    for k, s in enumerate(STAGES):
        norms = [r[k][0] for r in rows]
        moves = [drift * r[k][1] for r in rows]
        out[str(s)] = {"grad_norm": {"mean": statistics.fmean(norms), "values": norms},
                       "pixel_move_per_step": {"mean": statistics.fmean(moves), "values": moves}}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--reference-checkout", default="", help="a checkout of YangNaruto/ProEBM ('' = ours only)")
    parser.add_argument("--torch-python", default=None, help="Python with torch (default: .venv-latest's)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--width", type=int, default=64, help="ours: channels (fashion-mnist-cfebm: 64)")
    parser.add_argument("--base-channel", type=int, default=16, help="theirs: --base_channel (64 channels)")
    parser.add_argument("--step-size", type=float, default=0.7, help="ours: delta (drift delta^2 / 2)")
    parser.add_argument("--langevin-lr", type=float, default=1.0, help="theirs: drift")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    drift = args.step_size ** 2 / 2
    doc = {"stages": list(STAGES), "seeds": seeds, "ours_drift": drift, "theirs_drift": args.langevin_lr,
           "nets": {f"ours ({r})": summarize(ours(r, seeds, args.width, args.batch), drift)
                    for r in ("scaled", "plain")}}
    if args.reference_checkout:
        import os  # pylint: disable=import-outside-toplevel
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        python = args.torch_python or os.path.join(root, ".venv-latest", "bin", "python")
        code = _THEIRS.format(checkout=os.path.abspath(args.reference_checkout), seeds=seeds,
                              base=args.base_channel, batch=args.batch)
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode:
            raise SystemExit(f"the authors' net failed in {python}: {proc.stderr.strip().splitlines()[-1:]}")
        doc["nets"]["theirs (ProEBM)"] = summarize(json.loads(proc.stdout.strip().splitlines()[-1]),
                                                   args.langevin_lr)
    for name, by_stage in doc["nets"].items():
        cells = "  ".join(f"{s} px: |grad| {v['grad_norm']['mean']:.3g}, move {v['pixel_move_per_step']['mean']:.3g}"
                          for s, v in by_stage.items())
        print(f"{name:18s} {cells}", file=sys.stderr)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
