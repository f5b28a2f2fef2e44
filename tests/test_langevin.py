"""LangevinSampler on quadratic energies with a known answer, determinism, masks, clipping."""

import numpy as np
import pytest
import tensorflow as tf

from trainers.langevin import LangevinSampler, binomial_blur, noise_factors, step_factors

MU, S = 0.3, 0.5


def quadratic(x):
    """f(x) = -||x - MU||^2 / (2 S^2): the log density of N(MU, S^2) up to a constant."""
    return -tf.reduce_sum(tf.square(x - MU), axis=[1, 2, 3]) / (2 * S ** 2)


def ula_variance(var, delta):
    """Stationary variance of unadjusted Langevin on a Gaussian with variance `var`.

    x' = x + (delta^2/2)(-(x - m)/var) + delta z is AR(1) with a = 1 - delta^2/(2 var), so the
    variance is delta^2 / (1 - a^2) = var / (1 - delta^2 / (4 var)).
    """
    return var / (1 - delta ** 2 / (4 * var))


def test_gaussian_mean_and_variance_with_noise():
    delta = 0.1  # bias factor 1 / (1 - 0.01) ~ 1.0101 on the variance
    sampler = LangevinSampler(steps=400, step_size=delta, noise=True, clip=False)
    x0 = tf.zeros([2000, 4, 4, 1])  # 32,000 independent chains, all started far from MU
    x, diag = sampler.run(quadratic, x0, tf.constant([1, 2]))
    samples = x.numpy().ravel()
    # relaxation per step 1 - 0.02: after 400 steps the start is forgotten to 3e-4
    se_mean = S / np.sqrt(samples.size)
    assert abs(samples.mean() - MU) < 4 * se_mean  # 4 standard errors ~ 0.011
    # variance: within 4% of the discretised ULA variance (its standard error is 0.8%)
    assert samples.var() == pytest.approx(ula_variance(S ** 2, delta), rel=0.04)
    # and within 5% of the continuous-time answer S^2 = 0.25
    assert samples.var() == pytest.approx(S ** 2, rel=0.05)
    assert diag["energy_end"].shape == (2000,)
    assert np.isfinite(diag["grad_norm"].numpy())


def test_noise_scale_tempers_the_gaussian_variance():
    # ULA with noise eta * delta on N(MU, S^2): x_{t+1} = x_t + (delta^2 / 2)(MU - x_t) / S^2 + eta
    # delta eps, an AR(1) with a = 1 - delta^2 / (2 S^2): variance eta^2 delta^2 / (1 - a^2).
    delta, eta = 0.1, 0.5
    sampler = LangevinSampler(steps=400, step_size=delta, noise=True, noise_scale=eta, clip=False)
    x, _ = sampler.run(quadratic, tf.zeros([2000, 4, 4, 1]), tf.constant([3, 4]))
    samples = x.numpy().ravel()
    a = 1 - delta ** 2 / (2 * S ** 2)
    assert abs(samples.mean() - MU) < 4 * eta * S / np.sqrt(samples.size)
    assert samples.var() == pytest.approx(eta ** 2 * delta ** 2 / (1 - a ** 2), rel=0.04)
    assert samples.var() == pytest.approx(eta ** 2 * S ** 2, rel=0.05)


def test_noise_factors_schedules():
    assert noise_factors(4, "constant") == [1.0] * 4
    assert noise_factors(5, "linear") == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert noise_factors(1, "linear") == [0.0]
    with pytest.raises(ValueError, match="noise_schedule='cosine'.*allowed"):
        LangevinSampler(steps=3, step_size=0.1, noise=True, noise_schedule="cosine")


