"""The progressively expanding energy network of CF-EBM (Zhao, Xie, Li, ICLR 2021).

Stages at sizes s_0 < s_1 < ... < s_K (each twice the previous, e.g. 8, 16, 32). Per stage k a
from-RGB 1x1 convolution turns [N, s_k, s_k, C] pixels into features; the input block of stage
k >= 1 is a residual block that halves the size (3x3 conv, activation, 3x3 conv, 2x2 average
pool, activation, plus a 1x1 conv skip that is average pooled; the sum divided by sqrt(2)), so
its output is at s_{k-1} and feeds the blocks of the coarser stages; stage 0's block (the head)
halves s_0 too, then the features are averaged over space and a dense layer gives the scalar
energy (the reference code's head, a spectrally normalised 4x4 valid conv, is a weighted
average too; `residual="plain"` sums them). The 3x3 convs are wrapped in
`keras.layers.SpectralNormalization` when `spectral`; the from-RGB and skip 1x1 convs are plain
and He-initialised, as in the reference code (ProEBM), so the pixel gradient of the energy does
not shrink stage by stage (`residual="plain"`: the earlier block, see `ExpandingEnergyNet`).
The dense output layer has no spectral norm, so the energy's scale can grow.

The energy of stage k with fade weight beta (the expand block):

    h = beta * Primal(x) + (1 - beta) * Fade(x)
    Primal(x) = block_k(from_rgb_k(x))           (the new, randomly initialised input side)
    Fade(x)   = from_rgb_{k-1}(avg_pool_2(x))     (the previous network's input side)

then blocks k-1, ..., 1 and the head. At beta = 0 this is exactly the stage k-1 network on the
2x2-averaged image, at beta = 1 exactly the new network; beta=None (and stage 0) = no fade.

Input: float32 [N, s_k, s_k, C] in [0, 1], centred as (x - 0.5) * 2 inside. Output: float32 [N];
p(x) is proportional to exp(f(x)) (higher = more probable).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainers.networks import activation_fn

RESIDUALS = ("scaled", "plain")


def _conv(filters: int, kernel: int, name: str, spectral: bool, he: bool = False):
    init = keras.initializers.HeNormal() if he else "glorot_uniform"
    conv = keras.layers.Conv2D(filters, kernel, padding="same", kernel_initializer=init, name=name)
    return keras.layers.SpectralNormalization(conv, name=f"sn_{name}") if spectral else conv


def _apply(layer, x, training):
    if isinstance(layer, keras.layers.SpectralNormalization):
        return layer(x, training=training)
    return layer(x)


def avg_pool_2(x):
    """2x2 average pooling: [N, H, W, C] -> [N, H/2, W/2, C] (H, W even)."""
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


class ResidualDown(keras.layers.Layer):
    """A residual block that halves the size: [N, H, W, Cin] -> [N, H/2, W/2, width].

    `residual="scaled"` (the reference code's): (pool(conv1x1(x)) + act(pool(conv3(act(conv3(x))))))
    / sqrt(2), the 1x1 skip conv He-initialised without spectral norm. `"plain"`:
    act(pool(conv3(act(conv3(x)))) + pool(conv1x1(x))), spectral norm (when on) on every conv.
    """

    def __init__(self, width: int, activation: str, spectral: bool, name: str, residual: str = "scaled"):
        super().__init__(name=name)
        self.act = activation_fn(activation)
        self.residual = residual
        self.conv1 = _conv(width, 3, "conv1", spectral)
        self.conv2 = _conv(width, 3, "conv2", spectral)
        scaled = residual == "scaled"
        self.skip = _conv(width, 1, "skip", spectral and not scaled, he=scaled)

    def call(self, x, training=False):
        h = self.act(_apply(self.conv1, x, training))
        h = avg_pool_2(_apply(self.conv2, h, training))
        skip = avg_pool_2(_apply(self.skip, x, training))
        if self.residual == "scaled":
            return (self.act(h) + skip) * (2.0 ** -0.5)
        return self.act(h + skip)


class ExpandingEnergyNet(keras.Model):
    """The CF-EBM energy network for all stages; see the module docstring.

    Args:
      sizes: the stage sizes, increasing, each twice the previous (e.g. (8, 16, 32)).
      channels: image channels, 1 or 3.
      width: feature channels of every block and from-RGB conv (>= 1).
      activation: "swish" (the paper), "leaky_relu", "elu" or "relu".
      spectral: spectral normalisation on the 3x3 convs (and with `residual="plain"` on every conv).
      residual: "scaled" (the reference code's block and from-RGB: plain He-initialised 1x1 convs,
        no activation after from-RGB, (skip + main) / sqrt(2); the head averages over space) or
        "plain" (see `ResidualDown`; an activation after from-RGB; the head sums over space). At
        initialisation one Langevin step moves a pixel about as far as the reference code's at
        every stage with the scaled net, and 4x (8 px) to 60x (32 px) less with the plain one
        (`benchmarks.cfebm_gradients`).
    """

    def __init__(self, sizes, channels: int, width: int = 128, activation: str = "swish",
                 spectral: bool = True, residual: str = "scaled", name: str = "cfebm_net"):
        super().__init__(name=name)
        sizes = tuple(int(s) for s in sizes)
        if not sizes or any(b != 2 * a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 2 or sizes[0] % 2:
            raise ValueError(f"sizes={list(sizes)} must start at an even size >= 2 and double")
        if channels not in (1, 3):
            raise ValueError(f"channels={channels!r} must be 1 or 3")
        if int(width) < 1:
            raise ValueError(f"width={width!r} must be >= 1")
        if residual not in RESIDUALS:
            raise ValueError(f"residual={residual!r} must be one of {list(RESIDUALS)}")
        self.sizes, self.channels, self.width = sizes, int(channels), int(width)
        self.spectral, self.residual = bool(spectral), residual
        self.act = activation_fn(activation)
        scaled = residual == "scaled"
        self.from_rgb = [_conv(self.width, 1, f"from_rgb_{s}", self.spectral and not scaled, he=scaled)
                         for s in sizes]
        self.blocks = [ResidualDown(self.width, activation, self.spectral, f"block_{s}", residual)
                       for s in sizes]
        self.dense = keras.layers.Dense(1, name="energy")

    def _rgb(self, k, x, training):
        h = _apply(self.from_rgb[k], (tf.cast(x, tf.float32) - 0.5) * 2.0, training)
        return h if self.residual == "scaled" else self.act(h)

    def primal(self, x, stage: int, training=False):
        """The new input side of `stage` >= 1: [N, s_k, s_k, C] -> features at s_{k-1}."""
        return self.blocks[stage](self._rgb(stage, x, training), training=training)

    def fade(self, x, stage: int, training=False):
        """The previous network's input side on the averaged image: features at s_{k-1}."""
        return self._rgb(stage - 1, avg_pool_2(x), training)

    def expand(self, x, stage: int, beta, training=False):
        """Expand(x) = beta * Primal(x) + (1 - beta) * Fade(x), features [N, s_{k-1}, s_{k-1}, W]."""
        beta = tf.cast(beta, tf.float32)
        return beta * self.primal(x, stage, training) + (1.0 - beta) * self.fade(x, stage, training)

    def _check(self, x, stage):
        if not 0 <= stage < len(self.sizes):
            raise ValueError(f"stage={stage} must be in [0, {len(self.sizes) - 1}]")
        s = self.sizes[stage]
        if x.shape.rank != 4 or tuple(x.shape[1:]) != (s, s, self.channels):
            raise ValueError(f"{self.name}: stage {stage} needs float32 [N, {s}, {s}, {self.channels}] "
                             f"pixels in [0, 1], got shape {x.shape}")

    def energy(self, x, stage: int, beta=None, training=False):
        """f at `stage` (Python int): float32 [N] for x float32 [N, s_k, s_k, C] in [0, 1].

        beta: the fade weight (float or float32 scalar tensor in [0, 1]) of the expand block at
        stage >= 1; None = the new network alone (beta = 1, no Fade path computed).
        """
        x = tf.convert_to_tensor(x, tf.float32)
        self._check(x, stage)
        if stage == 0:
            h, first = self._rgb(0, x, training), 0
        elif beta is None:
            h, first = self.primal(x, stage, training), stage - 1
        else:
            h, first = self.expand(x, stage, beta, training), stage - 1
        for k in range(first, -1, -1):  # the coarser stages' blocks; block 0 is the head
            h = self.blocks[k](h, training=training)
        pool = tf.reduce_mean if self.residual == "scaled" else tf.reduce_sum
        return tf.reshape(self.dense(pool(h, axis=[1, 2])), [-1])

    def call(self, x, training=False):
        """Energy at the last stage without fade: float32 [N] for [N, s_K, s_K, C] pixels."""
        return self.energy(x, len(self.sizes) - 1, None, training)

    def build_all(self) -> None:
        """Create every stage's variables (from-RGB, blocks, fade paths) on zero inputs."""
        for k, s in enumerate(self.sizes):
            self.energy(tf.zeros([1, s, s, self.channels]), k, 0.5 if k else None)
