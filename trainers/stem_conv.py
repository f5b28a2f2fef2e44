"""The energy net's first conv (few input channels, stride 2) with a faster, exact input gradient.

Every Langevin step needs dE/dx, so the first layer's input gradient runs once per step. TF's
own kernel for it (`Conv2DBackpropInput`, oneDNN on CPU) writes 1 or 3 output channels, which
fill only a sliver of the SIMD lanes: on the benchmark's 64-px RGB net at batch 64 it ran at
about 32 GFLOP/s against 190-230 for the other layers' input gradients, one eighth of the loop's
time for 3% of its FLOPs (docs/BENCHMARKS.md, section 1, "Where the time goes").

The same gradient as one stride-1 conv: a stride-2 conv with a k x k kernel equals a stride-1
VALID conv on the space-to-depth (block 2) rearrangement of the padded input, with the kernel
zero-padded to k2 = 2 * ceil(k / 2) and rearranged to [k2/2, k2/2, 4 * Cin, Cout]. Its input
gradient is then a plain 'full' correlation of dy [N, Ho, Wo, Cout] with the flipped, transposed
kernel onto 4 * Cin channels (the four output phases side by side), and depth-to-space puts the
phases back in place. The kernel oneDNN runs is a forward conv writing 4 * Cin channels: 1.6x the
FLOPs of the true gradient, about twice as fast here. The forward and the filter gradient are TF's
own. The result is the same function to float rounding (tests/test_stem_conv.py checks the
forward, dx, dW and the second-order gradient against `tf.nn.conv2d`), with the same variables, so
saved weights are interchangeable with the plain layer's (`with_stem_gradient`).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

OP_NAME = "stem_input_gradient"  # the name of its conv op: profiles find it by this name


def _axis_geometry(size: int, kernel: int) -> tuple[int, int, int]:
    """(out, shift, blocks) for one spatial axis of a stride-2 'SAME' conv: `out` outputs; the
    k2-padded kernel starts `shift` pixels before the input; `blocks` space-to-depth blocks."""
    out = -(-size // 2)
    top = max((out - 1) * 2 + kernel - size, 0) // 2  # TF's 'SAME' padding before the input
    k2 = 2 * math.ceil(kernel / 2)
    shift = top + (k2 - kernel)
    # Enough blocks for every output's window and for the whole input (pixels past the last
    # window, possible when TF pads nothing after, get a zero gradient).
    return out, shift, max(out + k2 // 2 - 1, -(-(shift + size) // 2))


def input_gradient(dy, kernel, input_shape):
    """dL/dx of `tf.nn.conv2d(x, kernel, 2, "SAME")` given dy = dL/dy, as one stride-1 conv.

    Args:
      dy: [N, Ho, Wo, Cout], Ho = ceil(H / 2), Wo = ceil(W / 2).
      kernel: [k, k, Cin, Cout] (square, any k >= 1).
      input_shape: (H, W), static.

    Returns:
      [N, H, W, Cin], dy's dtype.
    """
    k, cin, cout = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    (h, w), half = input_shape, math.ceil(k / 2)
    out_h, shift_h, blocks_h = _axis_geometry(h, k)
    out_w, shift_w, blocks_w = _axis_geometry(w, k)
    padded = tf.pad(kernel, [[2 * half - k, 0], [2 * half - k, 0], [0, 0], [0, 0]])  # [k2, k2, Cin, Cout]
    phases = tf.reshape(padded, [half, 2, half, 2, cin, cout])
    s2d_kernel = tf.reshape(tf.transpose(phases, [0, 2, 1, 3, 4, 5]), [half, half, 4 * cin, cout])
    full = tf.transpose(tf.reverse(s2d_kernel, [0, 1]), [0, 1, 3, 2])  # [k2/2, k2/2, Cout, 4 Cin]
    pads = [[0, 0], [half - 1, blocks_h - out_h], [half - 1, blocks_w - out_w], [0, 0]]
    blocks = tf.nn.conv2d(dy, full, 1, pads, name=OP_NAME)
    return tf.nn.depth_to_space(blocks, 2)[:, shift_h:shift_h + h, shift_w:shift_w + w, :]


def stem_conv(x, kernel):
    """`tf.nn.conv2d(x, kernel, 2, "SAME")` ([N, H, W, Cin] -> [N, ceil(H/2), ceil(W/2), Cout],
    static H, W) whose input gradient is `input_gradient`; the filter gradient is TF's own. The
    gradient is built from differentiable ops, so second-order gradients hold too."""
    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            dx = input_gradient(dy, kernel, (x.shape[1], x.shape[2]))
            dw = tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                                                 strides=[1, 2, 2, 1], padding="SAME")
            return dx, dw
        return tf.nn.conv2d(x, kernel, 2, "SAME"), grad
    # Read a variable kernel here, outside: its gradient then flows through the read.
    return conv(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))


def with_stem_gradient(conv: keras.layers.Conv2D) -> keras.layers.Conv2D:
    """`conv` (a 2-D, stride-2, 'same' `keras.layers.Conv2D`) computed by `stem_conv` from now on.

    The layer keeps its class, variables (kernel [k, k, Cin, Cout], bias [Cout]) and outputs, so
    saved weights (whose keys Keras derives from the class names) load in either direction. Only
    the instance's `convolution_op` changes.

    Raises:
      ValueError: another stride or padding.
    """
    if tuple(conv.strides) != (2, 2) or conv.padding != "same" or tuple(conv.dilation_rate) != (1, 1):
        raise ValueError(f"{conv.name}: the stem gradient needs a stride-2 'same' conv without dilation; got "
                         f"strides={conv.strides!r}, padding={conv.padding!r}, dilation={conv.dilation_rate!r}")
    conv.convolution_op = stem_conv
    return conv