def test_linear_noise_schedule_variance_follows_the_ar1_recursion():
    # On N(MU, S^2) one step is x' = a x + (1 - a) MU + eta_i delta eps with a = 1 - delta^2/(2 S^2),
    # so from a constant start the variance obeys v_{i+1} = a^2 v_i + (eta_i delta)^2 exactly and
    # the mean relaxes as MU + a^T (x0 - MU), whatever the noise schedule.
    delta, eta, steps = 0.2, 0.8, 60
    sampler = LangevinSampler(steps=steps, step_size=delta, noise=True, noise_scale=eta,
                              noise_schedule="linear", clip=False)
    x, _ = sampler.run(quadratic, tf.zeros([2000, 4, 4, 1]), tf.constant([7, 8]))
    samples = x.numpy().ravel()
    a = 1 - delta ** 2 / (2 * S ** 2)
    var = 0.0
    for factor in noise_factors(steps, "linear"):
        var = a ** 2 * var + (eta * factor * delta) ** 2
    constant_var = (eta * delta) ** 2 * (1 - a ** (2 * steps)) / (1 - a ** 2)
    assert var < 0.6 * constant_var  # the decay removes a real part of the noise
    assert samples.var() == pytest.approx(var, rel=0.04)
    assert abs(samples.mean() - MU * (1 - a ** steps)) < 4 * np.sqrt(var / samples.size)


def test_step_factors_schedules():
    assert step_factors(3, "constant") == [1.0] * 3
    assert step_factors(4, "linear") == [1.0, 0.75, 0.5, 0.25]
    assert step_factors(1, "linear") == [1.0]
    with pytest.raises(ValueError, match="step_size_schedule='cosine'.*allowed"):
        LangevinSampler(steps=3, step_size=0.1, step_size_schedule="cosine")


@pytest.mark.parametrize("noise_schedule", ["constant", "linear"])
def test_linear_step_size_schedule_follows_the_ar1_recursion(noise_schedule):
    # With delta_i = delta (T - i) / T, step i on N(MU, S^2) is x' = a_i x + (1 - a_i) MU +
    # eta_i delta_i eps with a_i = 1 - delta_i^2 / (2 S^2): from a constant start the mean is
    # MU + prod(a_i) (x0 - MU) and the variance obeys v_{i+1} = a_i^2 v_i + (eta_i delta_i)^2.
    delta, eta, steps = 0.4, 0.8, 40
    sampler = LangevinSampler(steps=steps, step_size=delta, noise=True, noise_scale=eta,
                              noise_schedule=noise_schedule, step_size_schedule="linear", clip=False)
    x, _ = sampler.run(quadratic, tf.zeros([2000, 4, 4, 1]), tf.constant([9, 10]))
    samples = x.numpy().ravel()
    var, shrink = 0.0, 1.0
    for f, g in zip(step_factors(steps, "linear"), noise_factors(steps, noise_schedule)):
        a = 1 - (delta * f) ** 2 / (2 * S ** 2)
        var, shrink = a ** 2 * var + (eta * g * delta * f) ** 2, shrink * a
    assert samples.var() == pytest.approx(var, rel=0.04)
    assert abs(samples.mean() - MU * (1 - shrink)) < 4 * np.sqrt(var / samples.size)
    # Noise off: deterministic gradient ascent, exactly the product of the contractions.
    plain = sampler.replace(noise=False).run(quadratic, tf.zeros([2, 4, 4, 1]), tf.constant([0, 0]))[0]
    np.testing.assert_allclose(plain.numpy(), MU * (1 - shrink), rtol=1e-5)


def test_reference_term_gives_product_gaussian():
    delta, sigma = 0.1, 0.5
    sampler = LangevinSampler(steps=400, step_size=delta, reference_sigma=sigma, use_reference=True,
                              noise=True, clip=False)
    x, _ = sampler.run(quadratic, tf.zeros([2000, 4, 4, 1]), tf.constant([5, 6]))
    samples = x.numpy().ravel()
    precision = 1 / S ** 2 + 1 / sigma ** 2  # N(MU, S^2) * N(0, sigma^2) ∝ N(m, 1/precision)
    var, mean = 1 / precision, (MU / S ** 2) / precision
    assert var == pytest.approx(0.125) and mean == pytest.approx(0.15)
    assert abs(samples.mean() - mean) < 4 * np.sqrt(var / samples.size)
    assert samples.var() == pytest.approx(ula_variance(var, delta), rel=0.04)
    assert samples.var() == pytest.approx(var, rel=0.06)


