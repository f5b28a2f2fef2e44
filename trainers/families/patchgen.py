"""PatchGenCN (Zheng, Xie, Li, CVPR 2021) as a Keras model: one image, a pyramid of patch EBMs.

`PatchGenCN` holds one `PatchEnergyNet` per scale of the training image's scale pyramid (sizes
from the pyramid's metadata, coarsest first), one Adam per scale, and trains with a custom
`train_step` (keras-io style) on batches `{"scale_K": float32 [N, h_K, w_K, C]}` (N copies of the
one image, `trainers.data.make_single_image_dataset`).

Scale k trains P_k steps, during global steps [S_k, S_k + P_k) (`trainers.scale_schedule`:
`steps_per_scale` for every scale, or per-scale counts `scale_steps` for the coarsest ones; one
`tf.switch_case` branch per scale, chosen in the graph from the step counter, so a resumed run
continues exactly). A step at local step t of scale k:

1. (t = 0, k > 0, with `init_from_previous`, where nets k - 1 and k have the same architecture)
   net k := a copy of net k - 1;
2. synthesis: N_k chains (`scale_batch[k]`, else the batch's N) from uniform noise at the
   coarsest scale through the (already trained, frozen) scales 0..k-1, without noise (the
   reference's sampling of the coarser scales) or, with `coarse_noise`, as sampling after
   training runs them (with each scale's sampling noise), upsampled to scale k, then the scale's chain with
   noise (`coarse_steps` at scale 0, else `steps`), the noise multiplied by the training-noise
   schedule's m(t) (`train_noise_schedule`: constant 1, or the reference's linear decay to 0);
3. recovery (the paper's self-supervised task, when `recovery_weight` > 0): the degraded image
   (scale k - 1 of the image upsampled to scale k; at scale 0 the image down- then upsampled by
   the scale factor) recovered by a noise-free chain of f_k;
4. loss = [mean f_k(synth) - f_k(obs) + w (f_k(recovered) - f_k(obs))] / (h_k w_k) (the
   reference's per-position mean; obs is one copy of the image), one Adam step on net k only,
   its learning rate following `lr_schedule` (constant, or the reference's linear decay to
   `lr_end` over `lr_decay_fraction` of the scale's steps). The schedule multiplies the rate by
   lr(t) / lr(t - 1) at each step, so a divergence guard's reductions of it stay in force.

Sampling after training runs each scale's noisy chains with the noise multiplier the scale ended
its training with (`scale_schedule.final_noise_factor`: 1 for constant, 0 for the reference's
schedule: noise-free chains).

Metrics: loss, energy_gap (per position), energy_obs, energy_synth, recovery_mse (per pixel,
pixels in [0, 1]), grad_norm, sample_mean/std/abs_max, `collapse` (1 when the recovery error
exceeds RECOVERY_COLLAPSE_MSE: the reference's early-stop test, here a divergence-guard signal),
scale. Randomness is stateless: step t uses the seed (seed, t). Pixels float32 in [0, 1];
p(x) is proportional to exp(f(x)).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainers import scale_schedule
from trainers.chain import fold_seed
from trainers.families import patchgen_signatures
from trainers.families.patchgen_inference import PatchGenInference, resize
from trainers.families.patchgen_net import PatchEnergyNet
from trainers.langevin import LangevinSampler

NUM_PREVIEW = 8
SR_UPSAMPLING = ("cascade", "direct")
# The reference stops a scale whose recovery error sum / (h w) > 2 with pixels in [-1, 1] and 3
# channels: a mean squared error per value of 2 / 3 / 4 with pixels in [0, 1].
RECOVERY_COLLAPSE_MSE = 2.0 / 3.0 / 4.0
_METRICS = ("loss", "energy_gap", "energy_obs", "energy_synth", "recovery_mse", "grad_norm",
            "sample_mean", "sample_std", "sample_abs_max", "collapse")


class _Plain:
    """An untracked holder (keeps optimizers and trackers out of Keras tracking)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class PatchGenCN(PatchGenInference, keras.Model):
    """PatchGenCN; see the module docstring.

    Args:
      scales: [(h, w)] of the training image's scales, coarsest first (>= 1 scale).
      channels: image channels C. factor: the constant scale factor in (0, 1).
      nets: one built `PatchEnergyNet` per scale (architectures may differ between scales).
      sampler: the noisy Langevin sampler of the scales > 0 (T = `sampler.steps`).
      coarse_steps: Langevin steps at the coarsest scale.
      sr_steps: noise-free steps of the finest net after each upsampling in `super_resolve`.
      sr_upsampling: "cascade" (by 1 / factor at a time, SinGAN's) or "direct" (one upsampling,
        one chain) in `super_resolve`.
      steps_per_scale: train steps of each scale (>= 1) that `scale_steps` does not name.
      scale_steps: train steps of the coarsest scales, coarsest first (`scale_schedule.steps_of_scales`).
      scale_batch: chains per training step of the coarsest scales, coarsest first (each >= 1;
        the others: the batch's N).
      recovery_weight: weight of the recovery task (>= 0; 0 = off).
      init_from_previous: net k starts as a copy of net k - 1 (where both have one architecture).
      coarse_noise: the training chains through the frozen coarser scales run with their sampling
        noise (as `synthesize` runs them), not noise-free.
      lr_schedule, lr_end, lr_decay_fraction: each scale's learning rate (`scale_schedule.lr_factor`).
      train_noise_schedule, train_noise_fraction: the chains' noise over each scale's training
        (`scale_schedule.noise_factor`).
      seed: training seed.
    """

    def __init__(self, scales, channels: int, factor: float, nets, sampler: LangevinSampler,
                 coarse_steps: int, steps_per_scale: int, recovery_weight: float = 0.1,
                 sr_steps: int = 3, init_from_previous: bool = True, seed: int = 0, *,
                 scale_steps=(), scale_batch=(), lr_schedule: str = "constant", lr_end: float = 5e-5,
                 lr_decay_fraction: float = 0.8, train_noise_schedule: str = "constant",
                 train_noise_fraction: float = 0.25, sr_upsampling: str = "cascade", coarse_noise: bool = False,
                 name: str = "patchgen"):
        super().__init__(name=name)
        scales = [(int(h), int(w)) for h, w in scales]
        if not scales or min(min(s) for s in scales) < 1:
            raise ValueError(f"scales={scales} must be >= 1 positive (h, w) pairs")
        if len(nets) != len(scales) or not all(isinstance(n, PatchEnergyNet) for n in nets):
            raise ValueError(f"nets must be {len(scales)} PatchEnergyNet, one per scale")
        if len(scale_batch) > len(scales) or any(int(b) < 1 for b in scale_batch):
            raise ValueError(f"train.scale_batch={tuple(scale_batch)} must hold at most {len(scales)} "
                             "counts (coarsest scale first), each >= 1")
        if lr_schedule not in scale_schedule.LR_SCHEDULES:
            raise ValueError(f"train.lr_schedule={lr_schedule!r} is not allowed; allowed values: "
                             f"{list(scale_schedule.LR_SCHEDULES)}")
        if train_noise_schedule not in scale_schedule.TRAIN_NOISE_SCHEDULES:
            raise ValueError(f"sampler.train_noise_schedule={train_noise_schedule!r} is not allowed; "
                             f"allowed values: {list(scale_schedule.TRAIN_NOISE_SCHEDULES)}")
        if sr_upsampling not in SR_UPSAMPLING:
            raise ValueError(f"sampler.sr_upsampling={sr_upsampling!r} is not allowed; allowed values: "
                             f"{list(SR_UPSAMPLING)}")
        if not (0 < lr_decay_fraction <= 1 and 0 < train_noise_fraction <= 1 and lr_end > 0):
            raise ValueError(f"train.lr_decay_fraction={lr_decay_fraction} and sampler.train_noise_fraction="
                             f"{train_noise_fraction} must be in (0, 1], train.lr_end={lr_end} > 0")
        if not 0 < factor < 1:
            raise ValueError(f"factor={factor!r} must be in (0, 1)")
        if int(steps_per_scale) < 1 or int(coarse_steps) < 1 or not recovery_weight >= 0:
            raise ValueError(f"steps_per_scale={steps_per_scale}, coarse_steps={coarse_steps} must "
                             f"be >= 1 and recovery_weight={recovery_weight} >= 0")
        self.scales, self.channels, self.factor = scales, int(channels), float(factor)
        self.num_scales = len(scales)
        self.height, self.width = scales[-1]
        self.image_size = max(self.height, self.width)
        self.nets = list(nets)
        self.sampler = sampler
        self._samplers = []
        for k in range(self.num_scales):
            noisy = sampler.replace(steps=int(coarse_steps)) if k == 0 else sampler
            self._samplers.append((noisy, noisy.replace(noise=False)))
        self.coarse_steps, self.steps_per_scale = int(coarse_steps), int(steps_per_scale)
        self.scale_steps = scale_schedule.steps_of_scales(self.num_scales, steps_per_scale, scale_steps)
        self.scale_starts = scale_schedule.scale_starts(self.scale_steps)
        self.scale_batch = [int(b) for b in scale_batch] + [0] * (self.num_scales - len(scale_batch))
        self.lr_schedule, self.lr_end = str(lr_schedule), float(lr_end)
        self.lr_decay_fraction = float(lr_decay_fraction)
        self.train_noise_schedule, self.train_noise_fraction = str(train_noise_schedule), float(train_noise_fraction)
        self.sample_noise = [scale_schedule.final_noise_factor(p, self.train_noise_schedule,
                                                               self.train_noise_fraction)
                             for p in self.scale_steps]
        self.sr_sampler = sampler.replace(steps=int(sr_steps), noise=False)
        self.sr_upsampling, self.coarse_noise = str(sr_upsampling), bool(coarse_noise)
        self.recovery_weight, self.init_from_previous = float(recovery_weight), bool(init_from_previous)
        self.seed = int(seed)

        def state(name, dtype):
            return self.add_weight(shape=(), dtype=dtype, initializer="zeros", trainable=False,
                                   aggregation="only_first_replica", name=name)

        self.train_counter = state("train_counter", "int64")
        self.scale = state("scale", "int32")
        h, w = self.height, self.width
        self._preview = self.add_weight(shape=(NUM_PREVIEW, h, w, self.channels), initializer="zeros",
                                        trainable=False, aggregation="only_first_replica", name="last_samples")
        self._preview_count = state("last_samples_count", "int32")
        self._plain = _Plain(optimizers=[], trackers={m: keras.metrics.Mean(name=m) for m in _METRICS})
        self.trackers = list(self._plain.trackers.values())
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers)

    def samplers(self, k: int):
        """(noisy, noise-free) Langevin samplers of scale k."""
        return self._samplers[k]

    def sample_noise_factor(self, k: int) -> float:
        """The noise multiplier of scale k's noisy chains after training (`sample_noise`)."""
        return self.sample_noise[k]

    def optimizers_by_name(self) -> dict:
        """The model contract's optimizers: {"scale_K": the Adam of net K}."""
        return {f"scale_{k}": opt for k, opt in enumerate(self._plain.optimizers)}

    def compile(self, learning_rate: float = 4e-4, beta_1: float = 0.5, jit_compile: bool = False,
                steps_per_execution: int = 1):
        """One Adam(learning_rate, beta_1, beta_2=0.999) per scale, built on that scale's net
        (learning_rate: its rate at each scale's first step; `lr_schedule` decays it)."""
        if not learning_rate > 0:
            raise ValueError(f"learning_rate={learning_rate!r} must be > 0")
        if not 0 <= beta_1 < 1:
            raise ValueError(f"beta_1={beta_1!r} must be in [0, 1)")
        if self.lr_schedule == "linear" and not self.lr_end < learning_rate:
            raise ValueError(f"train.lr_end={self.lr_end} must be below train.learning_rate={learning_rate} "
                             "with train.lr_schedule=linear (it decays from one to the other)")
        self._lr_peak = float(learning_rate)
        self._plain.optimizers = []
        for k, net in enumerate(self.nets):
            opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=0.999,
                                        name=f"adam_scale{k}")
            opt.build(net.trainable_variables)
            self._plain.optimizers.append(opt)
        super().compile(optimizer=self._plain.optimizers[-1], jit_compile=jit_compile,
                        steps_per_execution=steps_per_execution)

    def call(self, images, training=False):
        """Energies of images at the finest scale: float32 [N]."""
        return self.nets[-1](images, training=training)

    # ---------------------------------------------------------------- training

    def scale_of(self, step):
        """int32 []: the scale that trains at global step `step` (int64 [])."""
        step = tf.cast(step, tf.int64)
        k = tf.zeros([], tf.int32)
        for start in self.scale_starts[1:]:
            k += tf.cast(step >= start, tf.int32)
        return k

    def lr_ratio(self, k: int, t):
        """float32 []: lr(t) / lr(t - 1) of scale k at its local step t >= 1 (int64 [])
        (`scale_schedule.lr_factor`; 1 for the constant schedule)."""
        if self.lr_schedule == "constant":
            return tf.constant(1.0)
        d = float(scale_schedule.decay_steps(self.scale_steps[k], self.lr_decay_fraction))
        end = self.lr_end / self._lr_peak

        def factor(step):
            return end + (1.0 - end) * (1.0 - tf.minimum(tf.cast(step, tf.float32), d) / d)

        return factor(t) / factor(t - 1)

    def train_noise(self, k: int, t):
        """float32 []: the noise multiplier m(t) of scale k's chains at its local step t (int64 [])."""
        if self.train_noise_schedule == "constant":
            return tf.constant(1.0)
        span = self.train_noise_fraction * self.scale_steps[k]
        return tf.maximum(0.0, 1.0 - tf.cast(t, tf.float32) / span)

    def degraded(self, obs: dict, k: int):
        """The recovery task's start at scale k: the image's scale k - 1 upsampled to scale k (at
        scale 0: the image down- and upsampled by the scale factor)."""
        h, w = self.scales[k]
        if k > 0:
            return resize(obs[k - 1], h, w)
        small = resize(obs[0], max(1, round(h * self.factor)), max(1, round(w * self.factor)))
        return resize(small, h, w)

    def _scale_branch(self, k: int, obs: dict, n, seed, local_step):
        """The branch of scale k: one training step of net k; returns metric values + preview."""

        def branch():
            net, h, w = self.nets[k], *self.scales[k]
            if self.init_from_previous and k > 0 and net.same_architecture(self.nets[k - 1]):
                tf.cond(tf.equal(local_step, 0), lambda: net.copy_from(self.nets[k - 1]),
                        lambda: tf.constant(False))
            # 2. Synthesis: noise-free through the frozen coarser scales, then scale k with noise.
            chains = self.scale_batch[k] or n
            x = self.uniform_start(chains, *self.scales[0], seed)
            if k > 0:
                x = self.run_from(x, 0, self.scales, seed, noise=self.coarse_noise, last=k - 1)[k - 1]
                x = resize(x, h, w)
            synth, diags = self.run_scale(k, x, seed, noise=True,
                                          noise_multiplier=self.train_noise(k, local_step))
            synth = tf.stop_gradient(synth)
            # 3. Recovery: a noise-free chain from the degraded image.
            parts = [obs[k][:1], synth]
            if self.recovery_weight > 0:
                rec, _ = self.run_scale(k, self.degraded(obs, k)[:1], fold_seed(seed, 99), noise=False)
                rec = tf.stop_gradient(rec)
                parts.append(rec)
                rec_mse = tf.reduce_mean(tf.square(rec - obs[k][:1]))
            else:
                rec_mse = tf.constant(0.0)
            # 4. The loss (per position) and one Adam step on net k.
            variables = net.trainable_variables
            with tf.GradientTape() as tape:
                e = net(tf.concat(parts, 0), training=True) / float(h * w)
                e_obs, e_syn = e[0], tf.reduce_mean(e[1:1 + chains])
                loss = e_syn - e_obs
                if self.recovery_weight > 0:
                    loss += self.recovery_weight * (tf.reduce_mean(e[1 + chains:]) - e_obs)
            grads = tape.gradient(loss, variables)
            opt = self._plain.optimizers[k]
            if self.lr_schedule != "constant":  # lr(t) = lr(t - 1) * ratio; kept at t = 0
                ratio = tf.where(local_step > 0, self.lr_ratio(k, tf.maximum(local_step, 1)), 1.0)
                opt.learning_rate.assign(opt.learning_rate * ratio)
            opt.apply_gradients(zip(grads, variables))
            collapse = tf.cast(rec_mse > RECOVERY_COLLAPSE_MSE, tf.float32)
            values = [loss, e_obs - e_syn, e_obs, e_syn, rec_mse, diags["grad_norm"],
                      tf.reduce_mean(synth), tf.math.reduce_std(synth), tf.reduce_max(tf.abs(synth)),
                      collapse]
            keep = resize(synth[:NUM_PREVIEW], self.height, self.width)
            keep = tf.pad(keep, [[0, NUM_PREVIEW - tf.shape(keep)[0]], [0, 0], [0, 0], [0, 0]])
            return values + [tf.shape(synth)[0], keep]

        return branch

    def _observed(self, data) -> dict:
        if isinstance(data, (tuple, list)):
            data = data[0]
        keys = [f"scale_{k}" for k in range(self.num_scales)]
        if not isinstance(data, dict) or any(key not in data for key in keys):
            raise ValueError(f"train_step batch must be a dict with {keys} float32 [N, h_K, w_K, C] "
                             "(a scale pyramid: trainers.data.make_single_image_dataset)")
        return {k: tf.ensure_shape(tf.cast(data[key], tf.float32), [None, *self.scales[k], self.channels])
                for k, key in enumerate(keys)}

    def train_step(self, data):
        obs = self._observed(data)
        n = tf.shape(obs[0])[0]
        step = tf.convert_to_tensor(self.train_counter)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        scale = self.scale_of(step)
        local_step = step - tf.gather(tf.constant(self.scale_starts, tf.int64), scale)
        out = tf.switch_case(scale, [self._scale_branch(k, obs, n, seed, local_step)
                                     for k in range(self.num_scales)])
        values, chains, preview = out[:-2], out[-2], out[-1]
        self._preview.assign(preview)
        self._preview_count.assign(tf.minimum(chains, NUM_PREVIEW))
        self.train_counter.assign_add(1)
        self.scale.assign(self.scale_of(tf.convert_to_tensor(self.train_counter)))
        for m, v in zip(_METRICS, values):
            self._plain.trackers[m].update_state(v)
        result = {m: self._plain.trackers[m].result() for m in _METRICS}
        result["scale"] = tf.cast(scale, tf.float32)
        return result

    # ---------------------------------------------------------------- model contract

    def use_averaged_weights(self) -> bool:
        """No weight averages in this family."""
        return False

    def tensorboard_previews(self, batch: dict, max_outputs: int = 8):
        """({"synthesized/scale": float32 [k, H, W, C] in [0, 1]} (the last step's samples at the
        training scale, resized to the image size), {"energy_observed/scale": the per-patch
        energies of the image at that scale [h * w]})."""
        k = int(self.scale.numpy())
        count = int(self._preview_count.numpy())
        images = {}
        if count:
            images["synthesized/scale"] = tf.convert_to_tensor(self._preview)[:min(count, max_outputs)]
        obs = tf.cast(batch[f"scale_{k}"][:1], tf.float32)
        return images, {"energy_observed/scale": tf.reshape(self.nets[k].energy_map(obs), [-1])}

    def trained_scales(self) -> int:
        """How many scales have had all their steps (0..L)."""
        done = int(self.train_counter.numpy())
        return sum(1 for s, p in zip(self.scale_starts, self.scale_steps) if done >= s + p)

    def export_signatures(self, max_num_samples: int) -> dict:
        """{name: tf.function} of the six signatures (`patchgen_signatures`)."""
        if 0 < self.trained_scales() < self.num_scales:  # (0: an untrained baseline export)
            print(f"[patchgen] warning: exporting with {self.trained_scales()} of {self.num_scales} "
                  "scales fully trained; config.json says final_scale_reached=false", flush=True)
        return patchgen_signatures.signature_functions(self, int(max_num_samples))

    def export_info(self) -> dict:
        """Facts for config.json: `single_image`, the scales, the training image's height and
        width, `image_size` (its longer side), channels, the scale factor, `side_range` (the
        smallest and largest height or width the signatures accept), the schedule state."""
        return {"single_image": True, "grids": [], "image_size": int(self.image_size),
                "side_range": [int(side) for side in patchgen_signatures.limits(self)],
                "height": int(self.height), "width": int(self.width), "channels": int(self.channels),
                "scales": [list(s) for s in self.scales], "scale_factor": self.factor,
                "coarse_steps": self.coarse_steps, "steps": int(self.sampler.steps),
                "sr_steps": int(self.sr_sampler.steps), "sr_upsampling": self.sr_upsampling,
                "steps_per_scale": self.steps_per_scale, "scale_steps": list(self.scale_steps),
                "sample_noise": list(self.sample_noise), "train_steps": int(self.train_counter.numpy()),
                "trained_scales": self.trained_scales(),
                "final_scale_reached": self.trained_scales() == self.num_scales}


