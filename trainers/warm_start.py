"""Warm start: begin a fresh training run from the weights of an exported model.

A scheduled retraining on new data continues from the model being served
(`train.warm_start=latest_blessed`, resolved by the pipeline to the latest pushed version) or
from any export folder (`train.warm_start=PATH`), instead of from random weights. Every export
carries its model's weights in Keras format as the asset `weights.weights.h5` (`trainers.export`);
the new model must have the same family, nets and geometry (the export's `config.json` is
compared field by field first, so a mismatch is one clear error rather than a shape error deep in
Keras). Only the model's variables are taken (e.g. CF-EBM's stage and images seen, the step
counters of the sampler seeds); the optimizers start fresh. A run that resumes from its own
checkpoint ignores the warm start: the checkpoint is newer.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile

import tensorflow as tf

from trainers.config import Config, ConfigError

WEIGHTS_ASSET = "weights.weights.h5"
LATEST_BLESSED = "latest_blessed"
# Config fields that shape the model's variables: they must match the export's.
_SHAPING = (("model", None), ("pyramid", "grids"), ("data", "image_size"), ("data", "channels"))


def check_compatible(config: Config, export_dir: str, export_config: dict) -> None:
    """ConfigError naming the first field where the export's model differs from `config`'s."""
    mine = json.loads(json.dumps(config.to_dict()))  # tuples as lists, as in the export's JSON
    theirs = export_config.get("config") or {}
    for section, field in _SHAPING:
        a, b = mine.get(section) or {}, theirs.get(section) or {}
        names = sorted(set(a) | set(b)) if field is None else [field]
        for name in names:
            if a.get(name) != b.get(name):
                raise ConfigError(f"train.warm_start={export_dir}: the export was trained with "
                                  f"{section}.{name}={b.get(name)!r}, this run has {a.get(name)!r}; "
                                  "warm-start only from a model of the same nets, or train from scratch")


def load_export_weights(model, export_dir: str, config: Config) -> None:
    """Set `model`'s variables to those saved with the export in `export_dir`.

    Raises:
      ConfigError: no export there, an export without the weights asset (written before warm
        starts existed: re-export it), or one of other nets (see `check_compatible`).
    """
    assets = posixpath.join(export_dir, "assets")
    config_path, weights_path = posixpath.join(assets, "config.json"), posixpath.join(assets, WEIGHTS_ASSET)
    if not tf.io.gfile.exists(config_path):
        raise ConfigError(f"train.warm_start={export_dir} is not an export folder (no assets/config.json); "
                          "give a SavedModel folder written by mgebm train/run, or latest_blessed")
    with tf.io.gfile.GFile(config_path) as f:
        check_compatible(config, export_dir, json.load(f))
    if not tf.io.gfile.exists(weights_path):
        raise ConfigError(f"train.warm_start={export_dir} has no assets/{WEIGHTS_ASSET} (exported by an "
                          "older version); export it again or train from scratch")
    with tempfile.TemporaryDirectory() as local:  # Keras reads local files only
        path = os.path.join(local, WEIGHTS_ASSET)
        tf.io.gfile.copy(weights_path, path)
        model.load_weights(path)
