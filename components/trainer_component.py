"""TFX component: train the model family of `model.family` on a pyramid and export its SavedModel.

Training state (checkpoints, TensorBoard logs) lives in `state_root/<run key>/`, a folder that
outlives the execution, so rerunning an interrupted pipeline resumes from the last checkpoint.
The run key hashes the config sections that shape training and the pyramid's fingerprint.
"""

import hashlib
import json
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component

from components import artifacts
from evaluators.push import served_model_dir
from trainers.config import Config
from trainers.train import export_untrained, train
from trainers.warm_start import LATEST_BLESSED


def run_key(config: Config, fingerprint: str) -> str:
    """Stable name of a training run: same config and data -> same state folder."""
    d = config.to_dict()
    shaping = {k: d[k] for k in ("data", "pyramid", "model", "sampler", "train")}
    text = json.dumps(shaping, sort_keys=True) + fingerprint
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _copy_tree(src: str, dst: str) -> None:
    for root, _, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(root, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


@component
def Train(config_json: Parameter[str], state_root: Parameter[str], serving_root: Parameter[str],
          pyramid: InputArtifact[artifacts.Pyramid],
          model: OutputArtifact[artifacts.Model],
          model_run: OutputArtifact[artifacts.ModelRun]) -> None:
    """Train (resuming when state exists), export to `model.uri`, logs to `model_run.uri`.

    `train.warm_start=latest_blessed` starts a fresh run from the model being served (the latest
    version under `serving_root`), read when this stage runs."""
    config = Config.from_json(config_json)
    fingerprint = pyramid.get_string_custom_property("fingerprint")
    workdir = os.path.join(state_root, run_key(config, fingerprint))
    print(f"[train] state in {workdir}; TensorBoard: tensorboard --logdir {workdir}/logs")
    warm = None
    if config.train.warm_start == LATEST_BLESSED:
        warm = served_model_dir(serving_root, config.export.model_name)
        model_run.set_string_custom_property("warm_start", warm or "")
    result = train(config, pyramid.uri, workdir, resume=True, warm_start_dir=warm)
    _copy_tree(result.export_dir, model.uri)
    _copy_tree(result.log_dir, os.path.join(model_run.uri, "logs"))
    # The downstream-classification baseline: the same networks with their initial weights.
    export_untrained(config, pyramid.uri, os.path.join(model_run.uri, "random_init_model"))
    model.set_int_custom_property("steps", int(result.steps))
    model.set_string_custom_property("stopped_by", str(result.stopped_by))
    model_run.set_string_custom_property("state_dir", workdir)
