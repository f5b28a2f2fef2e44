"""Training entry point: budgets, checkpoints, resume, divergence guard, TensorBoard, export.

`train(config, pyramid_dir, workdir, resume=False)` trains the model of `config.model.family`
(looked up in the registry `trainers.families`; the loop uses only the family-neutral model
contract described there) on the pyramid TFRecords and exports a SavedModel. Layout of WORKDIR:

- `checkpoints/`: `tf.train.CheckpointManager` files (every model variable, e.g. persistent
  chains and the sampler seed state, every optimizer by name, the global step), every `train.checkpoint_every`
  steps, at step 0 of a fresh run (the restore point of the divergence guard) and at the end.
- `logs/train/`: TensorBoard events: the model's metrics (e.g. `energy_gap/16`) and
  `learning_rate/NAME` per optimizer every `log_every` steps; images `observed/grid_S` of the
  batch and the model's `tensorboard_previews` (images and histograms) every `image_log_every`.
- `export/`: the SavedModel (written to a temporary folder, then renamed into place).

Resume semantics. The step budget is global: `min(epochs * steps_per_epoch, max_steps)` counts
the steps of all invocations, so a killed run resumed with `resume=True` ends with the same step
count as an uninterrupted run. On resume the data iterator is re-created from the same seed and
advanced by the restored step count (`dataset.skip`), so the batches are those the uninterrupted
run would have seen; with the model's stateless sampler seeds restored from the checkpoint, a
resumed run on one device reproduces the uninterrupted run's weights. `max_minutes` is a wall-clock
budget per invocation. `resume=False` with checkpoints in WORKDIR raises `WorkdirError` (nothing
is overwritten silently); `resume=True` without checkpoints starts fresh (so pipeline reruns can
always pass `resume=True`). A run that already reached its budget only (re-)exports.

Divergence guard. After every step the non-finite values among the metrics and the metrics named
`sample_abs_max[/...]` (the largest |synthesized pixel|; > `train.max_sample_abs` counts as
exploding), `runaway[/...]` (a model's own runaway watch, e.g. CF-EBM's energy magnitude and
gradient norm against their running averages; > 0 counts as trouble, so one replica's flag in
the replicas' mean is enough) and `collapse[/...]` (a
model's own collapse signal; >= 1 counts as trouble) are checked. On trouble the last
checkpoint is restored (including its step counter, so the budget is unchanged), every optimizer's
learning rate is multiplied by `train.retry_lr_factor` (cumulatively: lr * factor^k after k
restarts; the reduced rate is saved in later checkpoints) and training continues with the next
batches (the data position is not rewound); after `train.max_retries` such restarts in one
invocation `TrainingDiverged` is raised and nothing is exported.
"""

from __future__ import annotations

import dataclasses
import math
import posixpath
import time

import keras
import numpy as np
import tensorflow as tf

from trainers import data as data_lib
from trainers import families, scale, scale_schedule
from trainers.config import Config, ConfigError
from trainers.export import export_saved_model
from trainers.progress import TrainProgress
from trainers.tensorboard_log import TensorBoardLogger, learning_rate
from trainers.warm_start import LATEST_BLESSED, load_export_weights


class TrainingDiverged(RuntimeError):
    """Training kept producing non-finite values or exploding samples; nothing was exported."""


class WorkdirError(ValueError):
    """WORKDIR already holds a run that the call would overwrite (pass resume=True)."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What `train` did. steps: global step count reached; stopped_by: `max_steps`, `epochs`,
    `max_minutes`; export_dir: the SavedModel folder (None when training did not export)."""

    steps: int
    export_dir: str | None
    log_dir: str
    checkpoint_dir: str
    stopped_by: str


