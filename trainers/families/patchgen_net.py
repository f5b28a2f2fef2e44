"""The patch energy net of one PatchGenCN scale: a few valid 3x3 convs, a sum over positions.

Input x: float32 [N, H, W, C] in [0, 1], any H, W (fully convolutional). It is centred as
u = 2x - 1 and padded by `layers` pixels with u = 0 (mid gray) on every side, so the last conv's
map is [N, H, W, 1] (one energy per patch centred on each pixel, receptive field
2 * layers + 1 px); f(x) = the sum of that map over positions, float32 [N] (higher = more
probable). With the sum, the gradient at a pixel depends only on the patches around it, not on the
image size, so one step size serves every scale and output size. Convs: `channels` outputs (the
last one 1), ELU (or `activation`) after all but the last, spectral normalisation on all but the
last when `spectral` (the reference's design).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainers.networks import activation_fn


class PatchEnergyNet(keras.Model):
    """f(x) of one scale; see the module docstring.

    Args:
      image_channels: C of the images, 1 or 3.
      channels: output channels of each conv, the last one 1 (e.g. [64, 32, 32, 32, 1]).
      activation: a name of `trainers.networks.ACTIVATIONS`.
      spectral: spectral normalisation on every conv but the last.
    """

    def __init__(self, image_channels: int, channels, activation: str = "elu", spectral: bool = True,
                 name: str = "patch_energy"):
        super().__init__(name=name)
        channels = [int(c) for c in channels]
        if len(channels) < 2 or channels[-1] != 1 or min(channels) < 1:
            raise ValueError(f"channels={channels} must be >= 2 positive counts ending in 1")
        self.image_channels, self.layer_channels = int(image_channels), channels
        self.act = activation_fn(activation)
        self.spectral = bool(spectral)
        self.pad = len(channels)
        init = keras.initializers.RandomNormal(stddev=0.005)
        self.convs = []
        for i, c in enumerate(channels):
            conv = keras.layers.Conv2D(c, 3, padding="valid", kernel_initializer=init, name=f"conv{i + 1}")
            if spectral and i < len(channels) - 1:
                conv = keras.layers.SpectralNormalization(conv, name=f"sn_conv{i + 1}")
            self.convs.append(conv)
        side = 2 * self.pad + 1
        self(tf.zeros([1, side, side, self.image_channels]))  # build every layer

    def energy_map(self, x, training=False):
        """float32 [N, H, W, C] in [0, 1] -> per-patch energies float32 [N, H, W, 1]."""
        u = tf.cast(x, tf.float32) * 2.0 - 1.0
        p = self.pad
        h = tf.pad(u, [[0, 0], [p, p], [p, p], [0, 0]])
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            h = conv(h, training=training) if self.spectral and i < last else conv(h)
            if i < last:
                h = self.act(h)
        return h

    def call(self, x, training=False):
        """float32 [N, H, W, C] in [0, 1] -> f(x) float32 [N], the sum of `energy_map`."""
        return tf.reduce_sum(self.energy_map(x, training=training), axis=[1, 2, 3])

    def same_architecture(self, other: "PatchEnergyNet") -> bool:
        """True when `other` has this net's variable shapes (so `copy_from` can copy it)."""
        return [tuple(v.shape) for v in self.variables] == [tuple(v.shape) for v in other.variables]

    def copy_from(self, other: "PatchEnergyNet"):
        """Assign every variable of `other` (same architecture) to this net (graph or eager);
        returns True (a value for a `tf.cond` branch)."""
        mine, theirs = self.variables, other.variables
        if not self.same_architecture(other):
            raise ValueError(f"{other.name} has another architecture than {self.name}")
        for a, b in zip(mine, theirs):
            a.assign(b.value)
        return tf.constant(True)
