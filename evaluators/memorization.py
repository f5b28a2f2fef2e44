"""Memorization check (the LAPGAN paper's nearest-neighbour analysis), for every family.

A model that copies its training images puts its samples closer to some training image than
fresh real images of the same distribution are. For generated images G, held-out real images R
(never trained on) and the training images T, in each space (raw pixels, and feature spaces):

- `d_gen`: for each generated image, the Euclidean distance to its nearest training image;
- `d_real`: the same for each held-out real image (the reference: what "close" means for data
  the model never saw);
- `ratio`: median(d_gen) / median(d_real). About 1 or above: samples are no closer to the
  training set than new real images (above 1 also when samples are off the data manifold);
  well below 1: samples sit on top of training images, a memorization signal;
- `fraction_closer_than_real_q05`: the share of generated images nearer to a training image than
  95% of the held-out images are (about 0.05 or less without memorization).

The figure shows, per generated image, its nearest training images in pixel space.
Distances: pixels in [0, 1] (uint8 / 255), flattened; features as the space extracts them.
"""

from __future__ import annotations

import numpy as np

PIXELS = "pixels"
NEIGHBOURS = 5  # nearest training images per sample in the figure


def nearest_neighbours(queries, reference, k: int = 1, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k nearest neighbours of each query among the reference rows.

    Args:
      queries: float [Q, D]; reference: float [R, D] with R >= k >= 1.
      chunk: queries per block (memory Q_chunk x R).

    Returns:
      (distances float64 [Q, k] ascending, indices int64 [Q, k] into reference).
    """
    q = np.asarray(queries, np.float64)
    r = np.asarray(reference, np.float64)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ValueError(f"queries and reference must be [Q, D] and [R, D] with the same D, got "
                         f"{q.shape} and {r.shape}")
    if not 1 <= k <= len(r):
        raise ValueError(f"k={k} must be between 1 and the number of reference rows ({len(r)})")
    r_sq = (r * r).sum(axis=1)
    dists, index = np.empty((len(q), k)), np.empty((len(q), k), np.int64)
    for lo in range(0, len(q), chunk):
        block = q[lo:lo + chunk]
        d2 = np.maximum((block * block).sum(axis=1)[:, None] + r_sq[None, :] - 2.0 * block @ r.T, 0.0)
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < len(r) else np.tile(np.arange(len(r)), (len(block), 1))
        part_d = np.take_along_axis(d2, part, axis=1)
        order = np.argsort(part_d, axis=1, kind="stable")
        index[lo:lo + chunk] = np.take_along_axis(part, order, axis=1)
        dists[lo:lo + chunk] = np.sqrt(np.take_along_axis(part_d, order, axis=1))
    return dists, index


def _pixels(images) -> np.ndarray:
    images = np.asarray(images)
    return images.reshape(len(images), -1).astype(np.float64) / 255.0


def space_summary(gen_feats, real_feats, train_feats) -> dict:
    """The memorization numbers of one space from [N, D] features of each set."""
    d_gen = nearest_neighbours(gen_feats, train_feats)[0][:, 0]
    d_real = nearest_neighbours(real_feats, train_feats)[0][:, 0]
    real_median = float(np.median(d_real))
    q05 = float(np.quantile(d_real, 0.05))
    return {"ratio": float(np.median(d_gen)) / real_median if real_median > 0 else None,
            "median_nearest_generated": float(np.median(d_gen)),
            "median_nearest_real": real_median,
            "fraction_closer_than_real_q05": float(np.mean(d_gen < q05)),
            "num_generated": int(len(d_gen)), "num_real": int(len(d_real)),
            "num_train": int(len(train_feats))}


def evaluate_memorization(generated, held_out, train, feature_spaces: dict | None = None,
                          num_examples: int = 8, neighbours: int = NEIGHBOURS,
                          batch_size: int = 64) -> tuple[dict, np.ndarray]:
    """The memorization table in pixel space and each feature space, and the neighbour figure.

    Args:
      generated: uint8 [G,H,W,C] samples; held_out: uint8 [R,H,W,C] real images not trained on;
      train: uint8 [T,H,W,C] the training images (T >= neighbours), all the same size.
      feature_spaces: {name: FeatureSpace} besides raw pixels (None = pixels only).
      num_examples, neighbours: rows and neighbours per row in the figure.

    Returns:
      (table, figure): table = {"spaces": {"pixels" | NAME: space_summary(...)}, "ratio":
      the pixel-space ratio}; figure = uint8 [k * (1 + neighbours), H, W, C], each row a
      generated image and its nearest training images (pixel space), k = min(num_examples, G).
    """
    sets = {"generated": np.asarray(generated), "held_out": np.asarray(held_out), "train": np.asarray(train)}
    for name, images in sets.items():
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) < 1:
            raise ValueError(f"{name} images must be uint8 [N>=1, H, W, C], got {images.dtype} {images.shape}")
        if images.shape[1:] != sets["generated"].shape[1:]:
            raise ValueError(f"{name} images are {images.shape[1:]}, the generated ones "
                             f"{sets['generated'].shape[1:]}: they must match")
    if len(sets["train"]) < neighbours:
        raise ValueError(f"train holds {len(sets['train'])} images, fewer than neighbours={neighbours}")
    pixel = {k: _pixels(v) for k, v in sets.items()}
    table = {"spaces": {PIXELS: space_summary(pixel["generated"], pixel["held_out"], pixel["train"])}}
    for name, space in (feature_spaces or {}).items():
        feats = {k: np.asarray(space.extract(v, batch_size=batch_size)[0]) for k, v in sets.items()}
        table["spaces"][name] = space_summary(feats["generated"], feats["held_out"], feats["train"])
    table["ratio"] = table["spaces"][PIXELS]["ratio"]
    k = min(num_examples, len(sets["generated"]))
    index = nearest_neighbours(pixel["generated"][:k], pixel["train"], k=neighbours)[1]
    rows = [np.concatenate([sets["generated"][i:i + 1], sets["train"][index[i]]]) for i in range(k)]
    return table, np.concatenate(rows)
