"""PatchGenCN's training levers inside the model's train step, against `trainers.scale_schedule`'s
closed forms: per-scale steps, the reference's learning-rate decay (the optimizer's rate after
each step), Langevin noise annealed over training (and noise-free sampling after it), more
chains at the cheap scales, a deeper coarsest net and the reference's wider fine nets. Tiny
shapes as in test_patchgen: scales 12x16 -> 16x21 -> 21x28."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.test_patchgen import SCALES, image_batch, tiny_model
from trainers import scale_schedule
from trainers.chain import fold_seed
from trainers.config import Config, ConfigError
from trainers.data import SCALE_PYRAMID_FORMAT
from trainers.families import get_family
from trainers.families.patchgen_spec import scale_channels
from trainers.train import _budget


def run_steps(model, count, n=2):
    step = tf.function(model.train_step)
    batch = image_batch(n)
    return [step(batch) for _ in range(count)]


def test_scale_steps_move_the_boundaries_and_the_budget():
    model = tiny_model(scale_steps=(3, 1), steps_per_scale=2)
    assert model.scale_steps == [3, 1, 2] and model.scale_starts == [0, 3, 4]
    assert [int(model.scale_of(tf.constant(s, tf.int64))) for s in range(8)] == [0, 0, 0, 1, 2, 2, 2, 2]
    outs = run_steps(model, 4)
    assert [float(o["scale"]) for o in outs] == [0, 0, 0, 1]
    assert model.trained_scales() == 2 and model.export_info()["scale_steps"] == [3, 1, 2]
    cfg = Config.build("p", data=dict(source="file:/x.png"), pyramid=dict(scale_factor=0.75),
                      model=dict(family="patchgen"), train=dict(steps_per_scale=250, scale_steps=(1000, 500)))
    metadata = {"format": SCALE_PYRAMID_FORMAT, "scales": [[27, 40], [36, 54], [48, 72], [64, 96]]}
    assert _budget(cfg, metadata, "") == (2000, "steps_per_scale")


def test_linear_lr_schedule_sets_each_scales_rate_to_the_closed_form():
    lr, end = 4e-4, 1e-4
    model = tiny_model(steps_per_scale=5, lr_schedule="linear", lr_end=end, lr_decay_fraction=0.8,
                       learning_rate=lr)
    opts = model.optimizers_by_name()
    step, batch, got = tf.function(model.train_step), image_batch(2), []  # traced once, as fit() does
    for _ in range(6):
        step(batch)
        got.append([float(opts[f"scale_{k}"].learning_rate.numpy()) for k in range(2)])
    want = [scale_schedule.lr_factor(t, 5, "linear", lr, end, 0.8) for t in range(5)]
    assert want == pytest.approx([4e-4, 3.25e-4, 2.5e-4, 1.75e-4, 1e-4])
    np.testing.assert_allclose([g[0] for g in got[:5]], want, rtol=1e-5)
    np.testing.assert_allclose([g[1] for g in got[:5]], [lr] * 5, rtol=1e-6)  # scale 1 untouched
    assert got[5] == pytest.approx([1e-4, lr], rel=1e-5)  # scale 1's first step: its full rate
    with pytest.raises(ValueError, match="lr_end=0.001 must be below"):
        tiny_model(lr_schedule="linear", lr_end=1e-3, learning_rate=4e-4)


def test_training_noise_annealed_to_zero_makes_sampling_noise_free():
    model = tiny_model(steps_per_scale=4, train_noise_schedule="linear", train_noise_fraction=0.5)
    assert [float(model.train_noise(0, tf.constant(t, tf.int64))) for t in range(4)] == [1.0, 0.5, 0.0, 0.0]
    assert model.sample_noise == [0.0, 0.0, 0.0] and model.export_info()["sample_noise"] == [0.0] * 3
    x = tf.random.stateless_uniform([2, *SCALES[1], 3], [0, 3])
    seed = tf.constant([1, 2], tf.int64)
    noisy, _ = model.run_scale(1, x, seed, noise=True)
    plain, _ = model.run_scale(1, x, seed, noise=False)
    np.testing.assert_array_equal(noisy, plain)
    # The constant schedule keeps the sampler's noise in sampling after training.
    ours = tiny_model(steps_per_scale=4)
    assert ours.sample_noise == [1.0] * 3
    assert not np.allclose(ours.run_scale(1, x, seed, noise=True)[0], ours.run_scale(1, x, seed, noise=False)[0])
    # At m(1) = 0.5 a training chain is the sampler's chain with half its noise scale (0.1).
    half, _ = model.run_scale(1, x, seed, noise=True, noise_multiplier=model.train_noise(1, tf.constant(1, tf.int64)))
    narrow, _ = model.samplers(1)[0].replace(noise_scale=0.05).run(model.nets[1], x, fold_seed(seed, 1))
    np.testing.assert_allclose(half, narrow, atol=1e-6)
    assert not np.allclose(half, plain, atol=1e-4)


def test_scale_batch_sets_the_chains_of_the_cheap_scales():
    model = tiny_model(steps_per_scale=1, scale_batch=(3,))
    step, batch = tf.function(model.train_step), image_batch(2)  # traced once, as fit() does
    out = step(batch)
    assert int(model._preview_count.numpy()) == 3 and np.isfinite(float(out["loss"]))
    step(batch)
    assert int(model._preview_count.numpy()) == 2  # scale 1: the batch's N
    with pytest.raises(ValueError, match="scale_batch"):
        tiny_model(scale_batch=(1, 1, 1, 1))


def test_deeper_coarsest_net_and_wider_fine_nets():
    assert scale_channels(0.25, 4, SCALES, coarse_layers=6) == [[16, 8, 8, 8, 8, 1]] + [[16, 8, 8, 1]] * 2
    assert scale_channels(0.25, 4, SCALES, wide_from_side=21) == [[16, 8, 8, 1]] + [[32, 16, 16, 1]] * 2
    assert scale_channels(1.0, 5, [(64, 96)], wide_from_side=64) == [[128, 64, 64, 64, 1]]  # the reference's
    model = tiny_model(scale_channels=[(8, 4, 4, 4, 1), (8, 4, 4, 1), (8, 4, 4, 1)], spectral=False,
                       learning_rate=1e-9, recovery_weight=0.0)
    assert model.nets[0].pad == 5 and model.nets[1].pad == 4
    before = [v.numpy().copy() for v in model.nets[1].trainable_variables]
    run_steps(model, 3)  # scale 1's first step: net 0 differs in depth, so net 1 keeps its own start
    for a, b in zip(model.nets[1].trainable_variables, before):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-6)
    run_steps(model, 2)  # scale 2's first step: net 2 := net 1
    for a, b in zip(model.nets[2].trainable_variables, model.nets[1].trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_config_fields_are_checked_by_name():
    good = Config.build("p", data=dict(source="file:/x.png"), pyramid=dict(scale_factor=0.75),
                        model=dict(family="patchgen"))
    for override, field in [("train.lr_schedule=cosine", "train.lr_schedule"),
                            ("train.lr_decay_fraction=0", "train.lr_decay_fraction"),
                            ("train.lr_schedule=linear train.lr_end=0.01", "train.lr_end"),
                            ("sampler.train_noise_schedule=step", "sampler.train_noise_schedule"),
                            ("sampler.train_noise_fraction=1.5", "sampler.train_noise_fraction"),
                            ("model.coarse_patch_layers=1", "model.coarse_patch_layers"),
                            ("model.wide_from_side=-1", "model.wide_from_side"),
                            ("train.scale_steps=100,0", "train.scale_steps"),
                            ("train.scale_batch=0", "train.scale_batch")]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            good.with_overrides(override.split())
    cfg = good.with_overrides(["train.scale_steps=5,5,5", "model.width=0.125", "model.patch_layers=3"])
    with pytest.raises(ValueError, match=r"train\.scale_steps=\(5, 5, 5\) names 3 scales; this image's pyramid has 2"):
        get_family("patchgen").build(cfg, {"scales": [[12, 16], [16, 21]], "channels": 3, "scale_factor": 0.75})


def test_direct_super_resolution_is_one_upsampling_then_one_chain():
    from trainers.families.patchgen_inference import resize

    model = tiny_model(sr_upsampling="direct", sr_steps=2)
    x = tf.random.stateless_uniform([1, 10, 12, 3], [4, 4])
    seed = tf.constant([3, 5], tf.int64)
    want, _ = model.sr_sampler.run(model.nets[-1], resize(x, 20, 24), fold_seed(seed, 0))
    np.testing.assert_allclose(model.super_resolve(x, tf.constant(2), seed), want, atol=1e-6)
    cascade = tiny_model(sr_steps=2)  # the same weights (seed 0), three upsamplings by 1 / 0.75
    assert cascade.super_resolve(x, tf.constant(2), seed).shape == (1, 20, 24, 3)
    assert not np.allclose(cascade.super_resolve(x, tf.constant(2), seed), want, atol=1e-3)
    with pytest.raises(ValueError, match="sr_upsampling='nearest'"):
        tiny_model(sr_upsampling="nearest")


def test_coarse_noise_changes_only_the_chains_through_coarser_scales():
    plain, noisy = tiny_model(), tiny_model(coarse_noise=True)
    step_p, step_n = tf.function(plain.train_step), tf.function(noisy.train_step)
    batch = image_batch()
    for k in range(3):  # two steps at scale 0 (no coarser scale: the same), then scale 1
        step_p(batch), step_n(batch)
        same = np.array_equal(plain._preview.numpy(), noisy._preview.numpy())
        assert same == (k < 2), k