def check_geometry(config: Config, metadata: dict) -> None:
    """Raise ConfigError when the config's grids / image size / channels differ from the pyramid's
    (for a single image's scale pyramid: its scale_factor / min_side / channels)."""
    if "scales" in metadata:
        pairs = [("pyramid.scale_factor", config.pyramid.scale_factor, "scale_factor",
                  metadata.get("scale_factor")),
                 ("pyramid.min_side", config.pyramid.min_side, "min_side", metadata.get("min_side")),
                 ("data.channels", config.data.channels, "channels", metadata["channels"])]
    else:
        pairs = [("pyramid.grids", list(config.pyramid.grids), "grids", list(metadata["grids"])),
                 ("data.image_size", config.data.image_size, "image_size", metadata["image_size"]),
                 ("data.channels", config.data.channels, "channels", metadata["channels"])]
    for field, mine, key, theirs in pairs:
        if mine != theirs:
            raise ConfigError(
                f"{field}={mine} in the config but the pyramid's metadata.json has {key}={theirs}: "
                f"the pyramid decides the geometry; set {field}={theirs} (e.g. --set "
                f"{field}={','.join(map(str, theirs)) if isinstance(theirs, list) else theirs}) "
                "or rebuild the pyramid")


def model_from_config(config: Config, metadata: dict):
    """The uncompiled model of `config.model.family` (the registry's `build`) from a `Config` and
    the pyramid metadata dict (keys grids, image_size, channels, and what the family reads, e.g.
    coarse_mean, coarse_std).

    Raises:
      ValueError: metadata misses a key; ConfigError: its geometry disagrees with the config.
    """
    for key in ("grids", "image_size", "channels"):
        if key not in metadata:
            raise ValueError(f"pyramid metadata lacks {key!r}; rebuild the pyramid (metadata.json)")
    check_geometry(config, metadata)
    return families.get_family(config.model.family).build(config, metadata)


def build_model(config: Config, metadata: dict):
    """The compiled model for the config and pyramid metadata (call under the strategy's scope);
    initial weights are a function of `train.seed`."""
    model = model_from_config(config, metadata)
    model.compile(learning_rate=config.train.learning_rate, beta_1=config.train.beta_1)
    return model


def export_untrained(config: Config, pyramid_dir: str, export_dir: str) -> str:
    """Export a model with its initial (seeded) weights: the downstream-classification baseline."""
    metadata = data_lib.read_pyramid_metadata(pyramid_dir)
    check_geometry(config, metadata)
    keras.utils.set_random_seed(config.train.seed)
    model = build_model(config, metadata)
    return export_saved_model(model, export_dir, config, metadata)


def _budget(config: Config, metadata: dict, pyramid_dir: str) -> tuple[int, str]:
    if data_lib.is_scale_pyramid(metadata):  # one image: the scales' steps, not epochs
        total = sum(scale_schedule.steps_of_scales(len(metadata["scales"]), config.train.steps_per_scale,
                                                   config.train.scale_steps))
        reason = "steps_per_scale"
    else:
        per_epoch = data_lib.steps_per_epoch(metadata, config.train.batch_size, pyramid_dir,
                                             config.data.classes)
        total, reason = config.train.epochs * per_epoch, "epochs"
    if config.train.max_steps and config.train.max_steps <= total:
        total, reason = config.train.max_steps, "max_steps"
    return total, reason


def _is_bad(host: dict, limit: float) -> str | None:
    for key, value in host.items():
        if not np.all(np.isfinite(value)):
            return f"{key} is not finite ({value})"
    for key, value in host.items():
        if (key == "sample_abs_max" or key.startswith("sample_abs_max/")) and value > limit:
            return f"{key}={value:.3g} exceeds train.max_sample_abs={limit}"
    for key, value in host.items():
        if (key == "runaway" or key.startswith("runaway/")) and value > 0:  # > 0: replicas are averaged
            figures = ", ".join(f"{k}={v:.3g}" for k, v in sorted(host.items()) if k.startswith("watch/"))
            return f"{key}={value:.3g}: the model sees a runaway coming ({figures})"
    for key, value in host.items():
        if (key == "collapse" or key.startswith("collapse/")) and value >= 1:
            return f"{key}={value:.3g}: the model reports a collapse (e.g. a GAN's discriminator loss pinned at 0)"
    return None


