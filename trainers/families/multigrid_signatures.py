"""The SavedModel signatures of the multi-grid family (uint8 pixels at the boundary, float32
[0, 1] inside); `trainers.export` saves them with the family-neutral parts.

- `sample(num_samples: int32 [], seed: int32 []) -> {images: uint8 [N,H,W,C],
  grid_S: uint8 [N,S,S,C] for every grid of the chain, 1 included}`; the 1x1 starts are drawn
  from the training data's 1x1 statistics stored in the model.
- `sample_from_coarse(coarse: float32 [N,1,1,C] in [0,1], seed: int32 []) -> same outputs`.
- `energy(images: uint8 [N,H,W,C]) -> {energy_S: float32 [N]}` for every trained grid S.
- `inpaint(images: uint8 [N,H,W,C], mask: uint8 [N,H,W,1] (1 = missing, 0 = observed),
  seed: int32 []) -> {images: uint8 [N,H,W,C]}`; observed pixels are returned exactly.
- `features(images: uint8 [N,H,W,C]) -> {features_S: float32 [N, D_S]}` for every trained grid S.

Caps: `num_samples`, and N of `sample_from_coarse` and `inpaint`, must be in [1, cap]; `energy`
and `features` need N >= 1. Seeds: the int32 seed s becomes the stateless seed pairs [s, 0]
(1x1 starts), [s, 1] (chains), [s, 2] (inpainting), so the same seed and arguments always give
the same output. Input shapes are declared open (unknown rank) so that every bad input reaches
the in-graph checks (see `trainers.export`).
"""

from __future__ import annotations

import tensorflow as tf

from trainers import signature_ops as ops


def signature_functions(model, cap: int) -> dict:
    """The five signatures of `model` (a `MultiGridEBM`) as tf.functions closing over it.

    Args:
      model: the built model. cap: the largest N of `sample`, `sample_from_coarse`, `inpaint`.

    Returns:
      {name: tf.function with an input_signature}, names in SIGNATURES order.
    """
    size, channels = int(model.image_size), int(model.channels)
    trained = tuple(int(g) for g in model.trained_grids)

    def chain_outputs(coarse, seed):
        samples = model.synthesize(coarse, ops.seed_pair(seed, 1))
        out = {f"grid_{int(s)}": ops.to_uint8(x) for s, x in samples.items()}
        out.setdefault("grid_1", ops.to_uint8(coarse))
        out["images"] = out[f"grid_{size}"]
        return out

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.int32, name="num_samples"),
                                  tf.TensorSpec(None, tf.int32, name="seed")])
    def sample(num_samples, seed):
        checks = (ops.check_scalar(num_samples, "num_samples") + ops.check_scalar(seed, "seed")
                  + ops.check_count(num_samples, "num_samples", cap))
        with tf.control_dependencies(checks):
            num = tf.identity(tf.reshape(num_samples, []))
            seed = tf.identity(tf.reshape(seed, []))
        coarse = model.sample_coarse(num, ops.seed_pair(seed, 0))
        return chain_outputs(coarse, seed)

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.float32, name="coarse"),
                                  tf.TensorSpec(None, tf.int32, name="seed")])
    def sample_from_coarse(coarse, seed):
        checks = ops.check_images(coarse, "coarse", 1, channels) + ops.check_scalar(seed, "seed")
        with tf.control_dependencies(checks):
            checks = ops.check_count(tf.shape(coarse)[0], "the number of coarse starts N", cap) + [
                tf.debugging.assert_greater_equal(coarse, 0.0, message="coarse must be in [0, 1]"),
                tf.debugging.assert_less_equal(coarse, 1.0, message="coarse must be in [0, 1]")]
        with tf.control_dependencies(checks):
            coarse = tf.ensure_shape(tf.identity(coarse), [None, 1, 1, channels])
            seed = tf.identity(tf.reshape(seed, []))
        return chain_outputs(coarse, seed)

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images")])
    def energy(images):
        with tf.control_dependencies(ops.check_images(images, "images", size, channels)):
            x = tf.ensure_shape(ops.to_float(images), [None, size, size, channels])
        energies = model.energies(x)
        return {f"energy_{s}": tf.cast(energies[s], tf.float32) for s in trained}

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images")])
    def features(images):
        with tf.control_dependencies(ops.check_images(images, "images", size, channels)):
            x = tf.ensure_shape(ops.to_float(images), [None, size, size, channels])
        feats = model.features(x)
        return {f"features_{s}": tf.cast(feats[s], tf.float32) for s in trained}

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images"),
                                  tf.TensorSpec(None, tf.uint8, name="mask"),
                                  tf.TensorSpec(None, tf.int32, name="seed")])
    def inpaint(images, mask, seed):
        x, m, seed = ops.inpaint_inputs(images, mask, seed, size, channels, cap)
        filled = model.inpaint(x, m, ops.seed_pair(seed, 2))
        out = ops.to_uint8(filled)
        # Observed pixels exactly as given (no float round trip).
        out = tf.where(tf.cast(mask, tf.bool), out, images)
        return {"images": out}

    return {"sample": sample, "sample_from_coarse": sample_from_coarse, "energy": energy,
            "inpaint": inpaint, "features": features}
