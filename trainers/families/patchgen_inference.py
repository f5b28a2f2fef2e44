"""PatchGenCN's sampling and applications (a mixin of `PatchGenCN`), all graph-friendly.

Every operation runs the multi-scale sequential sampling of the paper: at scale k a chain of
Langevin steps on f_k starts from the previous scale's result upsampled (bicubic, clipped to
[0, 1]) to scale k's size; only the start differs:

- `synthesize(num, seed, height, width)`: uniform noise at the coarsest scale (one gray plane
  repeated over the channels, the reference's start), then every scale, at the REQUESTED size at
  every scale: scale k is round(height * factor^(L-1-k)) x round(width * ...) (`scale_sizes`),
  so any size and aspect ratio are sampled, not resized from the training size.
- `inject(images, mask, seed, start_scale, noise)`: the images (e.g. an edited photo, a photo with
  a pasted object, another image's content) resized to scale `start_scale` of their own size,
  then the chains from there to the finest scale; where `mask` is given the result is blended
  as mask * result + (1 - mask) * images (1 = may change). Editing, harmonization and style
  transfer are this with different starts and noise (see `patchgen_signatures`).
- `super_resolve(images, scale, seed)`: with `sr_upsampling` "cascade", SinGAN's recipe with the
  finest net: the input is upsampled by 1 / factor at a time (the last step to exactly `scale`
  times its size) and each upsampled image runs a short noise-free chain of f_{L-1} (`sr_steps`
  steps: longer chains sharpen past the truth); `ceil(log(scale) / log(1 / factor))` rounds.
  With "direct", one bicubic upsampling to the target, then one such chain: a cascade of
  bicubic resizes blurs more than one (chelsea x2: 29.72 dB against 30.15 for one resize, before
  any chain), so the chain starts from the better image.

Chains at the coarsest scale run `coarse_steps` steps, the others `steps`; `noise` False runs
the same steps without the noise term (the reference samples the coarser scales noise-free).
Images are float32 [N, H, W, C] in [0, 1] everywhere; seeds int32/int64 [2].
"""

from __future__ import annotations

import math

import tensorflow as tf

from trainers.chain import fold_seed
from trainers.langevin import RNG_ALG


def resize(x, height, width):
    """Bicubic resize of float32 [N, h, w, C] in [0, 1] to [N, height, width, C], clipped to [0, 1]."""
    y = tf.image.resize(x, tf.stack([height, width]), method="bicubic")
    return tf.clip_by_value(y, 0.0, 1.0)