def _divergence_hint(trouble: str) -> str:
    """What to change after the guard gave up on `trouble` (`_is_bad`'s reason)."""
    if "runaway" in trouble:
        return ("Lower train.learning_rate, raise train.max_retries, or add noise to the data "
                "(CF-EBM: train.data_noise=0.03, the reference code's; docs/BENCHMARKS.md 3.2).")
    if "collapse" in trouble:
        return "Lower train.learning_rate or raise train.max_retries."
    return "Lower train.learning_rate or sampler.step_size, or enable sampler.clip."


def train(config: Config, pyramid_dir: str, workdir: str, resume: bool = False, *,
          export: bool = True, warm_start_dir: str | None = None) -> TrainResult:
    """Train on the pyramid in pyramid_dir; checkpoints, logs and the SavedModel go to workdir.

    Args:
      config: validated `Config`; its geometry must match the pyramid's metadata.json.
      pyramid_dir: output folder of the pyramid stage.
      workdir: run folder (created); see the module docstring for its layout.
      resume: continue from the latest checkpoint in WORKDIR/checkpoints (fresh start if none).
      export: write the SavedModel at the end (False: checkpoints only, e.g. for tests).
      warm_start_dir: an export whose weights a fresh run starts from (`trainers.warm_start`);
        default: `train.warm_start` when it is a folder. Ignored when resuming a checkpoint.

    Returns:
      TrainResult(steps, export_dir, log_dir, checkpoint_dir, stopped_by).

    Raises:
      ConfigError: the config's grids / image size / channels disagree with the pyramid.
      WorkdirError: checkpoints exist and resume is False.
      TrainingDiverged: the divergence guard ran out of retries (no export is written).
    """
    metadata = data_lib.read_pyramid_metadata(pyramid_dir)
    check_geometry(config, metadata)
    t = config.train
    ckpt_dir = posixpath.join(workdir, "checkpoints")
    log_dir = posixpath.join(workdir, "logs")
    existing = tf.train.latest_checkpoint(ckpt_dir) if tf.io.gfile.exists(ckpt_dir) else None
    if existing and not resume:
        raise WorkdirError(f"{workdir} already holds checkpoints ({existing}); pass resume=True "
                           "(mgebm train --resume) to continue that run, or use a new workdir")
    total, budget_reason = _budget(config, metadata, pyramid_dir)
    tf.io.gfile.makedirs(workdir)
    print(f"tensorboard --logdir {log_dir}", flush=True)

    keras.utils.set_random_seed(t.seed)
    strategy = scale.make_strategy(t)
    scale.check_global_batch(t.batch_size, strategy)
    if t.jit_compile and scale.cpu_only(strategy):
        print("[train] warning: train.jit_compile=true (XLA) on a CPU-only machine: 10-20x slower "
              "than plain tf.function here (docs/BENCHMARKS.md); use it on GPU/TPU", flush=True)
    chief = scale.is_chief(strategy)
    precision = t.mixed_precision if families.get_family(config.model.family).mixed_precision else "off"
    print(f"[train] dtype policy {scale.precision_policy(precision, strategy)} "
          f"(train.mixed_precision={t.mixed_precision})", flush=True)
    with scale.set_precision(precision, strategy), \
            scale.worker_workdir(workdir, strategy) as own_dir:
        # Multi-worker: every worker saves and exports (collectives), into own_dir; only the
        # chief's own_dir is WORKDIR, the others' are temporary. All resume from the chief's.
        with strategy.scope():
            model = build_model(config, metadata)
        # Host-side step counter (outside the scope: a plain variable, read and set in Python).
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        ckpt = tf.train.Checkpoint(step=step, **checkpoint_objects(model))
        manager = tf.train.CheckpointManager(ckpt, posixpath.join(own_dir, "checkpoints"),
                                             max_to_keep=3)
        if existing:
            existing = _restore_readable(ckpt, ckpt_dir, existing)
            print(f"[train] resumed from {existing} at step {int(step)}", flush=True)
        else:
            source = warm_start_dir or (t.warm_start if t.warm_start not in ("", LATEST_BLESSED) else None)
            if t.warm_start == LATEST_BLESSED and not source:
                print("[train] train.warm_start=latest_blessed: no model is being served yet; "
                      "starting from random weights", flush=True)
            if source:
                load_export_weights(model, source, config)
                print(f"[train] warm start from the weights of {source}", flush=True)
            manager.save(checkpoint_number=0)
        start_step = int(step)
        logger = TensorBoardLogger(posixpath.join(log_dir, "train"), model, enabled=chief)
        stopped_by = _loop(config, model, strategy, step, manager, ckpt, logger, pyramid_dir,
                           metadata, total, budget_reason, existing)
        # The same decision on every worker (a non-chief's temporary manager has no history).
        if int(step) != start_step and int(step) % t.checkpoint_every:
            manager.save(checkpoint_number=int(step))
        logger.close()
        steps = int(step)
        print(f"[train] stopped by {stopped_by} at step {steps} ({steps - start_step} this run)",
              flush=True)
        exported = None
        if export:
            if model.use_averaged_weights() and chief:  # after the last checkpoint, which keeps both
                print(f"[train] exporting the weight averages (train.ema_decay={t.ema_decay})", flush=True)
            exported = export_saved_model(model, posixpath.join(own_dir, "export"), config, metadata)
            if chief:
                print(f"[train] exported SavedModel to {exported}", flush=True)
            else:
                exported = None
    return TrainResult(steps=steps, export_dir=exported, log_dir=log_dir, checkpoint_dir=ckpt_dir,
                       stopped_by=stopped_by)


