"""Where training runs: the tf.distribute strategy, the dtype policy, and the chief worker.

`make_strategy(train_config)` builds the strategy named by `train.strategy`; `set_precision`
sets the Keras mixed-precision policy for a block; `is_chief` / `worker_dir` decide which worker
of a multi-worker cluster writes the real checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath

import keras
import tensorflow as tf

from trainers.config import ConfigError


def make_strategy(train_config) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by `train.strategy`.

    `default`: the default (one device) strategy; `mirrored`: all local GPUs (or the CPU);
    `multi_worker_mirrored`: the cluster in the TF_CONFIG environment variable;
    `tpu`: `TPUClusterResolver(tpu=train.tpu_address)` ("local" on a TPU VM, a name or grpc://).

    Raises:
      ConfigError: multi_worker_mirrored without TF_CONFIG, or tpu without train.tpu_address.
    """
    name = train_config.strategy
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        raw = os.environ.get("TF_CONFIG", "")
        try:
            spec = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise ConfigError(f"train.strategy=multi_worker_mirrored: TF_CONFIG is not JSON: {raw!r}") from None
        if not spec.get("cluster"):
            raise ConfigError("train.strategy=multi_worker_mirrored needs the TF_CONFIG environment "
                              'variable with a cluster spec, e.g. {"cluster": {"worker": '
                              '["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}')
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not train_config.tpu_address:
        raise ConfigError("train.strategy=tpu needs train.tpu_address (\"local\" on a TPU VM, "
                          "a TPU name, or grpc://HOST:8470)")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=train_config.tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def cpu_only(strategy) -> bool:
    """True when training runs on CPUs: no TPU strategy and no visible GPU."""
    return (not isinstance(strategy, tf.distribute.TPUStrategy)
            and not tf.config.list_logical_devices("GPU"))


@contextlib.contextmanager
def set_precision(mixed: bool, strategy):
    """Set the Keras dtype policy for the block: mixed_float16 on GPU, mixed_bfloat16 on CPU/TPU."""
    previous = keras.mixed_precision.global_policy()
    if mixed:
        on_gpu = bool(tf.config.list_logical_devices("GPU")) and not isinstance(
            strategy, tf.distribute.TPUStrategy)
        keras.mixed_precision.set_global_policy("mixed_float16" if on_gpu else "mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _task(strategy) -> tuple[str, int] | None:
    """(task_type, task_id) of this process in a multi-worker cluster, or None outside one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return None
    return resolver.task_type, int(resolver.task_id)


def is_chief(strategy) -> bool:
    """True for the one worker that keeps checkpoints, logs and the export: the `chief` task, or
    worker 0 when the cluster has no chief (MultiWorkerMirroredStrategy's convention); True
    outside a multi-worker cluster."""
    task = _task(strategy)
    if task is None:
        return True
    task_type, task_id = task
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0
        and "chief" not in strategy.cluster_resolver.cluster_spec().as_dict())


def worker_dir(workdir: str, strategy) -> str:
    """Where this worker writes checkpoints and the export: WORKDIR on the chief, else the
    temporary `WORKDIR/.worker-tmp/TYPE-ID` (TensorFlow's multi-worker guide pattern: saving is a
    collective, so every worker saves, but only the chief's files are kept)."""
    if is_chief(strategy):
        return workdir
    task_type, task_id = _task(strategy)
    return posixpath.join(workdir, ".worker-tmp", f"{task_type}-{task_id}")


@contextlib.contextmanager
def worker_workdir(workdir: str, strategy):
    """`worker_dir(workdir, strategy)` for the `with` block; a non-chief worker's temporary
    folder is emptied before (a killed run may have left it) and removed after, however the
    block exits."""
    own = worker_dir(workdir, strategy)
    if own == workdir:
        yield own
        return
    if tf.io.gfile.exists(own):
        tf.io.gfile.rmtree(own)
    tf.io.gfile.makedirs(own)
    try:
        yield own
    finally:
        if tf.io.gfile.exists(own):
            tf.io.gfile.rmtree(own)
        parent = posixpath.dirname(own)
        try:  # another worker may be using it still
            if not tf.io.gfile.listdir(parent):
                tf.io.gfile.rmtree(parent)
        except tf.errors.OpError:
            pass
