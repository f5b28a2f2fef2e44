"""SavedModel export of a trained model of any registered family, for TF Serving,
`saved_model_cli` and evaluators.

The signatures are the family's (`model.export_signatures(max_num_samples)`, see the model
contract in `trainers.families`); the multi-grid family's five are described in
`trainers.families.multigrid_signatures`. The asset `config.json` names the family
(`"family"`, the `model.family` value) and the exported signatures (`"signatures"`), beside the
geometry (`model.export_info()`: grids, image_size, ...), the config, the pyramid metadata and
the library versions.

Input validation happens inside the graph (`trainers.signature_ops`: `tf.debugging.assert_*`
with messages naming the argument), so a bad rank, size, value range or count raises
`InvalidArgumentError`, which is also what TF Serving returns; the process never aborts. For
that reason the declared input shapes are left open (unknown rank): a declared shape would make
the Python wrapper reject bad shapes with a different error type before the graph runs. A wrong
*dtype* cannot reach the graph: it is rejected at the boundary, by
`loaded.signatures[name](...)` with `InvalidArgumentError` ("expected to be a int32 tensor but is
a float tensor"; TF 2.16 and 2.21), by the `loaded.<name>(...)` attribute with `TypeError`.

The functions are traced with `autograph=False` (the models' code is graph code with explicit
`tf.while_loop`s, as under Keras' `fit`). The Keras model's variables are tracked on the exported
`tf.Module` (a Keras 3 model kept only as an attribute saves but fails in `saved_model_cli run`
with "Could not find variable").
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

from trainers import families
from trainers.disk_full import is_disk_full

WEIGHTS_ASSET = "weights.weights.h5"  # trainers.warm_start reads it (the same name there)

CONFIG_ASSET = "config.json"


class ExportError(ValueError):
    """The export folder or the exported model is unusable; the message says why."""


def _versions() -> dict:
    out = {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}
    try:
        out["multigrid-ebm"] = importlib.metadata.version("multigrid-ebm")
    except importlib.metadata.PackageNotFoundError:
        out["multigrid-ebm"] = "unknown"
    return out


def build_export_config(model, config, metadata: dict, signatures) -> dict:
    """The `assets/config.json` content: family, signatures, the model's `export_info()`
    (grids, image_size, ...), config, metadata, versions."""
    cfg = config.to_dict()
    out = {
        "channels": int(metadata.get("channels", config.data.channels)),
        "sampler": cfg["sampler"],
        "seed": int(config.train.seed),
        "fingerprint": metadata.get("fingerprint"),
        "max_num_samples": int(config.export.max_num_samples),
        "config": cfg,
        "metadata": metadata,
        "versions": _versions(),
    }
    out.update(model.export_info())
    out["family"] = config.model.family
    out["signatures"] = list(signatures)
    for key in ("grids", "image_size"):
        if key not in out:
            raise ExportError(f"the model's export_info() lacks {key!r} (the model contract in "
                              "trainers.families)")
    return out


def _build_module(model, cap: int, expected) -> tuple[tf.Module, list[str]]:
    """(module, names): a tf.Module holding the model's signature functions as attributes.

    Raises:
      ExportError: the model exports other signatures than its family declares.
    """
    functions = dict(model.export_signatures(cap))
    if expected is not None and sorted(functions) != sorted(expected):
        raise ExportError(f"the model exports signatures {sorted(functions)} but its family "
                          f"declares {sorted(expected)}")
    module = tf.Module()
    for name, fn in functions.items():
        setattr(module, name, fn)
    return module, list(functions)


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
    """Write the SavedModel (the family's signatures, asset `config.json`) to export_dir.

    The model is written to a sibling temporary folder and renamed into place once complete,
    so a folder named export_dir always holds a whole SavedModel (`saved_model.pb` directly in it).

    Args:
      model: a trained (built) model of the family `config.model.family`.
      export_dir: destination folder; an existing export there is replaced.
      config: the `Config` the model was trained with.
      metadata: the pyramid metadata dict (grids, image_size, channels, fingerprint, ...).

    Returns:
      export_dir.

    Raises:
      ExportError: the disk filled up (one line naming the folder; the half-written temporary
        folder is removed and a previous export is left as it was).
    """
    cap = int(config.export.max_num_samples)
    module, names = _build_module(model, cap, families.get_family(config.model.family).signatures)
    fns = [getattr(module, name) for name in names]
    _track_variables(module, fns)

    export_dir = str(export_dir).rstrip("/")
    parent = posixpath.dirname(export_dir)
    if parent:
        tf.io.gfile.makedirs(parent)
    tmp_dir = f"{export_dir}.tmp-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as local:
        asset_path = os.path.join(local, CONFIG_ASSET)
        with open(asset_path, "w", encoding="utf-8") as f:
            json.dump(build_export_config(model, config, metadata, names), f, indent=2, sort_keys=True)
        module.config_asset = tf.saved_model.Asset(asset_path)
        if model.built:  # Keras saves the weights of built models only; warm starts need them
            weights_path = os.path.join(local, WEIGHTS_ASSET)  # read by trainers.warm_start
            model.save_weights(weights_path)
            module.weights_asset = tf.saved_model.Asset(weights_path)
        signatures = {name: getattr(module, name).get_concrete_function() for name in names}
        try:
            tf.saved_model.save(module, tmp_dir, signatures=signatures)
        except Exception as error:
            if tf.io.gfile.exists(tmp_dir):
                tf.io.gfile.rmtree(tmp_dir)
            if is_disk_full(error):
                kept = "the previous export there is unchanged" if tf.io.gfile.exists(export_dir) \
                    else "nothing was written there"
                raise ExportError(f"no space left on the device of {export_dir} while exporting the "
                                  f"SavedModel: free space there and rerun ({kept})") from None
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
