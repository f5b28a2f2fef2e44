"""Honest progress: which limit stops training (hand-computed cases), and evaluation lines."""

import io

import numpy as np
import pytest

from evaluators import downstream, inpainting
from trainers import progress as progress_lib
from trainers.progress import StopEstimate, TaskProgress, TrainProgress, estimate_stop


@pytest.mark.parametrize("kwargs, expected", [
    # 100 steps in 200 s -> 2 s/step; 400 s of a 600 s budget left -> 200 more steps -> 300.
    (dict(step=100, step_limit=7000, step_limit_reason="epochs", elapsed_s=200, time_budget_s=600),
     StopEstimate("max_minutes", 300, False, 400.0)),
    # The same pace with a 250-step limit: 150 steps (300 s) fit in the budget.
    (dict(step=100, step_limit=250, step_limit_reason="max_steps", elapsed_s=200,
          time_budget_s=600), StopEstimate("max_steps", 250, True, 300.0)),
    # Exactly as many steps fit as remain: the last one starts before the deadline.
    (dict(step=100, step_limit=300, step_limit_reason="epochs", elapsed_s=200, time_budget_s=600),
     StopEstimate("epochs", 300, True, 400.0)),
    # A started step runs to its end: 401 s left at 2 s/step -> ceil(200.5) = 201 steps.
    (dict(step=100, step_limit=7000, step_limit_reason="epochs", elapsed_s=199, time_budget_s=600,
          seconds_per_step=2.0), StopEstimate("max_minutes", 301, False, 401.0)),
    # No time budget: the step limit, 900 steps at 2 s.
    (dict(step=100, step_limit=1000, step_limit_reason="epochs", elapsed_s=200, time_budget_s=0),
     StopEstimate("epochs", 1000, True, 1800.0)),
    # Resumed at step 1000: the pace counts this invocation's 100 steps only (2 s/step).
    (dict(step=1100, step_limit=7000, step_limit_reason="epochs", elapsed_s=200,
          time_budget_s=600, start_step=1000), StopEstimate("max_minutes", 1300, False, 400.0)),
    # The deadline has passed: this is the last step.
    (dict(step=100, step_limit=7000, step_limit_reason="epochs", elapsed_s=650, time_budget_s=600),
     StopEstimate("max_minutes", 100, False, 0.0)),
    # Nothing timed yet: the step limit, no estimate of the time left.
    (dict(step=0, step_limit=400, step_limit_reason="max_steps", elapsed_s=3, time_budget_s=600),
     StopEstimate("max_steps", 400, True, None)),
])
def test_estimate_stop_hand_computed(kwargs, expected):
    assert estimate_stop(**kwargs) == expected


def test_describe_stop_names_the_binding_limit():
    time_bound = StopEstimate("max_minutes", 430, False, 336.0)
    assert progress_lib.describe_stop(120, time_bound, 7000, "epochs", 540) == (
        "step 120/~430 (stops at the 9.0-minute budget; epoch limit 7000 steps)")
    step_bound = StopEstimate("max_steps", 400, True, 100.0)
    assert progress_lib.describe_stop(120, step_bound, 400, "max_steps", 540) == (
        "step 120/400 (stops at the max_steps limit, before the 9.0-minute budget)")
    assert "stops at the 0.25-minute budget" in progress_lib.describe_stop(
        120, time_bound, 7000, "epochs", 15)
    assert progress_lib.describe_stop(120, step_bound, 400, "epochs", None) == (
        "step 120/400 (stops at the epoch limit)")


def test_format_duration():
    assert [progress_lib.format_duration(s) for s in (0.42, 42, 204, 7560)] == [
        "0.4 s", "42 s", "3.4 min", "2.1 h"]


def test_train_progress_line_excludes_the_first_step_from_the_pace():
    clock = iter([3.0] + [3.0 + k for k in range(1, 11)])  # step 1 at 3 s (tracing), then 1 s
    lines = []
    bar = TrainProgress(7000, "epochs", max_minutes=1.0, start_step=0, start_time=0.0,
                        clock=lambda: next(clock), printer=lines.append)
    for n in range(1, 12):
        bar.step_done(n, {"energy_gap/4": 0.5, "energy_gap/16": -0.25, "loss/4": 1.0},
                      show=n in (1, 11))
    # At 13 s: 1 s/step, 47 s of the minute left -> 47 more steps -> about 58 in all.
    assert lines[-1] == ("[train] step 11/~58 (stops at the 1.0-minute budget; epoch limit 7000 "
                         "steps) 13 s elapsed, ~47 s left, 1 s/step, energy gap 4:+0.5 16:-0.25")
    assert lines[0].startswith("[train] step 1/~20 (stops at the 1.0-minute budget")  # 3 s/step


def test_train_progress_last_step_of_a_step_limit():
    clock = iter([2.0, 4.0])
    lines = []
    bar = TrainProgress(2, "max_steps", max_minutes=0, start_step=0, start_time=0.0,
                        clock=lambda: next(clock), printer=lines.append)
    bar.step_done(1, {}, show=False)
    bar.step_done(2, {}, show=True)
    assert lines == ["[train] step 2/2 (stops at the max_steps limit) 4.0 s elapsed, 2 s/step"]


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_task_progress_plain_lines_without_carriage_returns():
    clock, out = _Clock(), io.StringIO()
    with TaskProgress("features efficientnet_lite0", 1000, "images", stream=out, tty=False,
                      interval_s=10, clock=clock) as bar:
        clock.now = 5.0
        bar.update(100)  # too soon for a line
        clock.now = 12.0
        bar.update(300, "fake batch 4")
        clock.now = 30.0
        bar(1000, 1000)
    assert out.getvalue().splitlines() == [
        "[evaluate] features efficientnet_lite0: started (1000 images)",
        "[evaluate] features efficientnet_lite0: 400/1000 images (40%), 12 s elapsed, ~18 s left;"
        " last: fake batch 4",
        "[evaluate] features efficientnet_lite0: 1000/1000 images, done in 30 s",
    ]
    assert "\r" not in out.getvalue()


def test_task_progress_draws_a_bar_on_a_terminal():
    out = io.StringIO()
    with TaskProgress("sampling", 4, "images", stream=out, tty=True) as bar:
        bar(4, 4)
    assert "\r" in out.getvalue() and "4/4" in out.getvalue()


def test_terminal_detection_follows_the_log_filter(monkeypatch):
    monkeypatch.setenv(progress_lib.STDERR_TTY_ENV, "1")
    assert progress_lib.stderr_is_terminal()
    monkeypatch.setenv(progress_lib.STDERR_TTY_ENV, "0")
    assert not progress_lib.stderr_is_terminal()


def test_experiments_report_counted_progress():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(40) % 2
    calls = []
    downstream.downstream_table(
        images[:30], labels[:30], images[30:], labels[30:],
        feature_fn=lambda x: {8: x.reshape(len(x), -1).astype(np.float32)},
        label_counts=(10, 20), progress=lambda done, total, note: calls.append((done, total, note)))
    # 2 feature passes + 2 counts x (svm/model, mlp/model, svm/raw_pixels) = 8 steps.
    assert [c[:2] for c in calls] == [(k, 8) for k in range(1, 9)]
    assert calls[-1][2] == "svm/raw_pixels, 20 labels"

    calls.clear()
    inpainting.evaluate_inpainting(images[:3], None, masks=("square", "pepper"),
                                   progress=lambda *args: calls.append(args))
    assert [c[:2] for c in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[0][2] == "square mask, mean_fill"
