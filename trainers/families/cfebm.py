"""CF-EBM (Zhao, Xie, Li, ICLR 2021) as a Keras model: expanding energy net, smooth MCMC.

`CFEBM` holds one `ExpandingEnergyNet` (all stages' variables exist from the start) and one
`LangevinSampler`, and trains with a custom `train_step` (keras-io style). Which stage trains
and the fade weight beta are a pure function of the training images seen
(`cfebm_spec.stage_at`), computed in the graph from the non-trainable variable `images_seen`;
`stage` and `beta` are stored beside it (the values the next step uses), so checkpoints hold
all three and a run resumed in the middle of a fade continues bit for bit on one device.

Training at stage k with fade weight beta (graph code, one `tf.switch_case` branch per stage):
chains start from uniform noise at s_0 and run T Langevin steps of f_0; at each finer stage
j <= k the samples are upsampled (nearest), `upsample_noise` * N(0, 1) is added, and T steps of
f_j run (f_k with the expand block at beta; the coarser ones without fade; T and the step size
may differ per stage: `stage_samplers`). The sampler's noise follows its `noise_schedule`
("linear": decaying to 0 over every chain). Loss: mean f_k(synth) - mean f_k(obs), where obs
is the pyramid grid s_k of the batch when present, else the box average of the finest grid,
plus `data_noise` * N(0, 1) when that is > 0 (the reference code adds N(0, 0.03^2) to every
observed batch: the data's density smoothed, so the energy cannot sharpen without bound around
the training images). One Adam over every variable; the variables a stage
does not use get zero gradients (Adam then leaves them in place). After each step the runaway
watch (`cfebm_watch`) compares the energy magnitude, the Langevin gradient norm and the sample
statistics with their running averages and reports `runaway` = 1 when a runaway is coming; the
training loop's divergence guard then restores the last checkpoint and lowers the learning rate.

Randomness is stateless: step t uses the seed (seed, t) (t = `train_counter`), the same on every
replica; the sampler's noise is drawn for the global batch and split (`langevin.global_batch_normal`),
so N replicas or workers give one device's model on the same global batch.
Pixels are float32 in [0, 1]; p(x) is proportional to exp(f(x)).
The family-neutral model contract (`trainers.families`): `optimizers_by_name`,
`tensorboard_previews`, `use_averaged_weights`, `export_signatures`, `export_info`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainers import pyramid_ops
from trainers.chain import fold_seed
from trainers.families import cfebm_signatures, cfebm_watch
from trainers.families.cfebm_inference import CFEBMInference
from trainers.families.cfebm_net import ExpandingEnergyNet
from trainers.langevin import LangevinSampler, global_batch_normal

NUM_PREVIEW = 16
_METRICS = ("loss", "energy_gap", "energy_obs", "energy_synth", "langevin_gain", "grad_norm",
            "sample_mean", "sample_std", "sample_abs_max", "data_std")


def stage_and_beta(images_seen, num_stages: int, fade_images: int, stable_images: int):
    """`cfebm_spec.stage_at` in TensorFlow: (int32 [] stage, float32 [] beta) from int64 []."""
    images = tf.cast(images_seen, tf.int64)
    if num_stages == 1:
        return tf.constant(0, tf.int32), tf.constant(1.0)
    fade, stable = tf.constant(fade_images, tf.int64), tf.constant(stable_images, tf.int64)
    later = tf.minimum(tf.constant(num_stages - 1, tf.int64),
                       1 + tf.math.floordiv(images - stable, fade + stable))
    stage = tf.where(images < stable, tf.constant(0, tf.int64), later)
    start = stable + (stage - 1) * (fade + stable)
    if fade_images == 0:
        ramp = tf.constant(1.0)
    else:
        ramp = tf.minimum(1.0, tf.cast(images - start, tf.float32) / float(fade_images))
    beta = tf.where(stage == 0, tf.constant(1.0), ramp)
    return tf.cast(stage, tf.int32), beta


class _Plain:
    """An untracked holder (keeps the optimizer and trackers dict out of Keras tracking)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class CFEBM(CFEBMInference, keras.Model):
    """CF-EBM; see the module docstring.

    Args:
      net: the built `ExpandingEnergyNet` (its `sizes` are the stages).
      sampler: the Langevin sampler (T = `sampler.steps` per stage; denoising runs it).
      stage_samplers: {stage size: LangevinSampler} for the stages whose chains differ (e.g.
        more steps at the finest stage); the others run `sampler`.
      fade_images: images over which a new stage's beta ramps 0 -> 1 (>= 0).
      stable_images: images of each stabilisation phase (>= 1).
      upsample_noise: std of the noise added to upsampled samples between stages (>= 0).
      seed: training seed.
      runaway_factor: the runaway watch's jump factor (`cfebm_watch`; > 1, 0 = off).
      data_noise: std of the Gaussian noise added to the observed images of a step (>= 0, in
        [0, 1] pixel units; 0 = none).
    """

    def __init__(self, net: ExpandingEnergyNet, sampler: LangevinSampler, fade_images: int,
                 stable_images: int, upsample_noise: float = 0.05, seed: int = 0,
                 runaway_factor: float = 10.0, data_noise: float = 0.0,
                 stage_samplers: dict | None = None, name: str = "cfebm"):
        super().__init__(name=name)
        if not isinstance(net, ExpandingEnergyNet):
            raise ValueError(f"net must be an ExpandingEnergyNet, got {type(net).__name__}")
        if not isinstance(sampler, LangevinSampler):
            raise ValueError(f"sampler must be a LangevinSampler, got {type(sampler).__name__}")
        if int(fade_images) < 0 or int(stable_images) < 1:
            raise ValueError(f"fade_images={fade_images} must be >= 0 and stable_images="
                             f"{stable_images} >= 1")
        if not upsample_noise >= 0:
            raise ValueError(f"upsample_noise={upsample_noise!r} must be >= 0")
        if not data_noise >= 0:
            raise ValueError(f"data_noise={data_noise!r} must be >= 0")
        if not (runaway_factor == 0 or runaway_factor > 1):
            raise ValueError(f"runaway_factor={runaway_factor!r} must be > 1 (or 0: no runaway watch)")
        self.runaway_factor, self.data_noise = float(runaway_factor), float(data_noise)
        stage_samplers = dict(stage_samplers or {})
        bad = [s for s, v in stage_samplers.items()
               if s not in net.sizes or not isinstance(v, LangevinSampler)]
        if bad:
            raise ValueError(f"stage_samplers keys {bad} must be stage sizes {list(net.sizes)} "
                             "with a LangevinSampler each")
        self.net, self.sampler = net, sampler
        self.stage_samplers = {s: stage_samplers.get(s, sampler) for s in net.sizes}
        self.sizes = net.sizes
        self.image_size, self.channels = net.sizes[-1], net.channels
        self.num_stages = len(self.sizes)
        self.fade_images, self.stable_images = int(fade_images), int(stable_images)
        self.upsample_noise, self.seed = float(upsample_noise), int(seed)
        if not net.built:
            net.build_all()

        def state(name, dtype, value=0):
            return self.add_weight(shape=(), dtype=dtype, initializer=keras.initializers.Constant(value),
                                   trainable=False, aggregation="only_first_replica", name=name)

        self.train_counter = state("train_counter", "int64")
        self.images_seen = state("images_seen", "int64")
        self.stage = state("stage", "int32")
        self.beta = state("beta", "float32", 1.0)
        s, c = self.image_size, self.channels
        self._preview = self.add_weight(shape=(NUM_PREVIEW, s, s, c), initializer="zeros", trainable=False,
                                        aggregation="only_first_replica", name="last_samples")
        self._preview_count = state("last_samples_count", "int32")
        self._watch = cfebm_watch.make_state(state)
        self._plain = _Plain(optimizer=None, trackers={m: keras.metrics.Mean(name=m) for m in _METRICS})
        self.trackers = list(self._plain.trackers.values())
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers)

    def optimizers_by_name(self) -> dict:
        """The model contract's optimizers: {"energy": the one Adam}."""
        return {"energy": self._plain.optimizer}

    def compile(self, learning_rate: float = 1e-4, beta_1: float = 0.5, jit_compile: bool = False,
                steps_per_execution: int = 1):
        """One Adam(learning_rate, beta_1, beta_2=0.999) built on every trainable variable."""
        if not learning_rate > 0:
            raise ValueError(f"learning_rate={learning_rate!r} must be > 0")
        if not 0 <= beta_1 < 1:
            raise ValueError(f"beta_1={beta_1!r} must be in [0, 1)")
        opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=0.999,
                                    name="adam_energy")
        opt.build(self.net.trainable_variables)
        self._plain.optimizer = opt
        super().compile(optimizer=opt, jit_compile=jit_compile, steps_per_execution=steps_per_execution)

    def call(self, images, training=False):
        """Energies of full-size images at the last stage: float32 [N]."""
        return self.final_energy(images)

    def schedule(self, images_seen):
        """(stage int32 [], beta float32 []) after `images_seen` images (int64 [])."""
        return stage_and_beta(images_seen, self.num_stages, self.fade_images, self.stable_images)

    # ---------------------------------------------------------------- training

    def _observed(self, data, seed=None):
        """{stage size: float32 [n, s, s, C]} of the batch, with `data_noise` * N(0, 1) added
        (drawn for the global batch from `seed`, int64 [2]) when data_noise > 0 and seed is given."""
        if isinstance(data, (tuple, list)):
            data = data[0]
        finest = f"grid_{self.image_size}"
        if not isinstance(data, dict) or finest not in data:
            raise ValueError(f"train_step batch must be a dict with {finest!r} float32 [N,S,S,C]")
        full = tf.cast(data[finest], tf.float32)
        obs = {s: tf.cast(data[f"grid_{s}"], tf.float32) if f"grid_{s}" in data
               else pyramid_ops.box_downsample(full, s) for s in self.sizes}
        if self.data_noise > 0 and seed is not None:
            obs = {s: o + self.data_noise * global_batch_normal(tf.shape(o), fold_seed(seed, s))
                   for s, o in obs.items()}
        return obs

    def _stage_branch(self, k, obs, n, seed, beta, variables, num_replicas):
        """The branch of stage k: (gradients, metric values, preview at full size)."""

        def branch():
            synth, diags = self.chain(self.uniform_start(n, seed), seed, k, beta)
            x = tf.stop_gradient(synth[self.sizes[k]])
            with tf.GradientTape() as tape:
                e = self.net.energy(tf.concat([obs[self.sizes[k]], x], 0), k,
                                    beta if k else None, training=True)
                e_obs, e_syn = e[:n], e[n:]
                loss = tf.reduce_mean(e_syn) - tf.reduce_mean(e_obs)
                scaled = loss / num_replicas  # inside the tape, or the gradient is None
            grads = tape.gradient(scaled, variables)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
            d = diags[self.sizes[k]]
            values = [loss, tf.reduce_mean(e_obs) - tf.reduce_mean(e_syn), tf.reduce_mean(e_obs),
                      tf.reduce_mean(e_syn), tf.reduce_mean(d["energy_end"] - d["energy_start"]),
                      d["grad_norm"], tf.reduce_mean(x), tf.math.reduce_std(x),
                      tf.reduce_max(tf.abs(x)), tf.math.reduce_std(obs[self.sizes[k]])]
            keep = pyramid_ops.nearest_upsample(x[:NUM_PREVIEW], self.image_size)
            keep = tf.pad(keep, [[0, NUM_PREVIEW - tf.shape(keep)[0]], [0, 0], [0, 0], [0, 0]])
            return grads + values + [keep]

        return branch

    def train_step(self, data):
        ctx = tf.distribute.get_replica_context()
        num_replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        step_seed = tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(self.train_counter)])
        # The same seed on every replica (folded with 0, the value one device always used): the
        # sampler draws the global batch's noise and keeps this replica's rows.
        seed = fold_seed(step_seed, 0)
        # 1. The stage and fade weight of this step, from the images seen before it.
        stage, beta = self.schedule(tf.convert_to_tensor(self.images_seen))
        # 2. The observed images at every stage size (with the data noise, if any).
        obs = self._observed(data, fold_seed(step_seed, 1))
        n = tf.shape(obs[self.image_size])[0]
        # 3. The current stage's branch: smooth MCMC up to stage k, loss, gradients.
        variables = self.net.trainable_variables
        out = tf.switch_case(stage, [self._stage_branch(k, obs, n, seed, beta, variables, num_replicas)
                                     for k in range(self.num_stages)])
        grads, values, preview = out[:len(variables)], out[len(variables):-1], out[-1]
        # 3b. The runaway watch (energy magnitude, Langevin gradient norm, sample statistics).
        watch = cfebm_watch.check(self._watch, stage, values[2], values[3], values[5], values[7],
                                  values[9], self.runaway_factor)
        # 4. One Adam step on every variable (Keras sums the gradients over replicas).
        self._plain.optimizer.apply_gradients(zip(grads, variables))
        # 5. State: images seen, the next step's stage and beta, previews, the seed counter.
        self.images_seen.assign_add(tf.cast(n * num_replicas, tf.int64))
        next_stage, next_beta = self.schedule(tf.convert_to_tensor(self.images_seen))
        self.stage.assign(next_stage)
        self.beta.assign(next_beta)
        self._preview.assign(preview)
        self._preview_count.assign(tf.minimum(n, NUM_PREVIEW))
        self.train_counter.assign_add(1)
        # 6. Metrics (plus the schedule this step trained with).
        for m, v in zip(_METRICS, values):
            self._plain.trackers[m].update_state(v)
        result = {m: self._plain.trackers[m].result() for m in _METRICS}
        result.update(watch)
        result.update(stage=tf.cast(stage, tf.float32), beta=beta,
                      images_seen=tf.cast(self.images_seen, tf.float32))
        return result

    def use_averaged_weights(self) -> bool:
        """No weight averages in this family."""
        return False

    def tensorboard_previews(self, batch: dict, max_outputs: int = 8):
        """The model contract's TensorBoard pictures of the last train step.

        Returns:
          ({"synthesized/stage": float32 [k, H, W, C] in [0, 1]} (nearest-upsampled to the image
          size), {"energy_observed/stage" | "energy_synthesized/stage": float32 [n]}) at the
          current stage and beta.
        """
        k = int(self.stage.numpy())
        size = self.sizes[k]
        count = int(self._preview_count.numpy())
        synth = tf.convert_to_tensor(self._preview)[:count]
        beta = tf.convert_to_tensor(self.beta) if k else None
        obs = pyramid_ops.box_downsample(tf.cast(batch[f"grid_{self.image_size}"], tf.float32), size)
        histograms = {"energy_observed/stage": self.net.energy(obs[:max_outputs * 4], k, beta)}
        if count:
            histograms["energy_synthesized/stage"] = self.net.energy(
                pyramid_ops.box_downsample(synth, size), k, beta)
        return {"synthesized/stage": tf.clip_by_value(synth[:max_outputs], 0.0, 1.0)}, histograms

    # ---------------------------------------------------------------- export (model contract)

    def reached_final_stage(self) -> bool:
        """Whether training reached the last stage and finished its fade (beta = 1)."""
        return int(self.stage.numpy()) == self.num_stages - 1 and float(self.beta.numpy()) >= 1.0

    def export_signatures(self, max_num_samples: int) -> dict:
        """{name: tf.function} of the five signatures (`cfebm_signatures`)."""
        if not self.reached_final_stage():
            print(f"[cfebm] warning: exporting at stage {int(self.stage.numpy())} of "
                  f"{self.num_stages - 1}, beta {float(self.beta.numpy()):.3f}: the final stage is "
                  "not (fully) trained; config.json says final_stage_reached=false", flush=True)
        return cfebm_signatures.signature_functions(self, int(max_num_samples))

    def export_info(self) -> dict:
        """Facts for config.json: the stage sizes as `grids`, image_size, channels, the energy's
        grid as `trained_grids`, and the schedule state (stage, beta, images_seen,
        final_stage_reached)."""
        return {"grids": [int(s) for s in self.sizes], "image_size": int(self.image_size),
                "channels": int(self.channels), "trained_grids": [int(self.image_size)],
                "stages": [int(s) for s in self.sizes], "stage": int(self.stage.numpy()),
                "beta": float(self.beta.numpy()), "images_seen": int(self.images_seen.numpy()),
                "final_stage_reached": self.reached_final_stage()}


