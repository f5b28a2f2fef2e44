"""Schedules of a model trained coarse to fine, one scale after the other (PatchGenCN).

Plain Python (no TensorFlow), pure functions of the step, so a resumed run continues exactly and
the same numbers serve the trainer, its graph (`PatchGenCN` evaluates the same formulas in TF)
and the tests.

Steps. Scale k trains `P_k` steps, coarsest first: `P_k = scale_steps[k]` for the scales that
`scale_steps` names (coarsest first; it may be shorter than the pyramid), `steps_per_scale` for
the others. Scale k trains during global steps [S_k, S_k + P_k), S_k = P_0 + ... + P_{k-1}; its
local step is t = step - S_k. The coarse scales cost 4-8x less per step and decide the layout, so
a budget may give them more steps (e.g. `scale_steps=(1000, 500)` with 250 for the rest).

Learning rate of scale k at local step t (each scale has its own optimizer):
- `constant`: lr.
- `linear` (the PatchGenCN authors' `polynomial_decay`, power 1): lr_end + (lr - lr_end)
  (1 - min(t, D) / D) with D = max(1, round(fraction P_k)): from lr at t = 0 down to lr_end at
  t = D, then held (the reference: 4e-4 -> 5e-5 over 3,200 of 4,000 steps, fraction 0.8).

Langevin noise over training, a multiplier m of the chains' noise at local step t of scale k:
- `constant`: m = 1 (every chain of training and sampling has the sampler's noise).
- `linear` (the authors' `get_noise_scale` with noise_min 0): m = max(0, 1 - t / (fraction P_k)):
  1 at the scale's first step, 0 from fraction P_k on (the reference: 1,000 of 4,000 steps,
  fraction 0.25). A trained scale then samples with its final multiplier (`final_noise_factor`),
  0 here: noise-free chains, diversity from the starting noise alone, as the reference samples.
"""

from __future__ import annotations

LR_SCHEDULES = ("constant", "linear")
TRAIN_NOISE_SCHEDULES = ("constant", "linear")


def steps_of_scales(num_scales: int, steps_per_scale: int, scale_steps=()) -> list[int]:
    """[P_0, ..., P_{L-1}]: the training steps of each scale, coarsest first.

    Args:
      num_scales: L >= 1. steps_per_scale: P >= 1, the steps of every scale `scale_steps` omits.
      scale_steps: steps of the coarsest len(scale_steps) scales (each >= 1); at most L entries.

    Raises:
      ValueError: a count < 1, or more entries than scales (the message names `train.scale_steps`).
    """
    scale_steps = [int(s) for s in scale_steps]
    if int(num_scales) < 1 or int(steps_per_scale) < 1:
        raise ValueError(f"num_scales={num_scales} and steps_per_scale={steps_per_scale} must be >= 1")
    if len(scale_steps) > num_scales or any(s < 1 for s in scale_steps):
        raise ValueError(f"train.scale_steps={tuple(scale_steps)} must hold at most {num_scales} counts "
                         f"(one per scale of this image's pyramid, coarsest first), each >= 1")
    return scale_steps + [int(steps_per_scale)] * (int(num_scales) - len(scale_steps))


def scale_starts(steps: list[int]) -> list[int]:
    """[S_0, ..., S_{L-1}]: the global step at which each scale starts (S_0 = 0)."""
    out, total = [], 0
    for p in steps:
        out.append(total)
        total += int(p)
    return out


def scale_at(step: int, steps: list[int]) -> int:
    """The scale (0 = coarsest) that trains at global step `step` >= 0 (the last one past the end)."""
    starts = scale_starts(steps)
    return max(k for k, s in enumerate(starts) if step >= s)


def decay_steps(scale_steps_k: int, fraction: float) -> int:
    """D = max(1, round(fraction * P_k)): the local steps over which the learning rate decays."""
    return max(1, round(float(fraction) * int(scale_steps_k)))


def lr_factor(t: int, scale_steps_k: int, schedule: str, lr: float, lr_end: float, fraction: float) -> float:
    """Learning rate of a scale with P_k steps at its local step t >= 0 (see the module docstring)."""
    if schedule == "constant":
        return float(lr)
    if schedule != "linear":
        raise ValueError(f"train.lr_schedule={schedule!r} is not allowed; allowed values: {list(LR_SCHEDULES)}")
    d = decay_steps(scale_steps_k, fraction)
    return float(lr_end) + (float(lr) - float(lr_end)) * (1.0 - min(int(t), d) / d)


def noise_factor(t: int, scale_steps_k: int, schedule: str, fraction: float) -> float:
    """The multiplier m of the chains' noise at local step t >= 0 of a scale with P_k steps."""
    if schedule == "constant":
        return 1.0
    if schedule != "linear":
        raise ValueError(f"sampler.train_noise_schedule={schedule!r} is not allowed; allowed values: "
                         f"{list(TRAIN_NOISE_SCHEDULES)}")
    return max(0.0, 1.0 - int(t) / (float(fraction) * int(scale_steps_k)))


def final_noise_factor(scale_steps_k: int, schedule: str, fraction: float) -> float:
    """The multiplier a fully trained scale samples with: its value after the last step (t = P_k)."""
    return noise_factor(int(scale_steps_k), scale_steps_k, schedule, fraction)
