"""The paper's comparison on real data: multigrid vs single_grid, CD-1 and persistent CD.

`python -m benchmarks.quality --minutes 5` on Fashion-MNIST at 32x32 (Debian's
dataset-fashion-mnist):

1. ingest (`components.ingest.run_ingest`, first `--limit` training images) and pyramid
   (`components.pyramid_beam.run_pyramid`, grids 1/4/16/32), once;
2. a domain classifier on the train split (`evaluators.domain_classifier.train_classifier`);
3. per family: `trainers.train.train` with the `fashion-mnist-multigrid` preset and the SAME
   overrides (networks, sampler, batch, learning rate, seed) except `model.family`, and the SAME
   wall-clock budget `train.max_minutes`; then the exported SavedModel's `sample` signature
   (`evaluators.model_client.ExportedModel`) draws `--num-samples` images, compared with as many
   held-out eval-split images by `evaluators.fid.compare_image_sets` in the `domain` and
   `efficientnet_lite0` spaces (FID, KID, precision, recall), and an 8x8 grid of samples is
   written to `--docs/quality_<family>.png`;
4. a floor: the same metrics between train-split and eval-split real images.

Results are appended to WORKDIR/quality.json after every family (partial runs keep their
results) and printed as one JSON document with a table on stderr. Lower FID/KID is better.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from benchmarks import common

FAMILIES = ("multigrid", "single_grid", "cd1", "pcd")
SPACES = ("domain", "efficientnet_lite0")


def overrides(args, family: str) -> list[str]:
    """The preset overrides of one family (identical for every family but model.family)."""
    return [f"model.family={family}", f"model.width={args.width}", f"sampler.steps={args.steps}",
            f"train.batch_size={args.batch}", f"train.max_minutes={args.minutes}", "train.epochs=1000",
            f"train.seed={args.seed}", f"train.learning_rate={args.lr}", "train.checkpoint_every=100000",
            "train.log_every=50", "train.image_log_every=100000", f"data.limit={args.limit}"]


def tile(images: np.ndarray, rows: int = 8, scale: int = 2) -> np.ndarray:
    """uint8 [N,S,S,C] -> one uint8 [rows*S', cols*S', C] picture (1-px gaps), magnified."""
    n, s, _, c = images.shape
    cols = max(1, min(rows, n))
    rows = min(rows, -(-n // cols))
    out = np.full((rows * (s + 1) + 1, cols * (s + 1) + 1, c), 255, np.uint8)
    for i in range(min(n, rows * cols)):
        r, q = divmod(i, cols)
        out[1 + r * (s + 1):1 + r * (s + 1) + s, 1 + q * (s + 1):1 + q * (s + 1) + s] = images[i]
    return np.repeat(np.repeat(out, scale, 0), scale, 1)


def write_png(path: str, picture: np.ndarray) -> None:
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(tf.io.encode_png(picture).numpy())


def metrics_for(real, fake, spaces, kid_subsets, seed) -> dict:
    from evaluators.fid import compare_image_sets  # pylint: disable=import-outside-toplevel
    out = {}
    for name, space in spaces.items():
        res = compare_image_sets(real, fake, space, kid_subsets=kid_subsets, seed=seed)
        out[name] = {k: res[k] for k in ("fid", "kid", "kid_std", "precision", "recall")}
    return out


def prepare(args) -> tuple[str, dict, np.ndarray, np.ndarray]:
    """Ingest + pyramid + domain classifier (reused when WORKDIR already has them)."""
    from components.ingest import run_ingest  # pylint: disable=import-outside-toplevel
    from components.pyramid_beam import run_pyramid  # pylint: disable=import-outside-toplevel
    from components.sources import load_images  # pylint: disable=import-outside-toplevel
    from evaluators.domain_classifier import train_classifier  # pylint: disable=import-outside-toplevel
    from evaluators.features import get_feature_space  # pylint: disable=import-outside-toplevel
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel
    cfg = load_preset("fashion-mnist-multigrid", overrides(args, "multigrid"))
    ingest_dir, pyramid_dir = (os.path.join(args.workdir, n) for n in ("ingest", "pyramid"))
    classifier_dir = os.path.join(args.workdir, "classifier")
    if not tf.io.gfile.exists(os.path.join(ingest_dir, "summary.json")):
        run_ingest(cfg.data.source, ingest_dir, cfg.data.image_size, cfg.data.channels,
                   eval_fraction=cfg.data.eval_fraction, limit=cfg.data.limit, progress_every=0)
    if not tf.io.gfile.exists(os.path.join(pyramid_dir, "metadata.json")):
        run_pyramid(ingest_dir, pyramid_dir, cfg.pyramid.grids)
    size, ch = cfg.data.image_size, cfg.data.channels
    train_images, train_labels = load_images(f"ingested:{ingest_dir}:train", size, ch)
    real, _ = load_images(f"ingested:{ingest_dir}:eval", size, ch, limit=args.num_samples)
    if not tf.io.gfile.exists(os.path.join(classifier_dir, "info.json")):
        train_classifier(train_images, train_labels, classifier_dir, epochs=args.classifier_epochs,
                         seed=args.seed, trained_on=cfg.data.source)
    spaces = {"domain": get_feature_space("domain", classifier_dir=classifier_dir),
              "efficientnet_lite0": get_feature_space("efficientnet_lite0")}
    rng = np.random.default_rng(args.seed)
    floor = train_images[rng.choice(len(train_images), size=len(real), replace=False)]
    return pyramid_dir, spaces, real, floor


def run_family(args, family, pyramid_dir, spaces, real) -> dict:
    """Train one family for the budget, sample, score, draw; a JSON-able dict."""
    import keras  # pylint: disable=import-outside-toplevel
    from evaluators.model_client import ExportedModel  # pylint: disable=import-outside-toplevel
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel
    from trainers.train import train  # pylint: disable=import-outside-toplevel
    keras.backend.clear_session()
    cfg = load_preset("fashion-mnist-multigrid", overrides(args, family))
    workdir = os.path.join(args.workdir, family)
    start = time.perf_counter()
    result = train(cfg, pyramid_dir, workdir, resume=True)
    train_s = time.perf_counter() - start
    model = ExportedModel(result.export_dir, batch_size=250)
    start = time.perf_counter()
    samples = model.sample(len(real), seed=args.seed)
    sample_s = time.perf_counter() - start
    fake = samples["images"]
    picture = os.path.join(args.docs, f"quality_{family}.png")
    write_png(picture, tile(fake[:64]))
    scores = metrics_for(real, fake, spaces, args.kid_subsets, args.seed)
    return {"family": family, "steps": result.steps, "stopped_by": result.stopped_by, "train_s": train_s,
            "images_seen": result.steps * args.batch, "sample_s": sample_s, "num_samples": int(len(fake)),
            "sample_mean": float(fake.mean() / 255.0), "sample_std": float(fake.std() / 255.0),
            "metrics": scores, "picture": picture, "export_dir": result.export_dir,
            "overrides": overrides(args, family)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget per family")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--workdir", default="/tmp/mgebm-quality")
    parser.add_argument("--docs", default="docs/pictures", help="folder for quality_<family>.png")
    parser.add_argument("--limit", type=int, default=20000, help="Fashion-MNIST training images ingested")
    parser.add_argument("--num-samples", type=int, default=1000, help="generated = real images per metric")
    parser.add_argument("--kid-subsets", type=int, default=10)
    parser.add_argument("--width", type=float, default=0.25, help="model.width (same for every family)")
    parser.add_argument("--steps", type=int, default=15, help="sampler.steps T (cd1 trains with 1)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--classifier-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    bad = [f for f in families if f not in FAMILIES]
    if bad or args.minutes <= 0:
        parser.error(f"--families must be from {list(FAMILIES)} (got {bad}); --minutes > 0")
    tf.io.gfile.makedirs(args.workdir)
    out_path = os.path.join(args.workdir, "quality.json")
    doc = {"machine": common.machine_info({"tensorflow": tf.__version__}), "seed": args.seed,
           "budget_minutes_per_family": args.minutes, "args": vars(args), "families": {}}
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        pyramid_dir, spaces, real, floor = prepare(args)
    doc["prepare_s"] = time.perf_counter() - start
    doc["spaces_info"] = {k: {i: v for i, v in s.info.items() if isinstance(v, (int, float, str))}
                          for k, s in spaces.items()}
    doc["floor_train_vs_eval"] = metrics_for(real, floor, spaces, args.kid_subsets, args.seed)
    for family in families:
        print(f"[quality] {family}: training for {args.minutes} min", file=sys.stderr, flush=True)
        try:
            with contextlib.redirect_stdout(sys.stderr):  # train() logs to stdout; keep it JSON-only
                doc["families"][family] = run_family(args, family, pyramid_dir, spaces, real)
        except Exception as err:  # pylint: disable=broad-except
            doc["families"][family] = {"family": family, "error": f"{type(err).__name__}: {err}"}
        doc["families"][family]["loadavg_after"] = common.load_average()
        with tf.io.gfile.GFile(out_path, "w") as handle:
            handle.write(json.dumps(doc, indent=2))
    doc["wall_s"] = time.perf_counter() - start
    with tf.io.gfile.GFile(out_path, "w") as handle:
        handle.write(json.dumps(doc, indent=2))
    rows = [["real(train) vs real(eval)", "-", "-"] + [common.fmt(doc["floor_train_vs_eval"][s]["fid"]) for s in SPACES]
            + [common.fmt(doc["floor_train_vs_eval"][s]["kid"]) for s in SPACES]]
    for fam, res in doc["families"].items():
        if "error" in res:
            rows.append([fam, "-", "-", res["error"][:60], "", "", ""])
            continue
        rows.append([fam, res["steps"], res["images_seen"]] + [common.fmt(res["metrics"][s]["fid"]) for s in SPACES]
                    + [common.fmt(res["metrics"][s]["kid"]) for s in SPACES])
    common.emit(doc, rows, ["family", "steps", "images", "FID domain", "FID effnet", "KID domain", "KID effnet"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
