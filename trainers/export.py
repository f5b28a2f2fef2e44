"""SavedModel export of a trained `MultiGridEBM`, for TF Serving, `saved_model_cli` and evaluators.

Signatures (uint8 pixels at the boundary, float32 [0, 1] inside):

- `sample(num_samples: int32 [], seed: int32 []) -> {images: uint8 [N,H,W,C],
  grid_S: uint8 [N,S,S,C] for every grid of the chain, 1 included}`; the 1x1 starts are drawn
  from the training data's 1x1 statistics stored in the model.
- `sample_from_coarse(coarse: float32 [N,1,1,C] in [0,1], seed: int32 []) -> same outputs`.
- `energy(images: uint8 [N,H,W,C]) -> {energy_S: float32 [N]}` for every trained grid S.
- `inpaint(images: uint8 [N,H,W,C], mask: uint8 [N,H,W,1] (1 = missing, 0 = observed),
  seed: int32 []) -> {images: uint8 [N,H,W,C]}`; observed pixels are returned exactly.
- `features(images: uint8 [N,H,W,C]) -> {features_S: float32 [N, D_S]}` for every trained grid S.

Input validation happens inside the graph (`tf.debugging.assert_*` with messages naming the
argument), so a bad rank, size, value range or count raises `InvalidArgumentError`, which is also
what TF Serving returns; the process never aborts. For that reason the declared input shapes are
left open (unknown rank): a declared shape would make the Python wrapper reject bad shapes with a
different error type before the graph runs. A wrong *dtype* cannot reach the graph: it is
rejected at the boundary, by `loaded.signatures[name](...)` with `InvalidArgumentError` ("expected
to be a int32 tensor but is a float tensor"; TF 2.16 and 2.21), by the `loaded.<name>(...)`
attribute with `TypeError`.

Caps: `num_samples`, and N of `sample_from_coarse` and `inpaint`, must be in
[1, config.export.max_num_samples]; `energy` and `features` need N >= 1.

Seeds: the int32 seed s becomes the stateless seed pairs [s, 0] (1x1 starts), [s, 1] (chains),
[s, 2] (inpainting), so the same seed and arguments always give the same output.

The functions are traced with `autograph=False` (the model's code is graph code with explicit
`tf.while_loop`s, as under Keras' `fit`). The Keras model's variables are tracked on the exported
`tf.Module` (a Keras 3 model kept only as
an attribute saves but fails in `saved_model_cli run` with "Could not find variable").
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import posixpath
import tempfile
import uuid

import keras
import numpy as np
import tensorflow as tf

CONFIG_ASSET = "config.json"
SIGNATURES = ("sample", "sample_from_coarse", "energy", "inpaint", "features")


class ExportError(ValueError):
    """The export folder or the exported model is unusable; the message says why."""


def _to_uint8(x):
    x = tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0)
    return tf.cast(tf.round(x * 255.0), tf.uint8)


def _to_float(images_u8):
    return tf.cast(images_u8, tf.float32) / 255.0


def _seed_pair(seed, stream: int):
    return tf.stack([seed, tf.constant(stream, tf.int32)])


def _check_scalar(x, name):
    return [tf.debugging.assert_rank(x, 0, message=f"{name} must be a scalar (rank 0)")]


def _check_count(n, name, cap):
    return [
        tf.debugging.assert_greater_equal(n, 1, message=f"{name} must be in [1, {cap}]"),
        tf.debugging.assert_less_equal(n, cap, message=f"{name} must be in [1, {cap}]"),
    ]


def _check_images(x, name, size, channels, last=None):
    """Asserts that x is [N, size, size, channels] with N >= 1 (channels=last when given).

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


def _versions() -> dict:
    out = {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}
    try:
        out["multigrid-ebm"] = importlib.metadata.version("multigrid-ebm")
    except importlib.metadata.PackageNotFoundError:
        out["multigrid-ebm"] = "unknown"
    return out


