"""The SavedModel signatures of the CF-EBM family (uint8 pixels at the boundary, float32 [0, 1]
inside); `trainers.export` saves them with the family-neutral parts.

- `sample(num_samples: int32 [], seed: int32 []) -> {images: uint8 [N,H,W,C],
  grid_S: uint8 [N,S,S,C] for every stage S}`: uniform noise at the coarsest stage, then the
  smooth MCMC chain through every stage.
- `energy(images: uint8 [N,H,W,C]) -> {energy_H: float32 [N]}`: the last stage's energy.
- `inpaint(images: uint8 [N,H,W,C], mask: uint8 [N,H,W,1] (1 = missing, 0 = observed),
  seed: int32 []) -> {images: uint8 [N,H,W,C]}`; observed pixels are returned exactly.
- `denoise(images: uint8 [N,H,W,C], seed: int32 []) -> {images: uint8 [N,H,W,C]}`: Langevin
  from the noisy images under the learned energy.
- `translate(images: uint8 [N,H,W,C], seed: int32 []) -> {images: uint8 [N,H,W,C]}`: unpaired
  image-to-image translation, the chain from the source-domain images (no cycle consistency).

Caps: `num_samples` and N of `inpaint`, `denoise`, `translate` must be in [1, cap]; `energy`
needs N >= 1. Seeds: the int32 seed s becomes the stateless seed pairs [s, 1] (sampling),
[s, 2] (inpainting), [s, 3] (denoising), [s, 4] (translation). Input shapes are declared open
(unknown rank) so that every bad input reaches the in-graph checks (see `trainers.export`).
"""

from __future__ import annotations

import tensorflow as tf

from trainers import signature_ops as ops


def signature_functions(model, cap: int) -> dict:
    """The five signatures of `model` (a `CFEBM`) as tf.functions closing over it.

    Args:
      model: the built model. cap: the largest N of `sample`, `inpaint`, `denoise`, `translate`.

    Returns:
      {name: tf.function with an input_signature}.
    """
    size, channels = int(model.image_size), int(model.channels)

    def checked_images(images, seed):
        checks = ops.check_images(images, "images", size, channels) + ops.check_scalar(seed, "seed")
        with tf.control_dependencies(checks):
            checks = ops.check_count(tf.shape(images)[0], "the number of images N", cap)
        with tf.control_dependencies(checks):
            x = tf.ensure_shape(ops.to_float(images), [None, size, size, channels])
            seed = tf.identity(tf.reshape(seed, []))
        return x, seed

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.int32, name="num_samples"),
                                                   tf.TensorSpec(None, tf.int32, name="seed")])
    def sample(num_samples, seed):
        checks = (ops.check_scalar(num_samples, "num_samples") + ops.check_scalar(seed, "seed")
                  + ops.check_count(num_samples, "num_samples", cap))
        with tf.control_dependencies(checks):
            num = tf.identity(tf.reshape(num_samples, []))
            seed = tf.identity(tf.reshape(seed, []))
        samples = model.synthesize(num, ops.seed_pair(seed, 1))
        out = {f"grid_{int(s)}": ops.to_uint8(x) for s, x in samples.items()}
        out["images"] = out[f"grid_{size}"]
        return out

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images")])
    def energy(images):
        with tf.control_dependencies(ops.check_images(images, "images", size, channels)):
            x = tf.ensure_shape(ops.to_float(images), [None, size, size, channels])
        return {f"energy_{size}": tf.cast(model.final_energy(x), tf.float32)}

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images"),
                                                   tf.TensorSpec(None, tf.uint8, name="mask"),
                                                   tf.TensorSpec(None, tf.int32, name="seed")])
    def inpaint(images, mask, seed):
        x, m, seed = ops.inpaint_inputs(images, mask, seed, size, channels, cap)
        out = ops.to_uint8(model.inpaint(x, m, ops.seed_pair(seed, 2)))
        return {"images": tf.where(tf.cast(mask, tf.bool), out, images)}  # observed pixels exact

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images"),
                                                   tf.TensorSpec(None, tf.int32, name="seed")])
    def denoise(images, seed):
        x, seed = checked_images(images, seed)
        return {"images": ops.to_uint8(model.denoise(x, ops.seed_pair(seed, 3)))}

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images"),
                                                   tf.TensorSpec(None, tf.int32, name="seed")])
    def translate(images, seed):
        x, seed = checked_images(images, seed)
        return {"images": ops.to_uint8(model.translate(x, ops.seed_pair(seed, 4)))}

    return {"sample": sample, "energy": energy, "inpaint": inpaint, "denoise": denoise,
            "translate": translate}