def build_model(sizes, channels: int, width: int = 128, activation: str = "swish",
                spectral: bool = True, residual: str = "scaled", steps: int = 15, step_size: float = 0.3,
                noise_scale: float = 1.0, noise_schedule: str = "linear",
                step_size_schedule: str = "constant", clip: bool = True,
                upsample_noise: float = 0.05, fade_images: int = 50_000,
                stable_images: int = 50_000, seed: int = 0, runaway_factor: float = 10.0,
                data_noise: float = 0.0, stage_steps: dict | None = None,
                stage_step_sizes: dict | None = None) -> CFEBM:
    """Build the net (seeded by `seed`), the noisy Langevin sampler and the model; the arguments
    as in `ExpandingEnergyNet`, `LangevinSampler` and `CFEBM`. stage_steps / stage_step_sizes:
    {stage size: T or delta} for the stages whose chains differ from `steps` / `step_size`."""
    keras.utils.set_random_seed(seed)
    net = ExpandingEnergyNet(sizes, channels, width=width, activation=activation, spectral=spectral,
                             residual=residual)
    net.build_all()
    sampler = LangevinSampler(steps, step_size, noise=True, clip=clip, noise_scale=noise_scale,
                              noise_schedule=noise_schedule, step_size_schedule=step_size_schedule)
    differ = set(stage_steps or {}) | set(stage_step_sizes or {})
    stage_samplers = {s: sampler.replace(steps=int((stage_steps or {}).get(s, steps)),
                                         step_size=float((stage_step_sizes or {}).get(s, step_size)))
                      for s in differ}
    return CFEBM(net, sampler, fade_images=fade_images, stable_images=stable_images,
                 upsample_noise=upsample_noise, seed=seed, runaway_factor=runaway_factor,
                 data_noise=data_noise, stage_samplers=stage_samplers)
