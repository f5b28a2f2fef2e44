"""TensorBoard logging of a training run: scalars, learning rates, observed and generated images."""

from __future__ import annotations

import tensorflow as tf


def learning_rate(optimizer) -> float:
    """The optimizer's current learning rate (also when its variable is a MirroredVariable)."""
    return float(tf.convert_to_tensor(optimizer.learning_rate).numpy())


class TensorBoardLogger:
    """tf.summary writer for WORKDIR/logs/train (a no-op on non-chief workers)."""

    def __init__(self, logdir: str, model, enabled: bool = True):
        self.model = model
        self.writer = tf.summary.create_file_writer(logdir) if enabled else None

    @staticmethod
    def _local(batch, strategy):
        local = strategy.experimental_local_results(batch)
        return local[0]

    def scalars(self, step: int, host: dict, seconds: float, batch, strategy, every: int) -> None:
        if self.writer is None or step % every:
            return
        with self.writer.as_default(step=step):
            for key, value in host.items():
                tf.summary.scalar(key, value)
            tf.summary.scalar("time_per_step", seconds)
            for name, opt in self.model.optimizers_by_name().items():
                tf.summary.scalar(f"learning_rate/{name}", learning_rate(opt))

    def images(self, step: int, batch, strategy, max_outputs: int = 8) -> None:
        if self.writer is None:
            return
        observed = self._local(batch, strategy)
        previews, histograms = self.model.tensorboard_previews(observed, max_outputs)
        with self.writer.as_default(step=step):
            for key, x in observed.items():  # grid_S images only (a batch may also hold labels)
                if key.startswith("grid_"):
                    tf.summary.image(f"observed/{key}", x[:max_outputs], max_outputs=max_outputs)
            for tag, x in previews.items():
                tf.summary.image(tag, x[:max_outputs], max_outputs=max_outputs)
            for tag, values in histograms.items():
                tf.summary.histogram(tag, values)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
