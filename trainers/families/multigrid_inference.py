"""Inference of `MultiGridEBM`: 1x1 starts, synthesis, energies, features and inpainting.

A mixin of `trainers.families.multigrid.MultiGridEBM` (kept apart to keep modules short); it
reads the model's `grids`, `image_size`, `channels`, `trained_grids`, `nets`, `coarse_mean`,
`coarse_std`, `_plain.energy_fns` and `_plain.samplers` (one sampler per trained grid).
Every chain is `trainers.chain.coarse_to_fine`.
"""

from __future__ import annotations

import tensorflow as tf

from trainers import pyramid_ops
from trainers.chain import coarse_to_fine
from trainers.langevin import RNG_ALG


def seed2(seed):
    """An int32/int64 [2] seed as int64 [2]; ValueError for any other shape or dtype."""
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or seed.shape[0] != 2 or seed.dtype not in (tf.int32, tf.int64):
        raise ValueError(f"seed must be an int32 tensor of shape [2], got {seed.dtype.name} {seed.shape}")
    return tf.cast(seed, tf.int64)


class MultiGridInference:
    """Sampling, energies, features and inpainting of a trained multi-grid model."""

    def sample_coarse(self, num, seed):
        """1x1 starts: float32 [num, 1, 1, C] from N(coarse_mean, coarse_std), clipped to [0, 1].

        Args:
          num: int32 scalar (Python int or tensor). seed: int32 [2].
        """
        shape = tf.stack([tf.cast(num, tf.int32), 1, 1, self.channels])
        z = tf.random.stateless_normal(shape, seed2(seed), alg=RNG_ALG)
        return tf.clip_by_value(z * tf.constant(self.coarse_std) + tf.constant(self.coarse_mean), 0.0, 1.0)

    def _check_images(self, images, name, channels=None):
        images = tf.convert_to_tensor(images)
        c = self.channels if channels is None else channels
        if images.shape.rank != 4 or images.shape[1:] != (self.image_size, self.image_size, c):
            raise ValueError(f"{name} must be float32 [N, {self.image_size}, {self.image_size}, {c}], "
                             f"got shape {images.shape}")
        return tf.cast(images, tf.float32)

    def synthesize(self, coarse, seed) -> dict:
        """The full sampling chain from 1x1 starts.

        Args:
          coarse: float32 [N, 1, 1, C] in [0, 1]. seed: int32 [2].

        Returns:
          dict grid size -> float32 [N, S, S, C] in [0, 1] for every grid (grid 1 is `coarse`):
          T steps at every trained grid, each from the previous grid's samples; a model that
          trains only the finest grid gives the intermediate grids as box averages of its samples.
        """
        coarse = tf.convert_to_tensor(coarse, tf.float32)
        if coarse.shape.rank != 4 or coarse.shape[1:] != (1, 1, self.channels):
            raise ValueError(f"coarse must be float32 [N, 1, 1, {self.channels}], got shape {coarse.shape}")
        samples, _ = coarse_to_fine(coarse, seed2(seed), self.trained_grids, self._plain.energy_fns,
                                    self._plain.samplers)
        if self.trained_grids == self.grids[1:]:
            return {1: coarse, **samples}
        x = samples[self.image_size]
        return {1: coarse, **{s: pyramid_ops.box_downsample(x, s) for s in self.grids[1:]}}

    def energies(self, images) -> dict:
        """dict trained grid size -> float32 [N] energies f_S of the pyramid of full-size images
        float32 [N, H, W, C] in [0, 1]."""
        pyr = pyramid_ops.build_pyramid(self._check_images(images, "images"), self.grids)
        return {g: net(pyr[g], training=False) for g, net in zip(self.trained_grids, self.nets)}

    def features(self, images) -> dict:
        """dict trained grid size -> float32 [N, D_S] pooled activations (see networks.py)."""
        pyr = pyramid_ops.build_pyramid(self._check_images(images, "images"), self.grids)
        return {g: net.features(pyr[g], training=False) for g, net in zip(self.trained_grids, self.nets)}

    def inpaint(self, images, mask, seed):
        """Fill the missing pixels by Langevin, coarse to fine, with observed pixels clamped.

        At grid 1 the start is the mean of each image's observed pixels (coarse_mean if none);
        at each trained grid S the image with its missing pixels filled by the upsampled previous
        result is box-averaged to S, and Langevin moves only the S-pixels whose block contains a
        missing pixel. The finest grid moves exactly the missing pixels.

        Args:
          images: float32 [N, H, W, C] in [0, 1]. mask: float32 [N, H, W, 1], 1 = missing.
          seed: int32 [2].

        Returns:
          float32 [N, H, W, C]; observed pixels (mask 0) equal `images` exactly.
        """
        images = self._check_images(images, "images")
        mask = self._check_images(mask, "mask", channels=1)
        missing = mask > 0.5
        known = 1.0 - tf.cast(missing, tf.float32)
        count = tf.reduce_sum(known, axis=[1, 2], keepdims=True)
        mean = tf.reduce_sum(images * known, axis=[1, 2], keepdims=True) / tf.maximum(count, 1.0)
        x = tf.where(count > 0, mean, tf.reshape(tf.constant(self.coarse_mean), [1, 1, 1, -1]))

        def clamped_start(x, g):
            filled = tf.where(missing, pyramid_ops.nearest_upsample(x, self.image_size), images)
            movable = tf.cast(pyramid_ops.box_downsample(tf.cast(missing, tf.float32), g) > 0, tf.float32)
            return pyramid_ops.box_downsample(filled, g), movable

        samples, _ = coarse_to_fine(x, seed2(seed), self.trained_grids, self._plain.energy_fns,
                                    self._plain.samplers, start_fn=clamped_start)
        return tf.where(missing, samples[self.image_size], images)
