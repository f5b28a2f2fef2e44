"""trainers.scale_schedule: per-scale steps, the reference's learning-rate decay and its Langevin
noise annealed over training, against their closed forms at given steps."""

import pytest

from trainers import scale_schedule as ss


def test_steps_of_scales_starts_and_scale_at():
    assert ss.steps_of_scales(4, 250) == [250] * 4
    steps = ss.steps_of_scales(4, 250, (1000, 500))
    assert steps == [1000, 500, 250, 250]
    assert ss.scale_starts(steps) == [0, 1000, 1500, 1750]
    assert [ss.scale_at(s, steps) for s in (0, 999, 1000, 1499, 1500, 1749, 1750, 1999, 5000)] == \
        [0, 0, 1, 1, 2, 2, 3, 3, 3]
    with pytest.raises(ValueError, match=r"train\.scale_steps=\(1, 2, 3\) must hold at most 2"):
        ss.steps_of_scales(2, 10, (1, 2, 3))
    with pytest.raises(ValueError, match=r"train\.scale_steps"):
        ss.steps_of_scales(3, 10, (0,))


def test_linear_lr_is_the_references_polynomial_decay():
    # tf.compat.v1.train.polynomial_decay(4e-4, t, 3200, 5e-5, power=1) on a 4,000-step scale.
    lr, end = 4e-4, 5e-5
    assert ss.decay_steps(4000, 0.8) == 3200
    for t, want in [(0, 4e-4), (1600, (4e-4 + 5e-5) / 2), (800, 5e-5 + 3.5e-4 * 0.75), (3200, 5e-5),
                    (3999, 5e-5)]:
        assert ss.lr_factor(t, 4000, "linear", lr, end, 0.8) == pytest.approx(want, rel=1e-12)
    assert ss.lr_factor(123, 4000, "constant", lr, end, 0.8) == lr
    # A short scale: D = round(0.8 * 5) = 4 steps of (4e-4 - 5e-5) / 4 each.
    assert [ss.lr_factor(t, 5, "linear", lr, end, 0.8) for t in range(6)] == pytest.approx(
        [4e-4, 3.125e-4, 2.25e-4, 1.375e-4, 5e-5, 5e-5])
    with pytest.raises(ValueError, match="train.lr_schedule='cosine'.*allowed"):
        ss.lr_factor(0, 10, "cosine", lr, end, 0.8)


def test_linear_training_noise_is_the_references_annealing():
    # get_noise_scale: (noise_init - 0) * max(1 - epoch / 1000, 0) on a 4,000-step scale.
    for t, want in [(0, 1.0), (250, 0.75), (500, 0.5), (999, 0.001), (1000, 0.0), (3999, 0.0)]:
        assert ss.noise_factor(t, 4000, "linear", 0.25) == pytest.approx(want, abs=1e-12)
    assert ss.noise_factor(3999, 4000, "constant", 0.25) == 1.0
    assert ss.final_noise_factor(4000, "linear", 0.25) == 0.0
    assert ss.final_noise_factor(10, "constant", 0.25) == 1.0
    assert ss.final_noise_factor(10, "linear", 1.0) == 0.0
    with pytest.raises(ValueError, match="sampler.train_noise_schedule='step'.*allowed"):
        ss.noise_factor(0, 10, "step", 0.25)