def _restore_readable(ckpt: tf.train.Checkpoint, ckpt_dir: str, newest: str) -> str:
    """Restore the newest checkpoint that reads back whole; returns its path.

    A truncated or corrupted checkpoint (a machine that died mid-write, a bad disk) is reported in
    one line and the previous one is tried, down to the oldest kept (CheckpointManager keeps 3).

    Raises:
      WorkdirError: none of the kept checkpoints can be read.
    """
    state = tf.train.get_checkpoint_state(ckpt_dir)
    kept = list(state.all_model_checkpoint_paths) if state else []
    candidates = [newest] + [p for p in reversed(kept) if p != newest]
    errors = []
    for path in candidates:
        try:
            ckpt.restore(path).assert_existing_objects_matched()
            return path
        except Exception as err:  # noqa: BLE001 -- readers raise OpError, IndexError ("Read less
            # bytes than requested" on a truncated file), ValueError, AssertionError...
            text = str(err).strip()
            reason = text.splitlines()[0][:200] if text else type(err).__name__
            errors.append(f"{path}: {reason}")
            print(f"[train] checkpoint {path} cannot be read ({reason}); trying the previous one",
                  flush=True)
    raise WorkdirError(f"no readable checkpoint in {ckpt_dir} ({'; '.join(errors)}); remove the "
                       "folder to train from scratch")


def _make_step_fn(model, strategy, jit_compile: bool):
    @tf.autograph.experimental.do_not_convert  # as Keras' fit does: train_step is graph code
    def replica_step(batch):
        for tracker in model.metrics:  # per-step values, not running means
            tracker.reset_state()
        metrics = model.train_step(batch)
        return {k: tf.reduce_mean(tf.cast(v, tf.float32)) for k, v in metrics.items()}

    replica_fn = tf.function(replica_step, jit_compile=True) if jit_compile else replica_step

    @tf.function(autograph=False)
    def step_fn(batch):
        out = strategy.run(replica_fn, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}

    return step_fn


