"""The PatchGenCN authors' code (zilongzheng/PatchGenCN, tf.compat.v1) driven from its own modules
on one image and a given scale pyramid; `benchmarks.reference_patchgen` runs this in a child
process (TensorFlow must start in legacy-Keras mode: TF_USE_LEGACY_KERAS=1).

    TF_USE_LEGACY_KERAS=1 python -m benchmarks.reference_patchgen_worker --checkout PATH \\
        --image IMG.png --num-scales 4 --scale-factor 0.75 --steps-per-scale 250 --out OUT.npz

Nothing of the checkout is copied: its `train.py` is imported (from `--checkout`) and its own
`parse_config` gives every setting its default (nets, 60/30 Langevin steps, step size, recovery
weight, Adam), with the schedules scaled to the budget as the reference sets them for 4,000
steps: `--lr_decay_step` 0.8 x steps, `--mcmc_noise_step` 0.25 x steps. Its `build_models`
builds every scale's net and ops for the image at `--scale-factor` (the reference computes the
factor from its own min_size; set here so both codes train the same sizes), `train_single_scale`
trains each scale in turn (its early stop kept: a scale that stops ends the run, as in `train`),
and the samples come from its `multi_scale_sample` up to the finest scale, then the finest
scale's own Langevin op, with the sampling noise it uses (`noise_min`, 0).

Writes OUT.npz: samples float32 [N, H, W, 3] in [0, 1], scales int [L, 2] (h, w), scale_s
float [L] (training seconds per scale), train_s, completed (bool: every scale trained).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", required=True)
    parser.add_argument("--image", required=True, help="a PNG at the training size")
    parser.add_argument("--num-scales", type=int, required=True)
    parser.add_argument("--scale-factor", type=float, required=True)
    parser.add_argument("--steps-per-scale", type=int, required=True)
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise SystemExit("run with TF_USE_LEGACY_KERAS=1 (the reference's tf.compat.v1 layers need legacy Keras)")
    checkout = os.path.abspath(args.checkout)
    if not os.path.isfile(os.path.join(checkout, "train.py")):
        raise SystemExit(f"--checkout {checkout}: no train.py (a checkout of zilongzheng/PatchGenCN?)")
    sys.path.insert(0, checkout)
    from PIL import Image  # pylint: disable=import-outside-toplevel

    import train as ref  # pylint: disable=import-outside-toplevel,import-error

    tf = ref.tf
    steps = args.steps_per_scale
    work = tempfile.mkdtemp(prefix="patchgen_reference_")
    sys.argv = ["train.py", "--datapath", args.image, "--num_scales", str(args.num_scales),
                "--num_epochs", str(steps), "--lr_decay_step", str(max(1, round(0.8 * steps))),
                "--mcmc_noise_step", str(max(1, round(0.25 * steps))), "--outdir", work,
                "--log_step", str(max(steps, 1))]
    opt = ref.parse_config()
    opt.scale_factor = args.scale_factor
    np.random.seed(args.seed)
    tf.set_random_seed(args.seed)
    pil = Image.open(args.image).convert("RGB")
    real = ref.img2arr(pil, pil.size)  # [-1, 1], the training size already
    real_images, nets, train_ops, placeholders = ref.build_models(real, opt)
    scales = [list(r.shape[:2]) for r in real_images]
    scale_s, completed = [], True
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        start = time.perf_counter()
        for k in range(len(real_images)):
            out_dir = os.path.join(work, f"scale_{k}")
            os.makedirs(out_dir, exist_ok=True)
            t = time.perf_counter()
            ok = ref.train_single_scale(sess, k, real_images, nets, placeholders, train_ops, out_dir, opt)
            scale_s.append(time.perf_counter() - t)
            print(f"[reference] scale {k} {scales[k]}: {scale_s[-1]:.0f} s", file=sys.stderr, flush=True)
            if not ok:  # the reference's early stop (recovery error too large): `train` stops here
                completed = False
                break
        train_s = time.perf_counter() - start
        last = len(real_images) - 1
        h, w = scales[last]
        op = train_ops[f"mcmc{w}x{h}"]
        init = placeholders[f"init_syn{w}x{h}"]
        noise = placeholders[f"noise_scale{w}x{h}"]
        pad = opt.pad_size
        samples = []
        for _ in range(args.num_samples):
            x = ref.multi_scale_sample(sess, last, real_images, placeholders, train_ops, "rand", opt)
            x = np.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
            x = sess.run(op, feed_dict={init: x, noise: opt.noise_min, placeholders["is_training"]: False})
            samples.append(x[0, pad:-pad, pad:-pad, :])
    samples = np.clip((np.stack(samples) + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
    np.savez(args.out, samples=samples, scales=np.array(scales), scale_s=np.array(scale_s),
             train_s=train_s, completed=completed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