@pytest.mark.parametrize("use_reference, mode", [(False, MU), (True, 0.15)])
def test_noise_off_converges_to_the_mode(use_reference, mode):
    sampler = LangevinSampler(steps=120, step_size=0.3, reference_sigma=0.5,
                              use_reference=use_reference, noise=False, clip=True)
    x0 = tf.random.stateless_uniform([8, 3, 3, 1], [0, 1])
    x, diag = sampler.run(quadratic, x0, tf.constant([0, 0]))
    np.testing.assert_allclose(x.numpy(), mode, atol=1e-5)
    assert np.all(diag["energy_end"].numpy() >= diag["energy_start"].numpy())


def test_diagnostics_of_one_step_match_numpy():
    sampler = LangevinSampler(steps=1, step_size=0.2, noise=False, clip=False)
    x0 = np.random.default_rng(0).uniform(size=(5, 2, 2, 3)).astype(np.float32)
    x, diag = sampler.run(quadratic, x0, tf.constant([0, 0]))
    grad = -(x0 - MU) / S ** 2
    np.testing.assert_allclose(x.numpy(), x0 + 0.02 * grad, rtol=1e-6, atol=1e-6)
    f = lambda v: -((v - MU) ** 2).sum(axis=(1, 2, 3)) / (2 * S ** 2)
    np.testing.assert_allclose(diag["energy_start"].numpy(), f(x0), rtol=1e-5)
    np.testing.assert_allclose(diag["energy_end"].numpy(), f(x0 + 0.02 * grad), rtol=1e-5)
    np.testing.assert_allclose(diag["grad_norm"].numpy(),
                               np.sqrt((grad ** 2).sum(axis=(1, 2, 3))).mean(), rtol=1e-5)


def test_same_seed_same_chain_different_seed_different_chain():
    sampler = LangevinSampler(steps=5, step_size=0.1, noise=True)
    x0 = tf.fill([4, 3, 3, 1], 0.5)
    a, _ = sampler.run(quadratic, x0, tf.constant([7, 8]))
    b, _ = sampler.run(quadratic, x0, tf.constant([7, 8], tf.int64))
    c, _ = sampler.run(quadratic, x0, tf.constant([7, 9]))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.abs(a.numpy() - c.numpy()).max() > 1e-3
    # a fresh sampler with the same settings gives the same chain too
    d, _ = LangevinSampler(steps=5, step_size=0.1, noise=True).run(quadratic, x0, [7, 8])
    np.testing.assert_array_equal(a.numpy(), d.numpy())


def test_mask_keeps_observed_pixels_bit_exactly():
    rng = np.random.default_rng(1)
    x0 = rng.uniform(size=(3, 6, 6, 3)).astype(np.float32)
    mask = (rng.uniform(size=(3, 6, 6, 1)) < 0.4).astype(np.float32)
    sampler = LangevinSampler(steps=10, step_size=0.2, noise=True)
    x, _ = sampler.run(quadratic, x0, tf.constant([1, 1]), mask=mask)
    x = x.numpy()
    observed = np.broadcast_to(mask == 0, x.shape)
    np.testing.assert_array_equal(x[observed], x0[observed])
    assert np.abs(x[~observed] - x0[~observed]).min() > 0  # every missing pixel moved


def test_clip_keeps_unit_range():
    sampler = LangevinSampler(steps=10, step_size=1.0, noise=True, clip=True)
    x, _ = sampler.run(quadratic, tf.fill([16, 4, 4, 1], 0.5), tf.constant([3, 4]))
    x = x.numpy()
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert (x == 0.0).any() and (x == 1.0).any()  # large noise does hit both bounds
    unclipped, _ = sampler.replace(clip=False).run(quadratic, tf.fill([16, 4, 4, 1], 0.5), tf.constant([3, 4]))
    assert unclipped.numpy().min() < 0.0 or unclipped.numpy().max() > 1.0


