"""The coarse-to-fine chain, written once for every family that samples grid by grid.

At each grid S in turn the previous result is brought to S (nearest upsampling by default) and
moved by the Langevin sampler on that grid's energy. The sampler knows only `energy_fn`; the
chain knows only grids, energies and a sampler, so training, synthesis and inpainting share it.
"""

from __future__ import annotations

import tensorflow as tf

from trainers import pyramid_ops
from trainers.langevin import RNG_ALG


def fold_seed(seed, value):
    """The stateless seed pair `seed` folded with an integer (a grid size, a replica id).

    Args:
      seed: int32/int64 [2]. value: int scalar (Python or tensor).

    Returns:
      int64 [2].
    """
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), tf.cast(value, tf.int64),
                                                    alg=RNG_ALG)


def upsample_start(x, size: int):
    """The default start at grid `size`: nearest upsampling, all pixels movable."""
    return pyramid_ops.nearest_upsample(x, size), None


def coarse_to_fine(x, seed, grids, energy_fns: dict, sampler, start_fn=upsample_start):
    """Run the chain over `grids`, coarse to fine.

    Args:
      x: float32 [N, s, s, C], the start (s divides grids[0]; s == grids[0] starts in place).
      seed: int64 [2]; grid S runs with `fold_seed(seed, S)`.
      grids: increasing grid sizes to sample at, e.g. (4, 16, 32).
      energy_fns: dict grid size -> callable float32 [N, S, S, C] -> [N] (the same callable
        objects on every call, so the sampler reuses its traced loops).
      sampler: a `LangevinSampler` (or anything with `run(energy_fn, x0, seed, mask=None)`), or
        a dict grid size -> sampler (one per grid, e.g. other steps at each grid).
      start_fn: (x, S) -> (start float32 [N, S, S, C], mask float32 [N, S, S, 1] or None): how
        the previous result becomes grid S's start; default `upsample_start`.

    Returns:
      (samples, diagnostics): dicts grid size -> float32 [N, S, S, C] and -> the sampler's
      diagnostics of that grid.
    """
    samples, diagnostics = {}, {}
    for g in grids:
        start, mask = start_fn(x, g)
        run = (sampler[g] if isinstance(sampler, dict) else sampler).run
        x, diagnostics[g] = run(energy_fns[g], start, fold_seed(seed, g), mask=mask)
        samples[g] = x
    return samples, diagnostics
