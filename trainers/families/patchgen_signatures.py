"""The SavedModel signatures of the PatchGenCN family (uint8 pixels at the boundary, float32
[0, 1] inside); `trainers.export` saves them with the family-neutral parts.

- `sample(num_samples: int32 [], seed: int32 [], height: int32 [], width: int32 [])
  -> {images: uint8 [N, height, width, C]}`: random images of any size and aspect ratio; the
  chains run at the requested size at every scale (`PatchGenInference.synthesize`).
- `energy(images: uint8 [N, H, W, C]) -> {energy: float32 [N]}`: f of the finest scale (a sum
  over patch positions; divide by H * W to compare images of different sizes).
- `super_resolve(images: uint8 [N, h, w, C], seed: int32 [], scale: int32 [])
  -> {images: uint8 [N, h * scale, w * scale, C]}`: repeated upsampling by 1 / factor, each
  followed by a noise-free chain of the finest net.
- `edit(images: uint8 [N, H, W, C], mask: uint8 [N, H, W, 1], seed: int32 [], start_scale:
  int32 []) -> {images}`: a user's pasted or painted edit (mask 1 = edited pixels) harmonised
  into the image: the edited image resized to scale `start_scale`, noisy chains from there to
  the finest scale, the result kept where mask = 1 (elsewhere the input, bit-exact).
- `harmonize(images, mask, seed, start_scale) -> {images}`: an inserted object (mask 1) takes on
  the image's local statistics: the same as `edit` with noise-free chains (the object keeps its
  shape; colours and texture follow the trained patches).
- `style_transfer(images: uint8 [N, H, W, C], seed: int32 [], start_scale: int32 [])
  -> {images}`: the content of another image with the trained image's patch statistics: the
  image resized to scale `start_scale`, noisy chains from there on, no mask.

Limits (all checked in the graph, errors naming the argument): N and `num_samples` in [1, cap];
sides (height, width, H, W, h * scale, w * scale) in [MIN_SIDE, max_side] with max_side = 4 x the
training image's longer side, and MIN_SIDE the smallest side whose coarsest scale is >= 3 px;
`scale` in [1, 8]; `start_scale` in [0, L - 1]; masks hold 0 or 1. Seeds: the int32 seed s
becomes the stateless pairs [s, 1] (sample), [s, 5] (super_resolve), [s, 6] (edit),
[s, 7] (harmonize), [s, 8] (style_transfer). Input shapes are declared open (unknown rank) so
every bad input reaches the in-graph checks.
"""

from __future__ import annotations

import math

import tensorflow as tf

from trainers import signature_ops as ops

MAX_SCALE = 8
SIDE_FACTOR = 4  # max side = SIDE_FACTOR x the training image's longer side


def limits(model) -> tuple[int, int]:
    """(smallest, largest) side a signature accepts for `model`."""
    smallest = int(math.ceil(3.0 / model.factor ** (model.num_scales - 1) - 1e-9))
    return smallest, SIDE_FACTOR * int(model.image_size)


def _check_side(value, name, low, high):
    message = f"{name} must be in [{low}, {high}] pixels"
    return [tf.debugging.assert_greater_equal(value, low, message=message),
            tf.debugging.assert_less_equal(value, high, message=message)]


def _images(images, name, channels, cap, low, high):
    """Checks on uint8 images [N, H, W, channels]; returns float32 [N, H, W, C] after them."""
    rank = tf.debugging.assert_rank(images, 4, message=f"{name} must have rank 4 [N, H, W, {channels}]")
    with tf.control_dependencies([rank]):
        shape = tf.shape(images)
        checks = ([tf.debugging.assert_equal(shape[3], channels,
                                             message=f"{name} must have {channels} channels [N, H, W, {channels}]")]
                  + ops.check_count(shape[0], f"the number of {name} N", cap)
                  + _check_side(shape[1], f"the height H of {name}", low, high)
                  + _check_side(shape[2], f"the width W of {name}", low, high))
    with tf.control_dependencies(checks):
        return tf.ensure_shape(ops.to_float(images), [None, None, None, channels])


def _mask(mask, images):
    rank = tf.debugging.assert_rank(mask, 4, message="mask must have rank 4 [N, H, W, 1]")
    with tf.control_dependencies([rank]):
        checks = [tf.debugging.assert_equal(tf.shape(mask), tf.concat([tf.shape(images)[:3], [1]], 0),
                                            message="mask must have shape [N, H, W, 1] like images"),
                  tf.debugging.assert_less_equal(mask, tf.constant(1, tf.uint8),
                                                 message="mask must hold 0 (keep) or 1 (may change)")]
    with tf.control_dependencies(checks):
        return tf.ensure_shape(tf.cast(mask, tf.float32), [None, None, None, 1])