def test_no_mask_is_an_all_ones_mask_without_the_masking_ops():
    sampler = LangevinSampler(steps=3, step_size=0.2, noise=True)
    x0, seed = tf.random.stateless_uniform([3, 4, 4, 1], [5, 6]), tf.constant([1, 2])
    free, free_diag = sampler.run(quadratic, x0, seed)
    ones, ones_diag = sampler.run(quadratic, x0, seed, mask=tf.ones([3, 4, 4, 1]))
    np.testing.assert_array_equal(free.numpy(), ones.numpy())
    for key in free_diag:
        np.testing.assert_array_equal(free_diag[key].numpy(), ones_diag[key].numpy())
    assert sampler.trace_count == 2  # one loop per kind, each reused afterwards
    sampler.run(quadratic, x0[:2], seed)
    sampler.run(quadratic, x0[:2], seed, mask=tf.zeros([2, 4, 4, 1]))
    assert sampler.trace_count == 2

    def op_types(fn):  # the loop body is a function in the graph's library
        graph = fn.get_concrete_function().graph.as_graph_def()
        return {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    functions = sampler._functions.values()  # pylint: disable=protected-access
    assert sorted("SelectV2" in op_types(fn) for fn in functions) == [False, True]


def test_no_retracing_across_batch_sizes_and_seeds():
    sampler = LangevinSampler(steps=3, step_size=0.1, noise=True)
    for n, seed in [(2, [0, 1]), (5, [0, 2]), (7, [3, 2]), (2, [9, 9])]:
        sampler.run(quadratic, tf.zeros([n, 4, 4, 1]), tf.constant(seed))
    assert sampler.trace_count == 1
    sampler.run(quadratic, tf.zeros([2, 8, 8, 1]), tf.constant([0, 1]))  # a new image shape traces once
    assert sampler.trace_count == 2


def test_jit_compile_matches_graph_mode_and_is_deterministic():
    x0 = tf.random.stateless_uniform([4, 4, 4, 1], [2, 2])
    plain = LangevinSampler(steps=5, step_size=0.2, noise=False)
    a, _ = plain.run(quadratic, x0, tf.constant([1, 2]))
    b, _ = plain.replace(jit_compile=True).run(quadratic, x0, tf.constant([1, 2]))
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    # XLA's stateless normal kernel draws other numbers than the TF kernel for the same seed,
    # so with noise a jit chain is reproducible but not equal to the non-jit chain.
    noisy = LangevinSampler(steps=5, step_size=0.1, noise=True, jit_compile=True)
    c, _ = noisy.run(quadratic, x0, tf.constant([1, 2]))
    d, _ = noisy.run(quadratic, x0, tf.constant([1, 2]))
    np.testing.assert_array_equal(c.numpy(), d.numpy())


def test_runs_inside_an_outer_tf_function():
    sampler = LangevinSampler(steps=4, step_size=0.1, noise=True)
    x0 = tf.random.stateless_uniform([3, 2, 2, 1], [2, 3])

    @tf.function(input_signature=[tf.TensorSpec([None, 2, 2, 1]), tf.TensorSpec([2], tf.int32)])
    def outer(x, seed):
        return sampler.run(quadratic, x, seed)[0]

    eager, _ = sampler.run(quadratic, x0, tf.constant([4, 4]))
    np.testing.assert_allclose(outer(x0, tf.constant([4, 4])).numpy(), eager.numpy(), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0, step_size=0.1), "steps"),
    (dict(steps=2, step_size=0.0), "step_size"),
    (dict(steps=2, step_size=0.1, reference_sigma=-1.0), "reference_sigma"),
    (dict(steps=2, step_size=0.1, precondition="gauss"), "precondition"),
])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LangevinSampler(**kwargs)


def test_bad_run_arguments_raise():
    sampler = LangevinSampler(steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="x0"):
        sampler.run(quadratic, tf.zeros([4, 4, 1]), [0, 0])
    with pytest.raises(ValueError, match="seed"):
        sampler.run(quadratic, tf.zeros([1, 4, 4, 1]), [0, 0, 0])
    with pytest.raises(ValueError, match="seed"):
        sampler.run(quadratic, tf.zeros([1, 4, 4, 1]), tf.constant([0.0, 1.0]))
    with pytest.raises(ValueError, match="mask"):
        sampler.run(quadratic, tf.zeros([1, 4, 4, 1]), [0, 0], mask=tf.ones([1, 2, 2, 1]))