def _loop(config, model, strategy, step, manager, ckpt, logger, pyramid_dir, metadata, total,
          budget_reason, resumed_from) -> str:
    t = config.train
    if data_lib.is_scale_pyramid(metadata):
        ds = data_lib.make_single_image_dataset(pyramid_dir, t.batch_size, metadata["scales"],
                                                metadata["channels"])
    else:
        ds = data_lib.make_train_dataset(pyramid_dir, t.batch_size, t.seed, t.shuffle_buffer,
                                         metadata["grids"], metadata["channels"],
                                         classes=config.data.classes,
                                         with_labels=bool(getattr(model, "uses_labels", False)))
    ds = ds.skip(int(step))  # the uninterrupted run's position (see the module docstring)
    if t.strategy != "default":  # split each global batch over the replicas (and workers)
        ds = strategy.experimental_distribute_dataset(ds)
    iterator = iter(ds)
    step_fn = _make_step_fn(model, strategy, t.jit_compile)
    started = time.monotonic()
    deadline = started + t.max_minutes * 60 if t.max_minutes else math.inf
    progress = TrainProgress(total, budget_reason, t.max_minutes, int(step), started)
    retries, last_time = 0, time.monotonic()
    if int(step) >= total:
        return budget_reason
    while int(step) < total:
        if time.monotonic() >= deadline:
            return "max_minutes"
        batch = next(iterator)
        host = {k: float(v) for k, v in step_fn(batch).items()}
        trouble = _is_bad(host, t.max_sample_abs)
        if trouble:
            retries += 1
            flagged = int(step) + 1
            if retries > t.max_retries:
                raise TrainingDiverged(
                    f"training diverged at step {flagged}: {trouble}; gave up after "
                    f"{t.max_retries} restarts from the last checkpoint with the learning rate "
                    f"multiplied by {t.retry_lr_factor} each time. Nothing was exported. "
                    + _divergence_hint(trouble))
            # The checkpoint may hold an older learning rate: reduce the current one, so the
            # reductions accumulate (lr0 * factor^retries).
            rates = {name: learning_rate(o) * t.retry_lr_factor
                     for name, o in model.optimizers_by_name().items()}
            # (a non-chief worker's temporary manager is empty until its first save)
            last = manager.latest_checkpoint or resumed_from
            ckpt.restore(last).assert_existing_objects_matched()
            for name, opt in model.optimizers_by_name().items():
                opt.learning_rate = rates[name]
            lr = " ".join(f"{name}:{learning_rate(o):.3g}" for name, o in model.optimizers_by_name().items())
            print(f"[train] divergence guard at step {flagged}: {trouble}; restored {last} "
                  f"(step {int(step)}), learning rate now {lr} (retry {retries}/{t.max_retries})",
                  flush=True)
            continue
        step.assign_add(1)
        n = int(step)
        now = time.monotonic()
        dt, last_time = now - last_time, now
        logger.scalars(n, host, dt, batch, strategy, t.log_every)
        progress.step_done(n, host, show=n % t.log_every == 0 or n == total)
        if n % t.image_log_every == 0 or n == total:
            logger.images(n, batch, strategy)
        if n % t.checkpoint_every == 0:
            manager.save(checkpoint_number=n)
    return budget_reason


# ---------------------------------------------------------------------------------------------
# Checkpoint contents, TensorBoard.

def checkpoint_objects(model) -> dict:
    """What a checkpoint tracks besides the step: every optimizer and every model variable, keyed
    by its Keras path (e.g. `energy_4/conv1/kernel`; the energy nets name their layers, so the keys
    are the same in every process). The model's variables include the sampler seed counter
    `train_counter`, batch-norm statistics, the TensorBoard previews and persistent chains: Keras 3
    keeps sub-layers in lists that `tf.train.Checkpoint` does not see, so the model object alone
    would miss non-trainable weights. Optimizers are keyed by `model.optimizers_by_name()`."""
    variables = {}
    for i, v in enumerate(model.variables):
        key = v.path.replace("/", ".")
        variables[key if key not in variables else f"{key}.{i}"] = v
    optimizers = dict(model.optimizers_by_name())
    return {"model": model, "optimizers": optimizers, "variables": variables}
