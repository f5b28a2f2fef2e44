"""Worker of `benchmarks.reference_cfebm`: trains the CF-EBM authors' own code (YangNaruto/ProEBM,
PyTorch) on the project's images and writes its samples.

Run by a Python that has torch (`--torch-python`, e.g. `.venv-latest`); imports no TensorFlow.
The authors' modules are imported from `--checkout` (never copied): `train_v0.ProgressiveEBM`
(their trainer: its `train` loop, its `langevin_sampler`, its Adam) with `module.networks.EBM`
(their expanding energy net). Their settings are those of the checkout's `run_mnist.sh` (the
grayscale run: `--sched --spectral --res --pro --from_beginning --activation_fn swish
--base_sigma 0.03 --init_size 8 --max_size 32 --initial uniform --noise_ratio 1.0
--base_channel 16 --langevin_lr 1 --val_clip 1.0`, pixels in [0, 1]), with what the comparison
equalises set from the command line:

- batch: one `--batch` at every resolution (their `--sched` uses 256 / 128 / 64);
- images per stage: their stage r lasts 2 * phases[r] images (fade over the first phases[r],
  then alpha = 1); phases = {8: S / 2, 16: P, 32: P} gives S images at 8 px, then fades and
  stabilisations of P images each (this project's `train.stable_images = S`,
  `train.fade_images = P`; their code ties the fade to the stabilisation, so P = S here);
- `--langevin-steps` per stage (their run_mnist.sh: 50);
- the budget: `--updates` (their `iterations`) or `--minutes` of wall-clock, whichever ends first.

What the worker changes in their trainer, by subclassing (their code is untouched):
`sample_data` feeds the given images (the project's box-average pyramid of the same 32 px
training images, shuffled each epoch with the seed) instead of downloading MNIST and resizing
it with PIL, and stops the run at the budget by raising from the loader (their loop catches
only StopIteration and OSError); `langevin_sampler` is wrapped to record the stage and fade
weight of the last training chain. After training, `--num-samples` samples come from their own
sampler exactly as their training chains do (uniform noise at 8 px, then every stage up to the
one reached, `from_beginning`), clipped to [0, 1] and written as uint8 [N, 32, 32, 1].

torchvision: their modules import it. Its PyPI wheel for Linux is a CUDA build whose C ops do
not load with the CPU torch wheel; torchvision 0.28 then fails at import on two unguarded
`register_fake` calls (`torchvision::nms`, `::qnms`). When the C ops are missing, the worker
defines the schemas of those two ops (nothing here calls them), so the pure-Python parts their
code uses (transforms, `utils.save_image`) import. Install: `pip install --no-deps
torchvision==0.28.0 lmdb` into the torch environment (see docs).

Output: `--out` (npz: `samples` uint8 [N, 32, 32, 1]) and one JSON document on stdout: updates,
images seen, stage and alpha reached, wall seconds, energies logged, thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np


class BudgetReached(Exception):
    """Raised by the data loader when the update or time budget is spent (ends their loop)."""


def load_torchvision():
    """Import torchvision, defining the two op schemas its CUDA wheel needs when its C ops are
    missing (see the module docstring)."""
    import importlib.util

    import torch
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        raise SystemExit("torchvision is not installed in this Python (the authors' modules import "
                         "it): pip install --no-deps torchvision==0.28.0 lmdb")
    so = [f for f in os.listdir(os.path.dirname(spec.origin)) if f.startswith("_C")]
    try:
        if so:
            torch.ops.load_library(os.path.join(os.path.dirname(spec.origin), so[0]))
    except OSError:
        lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 -- kept alive below
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        load_torchvision.lib = lib
    import torchvision  # noqa: F401


def their_args(a) -> SimpleNamespace:
    """Their argparse namespace: run_mnist.sh's flags, their parser's defaults for the rest,
    their `--sched` learning rates, and the equalised batch, phases and steps."""
    stable, fade = int(a.stable_images), int(a.fade_images)
    lr = 0.0005 + 10e-4  # their --sched: {res: 0.0005 + 10e-4}
    return SimpleNamespace(
        dataset="mnist", data_root="", phase=fade, device="cpu", mode="train", sched=True,
        init_size=8, max_size=32, val_clip=1.0, noise_ratio=1.0, base_sigma=0.03,
        conditional=False, res=True, projection=False, from_beginning=True, soft=False,
        split_bn=False, ema=False, initial="uniform", langevin_step=int(a.langevin_steps),
        momentum=0.9, ema_start=0, langevin_lr=1.0, l2_coefficient=0.0,
        iterations=int(a.updates) if a.updates else 10 ** 9, pro=True, spectral=True, bn=False,
        attention=False, activation_fn="swish", cyclic=False, amsgrad=False, name_suffix="run",
        load=False, eval_step=50, run_dir="", stats_path="", truncation=1.0, ckpt=None,
        base_channel=int(a.base_channel), from_rgb_activate=False, save_path="results",
        lr={8: lr, 16: lr, 32: lr}, batch={}, batch_default=int(a.batch), lr_default=5e-4,
        phases={8: stable / 2, 16: fade, 32: fade})


def make_trainer_class(train_v0, images: np.ndarray, batch: int, seed: int, updates: int,
                       deadline: float):
    """Their ProgressiveEBM with the data feed and the budget of the module docstring."""
    import torch

    pyramid = {s: torch.from_numpy(_box(images, s)) for s in (8, 16, 32)}  # [N, 1, s, s]

    class Loader:
        """Batches of (images [B, 1, s, s] in [0, 1], labels [B]) of the given images."""

        def __init__(self, size):
            self.size, self.epoch = size, 0

        def __iter__(self):
            rng = np.random.default_rng([seed, self.size, self.epoch])
            self.epoch += 1
            order = rng.permutation(len(images))
            for start in range(0, len(order) - batch + 1, batch):
                if trainer.updates >= updates or time.monotonic() >= deadline:
                    raise BudgetReached
                trainer.updates += 1
                rows = torch.from_numpy(order[start:start + batch])
                yield pyramid[self.size][rows].clone(), torch.zeros(batch, dtype=torch.long)

    class Trainer(train_v0.ProgressiveEBM):
        updates = 0
        last = None

        def sample_data(self, dataset, batch_size, image_size=4):
            return Loader(image_size)

        def langevin_sampler(self, x_k, sampler_step, step, alpha, *args, **kwargs):
            Trainer.last = (int(step), float(alpha))
            return super().langevin_sampler(x_k, sampler_step, step, alpha, *args, **kwargs)

    trainer = Trainer  # the Loader counts updates on the class
    return Trainer


def _box(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 1] -> float32 [N, 1, size, size] box averages in [0, 1]."""
    x = images.astype(np.float32) / 255.0
    n, h, w, _ = x.shape
    f = h // size
    x = x.reshape(n, size, f, size, f).mean(axis=(2, 4))
    return np.ascontiguousarray(x[:, None])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--checkout", required=True, help="a checkout of YangNaruto/ProEBM")
    parser.add_argument("--images", required=True, help="npz with train: uint8 [N, 32, 32, 1]")
    parser.add_argument("--out", required=True, help="npz written with samples uint8 [N, 32, 32, 1]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--stable-images", type=int, required=True)
    parser.add_argument("--fade-images", type=int, required=True)
    parser.add_argument("--langevin-steps", type=int, default=15)
    parser.add_argument("--base-channel", type=int, default=16, help="their --base_channel (run_mnist.sh: 16)")
    parser.add_argument("--updates", type=int, default=0, help="parameter updates (0 = no limit)")
    parser.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget (0 = no limit)")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    a = parser.parse_args(argv)
    if a.fade_images != a.stable_images:
        parser.error("their code fades over as many images as it stabilises: --fade-images must "
                     "equal --stable-images")
    if not (a.updates or a.minutes):
        parser.error("give --updates or --minutes")
    checkout = os.path.abspath(a.checkout)
    if not os.path.exists(os.path.join(checkout, "train_v0.py")):
        raise SystemExit(f"--checkout {checkout} has no train_v0.py: pass a checkout of YangNaruto/ProEBM")
    import torch
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    load_torchvision()
    sys.path[:0] = [checkout, os.path.join(checkout, "utils", "score")]
    import train_v0  # their trainer (module level: imports only)

    images = np.load(a.images)["train"]
    args = their_args(a)
    train_v0.args = args  # their methods read the module-level `args` of their __main__
    start = time.monotonic()
    deadline = start + a.minutes * 60 if a.minutes else math.inf
    trainer_class = make_trainer_class(train_v0, images, a.batch, a.seed,
                                       a.updates or 10 ** 9, deadline)
    trainer = trainer_class(args)
    stopped = "iterations"
    with tempfile.TemporaryDirectory() as run_dir:
        args.run_dir = run_dir
        log = os.path.join(run_dir, "log.txt")
        stdout = sys.stdout
        with open(log, "w") as handle:
            sys.stdout = handle  # their prints (per 100 iterations) go to the log, not our JSON
            try:
                trainer.train(args, None, run_dir)
            except BudgetReached:
                stopped = "budget"
            finally:
                sys.stdout = stdout
        train_s = time.monotonic() - start
        with open(log) as handle:
            their_log = [line.strip() for line in handle if line.startswith("Itr")]
    step, alpha = trainer_class.last
    samples = []
    with torch.enable_grad():
        for begin in range(0, a.num_samples, 100):
            n = min(100, a.num_samples - begin)
            x0 = trainer.sample_p_0(bs=n, im_sz=8, initial=args.initial)
            x = trainer.langevin_sampler(x_k=x0, sampler_step=args.langevin_step, step=step,
                                         alpha=alpha, from_beginning=True, soft=False)
            samples.append(x.detach().clamp(0, 1).permute(0, 2, 3, 1).numpy())
    samples = np.concatenate(samples)
    if samples.shape[1] != 32:
        samples = np.repeat(np.repeat(samples, 32 // samples.shape[1], 1), 32 // samples.shape[2], 2)
    np.savez_compressed(a.out, samples=np.round(samples * 255).astype(np.uint8))
    print(json.dumps({"updates": trainer_class.updates, "images_seen": trainer_class.updates * a.batch,
                      "stage_size": 4 * 2 ** step, "alpha": alpha, "stopped_by": stopped,
                      "train_s": train_s, "sample_s": time.monotonic() - start - train_s,
                      "threads": torch.get_num_threads(), "torch": torch.__version__,
                      "log": their_log, "final_stage_reached": step == 3 and alpha >= 1.0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
