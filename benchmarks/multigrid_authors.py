"""Train and sample the multi-grid authors' TF1 code (ruiqigao/Multigrid_learning) from a checkout.

A worker of `benchmarks.reference_multigrid`, run in its own process (it switches TensorFlow to
graph mode for good). It imports the checkout's own `model.py`, `ops.py` and `utils.py`; nothing
of them is copied into this project. What it changes, all at load time and listed here:

- `tensorflow` as those modules see it is `tf.compat.v1` (with `disable_v2_behavior()`), plus a
  `contrib.layers` holding the two helpers TF 2 removed, as TF 1 defined them:
  `l2_regularizer(scale)` = scale * tf.nn.l2_loss(w) and `xavier_initializer(uniform)` = Glorot.
  `tf.compat.v1.layers` needs `TF_USE_LEGACY_KERAS=1` (set before TensorFlow loads).
- Python 2: `xrange` is `range`; `sklearn.externals.joblib` is `joblib`; the two divisions
  `from_size / to_size` and `to_size / from_size` of `build_Q` / `build_Q_inv` are `//`.
- The images are handed over as an array (its `train` reads them from `./data`); it runs in a
  temporary working folder, where it writes its logs, checkpoints and sample sheets.

Its training loop is called as it is: for each batch, the 1x1 average is upsampled to each grid
in turn and moved by `sampling_op` (T gradient steps of size delta^2/2 on [0, 255] pixels, BatchNorm
in training mode, no noise), and that grid's net is updated right after its chain. Samples are
drawn the same way from the 1x1 averages of given images, in batches of `batch_size` (BatchNorm
uses the batch's statistics).

`python -m benchmarks.multigrid_authors --reference-checkout DIR --data train.npz --starts eval.npz
--updates 100 --output samples.npz [--T 90 --delta 0.3 --learning-rate 0.3 --batch-size 100]`
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import tempfile
import time
import types

import numpy as np

_DIVISIONS = (("filter_size = from_size / to_size", "filter_size = from_size // to_size"),
              ("filter_size = to_size / from_size", "filter_size = to_size // from_size"))


def _tf_v1():
    """`tf.compat.v1` in graph mode, with the two `tf.contrib.layers` helpers the code uses."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    v1 = tf.compat.v1
    v1.disable_v2_behavior()
    shim = types.ModuleType("tensorflow_v1_for_reference")
    shim.__dict__.update({k: getattr(v1, k) for k in dir(v1) if not k.startswith("__")})
    layers = types.SimpleNamespace(
        l2_regularizer=lambda scale: (lambda w: scale * v1.nn.l2_loss(w)),
        xavier_initializer=lambda uniform=True: (v1.glorot_uniform_initializer() if uniform
                                                 else v1.glorot_normal_initializer()))
    shim.contrib = types.SimpleNamespace(layers=layers)
    return shim


def load_reference(checkout: str):
    """The checkout's `Multigrid` class, its modules loaded with the shims of the module docstring."""
    model_py = os.path.join(checkout, "model.py")
    if not os.path.isfile(model_py):
        raise ValueError(f"--reference-checkout {checkout}: no model.py there; give a checkout of "
                         "github.com/ruiqigao/Multigrid_learning")
    tf_shim = _tf_v1()
    import joblib  # pylint: disable=import-outside-toplevel

    builtins.xrange = range
    externals = types.ModuleType("sklearn.externals")
    externals.joblib = joblib
    sys.modules.setdefault("sklearn.externals", externals)
    sys.modules.setdefault("sklearn.externals.joblib", joblib)
    real_tf = sys.modules.get("tensorflow")
    sys.modules["tensorflow"] = tf_shim
    try:
        for name in ("ops", "utils"):
            spec = importlib.util.spec_from_file_location(name, os.path.join(checkout, f"{name}.py"))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        source = open(model_py, encoding="utf-8").read()
        for old, new in _DIVISIONS:
            if old not in source:
                raise ValueError(f"{model_py}: expected the line {old!r} (the Python 2 division this benchmark "
                                 "patches); is this the reference commit?")
            source = source.replace(old, new)
        module = types.ModuleType("model")
        module.__file__ = model_py
        sys.modules["model"] = module
        exec(compile(source, model_py, "exec"), module.__dict__)  # pylint: disable=exec-used
    finally:
        sys.modules["tensorflow"] = real_tf
    return module.Multigrid, tf_shim


