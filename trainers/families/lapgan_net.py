"""The networks of one LAPGAN level (DCGAN-style convolutional generators and discriminators).

- `NoiseGenerator` (the coarsest level, and DCGAN): z [N, noise_dim] (plus a one-hot label
  [N, K]) -> dense to a start size s0 (the level size halved while even and above 4), then
  (nearest x2 upsampling, 3x3 conv, batch norm, ReLU) blocks with halving channels up to the
  level size, a 3x3 conv to C channels and a sigmoid: an image in [0, 1].
- `ResidualGenerator` (finer levels): the upsampled coarser image (centred to [-1, 1]), a noise
  plane [N, S, S, 1] and the one-hot label map [N, S, S, K] concatenated -> three (3x3 conv,
  batch norm, ReLU) -> a 3x3 conv to C channels and tanh: the residual in [-1, 1].
- `Discriminator`: its inputs (an image, or a residual with the upsampled coarse image, plus
  the label map) concatenated -> (4x4 stride-2 conv, leaky ReLU 0.2) down to 4x4 or less ->
  flatten -> dense: one logit per image, float32 [N]. `spectral` wraps every conv and the dense
  layer in `keras.layers.SpectralNormalization` (its power iteration runs with training=True).
  How a conditional discriminator (num_classes K > 0) uses the label (`conditioning`):
  `concat` appends the label map to its inputs (the LAPGAN paper's); `projection` adds
  <embed(y), features> to the logit (Miyato & Koyama 2018; the embedding is a bias-free dense
  layer on the one-hot, spectrally normalised with the rest); `acgan` is given no label and a
  second dense layer on the same features gives class logits [N, K] (AC-GAN, Odena et al. 2017).

Every layer is named, so variable paths (checkpoint keys) are the same in every process.
`synchronized` (the generators): batch-norm statistics over the global batch under a
tf.distribute strategy with several replicas (it changes no variable).
"""

from __future__ import annotations

import keras
import tensorflow as tf

CONDITIONINGS = ("concat", "projection", "acgan")


def start_size(size: int) -> int:
    """The side the noise generator's dense layer starts at: size halved while even and > 4."""
    s = int(size)
    while s > 4 and s % 2 == 0:
        s //= 2
    return s


def label_map(onehot, size: int):
    """one-hot [N, K] -> [N, size, size, K] (the same vector at every pixel)."""
    return tf.tile(onehot[:, None, None, :], [1, size, size, 1])


def _centre(x):
    return (tf.cast(x, tf.float32) - 0.5) * 2.0


class NoiseGenerator(keras.Model):
    """z (+ one-hot label) -> image [N, size, size, channels] in [0, 1]; see the module docstring."""

    def __init__(self, size: int, channels: int, width: int, noise_dim: int, num_classes: int = 0,
                 name: str = "generator", synchronized: bool = False):
        super().__init__(name=name)
        self.size, self.channels, self.noise_dim, self.num_classes = size, channels, noise_dim, num_classes
        self.start = start_size(size)
        ups, s = 0, self.start
        while s < size:
            s, ups = s * 2, ups + 1
        self.widths = [max(width, width * 2 ** min(ups - i, 3)) for i in range(ups + 1)]
        self.dense = keras.layers.Dense(self.start * self.start * self.widths[0], name="dense")
        self.dense_bn = keras.layers.BatchNormalization(momentum=0.9, synchronized=synchronized, name="dense_bn")
        self.convs = [keras.layers.Conv2D(w, 3, padding="same", name=f"up{i}_conv")
                      for i, w in enumerate(self.widths[1:])]
        self.bns = [keras.layers.BatchNormalization(momentum=0.9, synchronized=synchronized, name=f"up{i}_bn")
                    for i in range(len(self.convs))]
        self.out = keras.layers.Conv2D(channels, 3, padding="same", name="to_image")

    def call(self, z, onehot=None, training=False):
        h = z if onehot is None else tf.concat([z, onehot], -1)
        h = tf.nn.relu(self.dense_bn(self.dense(h), training=training))
        h = tf.reshape(h, [-1, self.start, self.start, self.widths[0]])
        for conv, bn in zip(self.convs, self.bns):
            h = tf.repeat(tf.repeat(h, 2, axis=1), 2, axis=2)
            h = tf.nn.relu(bn(conv(h), training=training))
        return tf.sigmoid(self.out(h))

    def build_all(self):
        onehot = tf.zeros([1, self.num_classes]) if self.num_classes else None
        self(tf.zeros([1, self.noise_dim]), onehot)


