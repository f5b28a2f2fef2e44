"""In-graph helpers for SavedModel signatures: pixel conversion, seeds and input validation.

Every family's export signatures validate their inputs inside the graph with these
(`tf.debugging.assert_*` with messages naming the argument), so a bad rank, size, value range or
count raises `InvalidArgumentError` (also what TF Serving returns) and the process never aborts.
"""

from __future__ import annotations

import tensorflow as tf


def to_uint8(x):
    """float [..] in [0, 1] (clipped) -> uint8 [..] in [0, 255], rounded."""
    x = tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0)
    return tf.cast(tf.round(x * 255.0), tf.uint8)


def to_float(images_u8):
    """uint8 [..] -> float32 [..] in [0, 1]."""
    return tf.cast(images_u8, tf.float32) / 255.0


def seed_pair(seed, stream: int):
    """int32 [] seed s -> the stateless seed pair int32 [2] = [s, stream]."""
    return tf.stack([seed, tf.constant(stream, tf.int32)])


def check_scalar(x, name):
    """Assertions that x has rank 0."""
    return [tf.debugging.assert_rank(x, 0, message=f"{name} must be a scalar (rank 0)")]


def check_count(n, name, cap):
    """Assertions that the int32 scalar n is in [1, cap]."""
    return [
        tf.debugging.assert_greater_equal(n, 1, message=f"{name} must be in [1, {cap}]"),
        tf.debugging.assert_less_equal(n, cap, message=f"{name} must be in [1, {cap}]"),
    ]


def check_images(x, name, size, channels, last=None):
    """Assertions that x is [N, size, size, channels] with N >= 1 (channels=last when given).

    The shape checks run only after the rank check passed, so the first error names the problem.
    """
    c = channels if last is None else last
    rank_ok = tf.debugging.assert_rank(x, 4, message=f"{name} must have rank 4 [N, {size}, {size}, {c}]")
    with tf.control_dependencies([rank_ok]):
        shape = tf.shape(x)
        return [
            tf.debugging.assert_equal(shape[1:], tf.constant([size, size, c]),
                                      message=f"{name} must have shape [N, {size}, {size}, {c}]"),
            tf.debugging.assert_greater_equal(shape[0], 1, message=f"{name} must hold N >= 1 images"),
        ]


def inpaint_inputs(images, mask, seed, size, channels, cap):
    """Validate the `inpaint` signature's inputs in the graph; the checked model inputs.

    Args:
      images: uint8 [N, size, size, channels]. mask: uint8 [N, size, size, 1], 1 = missing.
      seed: int32 []. size, channels: the model's geometry. cap: the largest N.

    Returns:
      (x float32 [N, size, size, channels] in [0, 1], m float32 [N, size, size, 1] in {0, 1},
      seed int32 []), each computed after every check has passed.
    """
    checks = (check_images(images, "images", size, channels)
              + check_images(mask, "mask", size, channels, last=1) + check_scalar(seed, "seed"))
    with tf.control_dependencies(checks):
        checks = check_count(tf.shape(images)[0], "the number of images N", cap) + [
            tf.debugging.assert_equal(tf.shape(mask)[0], tf.shape(images)[0],
                                      message="mask must have the same N as images"),
            tf.debugging.assert_less_equal(mask, tf.constant(1, tf.uint8),
                                           message="mask must hold 0 (observed) or 1 (missing)")]
    with tf.control_dependencies(checks):
        x = tf.ensure_shape(to_float(images), [None, size, size, channels])
        m = tf.ensure_shape(tf.cast(mask, tf.float32), [None, size, size, 1])
        return x, m, tf.identity(tf.reshape(seed, []))