class _Tee(io.StringIO):
    """Keeps what is written (the authors' progress lines) and passes it on to `stream`."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def write(self, text):
        self.stream.write(text)
        self.stream.flush()
        return super().write(text)


def _flags(args, workdir: str):
    for name in ("sample", "checkpoint"):  # its main() makes them, relative to the working folder
        os.makedirs(os.path.join(workdir, name), exist_ok=True)
    return types.SimpleNamespace(
        prefetch=True, dataset_name="__none__", input_pattern="*.png", sample_dir="sample",
        checkpoint_dir="checkpoint", T=args.T, batch_size=args.batch_size,
        epoch=args.epochs, image_size=args.image_size, num_threads=1, num_gpus=1, read_len=100,
        delta=args.delta, learning_rate=args.learning_rate, beta1=args.beta1, weight_decay=1e-4,
        ref_sig=50.0, clip_grad=1.0)


def sample(model, starts_255, batch_size: int) -> np.ndarray:
    """The authors' chain from the 1x1 averages of `starts_255` ([N, S, S, 3] in [0, 255]).

    Returns float32 [N, S, S, 3] in [0, 255] (the finest grid's samples).
    """
    scales = model.scale_list
    finest = scales[-1]
    out = []
    for i in range(0, len(starts_255), batch_size):
        batch = starts_255[i:i + batch_size]
        x = model.sess.run(model.images[scales[0]], feed_dict={model.images[finest]: batch})
        prev = scales[0]
        for size in scales[1:]:
            x = model.sess.run(model.images_inv[size], feed_dict={model.images_inv[prev]: x})
            x = model.sess.run(model.sampling_op[size], feed_dict={model.synthesized_images[size]: x,
                                                                   model.phase: True})
            prev = size
        out.append(np.asarray(x, np.float32))
    return np.concatenate(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--reference-checkout", required=True)
    parser.add_argument("--data", required=True, help="npz with images: uint8 [N, S, S, 1 or 3] (training)")
    parser.add_argument("--starts", required=True, help="npz with images: uint8 [M, S, S, C] whose 1x1 averages "
                        "start the sampling chains")
    parser.add_argument("--output", required=True, help="npz to write: samples uint8 [M, S, S, 3] and timings")
    parser.add_argument("--grids", default="1,4,16", help="the authors' scale_list (nets exist for 4, 16, 64)")
    parser.add_argument("--updates", type=int, required=True, help="parameter updates (batches) to train")
    parser.add_argument("--T", type=int, default=90)
    parser.add_argument("--delta", type=float, default=0.3)
    parser.add_argument("--learning-rate", type=float, default=0.3)
    parser.add_argument("--beta1", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = TensorFlow's choice)")
    args = parser.parse_args(argv)
    grids = [int(g) for g in args.grids.split(",")]
    Multigrid, tf = load_reference(args.reference_checkout)
    data = np.load(args.data)["images"]
    starts = np.load(args.starts)["images"]
    if data.shape[1] != grids[-1] or starts.shape[1] != grids[-1]:
        raise ValueError(f"--data {data.shape} and --starts {starts.shape} must be {grids[-1]} px (--grids {grids})")
    to_rgb = (lambda a: np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a)
    data, starts = to_rgb(data).astype(np.float32), to_rgb(starts).astype(np.float32)
    # One epoch of exactly `updates` full batches: the data repeated in order (the authors' loop
    # does not shuffle) until it fills them.
    need = args.updates * args.batch_size
    data = data[np.arange(need) % len(data)]
    args.epochs = 1
    args.image_size = grids[-1]
    tf.set_random_seed(args.seed)
    np.random.seed(args.seed)
    config = tf.ConfigProto()
    if args.threads:
        config.intra_op_parallelism_threads = args.threads
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="multigrid-authors-") as workdir:
        os.chdir(workdir)
        try:
            sess = tf.Session(config=config)
            model = Multigrid(sess, _flags(args, workdir), scale_list=grids)
            model.data = list(data)
            start = time.perf_counter()
            log = _Tee(sys.stderr)
            with contextlib.redirect_stdout(log):
                model.train(_flags(args, workdir))
            train_s = time.perf_counter() - start
            start = time.perf_counter()
            samples = sample(model, starts, args.batch_size)
            sample_s = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    finite = np.isfinite(samples).all()
    out = np.clip(np.nan_to_num(samples), 0, 255).round().astype(np.uint8)
    # Its log prints the seconds since the start of training after each grid's update: the time
    # per update after the first (which pays TensorFlow's graph optimisation) is the steady rate.
    stamps = [float(t) for t in re.findall(r"time: *([0-9.]+)", log.getvalue())][len(grids) - 2::len(grids) - 1]
    steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1) if len(stamps) > 1 else None
    info = {"updates": args.updates, "train_s": train_s, "sample_s": sample_s, "s_per_update": train_s / args.updates,
            "s_per_update_after_first": steady, "finite": bool(finite), "num_samples": int(len(out))}
    np.savez_compressed(args.output, samples=out, info=json.dumps(info))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