def build_export_config(model, config, metadata: dict) -> dict:
    """The `assets/config.json` content: geometry, trained grids, config, metadata, versions."""
    cfg = config.to_dict()
    return {
        "grids": [int(g) for g in model.grids],
        "image_size": int(model.grids[-1]),
        "channels": int(metadata.get("channels", config.data.channels)),
        "trained_grids": [int(g) for g in model.trained_grids],
        "family": config.model.family,
        "sampler": cfg["sampler"],
        "seed": int(config.train.seed),
        "fingerprint": metadata.get("fingerprint"),
        "max_num_samples": int(config.export.max_num_samples),
        "signatures": list(SIGNATURES),
        "config": cfg,
        "metadata": metadata,
        "versions": _versions(),
    }


def _build_module(model, size: int, channels: int, cap: int) -> tf.Module:
    """A tf.Module whose tf.functions are the five signatures, closing over `model`."""
    trained = tuple(int(g) for g in model.trained_grids)
    module = tf.Module()

    def chain_outputs(coarse, seed):
        samples = model.synthesize(coarse, _seed_pair(seed, 1))
        out = {f"grid_{int(s)}": _to_uint8(x) for s, x in samples.items()}
        out.setdefault("grid_1", _to_uint8(coarse))
        out["images"] = out[f"grid_{size}"]
        return out

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.int32, name="num_samples"),
                                  tf.TensorSpec(None, tf.int32, name="seed")])
    def sample(num_samples, seed):
        checks = (_check_scalar(num_samples, "num_samples") + _check_scalar(seed, "seed")
                  + _check_count(num_samples, "num_samples", cap))
        with tf.control_dependencies(checks):
            num = tf.identity(tf.reshape(num_samples, []))
            seed = tf.identity(tf.reshape(seed, []))
        coarse = model.sample_coarse(num, _seed_pair(seed, 0))
        return chain_outputs(coarse, seed)

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.float32, name="coarse"),
                                  tf.TensorSpec(None, tf.int32, name="seed")])
    def sample_from_coarse(coarse, seed):
        checks = _check_images(coarse, "coarse", 1, channels) + _check_scalar(seed, "seed")
        with tf.control_dependencies(checks):
            checks = _check_count(tf.shape(coarse)[0], "the number of coarse starts N", cap) + [
                tf.debugging.assert_greater_equal(coarse, 0.0, message="coarse must be in [0, 1]"),
                tf.debugging.assert_less_equal(coarse, 1.0, message="coarse must be in [0, 1]")]
        with tf.control_dependencies(checks):
            coarse = tf.ensure_shape(tf.identity(coarse), [None, 1, 1, channels])
            seed = tf.identity(tf.reshape(seed, []))
        return chain_outputs(coarse, seed)

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images")])
    def energy(images):
        with tf.control_dependencies(_check_images(images, "images", size, channels)):
            x = tf.ensure_shape(_to_float(images), [None, size, size, channels])
        energies = model.energies(x)
        return {f"energy_{s}": tf.cast(energies[s], tf.float32) for s in trained}

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images")])
    def features(images):
        with tf.control_dependencies(_check_images(images, "images", size, channels)):
            x = tf.ensure_shape(_to_float(images), [None, size, size, channels])
        feats = model.features(x)
        return {f"features_{s}": tf.cast(feats[s], tf.float32) for s in trained}

    @tf.function(autograph=False, input_signature=[tf.TensorSpec(None, tf.uint8, name="images"),
                                  tf.TensorSpec(None, tf.uint8, name="mask"),
                                  tf.TensorSpec(None, tf.int32, name="seed")])
    def inpaint(images, mask, seed):
        checks = (_check_images(images, "images", size, channels)
                  + _check_images(mask, "mask", size, channels, last=1) + _check_scalar(seed, "seed"))
        with tf.control_dependencies(checks):
            checks = _check_count(tf.shape(images)[0], "the number of images N", cap) + [
                tf.debugging.assert_equal(tf.shape(mask)[0], tf.shape(images)[0],
                                          message="mask must have the same N as images"),
                tf.debugging.assert_less_equal(mask, tf.constant(1, tf.uint8),
                                               message="mask must hold 0 (observed) or 1 (missing)")]
        with tf.control_dependencies(checks):
            x = tf.ensure_shape(_to_float(images), [None, size, size, channels])
            m = tf.ensure_shape(tf.cast(mask, tf.float32), [None, size, size, 1])
            seed = tf.identity(tf.reshape(seed, []))
        filled = model.inpaint(x, m, _seed_pair(seed, 2))
        out = _to_uint8(filled)
        # Observed pixels exactly as given (no float round trip).
        out = tf.where(tf.cast(mask, tf.bool), out, images)
        return {"images": out}

    module.sample = sample
    module.sample_from_coarse = sample_from_coarse
    module.energy = energy
    module.inpaint = inpaint
    module.features = features
    return module


