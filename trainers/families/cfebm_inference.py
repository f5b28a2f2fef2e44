"""Smooth MCMC and the applications of `CFEBM`: sampling, energies, inpainting, denoising and
unpaired image-to-image translation.

A mixin of `trainers.families.cfebm.CFEBM` (kept apart to keep modules short); it reads the
model's `net`, `sampler`, `stage_samplers`, `sizes`, `image_size`, `channels`, `num_stages`, `upsample_noise`,
`stage` and `beta`. Every chain is `trainers.chain.coarse_to_fine` over the stage sizes, whose
start function upsamples (nearest) the previous stage's samples and adds
`upsample_noise` * N(0, 1) (smooth MCMC). Seeds are stateless int32/int64 [2] pairs.
"""

from __future__ import annotations

import tensorflow as tf

from trainers import pyramid_ops
from trainers.chain import coarse_to_fine, fold_seed
from trainers.langevin import RNG_ALG


def seed2(seed):
    """An int32/int64 [2] seed as int64 [2]; ValueError for any other shape or dtype."""
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or seed.shape[0] != 2 or seed.dtype not in (tf.int32, tf.int64):
        raise ValueError(f"seed must be an int32 tensor of shape [2], got {seed.dtype.name} {seed.shape}")
    return tf.cast(seed, tf.int64)


class CFEBMInference:
    """Chains and applications of a CF-EBM (see the module docstring)."""

    def uniform_start(self, num, seed):
        """float32 [num, s_0, s_0, C] uniform in [0, 1): the chains' start at the coarsest stage."""
        s = self.sizes[0]
        shape = tf.stack([tf.cast(num, tf.int32), s, s, self.channels])
        return tf.random.stateless_uniform(shape, fold_seed(seed2(seed), -1), alg=RNG_ALG)

    def _energy_fns(self, stage: int, beta) -> dict:
        """size -> f at that stage; the last one (`stage`) with the fade weight beta."""
        fns = {self.sizes[j]: (lambda x, j=j: self.net.energy(x, j)) for j in range(stage)}
        fns[self.sizes[stage]] = lambda x: self.net.energy(x, stage, beta if stage else None)
        return fns

    def _upsample_noisy(self, x, size, seed):
        """Nearest upsampling to `size` plus upsample_noise * N(0, 1) (clipped when the sampler
        clips); x already at `size` is returned unchanged."""
        if x.shape[1] == size:
            return x
        up = pyramid_ops.nearest_upsample(x, size)
        if self.upsample_noise > 0:
            up = up + self.upsample_noise * tf.random.stateless_normal(
                tf.shape(up), fold_seed(seed, -size), alg=RNG_ALG)
        return tf.clip_by_value(up, 0.0, 1.0) if self.sampler.clip else up

    def chain(self, x0, seed, stage: int, beta=None, start_fn=None):
        """Smooth MCMC from x0 through the stages 0..`stage`.

        Args:
          x0: float32 [N, s_0, s_0, C], the start at the coarsest stage (run in place).
          seed: int32/int64 [2]. stage: the last stage (Python int). beta: its fade weight
            (float32 scalar) or None (no fade). start_fn: as in `coarse_to_fine`; default the
            noisy nearest upsampling.

        Returns:
          (samples, diagnostics): dicts stage size -> float32 [N, S, S, C] and -> diagnostics.
        """
        seed = seed2(seed)
        if start_fn is None:
            def start_fn(x, size):
                return self._upsample_noisy(x, size, seed), None
        return coarse_to_fine(x0, seed, self.sizes[:stage + 1], self._energy_fns(stage, beta),
                              self.stage_samplers, start_fn=start_fn)

    def export_beta(self):
        """The last stage's fade weight for inference: the stored beta once training is at the
        last stage, else 1 (the full network)."""
        last = tf.equal(tf.convert_to_tensor(self.stage), self.num_stages - 1)
        return tf.where(last, tf.convert_to_tensor(self.beta), tf.constant(1.0))

    def _check_images(self, images, name, channels=None):
        images = tf.convert_to_tensor(images)
        c = self.channels if channels is None else channels
        if images.shape.rank != 4 or images.shape[1:] != (self.image_size, self.image_size, c):
            raise ValueError(f"{name} must be float32 [N, {self.image_size}, {self.image_size}, {c}], "
                             f"got shape {images.shape}")
        return tf.cast(images, tf.float32)

    def final_energy(self, images):
        """f at the last stage: float32 [N] for images float32 [N, H, W, C] in [0, 1]."""
        images = self._check_images(images, "images")
        return self.net.energy(images, self.num_stages - 1, self.export_beta())

    def synthesize(self, num, seed) -> dict:
        """The full chain: uniform noise at s_0, then every stage. Returns dict stage size ->
        float32 [num, S, S, C] in [0, 1]."""
        seed = seed2(seed)
        samples, _ = self.chain(self.uniform_start(num, seed), seed, self.num_stages - 1,
                                self.export_beta())
        return samples

    def translate(self, images, seed):
        """Unpaired translation: the full chain started from the source images averaged to s_0
        (so the coarse layout and colours of the source lead the chain), under this model's
        energy (trained on the target domain). float32 [N, H, W, C] in [0, 1] both ways."""
        images = self._check_images(images, "images")
        x0 = pyramid_ops.box_downsample(images, self.sizes[0])
        samples, _ = self.chain(x0, seed, self.num_stages - 1, self.export_beta())
        return samples[self.image_size]

    def denoise(self, images, seed):
        """Langevin from the noisy images at full size under the last stage's energy (T steps
        with the sampler's noise schedule). float32 [N, H, W, C] in [0, 1] both ways."""
        images = self._check_images(images, "images")
        out, _ = self.sampler.run(lambda x: self.net.energy(x, self.num_stages - 1, self.export_beta()),
                                  images, fold_seed(seed2(seed), self.image_size))
        return out

    def inpaint(self, images, mask, seed):
        """Fill the missing pixels by smooth MCMC with the observed pixels clamped.

        At each stage S the image with its missing pixels filled by the (noisy, upsampled)
        previous samples is box-averaged to S, and Langevin moves only the S-pixels whose block
        contains a missing pixel; the first stage fills them with uniform noise.

        Args:
          images: float32 [N, H, W, C] in [0, 1]. mask: float32 [N, H, W, 1], 1 = missing.
          seed: int32 [2].

        Returns:
          float32 [N, H, W, C]; observed pixels (mask 0) equal `images` exactly.
        """
        images = self._check_images(images, "images")
        mask = self._check_images(mask, "mask", channels=1)
        seed = seed2(seed)
        missing = mask > 0.5

        def clamped_start(x, size):
            up = self._upsample_noisy(x, size, seed)
            filled = tf.where(missing, pyramid_ops.nearest_upsample(up, self.image_size), images)
            movable = pyramid_ops.box_downsample(tf.cast(missing, tf.float32), size) > 0
            return pyramid_ops.box_downsample(filled, size), tf.cast(movable, tf.float32)

        x0 = self.uniform_start(tf.shape(images)[0], seed)
        samples, _ = self.chain(x0, seed, self.num_stages - 1, self.export_beta(),
                                start_fn=clamped_start)
        return tf.where(missing, samples[self.image_size], images)
