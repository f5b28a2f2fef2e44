"""ConvNet energy functions f_S(x), one per grid size S of the multi-grid EBM.

Sign convention: the network computes f(x) and p(x) is proportional to exp(f(x)), so a higher
energy value means a *more* probable image. Training minimises mean f(synth) - mean f(obs).

Architecture (the multi-grid reference code's layer shapes; every layer is
conv -> [norm] -> activation, 'same' padding, channels-last, then a dense layer to one scalar):

=========  ==============================================================================
grid S     conv layers (kernel/stride, channels at width 1.0)
=========  ==============================================================================
S <= 4     5x5/2 96, 3x3/1 128, 3x3/1 256                       (the reference 4x4 net)
4 < S<=16  5x5/2 96, 3x3/1 128, 3x3/1 256, 3x3/1 512             (the reference 16x16 net)
S > 16     log2(S) - 2 convs 5x5/2 with 64, 128, 256, 512, 512, ... (capped at 512), so the
           last feature map is 4x4 (ceil(S / 2**k) when S is not a power of two):
           32 px -> 64-128-256 (the first three layers of the reference 64x64 net),
           64 px -> 64-128-256-512 (the reference 64x64 net), 128 px -> 64-...-512-512.
=========  ==============================================================================

So a 2-px grid uses the 4x4 net and an 8-px grid uses the 16x16 net. Grid 1 has no network (its
samples are the observed or drawn 1x1 images).

Norms (`norm`): "none"; "batch", Keras BatchNormalization (batch statistics in training,
moving averages in the Langevin chains and at export); "batch_stats", the multi-grid authors'
code's use of BatchNorm: every call normalises by the statistics of the batch it is given (their
nets run with `training=True` in the chains too), with learned scale and offset, no moving
averages, so a sample depends on the other chains of its batch. Its nets take the pixels as
they are (no centring, as theirs: the zero padding of the first conv is black), and the norm
right after that conv makes the energy blind to the pixels' scale, so their [0, 255] pixels
with step size delta are exactly [0, 1] pixels with step size delta / 255.

Input: float32 [N, S, S, C] in [0, 1]. The net (but with "batch_stats") centres it as
(x - 0.5) * 2 (range [-1, 1]) before the first conv, so initial energies and their pixel
gradients are well scaled for [0, 1] pixels. Under a mixed-precision policy the convs compute in
float16/bfloat16 and the final dense layer and the energies are float32. The first conv (5x5,
stride 2) computes by `trainers.stem_conv`: the same layer and variables, with an exact input
gradient that runs about twice as fast on CPU.

`features(x)` is the concatenation of the global-average-pooled outputs (after the activation)
of *every* conv layer: D_S = sum of the conv channel counts (480 for the 4x4 net, 992 for the
16x16 net, 448 for the 32-px net, 960 for the 64-px net at width 1.0).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from trainers.stem_conv import with_stem_gradient

NORMS = ("none", "batch", "batch_stats", "spectral")
ACTIVATIONS = ("leaky_relu", "elu", "swish", "relu")
LEAKY_SLOPE = 0.2


def layer_specs(grid_size: int, width: float = 1.0) -> list[tuple[int, int, int]]:
    """The conv layers of the energy net for one grid size.

    Args:
      grid_size: S, the side of the square input (>= 2).
      width: multiplier on every channel count (> 0); counts are rounded, at least 1.

    Returns:
      A list of (kernel_size, stride, channels) per conv layer, in order.

    Raises:
      ValueError: grid_size < 2 or width <= 0.
    """
    if not isinstance(grid_size, int) or grid_size < 2:
        raise ValueError(f"grid_size={grid_size!r} must be an integer >= 2 (grid 1 has no energy net)")
    if not width > 0:
        raise ValueError(f"width={width!r} must be > 0 (1.0 = the reference channel counts)")
    if grid_size <= 4:
        base = [(5, 2, 96), (3, 1, 128), (3, 1, 256)]
    elif grid_size <= 16:
        base = [(5, 2, 96), (3, 1, 128), (3, 1, 256), (3, 1, 512)]
    else:
        num = max(1, int(math.ceil(math.log2(grid_size))) - 2)
        base = [(5, 2, min(64 * 2 ** i, 512)) for i in range(num)]
    return [(k, s, max(1, int(round(c * width)))) for k, s, c in base]


class BatchStatsNorm(keras.layers.Layer):
    """Normalisation by the statistics of the batch it is called on, train and sample alike.

    y = gamma * (x - mean) / sqrt(var + epsilon) + beta, mean and var over [N, H, W] per channel
    of the input float [N, H, W, C]; gamma (ones) and beta (zeros) are learned [C]. No state
    but those two: no moving averages, so `training` changes nothing.
    """

    def __init__(self, epsilon: float = 1e-5, name: str | None = None):
        super().__init__(name=name)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        c = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(c,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(c,), initializer="zeros", name="beta")

    def call(self, x):
        mean, var = tf.nn.moments(x, axes=[0, 1, 2], keepdims=True)
        return tf.nn.batch_normalization(x, mean, var, tf.cast(self.beta, x.dtype), tf.cast(self.gamma, x.dtype),
                                         self.epsilon)


def activation_fn(name: str):
    """The activation `name` (one of ACTIVATIONS) as a plain function float32 -> float32."""
    fns = {"leaky_relu": lambda x: tf.nn.leaky_relu(x, LEAKY_SLOPE), "elu": tf.nn.elu,
           "swish": tf.nn.silu, "relu": tf.nn.relu}
    if name not in fns:
        raise ValueError(f"activation={name!r} is not allowed; allowed values: {list(ACTIVATIONS)}")
    return fns[name]


def _activation(name: str):
    if name == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE)
    if name == "elu":
        return keras.layers.Activation("elu")
    if name == "swish":
        return keras.layers.Activation("swish")
    if name == "relu":
        return keras.layers.ReLU()
    raise ValueError(f"activation={name!r} is not allowed; allowed values: {list(ACTIVATIONS)}")


class EnergyNet(keras.Model):
    """A ConvNet energy f(x) for one grid: higher f = more probable.

    Call: `net(x, training=False) -> [N] float32` for x float32 [N, S, S, C] in [0, 1].
    `net.features(x) -> [N, D] float32`: pooled conv activations (see the module docstring).

    Attributes:
      grid_size, channels, norm, activation, width: the construction arguments.
      specs: the conv layer list from `layer_specs`.
      feature_dim: D, the length of `features(x)`.
      batch_dependent: True for norm "batch_stats": an image's energy depends on its batch, so
        the observed and synthesized images must go through the net in separate calls.
      STEM_GRADIENT: class default True: a stride-2 first conv computes by
        `trainers.stem_conv.stem_conv` (the same layer, with an exact input gradient about twice
        as fast on CPU); False leaves TF's own (the slower baseline, for comparisons). Saved
        weights load either way.
    """

    STEM_GRADIENT = True

    def __init__(self, grid_size: int, channels: int, norm: str = "none",
                 activation: str = "leaky_relu", width: float = 1.0, name: str | None = None):
        if channels not in (1, 3):
            raise ValueError(f"channels={channels!r} must be 1 or 3")
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not allowed; allowed values: {list(NORMS)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not allowed; allowed values: {list(ACTIVATIONS)}")
        super().__init__(name=name or f"energy_{grid_size}")
        self.grid_size = grid_size
        self.channels = channels
        self.norm = norm
        self.activation_name = activation
        self.width = width
        self.batch_dependent = norm == "batch_stats"
        self.specs = layer_specs(grid_size, width)
        self.feature_dim = sum(c for _, _, c in self.specs)
        self.convs, self.norms, self.acts = [], [], []
        for i, (k, s, c) in enumerate(self.specs):
            conv = keras.layers.Conv2D(c, k, strides=s, padding="same", name=f"conv{i + 1}")
            if i == 0 and s == 2 and self.STEM_GRADIENT:
                conv = with_stem_gradient(conv)  # the same layer and outputs, a faster dE/dx
            if norm == "spectral":
                conv = keras.layers.SpectralNormalization(conv, name=f"sn_conv{i + 1}")
            self.convs.append(conv)
            self.norms.append(keras.layers.BatchNormalization(name=f"bn{i + 1}") if norm == "batch"
                              else BatchStatsNorm(name=f"bsn{i + 1}") if norm == "batch_stats" else None)
            self.acts.append(_activation(activation))
        self.flatten = keras.layers.Flatten()
        dense = keras.layers.Dense(1, use_bias=False, dtype="float32", name="energy")
        self.dense = keras.layers.SpectralNormalization(dense, name="sn_energy") if norm == "spectral" else dense

    def _check(self, x):
        shape = x.shape
        if shape.rank != 4 or shape[1] != self.grid_size or shape[2] != self.grid_size or shape[3] != self.channels:
            raise ValueError(
                f"{self.name}: input shape {shape} must be [N, {self.grid_size}, {self.grid_size}, "
                f"{self.channels}] (float32 pixels in [0, 1])")

    def _trunk(self, x, training):
        x = tf.convert_to_tensor(x)
        self._check(x)
        h = tf.cast(x, tf.float32)
        if not self.batch_dependent:
            h = (h - 0.5) * 2.0
        outs = []
        for conv, norm, act in zip(self.convs, self.norms, self.acts):
            h = conv(h, training=training) if self.norm == "spectral" else conv(h)
            if isinstance(norm, BatchStatsNorm):
                h = norm(h)
            elif norm is not None:
                h = norm(h, training=training)
            h = act(h)
            outs.append(h)
        return outs

    def call(self, x, training=False):
        """Energies f(x): float32 [N] for x float32 [N, S, S, C] in [0, 1]."""
        h = self._trunk(x, training)[-1]
        h = self.flatten(h)
        if self.norm == "spectral":
            e = self.dense(h, training=training)
        else:
            e = self.dense(h)
        return tf.cast(tf.reshape(e, [-1]), tf.float32)

    def features(self, x, training=False):
        """Pooled activations: float32 [N, feature_dim], the GAP of every conv layer, concatenated."""
        outs = self._trunk(x, training)
        return tf.concat([tf.cast(tf.reduce_mean(h, axis=[1, 2]), tf.float32) for h in outs], axis=-1)


def build_energy_net(grid_size: int, channels: int, norm: str = "none", activation: str = "leaky_relu",
                     width: float = 1.0, name: str | None = None) -> EnergyNet:
    """An `EnergyNet` for one grid, with its variables created (built on a [1, S, S, C] input).

    Args:
      grid_size: S >= 2. channels: 1 or 3. norm: "none" (default), "batch", "batch_stats" (see
      the module docstring) or "spectral" (keras.layers.SpectralNormalization).
      activation: "leaky_relu" (slope 0.2, default), "elu", "swish" or "relu".
      width: channel multiplier (> 0). name: the Keras name.

    Returns:
      The built net; call it inside a `tf.distribute` strategy scope to get mirrored variables.

    Raises:
      ValueError: a bad argument, named in the message.
    """
    net = EnergyNet(grid_size, channels, norm=norm, activation=activation, width=width, name=name)
    net(tf.zeros([1, grid_size, grid_size, channels], tf.float32))
    return net