def build_model(scales, image_channels: int, factor: float, *, channels=(64, 32, 32, 32, 1),
                scale_channels=None, activation: str = "elu", spectral: bool = True, steps: int = 30,
                coarse_steps: int = 60, sr_steps: int = 3, step_size: float = 0.05, noise_scale: float = 0.1,
                noise_schedule: str = "linear", step_size_schedule: str = "constant", clip: bool = True,
                steps_per_scale: int = 500, recovery_weight: float = 0.1, init_from_previous: bool = True,
                seed: int = 0, **schedules) -> PatchGenCN:
    """Build one net per scale (seeded by `seed`), the noisy sampler and the model; arguments as
    in `PatchEnergyNet` (`channels`: the conv outputs of every scale's net, or `scale_channels`:
    one such list per scale, coarsest first), `LangevinSampler` and `PatchGenCN` (`schedules`:
    its keyword-only scale_steps, scale_batch, lr_* and train_noise_* arguments)."""
    keras.utils.set_random_seed(seed)
    scale_channels = [channels] * len(scales) if scale_channels is None else list(scale_channels)
    if len(scale_channels) != len(scales):
        raise ValueError(f"scale_channels has {len(scale_channels)} lists for {len(scales)} scales")
    nets = [PatchEnergyNet(image_channels, c, activation=activation, spectral=spectral,
                           name=f"patch_energy_{k}") for k, c in enumerate(scale_channels)]
    sampler = LangevinSampler(steps, step_size, noise=True, clip=clip, noise_scale=noise_scale,
                              noise_schedule=noise_schedule, step_size_schedule=step_size_schedule)
    return PatchGenCN(scales, image_channels, factor, nets, sampler, coarse_steps=coarse_steps,
                      sr_steps=sr_steps, steps_per_scale=steps_per_scale, recovery_weight=recovery_weight,
                      init_from_previous=init_from_previous, seed=seed, **schedules)