class ResidualGenerator(keras.Model):
    """(upsampled coarse image, noise plane, label) -> residual [N, S, S, C] in [-1, 1]."""

    def __init__(self, size: int, channels: int, width: int, num_classes: int = 0, layers: int = 3,
                 name: str = "generator", synchronized: bool = False):
        super().__init__(name=name)
        self.size, self.channels, self.num_classes = size, channels, num_classes
        self.convs = [keras.layers.Conv2D(width, 3, padding="same", name=f"conv{i}") for i in range(layers)]
        self.bns = [keras.layers.BatchNormalization(momentum=0.9, synchronized=synchronized, name=f"bn{i}")
                    for i in range(layers)]
        self.out = keras.layers.Conv2D(channels, 3, padding="same", name="to_residual")

    def call(self, coarse_up, noise, onehot=None, training=False):
        parts = [_centre(coarse_up), noise]
        if onehot is not None:
            parts.append(label_map(onehot, self.size))
        h = tf.concat(parts, -1)
        for conv, bn in zip(self.convs, self.bns):
            h = tf.nn.relu(bn(conv(h), training=training))
        return tf.tanh(self.out(h))

    def build_all(self):
        s, c = self.size, self.channels
        onehot = tf.zeros([1, self.num_classes]) if self.num_classes else None
        self(tf.zeros([1, s, s, c]), tf.zeros([1, s, s, 1]), onehot)


class Discriminator(keras.Model):
    """Logits float32 [N] of an image (or a residual with its coarse image); see the module docstring.

    Args:
      size: the level size S. in_channels: channels of the concatenated inputs without labels.
      width: channels of the first conv (doubling, at most 8x). num_classes: 0 = unconditional.
      spectral: spectral normalisation of every conv and dense layer.
      conditioning: how the label is used when num_classes > 0: `concat`, `projection`, `acgan`.
    """

    def __init__(self, size: int, in_channels: int, width: int, num_classes: int = 0,
                 spectral: bool = False, conditioning: str = "concat", name: str = "discriminator"):
        super().__init__(name=name)
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning={conditioning!r} is not one of {list(CONDITIONINGS)}")
        self.size, self.in_channels, self.num_classes, self.spectral = size, in_channels, num_classes, spectral
        self.conditioning = conditioning if num_classes else "concat"
        self.convs, s, i = [], size, 0
        while s > 4 or i == 0:
            conv = keras.layers.Conv2D(width * 2 ** min(i, 3), 4, strides=2 if s > 1 else 1, padding="same",
                                       name=f"conv{i}")
            self.convs.append(keras.layers.SpectralNormalization(conv, name=f"sn_conv{i}") if spectral else conv)
            s, i = max(1, (s + 1) // 2), i + 1
        self.dense = self._dense(1, "logit")
        features = s * s * width * 2 ** min(i - 1, 3)
        self.embed = self._dense(features, "embed", use_bias=False) if self.conditioning == "projection" else None
        self.class_dense = self._dense(num_classes, "class_logits") if self.conditioning == "acgan" else None

    def _dense(self, units: int, name: str, use_bias: bool = True):
        dense = keras.layers.Dense(units, use_bias=use_bias, name=name)
        return keras.layers.SpectralNormalization(dense, name=f"sn_{name}") if self.spectral else dense

    def _apply(self, layer, x, training):
        return layer(x, training=training) if self.spectral else layer(x)

    def call(self, inputs, onehot=None, training=False, with_classes=False):
        """inputs: list of float32 [N, S, S, c_i] (already centred where they are images); onehot
        float32 [N, K] (ignored by `acgan`). Returns the logits [N], or (logits [N], class logits
        [N, K]) with `with_classes` (`acgan` only)."""
        parts = list(inputs)
        if onehot is not None and self.conditioning == "concat":
            parts.append(label_map(onehot, self.size))
        h = tf.concat(parts, -1)
        for conv in self.convs:
            h = tf.nn.leaky_relu(self._apply(conv, h, training), 0.2)
        h = tf.reshape(h, [-1, h.shape[1] * h.shape[2] * h.shape[3]])
        logits = self._apply(self.dense, h, training)[:, 0]
        if self.embed is not None:
            if onehot is None:
                raise ValueError("a projection discriminator needs the one-hot labels (onehot is None)")
            logits += tf.reduce_sum(self._apply(self.embed, onehot, training) * h, axis=-1)
        if not with_classes:
            return logits
        if self.class_dense is None:
            raise ValueError("with_classes=True needs a discriminator built with conditioning='acgan'")
        return logits, self._apply(self.class_dense, h, training)

    def build_all(self):
        onehot = tf.zeros([1, self.num_classes]) if self.num_classes else None
        self([tf.zeros([1, self.size, self.size, self.in_channels])], onehot,
             with_classes=self.class_dense is not None)