def _track_variables(module: tf.Module, fns) -> None:
    """Put every variable the traced functions use on the module (see the module docstring)."""
    seen, variables = set(), []
    for fn in fns:
        concrete = fn.get_concrete_function()
        for v in list(concrete.trainable_variables) + list(concrete.variables):
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(v)
    module._all_variables = variables  # pylint: disable=protected-access


def _replace_dir(tmp_dir: str, export_dir: str) -> None:
    """Move the finished tmp_dir to export_dir, replacing any previous export."""
    old = None
    if tf.io.gfile.exists(export_dir):
        old = f"{export_dir}.old-{uuid.uuid4().hex[:8]}"
        tf.io.gfile.rename(export_dir, old)
    tf.io.gfile.rename(tmp_dir, export_dir)
    if old is not None:
        tf.io.gfile.rmtree(old)


def export_saved_model(model, export_dir: str, config, metadata: dict) -> str:
    """Write the SavedModel (signatures above, asset `config.json`) to export_dir.

    The model is written to a sibling temporary folder and renamed into place once complete,
    so a folder named export_dir always holds a whole SavedModel (`saved_model.pb` directly in it).

    Args:
      model: a trained (built) `MultiGridEBM`.
      export_dir: destination folder; an existing export there is replaced.
      config: the `Config` the model was trained with.
      metadata: the pyramid metadata dict (grids, image_size, channels, fingerprint, ...).

    Returns:
      export_dir.
    """
    size = int(model.grids[-1])
    channels = int(metadata.get("channels", config.data.channels))
    cap = int(config.export.max_num_samples)
    module = _build_module(model, size, channels, cap)
    fns = [getattr(module, name) for name in SIGNATURES]
    _track_variables(module, fns)

    export_dir = str(export_dir).rstrip("/")
    parent = posixpath.dirname(export_dir)
    if parent:
        tf.io.gfile.makedirs(parent)
    tmp_dir = f"{export_dir}.tmp-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as local:
        asset_path = os.path.join(local, CONFIG_ASSET)
        with open(asset_path, "w", encoding="utf-8") as f:
            json.dump(build_export_config(model, config, metadata), f, indent=2, sort_keys=True)
        module.config_asset = tf.saved_model.Asset(asset_path)
        signatures = {name: getattr(module, name).get_concrete_function() for name in SIGNATURES}
        try:
            tf.saved_model.save(module, tmp_dir, signatures=signatures)
        except Exception:
            if tf.io.gfile.exists(tmp_dir):
                tf.io.gfile.rmtree(tmp_dir)
            raise
    _replace_dir(tmp_dir, export_dir)
    return export_dir


def load_exported(export_dir: str):
    """Load an exported model and its `assets/config.json`.

    Args:
      export_dir: a folder written by `export_saved_model` (holds saved_model.pb).

    Returns:
      (loaded, info): the `tf.saved_model.load` object (call `loaded.signatures["sample"](...)`
      or `loaded.sample(...)`) and the parsed config.json dict.

    Raises:
      ExportError: no SavedModel or no config.json in export_dir.
    """
    export_dir = str(export_dir).rstrip("/")
    if not tf.io.gfile.exists(posixpath.join(export_dir, "saved_model.pb")):
        raise ExportError(f"{export_dir} holds no saved_model.pb: pass the folder that "
                          "`mgebm train` exported (WORKDIR/export)")
    path = posixpath.join(export_dir, "assets", CONFIG_ASSET)
    if not tf.io.gfile.exists(path):
        raise ExportError(f"{path} is missing: {export_dir} was not written by export_saved_model")
    with tf.io.gfile.GFile(path, "r") as f:
        info = json.loads(f.read())
    return tf.saved_model.load(export_dir), info
