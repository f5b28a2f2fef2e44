"""The runaway watch of CF-EBM training (`trainers.families.cfebm_watch`) and the divergence
guard acting on it: steady steps pass, a forced runaway (energy magnitude, Langevin gradient
norm, flat samples) is flagged, the training loop restores the last checkpoint and lowers the
learning rate. Tiny shapes: stages 4 -> 8 px, 1 channel."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from tests.test_cfebm import cf_config, pyramid_dir  # noqa: F401 -- the module fixture
from trainers.families import cfebm_watch
from trainers.families.cfebm import build_model
from trainers.train import TrainingDiverged, _is_bad, train


def _state():
    return cfebm_watch.make_state(lambda name, dtype, value: tf.Variable(value, dtype=dtype, name=name))


def _step(state, stage=0, e_obs=2.0, e_syn=1.0, grad=0.5, synth_std=0.2, obs_std=0.3, factor=10.0):
    out = cfebm_watch.check(state, tf.constant(stage, tf.int32), tf.constant(e_obs), tf.constant(e_syn),
                            tf.constant(grad), tf.constant(synth_std), tf.constant(obs_std), factor)
    return {k: float(v) for k, v in out.items()}


def test_steady_steps_pass_and_the_averages_follow_them():
    state = _state()
    for _ in range(20):
        out = _step(state)
        assert out["runaway"] == 0.0
    assert float(state["energy"]) == pytest.approx(2.0) and float(state["grad"]) == pytest.approx(0.5)
    assert int(state["count"]) == 20 and int(state["stage"]) == 0
    assert out["watch/energy_jump"] == pytest.approx(2.0 / (2.0 + cfebm_watch.ENERGY_FLOOR))
    assert out["watch/sample_std_ratio"] == pytest.approx(0.2 / 0.3, rel=1e-5)


@pytest.mark.parametrize("change, figure", [
    (dict(e_syn=-500.0), "watch/energy_jump"),     # energy magnitude: 500 / (2 + 1) > 10
    (dict(grad=20.0), "watch/grad_jump"),          # gradient norm: 20 / (0.5 + 0.1) > 10
    (dict(synth_std=0.001), "watch/sample_std_ratio"),  # flat samples: 0.001 / 0.3 < 0.05
])
def test_a_runaway_is_flagged_and_kept_out_of_the_averages(change, figure):
    state = _state()
    for _ in range(cfebm_watch.WARMUP):
        _step(state)
    before = {k: float(v) for k, v in state.items()}
    out = _step(state, **change)
    assert out["runaway"] == 1.0
    assert (out[figure] > 10) if figure != "watch/sample_std_ratio" else (out[figure] < cfebm_watch.MIN_STD_RATIO)
    assert {k: float(v) for k, v in state.items()} == before  # the bad step did not enter
    assert _step(state)["runaway"] == 0.0  # and the next steady step passes


def test_a_steady_growth_is_seen_coming_by_the_trend():
    state = _state()
    for _ in range(30):
        assert _step(state)["runaway"] == 0.0
    energy, flagged = 2.0, None
    for step in range(200):  # 15% a step: never a 10x jump, but the average runs off
        energy *= 1.15
        out = _step(state, e_obs=energy)
        assert out["watch/energy_jump"] < 10
        if out["runaway"]:
            flagged = step
            break
    assert flagged is not None and out["watch/energy_trend"] > 5
    assert energy < 1e4  # seen long before the energy limit (1e6) or the authors' blow-up


def test_warmup_and_a_new_stage_start_the_averages_afresh():
    state = _state()
    assert _step(state, e_syn=-500.0)["runaway"] == 0.0  # the first step sets the scale
    for _ in range(10):
        _step(state)
    # A new stage with 100x the energy and gradient: a new network side, not a runaway.
    assert _step(state, stage=1, e_obs=200.0, grad=50.0)["runaway"] == 0.0
    assert float(state["energy"]) == pytest.approx(200.0) and int(state["count"]) == 1
    assert int(state["stage"]) == 1


def test_the_energy_limit_counts_at_any_time_and_factor_0_turns_the_watch_off():
    assert _step(_state(), e_obs=2e6)["runaway"] == 1.0
    off = _state()
    for _ in range(10):
        _step(off, factor=0.0)
    assert _step(off, e_obs=2e6, grad=1e3, factor=0.0)["runaway"] == 0.0


def test_the_guard_names_the_runaway_and_its_figures():
    host = {"loss": 1.0, "runaway": 1.0, "watch/energy_jump": 42.0, "watch/grad_jump": 1.5}
    message = _is_bad(host, 1e3)
    assert message.startswith("runaway=1: the model sees a runaway coming")
    assert "watch/energy_jump=42" in message and "watch/grad_jump=1.5" in message
    assert _is_bad(dict(host, runaway=0.0), 1e3) is None


def _batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    full = rng.uniform(0.0, 1.0, (n, 8, 8, 1)).astype(np.float32)
    return {"grid_8": tf.constant(full), "grid_4": tf.constant(full.reshape(n, 4, 2, 4, 2, 1).mean((2, 4)))}


def test_a_forced_runaway_of_the_model_is_flagged():
    model = build_model((4, 8), 1, width=4, steps=2, step_size=0.1, noise_scale=0.1,
                        fade_images=1000, stable_images=1000, seed=0)
    model.compile(learning_rate=1e-4)
    for i in range(cfebm_watch.WARMUP + 2):
        out = model.train_step(_batch(seed=i))
        assert float(out["runaway"]) == 0.0
    # Force the runaway: the energy's output layer scaled by 1e4 (as an unbounded last layer
    # does when its weights run off).
    dense = model.net.dense
    dense.kernel.assign(dense.kernel * 1e4)
    dense.bias.assign(dense.bias + 1e3)
    out = model.train_step(_batch(seed=99))
    assert float(out["runaway"]) == 1.0 and float(out["watch/energy_jump"]) > 10


def test_the_training_loop_restores_and_lowers_the_learning_rate(pyramid_dir, tmp_path, capsys):  # noqa: F811
    # A learning rate of 1e4 sends the last layer's weights, and with them the energy, running off
    # within a few steps; the watch sees it and the guard restores, halving the rate each time.
    cfg = cf_config(learning_rate=1e4, max_steps=12, max_retries=2, retry_lr_factor=0.5,
                    stable_images=1000, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match="runaway=1: the model sees a runaway coming") as failed:
        train(cfg, pyramid_dir, str(tmp_path / "runaway"), export=False)
    assert "train.data_noise=0.03" in str(failed.value) and "sampler.clip" not in str(failed.value)
    out = capsys.readouterr().out
    assert re.search(r"divergence guard at step \d+: runaway=1", out)
    assert "learning rate now energy:5e+03 (retry 1/2)" in out
    assert "learning rate now energy:2.5e+03 (retry 2/2)" in out
