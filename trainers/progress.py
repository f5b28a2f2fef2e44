"""Honest progress: training lines that name the limit that will stop the run, and counted
progress for long evaluation tasks.

Training (`TrainProgress`, used by `trainers.train`): a run stops at whichever comes first of its
step limit (`train.epochs` x steps per epoch, or `train.max_steps`) and its wall-clock budget
(`train.max_minutes`, per invocation). `estimate_stop` (pure) says which one binds, from the
steps done and the time used so far:

    [train] step 120/~430 (stops at the 9.0-minute budget; epoch limit 7000 steps) 3.4 min
        elapsed, ~5.6 min left, 1.27 s/step, energy gap 4:+0.12 16:+0.3 32:-0.1
    [train] step 120/400 (stops at the max_steps limit, before the 9.0-minute budget) ...

Tasks (`TaskProgress`, used by `evaluators.evaluate`): counted work (images sampled, images
through a feature space, classifier fits) shown as a tqdm bar when stderr is a terminal and as
plain lines otherwise (at the start, every `interval_s` seconds and at the end; no carriage
returns, so logs of `make demo | tee`, TFX or Kubeflow stay clean). Experiments report through
the plain callback protocol `progress(done, total, note)` and never import this module.

Terminal detection: `MGEBM_STDERR_TTY` (`1`/`0`, set by the CLI's log filter, which turns fd 2
into a pipe) wins over `sys.stderr.isatty()`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Callable

STDERR_TTY_ENV = "MGEBM_STDERR_TTY"

# `progress(done, total, note)`: how experiments report counted work (see the module docstring).
ProgressFn = Callable[[int, int, str], None]


def stderr_is_terminal() -> bool:
    """True when the user's stderr is a terminal (see the module docstring)."""
    flag = os.environ.get(STDERR_TTY_ENV, "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def format_duration(seconds: float) -> str:
    """`0.4 s`, `42 s`, `3.4 min` or `2.1 h` (one unit, readable at a glance)."""
    seconds = max(0.0, float(seconds))
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------------------------------
# Training.

@dataclasses.dataclass(frozen=True)
class StopEstimate:
    """When a training run is expected to stop.

    Attributes:
      binding: the limit that stops it first: `max_steps`, `epochs` or `max_minutes`.
      total_steps: the global step it stops at (exact when a step limit binds, else estimated).
      exact: True when a step limit binds (total_steps is then the limit itself).
      seconds_left: estimated wall-clock seconds to the stop (None before any step timing).
    """

    binding: str
    total_steps: int
    exact: bool
    seconds_left: float | None


def estimate_stop(step: int, step_limit: int, step_limit_reason: str, elapsed_s: float,
                  time_budget_s: float | None, seconds_per_step: float | None = None,
                  start_step: int = 0) -> StopEstimate:
    """Which limit stops training first, and at which step.

    The loop checks the time budget before each step, so a step started before the deadline
    still runs: with the budget binding, the run ends at `step + ceil(time_left / s_per_step)`.

    Args:
      step: global steps done so far (>= start_step).
      step_limit: the global step limit (`min(epochs x steps per epoch, max_steps)`).
      step_limit_reason: `epochs` or `max_steps`, whichever sets step_limit.
      elapsed_s: wall-clock seconds of this invocation so far (the budget's clock).
      time_budget_s: this invocation's budget in seconds, or None/0/inf for none.
      seconds_per_step: measured rate; default elapsed_s / (step - start_step).
      start_step: the global step this invocation started from (resume).

    Returns:
      A StopEstimate.
    """
    if seconds_per_step is None and step > start_step:
        seconds_per_step = elapsed_s / (step - start_step)
    steps_left = max(0, step_limit - step)
    no_budget = not time_budget_s or math.isinf(time_budget_s)
    if seconds_per_step is None or seconds_per_step <= 0:  # no timing yet: the step limit
        return StopEstimate(step_limit_reason, step_limit, True, None)
    by_steps_s = steps_left * seconds_per_step
    if no_budget:
        return StopEstimate(step_limit_reason, step_limit, True, by_steps_s)
    time_left = max(0.0, time_budget_s - elapsed_s)
    steps_in_time = math.ceil(time_left / seconds_per_step) if time_left > 0 else 0
    if steps_in_time >= steps_left:
        return StopEstimate(step_limit_reason, step_limit, True, by_steps_s)
    return StopEstimate("max_minutes", step + steps_in_time, False, time_left)


_LIMIT_NAMES = {"epochs": "epoch limit", "max_steps": "max_steps limit"}


def describe_stop(step: int, estimate: StopEstimate, step_limit: int, step_limit_reason: str,
                  time_budget_s: float | None) -> str:
    """`step 120/~430 (stops at the 9.0-minute budget; epoch limit 7000 steps)` and the like."""
    limit_name = _LIMIT_NAMES.get(step_limit_reason, step_limit_reason)
    has_budget = bool(time_budget_s) and not math.isinf(time_budget_s)
    minutes = f"{(time_budget_s or 0) / 60:.2f}".rstrip("0")  # 9.0, 0.25, 0.5
    budget = f"{minutes}0-minute budget" if minutes.endswith(".") else f"{minutes}-minute budget"
    if not estimate.exact:
        return (f"step {step}/~{estimate.total_steps} (stops at the {budget}; {limit_name} "
                f"{step_limit} steps)")
    if has_budget:
        return f"step {step}/{step_limit} (stops at the {limit_name}, before the {budget})"
    return f"step {step}/{step_limit} (stops at the {limit_name})"


class TrainProgress:
    """The `[train] step ...` lines of the training loop.

    Args:
      step_limit: global step limit; step_limit_reason: `epochs` or `max_steps`.
      max_minutes: this invocation's wall-clock budget (0 = none).
      start_step: global step at the start of this invocation.
      start_time: `clock()` value at which the budget's clock started.
      clock: time source (seconds), `time.monotonic` by default.
      printer: where lines go (default: print to stdout, flushed).
    """

    def __init__(self, step_limit: int, step_limit_reason: str, max_minutes: float,
                 start_step: int, start_time: float, clock: Callable[[], float] = time.monotonic,
                 printer: Callable[[str], None] | None = None):
        self.step_limit = int(step_limit)
        self.reason = step_limit_reason
        self.budget_s = float(max_minutes) * 60 if max_minutes else None
        self.start_step = int(start_step)
        self.start_time = float(start_time)
        self.clock = clock
        self.printer = printer or (lambda line: print(line, flush=True))
        self._first = None  # (time, step) after the first step of this invocation (tracing)

    def seconds_per_step(self, step: int, now: float) -> float | None:
        """Mean wall time per step since the first step (which includes tracing), else overall."""
        if self._first is not None and step > self._first[1]:
            return (now - self._first[0]) / (step - self._first[1])
        if step > self.start_step:
            return (now - self.start_time) / (step - self.start_step)
        return None

    def step_done(self, step: int, metrics: dict, show: bool) -> str | None:
        """Record that global `step` finished; print (and return) the line when `show`."""
        now = self.clock()
        if self._first is None:
            self._first = (now, step)
        if not show:
            return None
        elapsed = now - self.start_time
        rate = self.seconds_per_step(step, now)
        est = estimate_stop(step, self.step_limit, self.reason, elapsed, self.budget_s, rate,
                            self.start_step)
        parts = [describe_stop(step, est, self.step_limit, self.reason, self.budget_s),
                 f"{format_duration(elapsed)} elapsed"]
        if est.seconds_left is not None and step < est.total_steps:
            parts[-1] += f", ~{format_duration(est.seconds_left)} left"
        if rate is not None:
            parts.append(f"{rate:.3g} s/step")
        gaps = " ".join(f"{k.split('/', 1)[1]}:{v:+.4g}" for k, v in metrics.items()
                        if k.startswith("energy_gap/"))
        line = f"[train] {parts[0]} {', '.join(parts[1:])}"
        if gaps:
            line += f", energy gap {gaps}"
        self.printer(line)
        return line


# ---------------------------------------------------------------------------------------------
# Counted tasks (evaluation).

class TaskProgress:
    """Progress of one counted task: a tqdm bar on a terminal, plain lines otherwise.

    Use as a context manager; call it as a `ProgressFn` (`bar(done, total, note)`) or `update`.

    Args:
      label: what runs, e.g. `sampling` or `features efficientnet_lite0`.
      total: units to do (>= 0). unit: their name, e.g. `images`.
      prefix: line prefix, e.g. `[evaluate]`.
      stream: where to write (default sys.stderr at each write).
      interval_s: seconds between plain lines.
      tty: force the bar (True) or plain lines (False); default `stderr_is_terminal()`.
      clock: time source (seconds).
    """

    def __init__(self, label: str, total: int, unit: str = "", *, prefix: str = "[evaluate]",
                 stream=None, interval_s: float = 15.0, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit, self.prefix = label, int(total), unit, prefix
        self.stream, self.interval_s, self.clock = stream, float(interval_s), clock
        self.done, self.note = 0, ""
        self.start = self._last_line = clock()
        self._bar = None
        self._closed = False
        if stderr_is_terminal() if tty is None else tty:
            self._bar = self._make_bar()
        if self._bar is None:
            todo = f" ({self.total}{' ' + self.unit if self.unit else ''})" if self.total else ""
            self._line(f"started{todo}")

    def _out(self):
        return self.stream if self.stream is not None else sys.stderr

    def _make_bar(self):
        try:
            from tqdm import tqdm
        except ImportError:  # plain lines work everywhere
            return None
        return tqdm(total=self.total, desc=f"{self.prefix} {self.label}", unit=f" {self.unit}",
                    file=self._out(), leave=True, dynamic_ncols=True, mininterval=0.5)

    def _counts(self) -> str:
        return f"{self.done}/{self.total}{' ' + self.unit if self.unit else ''}"

    def _line(self, text: str) -> None:
        out = self._out()
        out.write(f"{self.prefix} {self.label}: {text}\n")
        out.flush()
        self._last_line = self.clock()

    def __call__(self, done: int, total: int | None = None, note: str = "") -> None:
        """Set the absolute count (the `ProgressFn` protocol)."""
        if total is not None and int(total) != self.total:
            self.total = int(total)
            if self._bar is not None:
                self._bar.total = self.total
        self.update(int(done) - self.done, note)

    def update(self, n: int = 1, note: str = "") -> None:
        """Add n finished units; note names what just finished (shown beside the counts)."""
        self.done += int(n)
        self.note = note or self.note
        if self._bar is not None:
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(int(n))
            return
        now = self.clock()
        if now - self._last_line >= self.interval_s and self.done < self.total:
            elapsed = now - self.start
            pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            left = ""
            if 0 < self.done < self.total:
                left = f", ~{format_duration(elapsed * (self.total - self.done) / self.done)} left"
            last = f"; last: {self.note}" if self.note else ""
            self._line(f"{self._counts()}{pct}, {format_duration(elapsed)} elapsed{left}{last}")

    def close(self) -> None:
        """Finish: close the bar, or print the final plain line."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            return
        self._line(f"{self._counts()}, done in {format_duration(self.clock() - self.start)}")

    def __enter__(self) -> "TaskProgress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._bar is not None:
            self._bar.close()
