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
import subprocess
import sys

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
        return join_cluster(spec, float(getattr(train_config, "cluster_timeout_s", 0.0)))
    if not train_config.tpu_address:
        raise ConfigError("train.strategy=tpu needs train.tpu_address (\"local\" on a TPU VM, "
                          "a TPU name, or grpc://HOST:8470)")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=train_config.tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


# The watchdog of `join_cluster`: a child process (standard library only) that waits on a pipe
# from this process; EOF (start-up done, or this process gone) ends it quietly, silence for
# the timeout prints the message and kills this process.
_WATCHDOG = (
    "import os, select, signal, sys\n"
    "parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]\n"
    "ready, _, _ = select.select([sys.stdin], [], [], timeout)\n"
    "if not ready:\n"
    "    sys.stderr.write(message + '\\n')\n"
    "    sys.stderr.flush()\n"
    "    os.kill(parent, signal.SIGKILL)\n")


def _other_tasks(spec: dict) -> list[str]:
    """'worker 1 at localhost:2223' for every task of the TF_CONFIG cluster but this one."""
    me = spec.get("task", {})
    out = []
    for job, addresses in spec.get("cluster", {}).items():
        for index, address in enumerate(addresses):
            if not (job == me.get("type") and index == int(me.get("index", 0))):
                out.append(f"{job} {index} at {address}")
    return out


def cluster_timeout_message(spec: dict, timeout_s: float) -> str:
    """The one line printed when the cluster did not form (see `join_cluster`)."""
    me = spec.get("task", {})
    return (f"[train] error: multi-worker training: the cluster of TF_CONFIG did not form within "
            f"train.cluster_timeout_s={timeout_s:g} s: this task ({me.get('type')} "
            f"{me.get('index', 0)}) waited for {', '.join(_other_tasks(spec)) or 'no other task'}; "
            "start every task listed in TF_CONFIG (the same command, its own task index), fix the "
            "addresses, or raise train.cluster_timeout_s")


def join_cluster(spec: dict, timeout_s: float, make=None, barrier=None):
    """MultiWorkerMirroredStrategy whose start-up fails after `timeout_s` instead of hanging.

    TensorFlow waits forever when a task of the cluster never starts: in the strategy's
    constructor (the coordination service waits for every task) or at the first collective,
    inside C++ calls that hold the GIL and ignore SIGTERM, so neither a Python thread nor a
    signal handler can end the wait. A watchdog child process therefore covers the constructor
    and a first all-reduce barrier: past `timeout_s` it prints `cluster_timeout_message` (one
    line on stderr) and kills this process (SIGKILL: exit status 137, -9 for a Popen parent).
    `timeout_s` 0 waits forever. `make` and `barrier` are for tests.
    """
    make = make or tf.distribute.MultiWorkerMirroredStrategy
    watchdog = None
    if timeout_s > 0:
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout_s),
             cluster_timeout_message(spec, timeout_s)], stdin=subprocess.PIPE)
    try:
        strategy = make()
        (barrier or _barrier)(strategy)
        return strategy
    finally:
        if watchdog is not None:
            watchdog.stdin.close()  # EOF: the watchdog ends without a word
            watchdog.wait()


def _barrier(strategy) -> None:
    """One all-reduce over every replica: returns once every worker has joined."""
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def check_global_batch(batch_size: int, strategy) -> None:
    """ConfigError unless the global batch splits evenly over the strategy's replicas.

    An uneven split (e.g. 5 over 2 replicas: 3 + 2) would weigh the replicas' per-example means
    unequally and differ from one process on the same global batch.
    """
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
    if batch_size % replicas:
        lower, upper = batch_size // replicas * replicas, (batch_size // replicas + 1) * replicas
        raise ConfigError(
            f"train.batch_size={batch_size} does not split evenly over the {replicas} replicas of "
            f"train.strategy (workers x devices): use a multiple of {replicas}, e.g. "
            f"{lower or upper} or {upper}")


def cpu_only(strategy) -> bool:
    """True when training runs on CPUs: no TPU strategy and no visible GPU."""
    return (not isinstance(strategy, tf.distribute.TPUStrategy)
            and not tf.config.list_logical_devices("GPU"))


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # bfloat16 dot products in hardware


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The feature flags of the first CPU listed in `cpuinfo` (empty where it cannot be read)."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def precision_policy(mode: str, strategy, flags: set[str] | None = None) -> str:
    """The Keras dtype policy for `train.mixed_precision` = `mode` ("off", "on" or "auto").

    "on": mixed_float16 on GPU, mixed_bfloat16 on CPU and TPU. "auto": mixed_bfloat16 on a TPU or
    on a CPU-only machine whose CPU has one of BF16_CPU_FLAGS (`flags`, default this machine's);
    float32 otherwise. "off": float32.
    """
    if mode not in ("off", "on", "auto"):
        raise ConfigError(f"train.mixed_precision={mode!r} is not allowed; allowed values: ['off', 'on', 'auto']")
    tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    on_gpu = bool(tf.config.list_logical_devices("GPU")) and not tpu
    if mode == "on":
        return "mixed_float16" if on_gpu else "mixed_bfloat16"
    if mode == "auto" and (tpu or (not on_gpu and set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))):
        return "mixed_bfloat16"
    return "float32"


@contextlib.contextmanager
def set_precision(mode: str, strategy):
    """Set the Keras dtype policy of `precision_policy(mode, strategy)` for the block."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision_policy(mode, strategy))
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