def _np_blur(x):
    """The 3x3 binomial blur [1, 2, 1] x [1, 2, 1] / 16 of [N, H, W, C], zero padding, in numpy."""
    taps = np.array([0.25, 0.5, 0.25])
    pad = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    h, w = x.shape[1:3]
    return sum(taps[i] * taps[j] * pad[:, i:i + h, j:j + w] for i in range(3) for j in range(3))


def test_binomial_blur_matches_numpy_and_removes_the_checkerboard():
    x = np.random.default_rng(0).normal(size=(2, 6, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(binomial_blur(tf.constant(x)).numpy(), _np_blur(x), atol=1e-6)
    checker = np.fromfunction(lambda i, j: (-1.0) ** (i + j), (8, 8))[None, :, :, None].astype(np.float32)
    assert np.abs(binomial_blur(tf.constant(checker)).numpy()[:, 1:-1, 1:-1]).max() < 1e-6  # interior: exactly 0


def test_preconditioned_step_is_the_blurred_drift():
    x0 = tf.constant(np.random.default_rng(1).uniform(size=(3, 8, 8, 2)).astype(np.float32))
    delta = 0.4
    x1, _ = LangevinSampler(1, delta, clip=False, precondition="binomial").run(quadratic, x0, [0, 0])
    grad = -(x0.numpy() - MU) / S ** 2
    np.testing.assert_allclose(x1.numpy(), x0.numpy() + delta ** 2 / 2 * _np_blur(_np_blur(grad)), atol=1e-5)


def test_preconditioned_langevin_keeps_the_gaussian_target():
    # Started from the target N(MU, S^2) per pixel, the chain with drift B B grad f and noise B z
    # keeps it (stationary covariance S^2 (I - delta^2 B B / (4 S^2))^-1, within 1% of S^2 here).
    delta = 0.1
    start = MU + S * tf.random.stateless_normal([400, 8, 8, 1], [3, 4])
    x, _ = LangevinSampler(300, delta, noise=True, clip=False, precondition="binomial").run(quadratic, start, [5, 6])
    samples = x.numpy()
    assert abs(samples.mean() - MU) < 4 * S / np.sqrt(400)  # pixels of one image are correlated by B
    assert samples.var() == pytest.approx(S ** 2, rel=0.04)
    moved = np.abs(samples - start.numpy()).mean()
    assert moved > 0.05  # the chains did move
    # The check can fail: a smoothed drift with unsmoothed noise (plain Langevin on f(MU + B B (y -
    # MU)), whose drift is -B^4 (y - MU) / S^2) inflates the variance of every mode that moves.
    wrong, _ = LangevinSampler(300, delta, noise=True, clip=False).run(
        lambda y: quadratic(MU + binomial_blur(binomial_blur(y - MU))), start, [5, 6])
    assert wrong.numpy().var() > 1.1 * S ** 2


def test_noise_multiplier_scales_the_noise_term_exactly():
    # m multiplies eta_i delta_i: m = 2 with eta is the chain of eta' = 2 eta (same draws), m = 0
    # the noise-free chain; a tensor multiplier reuses the one traced loop.
    x0 = tf.random.stateless_uniform([3, 4, 4, 1], [0, 1])
    seed = tf.constant([5, 6])
    sampler = LangevinSampler(steps=6, step_size=0.2, noise=True, noise_scale=0.1, clip=False,
                              noise_schedule="linear")
    doubled = sampler.run(quadratic, x0, seed, noise_multiplier=tf.constant(2.0))[0]
    wider = sampler.replace(noise_scale=0.2).run(quadratic, x0, seed)[0]
    np.testing.assert_allclose(doubled, wider, rtol=1e-6, atol=1e-6)
    silent = sampler.run(quadratic, x0, seed, noise_multiplier=0.0)[0]
    plain = sampler.replace(noise=False).run(quadratic, x0, seed)[0]
    np.testing.assert_allclose(silent, plain, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(sampler.run(quadratic, x0, seed, noise_multiplier=1.0)[0],
                                  sampler.run(quadratic, x0, seed)[0])
    assert sampler.trace_count == 1
    with pytest.raises(ValueError, match="noise_multiplier must be a float32 scalar"):
        sampler.run(quadratic, x0, seed, noise_multiplier=tf.ones([2]))