class PatchGenInference:
    """Sampling and applications; the host class provides `nets`, `num_scales`, `factor`,
    `channels`, `samplers(k) -> (noisy, noise_free)`, `sample_noise_factor(k)`, `sr_sampler` and `sr_upsampling`."""

    def scale_sizes(self, height, width):
        """[(h_k, w_k)] int32 scalars, coarsest first, for an output of height x width (int32 []):
        round(height * factor^(L-1-k)), at least 1; Python ints give Python ints."""
        out = []
        for k in range(self.num_scales):
            power = self.factor ** (self.num_scales - 1 - k)
            if isinstance(height, int) and isinstance(width, int):
                out.append((max(1, round(height * power)), max(1, round(width * power))))
                continue
            h = tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float64) * power), tf.int32))
            w = tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float64) * power), tf.int32))
            out.append((h, w))
        return out

    def energy(self, images, k: int = -1):
        """f_k(images): float32 [N] (k = -1: the finest scale)."""
        return self.nets[k](images)

    def run_scale(self, k: int, x, seed, noise: bool = True, noise_multiplier=None):
        """One scale's chain from x (float32 [N, h, w, C]) under f_k; returns (x, diagnostics).
        With noise, the noise term is multiplied by `noise_multiplier` (float32 []; None = the
        trained model's `sample_noise_factor(k)`); a multiplier of 0 runs the noise-free chain."""
        noisy, plain = self.samplers(k)
        if not noise:
            return plain.run(self.nets[k], x, fold_seed(seed, k))
        if noise_multiplier is None:
            noise_multiplier = self.sample_noise_factor(k)
            if noise_multiplier == 0:  # (the same chain as the noisy one with m = 0, without its draws)
                return plain.run(self.nets[k], x, fold_seed(seed, k))
        return noisy.run(self.nets[k], x, fold_seed(seed, k), noise_multiplier=noise_multiplier)

    def uniform_start(self, num, height, width, seed):
        """float32 [num, height, width, C]: one uniform [0, 1) gray plane per image, repeated."""
        shape = tf.stack([tf.cast(num, tf.int32), height, width, 1])
        plane = tf.random.stateless_uniform(shape, fold_seed(seed, -1), alg=RNG_ALG)
        return tf.tile(plane, [1, 1, 1, self.channels])

    def run_from(self, x, start: int, sizes, seed, noise: bool = True, last: int | None = None):
        """The chains from scale `start` (x at sizes[start]) to scale `last` (default the finest),
        upsampling between scales; returns {k: float32 [N, h_k, w_k, C]} for start..last."""
        last = self.num_scales - 1 if last is None else last
        out = {}
        for k in range(start, last + 1):
            if k > start:
                x = resize(x, *sizes[k])
            x, _ = self.run_scale(k, x, seed, noise)
            out[k] = x
        return out

    def synthesize(self, num, seed, height=None, width=None):
        """Random images: float32 [num, height, width, C] (default the training size) in [0, 1]."""
        height = self.height if height is None else height
        width = self.width if width is None else width
        sizes = self.scale_sizes(height, width)
        x0 = self.uniform_start(num, *sizes[0], seed)
        return self.run_from(x0, 0, sizes, seed)[self.num_scales - 1]

    def inject(self, images, seed, start_scale: int, mask=None, noise: bool = True):
        """Chains from `images` resized to scale `start_scale` (of their own size) to the finest;
        blended with `mask` (float32 [N, H, W, 1], 1 = may change) when given. Python int
        start_scale in [0, L-1]."""
        shape = tf.shape(images)
        sizes = self.scale_sizes(shape[1], shape[2])
        x = resize(images, *sizes[start_scale])
        out = self.run_from(x, start_scale, sizes, seed, noise)[self.num_scales - 1]
        if mask is not None:
            out = mask * out + (1.0 - mask) * images
        return out

    def super_resolve(self, images, scale, seed):
        """float32 [N, h, w, C] -> [N, h * scale, w * scale, C] (scale int32 [] >= 1)."""
        shape = tf.shape(images)
        target = tf.stack([shape[1], shape[2]]) * scale
        if self.sr_upsampling == "direct":
            out, _ = self.sr_sampler.run(self.nets[-1], resize(images, target[0], target[1]), fold_seed(seed, 0))
            return out
        rounds = tf.cast(tf.math.ceil(tf.math.log(tf.cast(scale, tf.float32)) /
                                      math.log(1.0 / self.factor) - 1e-6), tf.int32)
        rounds = tf.maximum(rounds, 0)

        def body(i, x):
            now = tf.cast(tf.shape(x)[1:3], tf.float32)
            grown = tf.cast(tf.math.ceil(now / self.factor - 1e-4), tf.int32)
            size = tf.where(tf.equal(i, rounds - 1), target, tf.minimum(grown, target))
            y = resize(x, size[0], size[1])
            y, _ = self.sr_sampler.run(self.nets[-1], y, fold_seed(seed, i))
            return i + 1, y

        spec = tf.TensorSpec([None, None, None, self.channels], tf.float32)
        _, out = tf.while_loop(lambda i, _: i < rounds, body, (tf.constant(0), images),
                               shape_invariants=(tf.TensorSpec([], tf.int32), spec))
        return out