def _scalar(x, name, low=None, high=None):
    checks = ops.check_scalar(x, name)
    with tf.control_dependencies(checks):
        x = tf.reshape(x, [])
        if low is not None:
            message = f"{name} must be in [{low}, {high}]"
            checks = [tf.debugging.assert_greater_equal(x, low, message=message),
                      tf.debugging.assert_less_equal(x, high, message=message)]
            with tf.control_dependencies(checks):
                return tf.identity(x)
        return tf.identity(x)


def signature_functions(model, cap: int) -> dict:
    """The six signatures of `model` (a `PatchGenCN`) as tf.functions closing over it.

    Args:
      model: the built model. cap: the largest N of every signature.

    Returns:
      {name: tf.function with an input_signature}.
    """
    c, last = int(model.channels), model.num_scales - 1
    low, high = limits(model)
    int_arg = lambda name: tf.TensorSpec(None, tf.int32, name=name)  # noqa: E731
    u8_arg = lambda name: tf.TensorSpec(None, tf.uint8, name=name)  # noqa: E731

    def from_scale(start, fn):
        """tf.switch_case over the start scale (the chains are unrolled per scale)."""
        return tf.switch_case(start, [lambda k=k: fn(k) for k in range(model.num_scales)])

    @tf.function(autograph=False, input_signature=[int_arg("num_samples"), int_arg("seed"),
                                                   int_arg("height"), int_arg("width")])
    def sample(num_samples, seed, height, width):
        num = _scalar(num_samples, "num_samples", 1, cap)
        seed = _scalar(seed, "seed")
        height, width = _scalar(height, "height", low, high), _scalar(width, "width", low, high)
        return {"images": ops.to_uint8(model.synthesize(num, ops.seed_pair(seed, 1), height, width))}

    @tf.function(autograph=False, input_signature=[u8_arg("images")])
    def energy(images):
        return {"energy": model.energy(_images(images, "images", c, 1 << 30, 1, 1 << 30))}

    @tf.function(autograph=False, input_signature=[u8_arg("images"), int_arg("seed"), int_arg("scale")])
    def super_resolve(images, seed, scale):
        scale = _scalar(scale, "scale", 1, MAX_SCALE)
        x = _images(images, "images", c, cap, low, high)
        big = tf.shape(images)[1:3] * scale
        checks = _check_side(tf.reduce_max(big), "the output side (input side x scale)", low, high)
        with tf.control_dependencies(checks):
            seed = _scalar(seed, "seed")
        return {"images": ops.to_uint8(model.super_resolve(x, scale, ops.seed_pair(seed, 5)))}

    def injected(images, mask, seed, start_scale, stream, noise):
        x = _images(images, "images", c, cap, low, high)
        m = _mask(mask, images) if mask is not None else None
        start = _scalar(start_scale, "start_scale", 0, last)
        pair = ops.seed_pair(_scalar(seed, "seed"), stream)
        out = from_scale(start, lambda k: model.inject(x, pair, k, m, noise=noise))
        out = ops.to_uint8(out)
        if mask is not None:  # unchanged pixels bit-exact
            out = tf.where(tf.cast(mask, tf.bool), out, images)
        return {"images": out}

    @tf.function(autograph=False, input_signature=[u8_arg("images"), u8_arg("mask"), int_arg("seed"),
                                                   int_arg("start_scale")])
    def edit(images, mask, seed, start_scale):
        return injected(images, mask, seed, start_scale, 6, noise=True)

    @tf.function(autograph=False, input_signature=[u8_arg("images"), u8_arg("mask"), int_arg("seed"),
                                                   int_arg("start_scale")])
    def harmonize(images, mask, seed, start_scale):
        return injected(images, mask, seed, start_scale, 7, noise=False)

    @tf.function(autograph=False, input_signature=[u8_arg("images"), int_arg("seed"), int_arg("start_scale")])
    def style_transfer(images, seed, start_scale):
        return injected(images, None, seed, start_scale, 8, noise=True)

    return {"sample": sample, "energy": energy, "super_resolve": super_resolve, "edit": edit,
            "harmonize": harmonize, "style_transfer": style_transfer}
