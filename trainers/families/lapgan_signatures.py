"""The SavedModel signatures of the LAPGAN / DCGAN families (uint8 pixels out, float32 inside).

- `sample(num_samples: int32 [], seed: int32 [][, labels: int32 [N]]) -> {images: uint8 [N,H,W,C],
  grid_S: uint8 [N,S,S,C] for every level S}`: the coarsest level from noise, then every finer
  level's residual on the upsampled coarser image.
- `sample_from_coarse(coarse: float32 [N,S0,S0,C] in [0, 1], seed: int32 [][, labels: int32 [N]])
  -> the same`: from a given coarsest image (S0 = the coarsest level); one coarse start gives
  different images for different seeds or repeated rows (the paper's check). Only with two levels
  or more (LAPGAN; DCGAN has one level).

`labels` exist only when the model is class-conditional (config.json `conditional`); each must
be one of the trained classes (config.json `classes`), else `InvalidArgumentError` naming
`labels`. Caps: N in [1, cap]. Seeds: the int32 seed s becomes the stateless pair [s, 1]
(`sample`) or [s, 5] (`sample_from_coarse`). Input shapes are declared open (unknown rank), so
every bad input reaches the in-graph checks (see `trainers.export`).
"""

from __future__ import annotations

import tensorflow as tf

from trainers import signature_ops as ops


def check_labels(labels, n, classes):
    """Assertions that labels is int32 [n] with every value in `classes`."""
    rank_ok = tf.debugging.assert_rank(labels, 1, message="labels must have rank 1 [N]")
    with tf.control_dependencies([rank_ok]):
        allowed = tf.constant(list(classes), tf.int32)
        known = tf.reduce_any(tf.equal(tf.reshape(labels, [-1, 1]), allowed[None, :]), axis=1)
        return [
            tf.debugging.assert_equal(tf.shape(labels)[0], n, message="labels must hold one label per sample (N)"),
            tf.debugging.assert_equal(tf.reduce_all(known), True,
                                      message=f"labels must each be one of the trained classes {list(classes)}"),
        ]


def signature_functions(model, cap: int) -> dict:
    """`sample` (and `sample_from_coarse` when the model has two levels or more) of `model` (a
    `LapGAN`) as tf.functions closing over it.

    Returns:
      {name: tf.function with an input_signature}.
    """
    size, channels, s0 = int(model.image_size), int(model.channels), int(model.sizes[0])
    conditional = bool(model.num_classes)

    def outputs(samples):
        out = {f"grid_{int(s)}": ops.to_uint8(x) for s, x in samples.items()}
        out["images"] = out[f"grid_{size}"]
        return out

    def checked_labels(labels, n):
        if not conditional:
            return None
        with tf.control_dependencies(check_labels(labels, n, model.classes)):
            return model.onehot(tf.identity(labels))

    def sample_body(num_samples, seed, labels=None):
        checks = (ops.check_scalar(num_samples, "num_samples") + ops.check_scalar(seed, "seed")
                  + ops.check_count(num_samples, "num_samples", cap))
        with tf.control_dependencies(checks):
            num = tf.identity(tf.reshape(num_samples, []))
            seed = tf.identity(tf.reshape(seed, []))
        onehot = checked_labels(labels, num)
        return outputs(model.synthesize(num, ops.seed_pair(seed, 1), onehot))

    def coarse_body(coarse, seed, labels=None):
        checks = ops.check_scalar(seed, "seed") + ops.check_images(coarse, "coarse", s0, channels)
        with tf.control_dependencies(checks):
            n = tf.shape(coarse)[0]
            checks = ops.check_count(n, "the number of coarse images N", cap) + [
                tf.debugging.assert_greater_equal(coarse, 0.0, message="coarse must lie in [0, 1]"),
                tf.debugging.assert_less_equal(coarse, 1.0, message="coarse must lie in [0, 1]")]
        with tf.control_dependencies(checks):
            x = tf.ensure_shape(tf.identity(coarse), [None, s0, s0, channels])
            seed = tf.identity(tf.reshape(seed, []))
        onehot = checked_labels(labels, n)
        return outputs(model.synthesize(n, ops.seed_pair(seed, 5), onehot, coarse=x))

    num_spec = tf.TensorSpec(None, tf.int32, name="num_samples")
    seed_spec = tf.TensorSpec(None, tf.int32, name="seed")
    coarse_spec = tf.TensorSpec(None, tf.float32, name="coarse")
    labels_spec = tf.TensorSpec(None, tf.int32, name="labels")
    if conditional:
        sample = tf.function(lambda num_samples, seed, labels: sample_body(num_samples, seed, labels),
                             autograph=False, input_signature=[num_spec, seed_spec, labels_spec])
        from_coarse = tf.function(lambda coarse, seed, labels: coarse_body(coarse, seed, labels),
                                  autograph=False, input_signature=[coarse_spec, seed_spec, labels_spec])
    else:
        sample = tf.function(lambda num_samples, seed: sample_body(num_samples, seed),
                             autograph=False, input_signature=[num_spec, seed_spec])
        from_coarse = tf.function(lambda coarse, seed: coarse_body(coarse, seed),
                                  autograph=False, input_signature=[coarse_spec, seed_spec])
    out = {"sample": sample}
    if len(model.sizes) > 1:
        out["sample_from_coarse"] = from_coarse
    return out
