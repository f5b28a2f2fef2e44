"""Langevin dynamics on an energy f (p(x) proportional to exp(f(x))), knowing only `energy_fn`.

One step, with delta the step size and sigma the reference Gaussian's standard deviation:

    x <- x + (delta_i^2 / 2) * (grad f(x) - use_reference * x / sigma^2) + noise * eta_i * delta_i * N(0, I)

then `clip(x, 0, 1)` when `clip`. delta_i = delta * `step_factors(T, step_size_schedule)[i]`:
"constant" (the default) keeps delta at every step, "linear" decays it as (T - i) / T. With
`noise` off this is gradient ascent on f (the reference code's sampler); with noise and the
reference term on and eta = `noise_scale` = 1 it is the paper's formulation. eta_i = eta *
`noise_factors(T, noise_schedule)[i]`: the constant schedule keeps eta at every step, the linear
one decays it to 0 at the last step. eta < 1 tempers the noise (a common practice for short-run
EBM chains): the drift keeps the step size that works for [0, 1] pixels while the chains still
diverge from a shared start, which is what makes samples from one 1x1 image differ. It is the
unadjusted Langevin algorithm: on a Gaussian N(mu, s^2) with constant noise it converges to N(mu,
s^2 / (1 - delta^2 / (4 s^2))), i.e. the variance is biased up by a factor ~ 1 + delta^2/(4 s^2).

Step size for [0, 1] pixels (the networks centre them to [-1, 1] inside): delta = 0.3 (drift
factor delta^2 / 2 = 0.045) with noise off works for the reference nets without norm (measured
on MNIST, see DESIGN.md); with noise on, the noise per step has std eta * delta, so keep it small
(e.g. eta = 0.05 -> 0.015 per step at delta = 0.3) or the samples are dominated by noise. On a
Gaussian N(mu, s^2), eta scales the stationary variance by about eta^2 (a tempered target).

Preconditioning (`precondition="binomial"`): the drift is B B (grad f(x) - ...) and the noise
eta_i delta_i B N(0, I), with B the 3x3 binomial blur [1, 2, 1] x [1, 2, 1] / 16 per channel
(zero padding: a symmetric matrix whose square B B is positive semi-definite). Langevin with a
constant positive semi-definite preconditioner P = B B^T keeps the same target p(x) for small
steps, but moves smooth directions at full speed and the pixel-to-pixel alternation (the Nyquist
frequency, which B removes exactly) not at all: the checkerboard that stride-2 convolutions
leave in grad f (Odena et al. 2016) no longer reaches the samples. Not in the multi-grid paper.

The loop is a `tf.while_loop` inside a `tf.function` (one concrete function per energy function
and image shape, with a dynamic batch dimension, so calls with new batch sizes never retrace),
optionally XLA-compiled. Randomness is stateless: step i draws its noise with the seed
`stateless_fold_in(seed, i)` (Philox), so the same seed gives the same chain. XLA's stateless
normal kernel draws other numbers than TensorFlow's for the same seed: with noise on, a
`jit_compile` chain is reproducible but differs from the non-jit chain.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

# One explicit stateless algorithm ("auto_select" may pick another per device), so the same seed
# gives the same numbers on CPU and GPU (XLA's normal kernel still differs; see above).
RNG_ALG = "philox"
NOISE_SCHEDULES = ("constant", "linear")
STEP_SIZE_SCHEDULES = ("constant", "linear")
PRECONDITIONS = ("none", "binomial")


def binomial_blur(x):
    """B x: the 3x3 binomial blur ([1, 2, 1] x [1, 2, 1] / 16) of each channel, zero padding.

    Args: x float32 [N, H, W, C] (C known). Returns float32 [N, H, W, C]. B is symmetric, its
    infinite-grid frequency response cos^2(w_h / 2) cos^2(w_w / 2) is 0 at the Nyquist frequency.
    """
    taps = tf.constant([0.25, 0.5, 0.25], tf.float32)
    kernel = tf.tile(tf.reshape(taps[:, None] * taps[None, :], [3, 3, 1, 1]), [1, 1, int(x.shape[-1]), 1])
    return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")


def noise_factors(steps: int, schedule: str) -> list[float]:
    """Per-step multipliers of the noise term, a list of `steps` floats in [0, 1].

    "constant": 1 at every step. "linear": (T - 1 - i) / (T - 1) at step i, decaying from 1 at the
    first step to exactly 0 at the last (T = 1: one noise-free step), so a chain ends on
    noise-free gradient steps that remove the grain the noise leaves behind.
    """
    if schedule == "constant":
        return [1.0] * steps
    if schedule == "linear":
        return [(steps - 1 - i) / max(steps - 1, 1) for i in range(steps)]
    raise ValueError(f"noise_schedule={schedule!r} is not allowed; allowed values: {list(NOISE_SCHEDULES)}")


def step_factors(steps: int, schedule: str) -> list[float]:
    """Per-step multipliers of the step size delta, a list of `steps` floats in (0, 1].

    "constant": 1 at every step. "linear": (T - i) / T at step i, from 1 at the first step down to
    1 / T at the last (never 0, so every step still moves the chain): big moves early, fine ones
    late, as a chain that starts from an upsampled or noisy image wants.
    """
    if schedule == "constant":
        return [1.0] * steps
    if schedule == "linear":
        return [(steps - i) / steps for i in range(steps)]
    raise ValueError(f"step_size_schedule={schedule!r} is not allowed; allowed values: "
                     f"{list(STEP_SIZE_SCHEDULES)}")


@dataclasses.dataclass(frozen=True)
class _Settings:
    steps: int
    step_size: float
    reference_sigma: float
    use_reference: bool
    noise: bool
    clip: bool
    jit_compile: bool
    noise_scale: float = 1.0
    noise_schedule: str = "constant"
    step_size_schedule: str = "constant"
    precondition: str = "none"


def global_batch_draw(draw, shape):
    """`draw(shape)` for this replica's part of the global batch (rows [r * n, (r + 1) * n)).

    Under a tf.distribute strategy with R replicas in sync, `draw` is called once for the whole
    global batch [n * R, ...] and replica r keeps its rows, so what is drawn (and the trained
    model) does not depend on how the global batch is split over replicas and workers: R workers
    equal one process on the same global batch. Outside a strategy, or with one replica, this is
    `draw(shape)`. Assumes equal per-replica batches.

    Args:
      draw: a stateless sampler, int32 [rank] shape -> tensor of that shape (seeded by the caller).
      shape: int32 [rank], this replica's shape [n, ...].
    """
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    if replicas == 1:
        return draw(shape)
    shape = tf.convert_to_tensor(shape)
    n = shape[0]
    full = draw(tf.concat([[n * replicas], shape[1:]], 0))
    start = tf.cast(ctx.replica_id_in_sync_group, n.dtype) * n
    return full[start:start + n]


def global_batch_normal(shape, seed):
    """Stateless N(0, 1) noise of `shape` [n, ...] for this replica's part of the global batch
    (see `global_batch_draw`): the Langevin chains do not depend on the replica count."""
    return global_batch_draw(lambda s: tf.random.stateless_normal(s, seed, alg=RNG_ALG), shape)


class LangevinSampler:
    """A fixed-length Langevin sampler; see the module docstring for the update.

    Args:
      steps: number of Langevin steps T (>= 1).
      step_size: delta (> 0), in [0, 1] pixel units.
      reference_sigma: sigma of the reference Gaussian (> 0); used only when use_reference.
      use_reference: include the -x / sigma^2 drift term.
      noise: include the eta * delta * N(0, I) term.
      clip: clip to [0, 1] after every step.
      jit_compile: XLA-compile the loop.
      noise_scale: eta (> 0), multiplies the noise term; 1.0 is the textbook update.
      noise_schedule: how eta changes along the chain, see `noise_factors`: "constant" (eta at
        every step) or "linear" (eta decaying to 0 at the last step).
      step_size_schedule: how delta changes along the chain, see `step_factors`: "constant"
        or "linear" (delta * (T - i) / T at step i). The noise of step i is eta_i * delta_i.
      precondition: "none" or "binomial" (drift and noise smoothed by the binomial blur; see the
        module docstring).

    Attributes:
      trace_count: how many times a loop body has been traced (Python int); a benchmark can
        check that repeated calls with the same shapes do not retrace.

    Raises:
      ValueError: a bad argument, named in the message.
    """

    def __init__(self, steps: int, step_size: float, reference_sigma: float = 1.0,
                 use_reference: bool = False, noise: bool = False, clip: bool = True,
                 jit_compile: bool = False, noise_scale: float = 1.0,
                 noise_schedule: str = "constant", step_size_schedule: str = "constant",
                 precondition: str = "none"):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps={steps!r} must be an integer >= 1")
        if not step_size > 0:
            raise ValueError(f"step_size={step_size!r} must be > 0")
        if not reference_sigma > 0:
            raise ValueError(f"reference_sigma={reference_sigma!r} must be > 0")
        if not noise_scale > 0:
            raise ValueError(f"noise_scale={noise_scale!r} must be > 0")
        noise_factors(1, noise_schedule)  # ValueError naming the allowed schedules
        step_factors(1, step_size_schedule)
        if precondition not in PRECONDITIONS:
            raise ValueError(f"precondition={precondition!r} is not allowed; allowed values: {list(PRECONDITIONS)}")
        self.settings = _Settings(int(steps), float(step_size), float(reference_sigma),
                                  bool(use_reference), bool(noise), bool(clip), bool(jit_compile),
                                  float(noise_scale), str(noise_schedule), str(step_size_schedule),
                                  str(precondition))
        self.trace_count = 0
        self._functions = {}

    def __getattr__(self, name):
        settings = self.__dict__.get("settings")
        if settings is not None and name in _Settings.__dataclass_fields__:
            return getattr(settings, name)
        raise AttributeError(name)

    def replace(self, **changes) -> "LangevinSampler":
        """A new sampler with some constructor arguments changed, e.g. `replace(steps=1)`."""
        return LangevinSampler(**dataclasses.replace(self.settings, **changes).__dict__)

    def run(self, energy_fn, x0, seed, mask=None, noise_multiplier=None):
        """Run the chains.

        Args:
          energy_fn: callable, float32 [N, H, W, C] -> float32 [N] energies f(x). Pass the same
            callable object on every call to reuse the traced loop.
          x0: float32 [N, H, W, C] starting images (in [0, 1] when clip); H and W may be
            unknown (dynamic) when called inside a tf.function without jit_compile.
          seed: int32/int64 [2] stateless seed; the same seed gives the same chain.
          mask: float32 [N, H, W, 1] (or [N, H, W, C]), 1 = pixels the chain may change,
            0 = pixels returned bit-exactly from x0; None = all pixels move.
          noise_multiplier: float32 [] >= 0 (a tensor or a number), multiplies the noise term of
            every step (e.g. a schedule over training: `trainers.scale_schedule.noise_factor`);
            None = 1. A tensor does not retrace: one loop serves every value.

        Returns:
          (x, diagnostics): x float32 [N, H, W, C]; diagnostics {"energy_start": [N] f(x0),
          "energy_end": [N] f(x), "grad_norm": [] mean over steps and chains of the L2 norm of
          grad f over the movable pixels}.

        Raises:
          ValueError: x0 is not rank 4 with known H, W, C, or seed / mask shapes are wrong.
        """
        x0 = tf.convert_to_tensor(x0, tf.float32)
        inline = tf.inside_function() and not self.jit_compile
        if x0.shape.rank != 4 or x0.shape[3] is None or (None in x0.shape[1:] and not inline):
            raise ValueError(f"x0 must be float32 [N, H, W, C] with known H, W, C (H, W may be "
                             f"unknown inside a tf.function); got shape {x0.shape}")
        seed = tf.convert_to_tensor(seed)
        if seed.dtype not in (tf.int32, tf.int64):
            raise ValueError(f"seed must be int32 or int64 [2], got dtype {seed.dtype.name}")
        if seed.shape.rank != 1 or seed.shape[0] != 2:
            raise ValueError(f"seed must be an integer tensor of shape [2], got shape {seed.shape}")
        seed = tf.cast(seed, tf.int64)
        masked = mask is not None  # without a mask the loop has no masking ops (2 selects per step)
        if mask is None:
            mask = tf.ones_like(x0[..., :1])
        mask = tf.convert_to_tensor(mask, tf.float32)
        if mask.shape.rank != 4 or mask.shape[1:3] != x0.shape[1:3] or mask.shape[3] not in (1, x0.shape[3]):
            raise ValueError(f"mask must be float32 [N, H, W, 1] matching x0 {x0.shape}; got {mask.shape}")
        if mask.shape[3] != x0.shape[3]:
            mask = tf.broadcast_to(mask, tf.shape(x0))
        multiplier = tf.cast(1.0 if noise_multiplier is None else noise_multiplier, tf.float32)
        if multiplier.shape.rank != 0:
            raise ValueError(f"noise_multiplier must be a float32 scalar, got shape {multiplier.shape}")
        if inline:
            # Already in a graph (e.g. a train_step): build the loop inline; no nested function.
            return self._loop(energy_fn, x0, seed, mask, masked, multiplier)
        ctx = tf.distribute.get_replica_context()
        key = (energy_fn, tuple(x0.shape[1:]), ctx.num_replicas_in_sync if ctx is not None else 1, masked)
        fn = self._functions.get(key)
        if fn is None:
            spec = tf.TensorSpec([None] + list(x0.shape[1:]), tf.float32)
            fn = tf.function(
                lambda x, s, m, e: self._loop(energy_fn, x, s, m, masked, e),
                input_signature=[spec, tf.TensorSpec([2], tf.int64), spec, tf.TensorSpec([], tf.float32)],
                jit_compile=self.jit_compile or None, reduce_retracing=True)
            self._functions[key] = fn
        return fn(x0, seed, mask, multiplier)

    def _grad(self, energy_fn, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            energy = tf.cast(energy_fn(x), tf.float32)
            total = tf.reduce_sum(energy)
        return energy, tape.gradient(total, x)

    def _loop(self, energy_fn, x0, seed, mask, masked: bool = True, multiplier=1.0):
        self.trace_count += 1
        s = self.settings
        movable = mask > 0
        smooth = s.precondition == "binomial"
        deltas = [s.step_size * f for f in step_factors(s.steps, s.step_size_schedule)]
        drift_scale = tf.constant([0.5 * d ** 2 for d in deltas], tf.float32)
        inv_var = 1.0 / s.reference_sigma ** 2
        noise_std = tf.constant([s.noise_scale * d * f for d, f in
                                 zip(deltas, noise_factors(s.steps, s.noise_schedule))], tf.float32)

        def body(i, x, energy_start, grad_sum):
            energy, grad = self._grad(energy_fn, x)
            if masked:
                grad = tf.where(movable, grad, tf.zeros_like(grad))
            drift = grad
            if s.use_reference:
                drift = drift - inv_var * x
            if smooth:
                drift = binomial_blur(binomial_blur(drift))
            x_new = x + drift_scale[i] * drift
            if s.noise:
                step_seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(i, tf.int64), alg=RNG_ALG)
                noise = global_batch_normal(tf.shape(x), step_seed)
                x_new = x_new + multiplier * noise_std[i] * (binomial_blur(noise) if smooth else noise)
            if s.clip:
                x_new = tf.clip_by_value(x_new, 0.0, 1.0)
            if masked:
                x_new = tf.where(movable, x_new, x0)
            energy_start = tf.cond(tf.equal(i, 0), lambda: energy, lambda: energy_start)
            grad_norm = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=[1, 2, 3]))
            return i + 1, x_new, energy_start, grad_sum + tf.reduce_mean(grad_norm)

        n = tf.shape(x0)[0]
        _, x, energy_start, grad_sum = tf.while_loop(
            lambda i, *_: i < s.steps, body,
            (tf.constant(0), x0, tf.zeros([n], tf.float32), tf.constant(0.0)),
            maximum_iterations=s.steps)
        energy_end = tf.cast(energy_fn(x), tf.float32)
        diagnostics = {"energy_start": energy_start, "energy_end": energy_end,
                       "grad_norm": grad_sum / float(s.steps)}
        return x, diagnostics
