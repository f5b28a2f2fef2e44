"""The coarse-to-fine chain (trainers/chain.py): grid order, seeds, starts and masks, and a
quadratic energy whose answer is known at every grid."""

import numpy as np
import tensorflow as tf

from trainers import pyramid_ops
from trainers.chain import coarse_to_fine, fold_seed
from trainers.langevin import LangevinSampler


class RecordingSampler:
    """Stands in for LangevinSampler: records each call and returns its start plus one."""

    def __init__(self):
        self.calls = []

    def run(self, energy_fn, x0, seed, mask=None):
        self.calls.append((energy_fn, tuple(x0.shape), seed.numpy().tolist(), mask))
        return x0 + 1.0, {"grid": int(x0.shape[1])}


def test_grids_in_order_with_folded_seeds_and_upsampled_starts():
    fns = {4: object(), 8: object()}
    sampler = RecordingSampler()
    x = tf.fill([2, 1, 1, 3], 0.25)
    samples, diags = coarse_to_fine(x, tf.constant([5, 6], tf.int64), (4, 8), fns, sampler)
    assert [c[1] for c in sampler.calls] == [(2, 4, 4, 3), (2, 8, 8, 3)]
    assert [c[0] for c in sampler.calls] == [fns[4], fns[8]]
    assert [c[2] for c in sampler.calls] == [fold_seed([5, 6], g).numpy().tolist() for g in (4, 8)]
    assert all(c[3] is None for c in sampler.calls)
    np.testing.assert_array_equal(samples[4].numpy(), np.full([2, 4, 4, 3], 1.25, np.float32))
    np.testing.assert_array_equal(samples[8].numpy(), np.full([2, 8, 8, 3], 2.25, np.float32))
    assert diags == {4: {"grid": 4}, 8: {"grid": 8}}


def test_start_fn_gives_each_grid_its_start_and_mask():
    sampler = RecordingSampler()
    mask = tf.ones([1, 4, 4, 1])

    def start_fn(x, g):
        return pyramid_ops.nearest_upsample(x, g) * 0.0, mask

    samples, _ = coarse_to_fine(tf.ones([1, 2, 2, 1]), tf.constant([0, 0]), (4,), {4: None},
                                sampler, start_fn=start_fn)
    assert sampler.calls[0][3] is mask
    np.testing.assert_array_equal(samples[4].numpy(), np.ones([1, 4, 4, 1], np.float32))


def test_quadratic_energy_reaches_its_mean_at_every_grid():
    # f(x) = -|x - m|^2 / 2: noise-free Langevin with step 0.5 contracts x - m by 1 - 0.125 per
    # step, so after T steps x = m + (x0 - m) * 0.875^T at every grid, from the upsampled start.
    m = 0.7

    def make_fn():
        return lambda x: -0.5 * tf.reduce_sum(tf.square(x - m), axis=[1, 2, 3])

    fns = {2: make_fn(), 4: make_fn()}
    steps = 20
    sampler = LangevinSampler(steps, 0.5, clip=False)
    x0 = tf.fill([3, 1, 1, 1], 0.1)
    samples, _ = coarse_to_fine(x0, tf.constant([1, 2]), (2, 4), fns, sampler)
    after_2 = m + (0.1 - m) * 0.875 ** steps
    np.testing.assert_allclose(samples[2].numpy(), after_2, rtol=1e-5)
    np.testing.assert_allclose(samples[4].numpy(), m + (after_2 - m) * 0.875 ** steps, rtol=1e-5)


def test_a_sampler_per_grid_runs_each_grid_with_its_own_steps_and_step_size():
    # The same quadratic: grid 2 with 5 steps of 0.5 (contraction 0.875 per step), grid 4 with 12
    # steps of 0.2 (contraction 1 - 0.02 per step).
    m = 0.7
    fns = {g: (lambda x: -0.5 * tf.reduce_sum(tf.square(x - m), axis=[1, 2, 3])) for g in (2, 4)}
    samplers = {2: LangevinSampler(5, 0.5, clip=False), 4: LangevinSampler(12, 0.2, clip=False)}
    samples, _ = coarse_to_fine(tf.fill([2, 1, 1, 1], 0.1), tf.constant([1, 2]), (2, 4), fns, samplers)
    after_2 = m + (0.1 - m) * 0.875 ** 5
    np.testing.assert_allclose(samples[2].numpy(), after_2, rtol=1e-5)
    np.testing.assert_allclose(samples[4].numpy(), m + (after_2 - m) * 0.98 ** 12, rtol=1e-5)
