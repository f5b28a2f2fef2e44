"""The runaway watch of CF-EBM training: sees an energy runaway coming, in graph code.

The CF-EBM authors' own logs show the energy running away after their best FID (to about -6e8)
while the loss still looks like a loss. Three signs come before such a runaway, and the watch
compares each step's value with its running average (an exponential moving average with decay
`DECAY` over the steps that passed, kept in checkpointed variables):

- energy magnitude: max(|mean f(obs)|, |mean f(synth)|) over `ENERGY_FLOOR` plus its average;
- Langevin gradient norm: the mean L2 norm of grad f along the last stage's chains, over
  `GRAD_FLOOR` plus its average;
- sample statistics: the synthesized images' standard deviation over the observed ones' (a
  runaway drives the chains to flat, saturated images).

A step is a runaway when, after `WARMUP` steps of the current stage, either jump exceeds
`factor`, or the sample standard deviation falls below `MIN_STD_RATIO` of the data's, or the
energy's running average has run off its slow running average (decay `SLOW_DECAY`) by more than
`factor / 2` (the trend: an energy growing steadily by about 10% a step or more, which never jumps
10x in one step, reaches it within some tens of steps); or, at any time, the energy magnitude
exceeds `ENERGY_LIMIT`. The watch then reports `runaway` = 1, and the
training loop's divergence guard (`trainers.train`) restores the last checkpoint (the watch's
averages with it) and lowers the learning rate by `train.retry_lr_factor`, as it does for
non-finite values. A runaway step does not enter the averages. A new stage (a different
network input side, larger chains) starts the averages afresh.
"""

from __future__ import annotations

import tensorflow as tf

DECAY = 0.9
SLOW_DECAY = 0.99
WARMUP = 5
ENERGY_FLOOR = 1.0
GRAD_FLOOR = 0.1
MIN_STD_RATIO = 0.05
ENERGY_LIMIT = 1e6
METRICS = ("runaway", "watch/energy_jump", "watch/grad_jump", "watch/energy_trend",
           "watch/sample_std_ratio")


def make_state(add_weight) -> dict:
    """The watch's variables, made with the model's `add_weight(name, dtype, value)`."""
    return {"energy": add_weight("watch_energy", "float32", 0.0),
            "energy_slow": add_weight("watch_energy_slow", "float32", 0.0),
            "grad": add_weight("watch_grad", "float32", 0.0),
            "count": add_weight("watch_count", "int32", 0),
            "stage": add_weight("watch_stage", "int32", -1)}


def check(state: dict, stage, energy_obs, energy_synth, grad_norm, synth_std, obs_std,
          factor: float) -> dict:
    """One step of the watch: the runaway verdict and its figures; updates `state` on a good step.

    Args:
      state: `make_state`'s variables. stage: int32 [] the stage this step trained.
      energy_obs, energy_synth: float32 [] batch means of f on observed and synthesized images.
      grad_norm: float32 [] mean L2 norm of grad f along the last stage's chains.
      synth_std, obs_std: float32 [] standard deviations of the synthesized and observed pixels.
      factor: the jump that counts as a runaway (> 1); 0 turns the watch off (never a runaway).

    Returns:
      {"runaway": float32 [] 0 or 1, "watch/energy_jump", "watch/grad_jump",
       "watch/energy_trend", "watch/sample_std_ratio": float32 []}.
    """
    scale = tf.maximum(tf.abs(energy_obs), tf.abs(energy_synth))
    energy_jump = scale / (state["energy"] + ENERGY_FLOOR)
    grad_jump = grad_norm / (state["grad"] + GRAD_FLOOR)
    trend = (state["energy"] + ENERGY_FLOOR) / (state["energy_slow"] + ENERGY_FLOOR)
    std_ratio = synth_std / (obs_std + 1e-6)
    fresh = tf.logical_or(tf.not_equal(state["stage"], stage), state["count"] < WARMUP)
    jumped = tf.logical_or(tf.logical_or(energy_jump > factor, grad_jump > factor), trend > factor / 2)
    bad = tf.logical_or(tf.logical_and(tf.logical_not(fresh),
                                       tf.logical_or(jumped, std_ratio < MIN_STD_RATIO)),
                        scale > ENERGY_LIMIT)
    if factor <= 0:
        bad = tf.constant(False)
    new_stage = tf.not_equal(state["stage"], stage)

    def blend(old, new, decay=DECAY):
        return tf.where(new_stage, new, decay * old + (1.0 - decay) * new)

    good = tf.logical_not(bad)
    state["energy"].assign(tf.where(good, blend(state["energy"], scale), state["energy"]))
    state["energy_slow"].assign(tf.where(good, blend(state["energy_slow"], scale, SLOW_DECAY),
                                         state["energy_slow"]))
    state["grad"].assign(tf.where(good, blend(state["grad"], grad_norm), state["grad"]))
    state["count"].assign(tf.where(good, tf.where(new_stage, 1, state["count"] + 1), state["count"]))
    state["stage"].assign(tf.where(good, stage, state["stage"]))
    return {"runaway": tf.cast(bad, tf.float32), "watch/energy_jump": energy_jump,
            "watch/grad_jump": grad_jump, "watch/energy_trend": trend,
            "watch/sample_std_ratio": std_ratio}
