"""The pyramid stage's Beam transforms, shared by its usual form (`pyramid_beam`) and its Dask
form (`pyramid_dask`): ingest Examples -> per-grid pyramids, pyramid Examples, exact statistics."""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Sequence

import apache_beam as beam
import numpy as np
import tensorflow as tf

from components import records


class PyramidFn(beam.DoFn):
    """Serialized ingest Examples -> one dict {"keys", "labels", "images": uint8 [B,H,H,C],
    S: float32 [B,S,S,C] for every grid}."""

    def __init__(self, grids: Sequence[int], channels: int):
        super().__init__()
        self._grids = tuple(int(g) for g in grids)
        self._channels = int(channels)

    def process(self, batch):
        from trainers import pyramid_ops  # pylint: disable=import-outside-toplevel

        examples = [records.decode_ingest_example(s) for s in batch]
        images = np.stack([tf.io.decode_png(ex["image"], channels=self._channels).numpy()
                           for ex in examples])
        pyramid = pyramid_ops.build_pyramid(tf.cast(images, tf.float32) / 255.0, self._grids)
        out = {size: level.numpy() for size, level in pyramid.items()}
        out["images"] = images
        out["keys"] = [ex["key"] for ex in examples]
        out["labels"] = [ex["label"] for ex in examples]
        yield out


def explode(batch: dict, grids: Sequence[int]):
    """A PyramidFn batch -> its serialized pyramid Examples, one per image, in order."""
    for i, (key, label) in enumerate(zip(batch["keys"], batch["labels"])):
        yield records.encode_pyramid_example(key, label, {s: batch[s][i] for s in grids})


class GridStatsFn(beam.CombineFn):
    """Exact per-channel mean/std of every grid level, independent of batching and merge order.

    A grid-S pixel is (sum of its uint8 block) / (255 * b) with b = (H/S)^2 pixels per block, so the
    accumulator keeps integer sums of block sums and of their squares (Python ints: no rounding,
    no overflow) and the result is computed from exact rationals, then rounded once to float.

    Input: batch dicts {"images": uint8 [B, H, H, C], ...}; output: JSON-able dict
    {"count": images, "grids": {"S": {"mean": [C], "std": [C]}}} (population std).
    """

    def __init__(self, grids: Sequence[int], channels: int):
        super().__init__()
        self._grids = tuple(int(g) for g in grids)
        self._channels = int(channels)

    def create_accumulator(self):
        zeros = [0] * self._channels
        return {"images": 0, "size": 0, **{s: (list(zeros), list(zeros)) for s in self._grids}}

    def add_input(self, acc, batch):
        images = np.asarray(batch["images"])
        count, size = images.shape[0], images.shape[1]
        acc = dict(acc, images=acc["images"] + count, size=size)
        for s in self._grids:
            f = size // s
            blocks = images.astype(np.int64).reshape(count, s, f, s, f, self._channels).sum(axis=(2, 4))
            sums, squares = acc[s]
            acc[s] = ([a + int(b) for a, b in zip(sums, blocks.sum(axis=(0, 1, 2)))],
                      [a + int(b) for a, b in zip(squares, (blocks * blocks).sum(axis=(0, 1, 2)))])
        return acc

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for acc in accumulators:
            out["images"] += acc["images"]
            out["size"] = max(out["size"], acc["size"])
            for s in self._grids:
                out[s] = ([a + b for a, b in zip(out[s][0], acc[s][0])],
                          [a + b for a, b in zip(out[s][1], acc[s][1])])
        return out

    def extract_output(self, acc):
        grids = {}
        for s in self._grids:
            n = acc["images"] * s * s
            if n == 0:
                mean, std = [0.0] * self._channels, [0.0] * self._channels
            else:
                scale = 255 * (acc["size"] // s) ** 2
                mean = [float(Fraction(t, n * scale)) for t in acc[s][0]]
                std = [math.sqrt(Fraction(n * q - t * t, (n * scale) ** 2))
                       for t, q in zip(*acc[s])]
            grids[str(s)] = {"mean": mean, "std": std}
        return {"count": int(acc["images"]), "grids": grids}
