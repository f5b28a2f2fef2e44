"""The multi-grid energy-based model (Gao et al., CVPR 2018) and its baselines, as a Keras model.

`MultiGridEBM` holds one `EnergyNet` per trained grid and a `LangevinSampler`, and trains with a
custom `train_step` (keras-io style) under `model.fit`, `tf.distribute` strategies and mixed
precision. The variants (`model.family` values, registered in `multigrid_spec`) differ only in
explicit constructor arguments: which grids have an energy net (`energy_nets`), where the
training chains start (`start`) and how many Langevin steps they run (`train_steps`):

- start "coarse": from the observed 1x1 images; the coarse-to-fine chain (`trainers.chain`)
  upsamples (nearest) to each trained grid S in turn and moves the chains by T Langevin steps of
  f_S ("multigrid": all grids > 1; "single_grid": the finest only).
- start "observed": from the observed images at the (single) trained grid ("cd1", 1 step).
- start "persistent": persistent chains in a buffer [pcd_buffer_size, H, W, C] (initialised
  from upsampled 1x1 draws of N(coarse_mean, coarse_std)), T steps per batch ("pcd").

Per trained grid: loss_S = mean f_S(synth) - mean f_S(obs) (synth under stop_gradient).
Pixels are float32 in [0, 1]; p(x) is proportional to exp(f(x)) (higher f = more probable).

Randomness is stateless: train step k uses the seed (seed, k) (k = `model.train_counter`), folded
with the grid size, the same on every replica; the sampler draws the noise of the global batch
and keeps this replica's rows (`langevin.global_batch_normal`), so the same seed and data give
the same model on one device and on N replicas or workers.
Under a strategy each replica's loss is divided by `num_replicas_in_sync` and the
train step sums all grids' gradients over replicas in one all-reduce, so N replicas give the same
update as one device on the same global batch (tested with MirroredStrategy on 2 logical CPUs).
Create the model, and call `compile`, inside the strategy's scope; use one MirroredStrategy
object per process (a second one over the same devices reuses collective keys).

The family-neutral model contract (`trainers.families`): `optimizers_by_name`,
`tensorboard_previews`, `use_averaged_weights`, `export_signatures`, `export_info`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainers import pyramid_ops
from trainers.chain import coarse_to_fine, fold_seed
from trainers.families import multigrid_signatures
from trainers.families.multigrid_inference import MultiGridInference
from trainers.families.multigrid_variants import VARIANTS
from trainers.langevin import RNG_ALG, LangevinSampler
from trainers.networks import EnergyNet, build_energy_net

STARTS = ("coarse", "observed", "persistent")
NUM_PREVIEW = 16
_METRICS = ("loss", "energy_gap", "energy_obs", "energy_synth", "langevin_gain", "grad_norm",
            "param_grad_norm", "sample_mean", "sample_std", "sample_abs_max")


class _Plain:
    """An untracked holder (keeps callables and int-keyed dicts out of Keras/TF tracking)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class _SummedAdam(keras.optimizers.Adam):
    """Adam whose gradients arrive already summed over replicas (MultiGridEBM.train_step does one
    all-reduce for all grids), so it skips Keras' own per-optimizer all-reduce."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class MultiGridEBM(MultiGridInference, keras.Model):
    """Multi-grid EBM; see the module docstring.

    Args:
      energy_nets: dict grid size -> EnergyNet; its keys are the trained grids, either every
        grid > 1 or one grid (the finest) for the "observed" and "persistent" starts.
      sampler: the Langevin sampler (its `steps` is T), or a dict trained grid size -> sampler
        (other steps or step sizes per grid); `sampler` is then the finest grid's.
      grids: increasing sizes starting at 1, each dividing the next, e.g. (1, 4, 16, 32).
      start: where the training chains start: "coarse", "observed" or "persistent".
      train_steps: Langevin steps of the training chains; None = `sampler.steps`.
      coarse_mean, coarse_std: per-channel [C] statistics of the training 1x1 images (for
        `sample_coarse` and the persistent buffer); default 0.5 and 0.25.
      pcd_buffer_size: persistent chains kept with start "persistent" (>= the global batch).
      seed: training seed.
      ema_decay: 0 (off) or the decay in (0, 1) of an exponential moving average of every net's
        trainable weights, updated after each step with the decay warmed up as
        min(ema_decay, (1 + k) / (10 + k)) at step k; `use_averaged_weights` copies it into the
        nets (for export). The chains of training always use the live weights.
    """

    def __init__(self, energy_nets: dict, sampler: LangevinSampler, grids, start: str = "coarse",
                 train_steps: int | None = None, coarse_mean=None, coarse_std=None,
                 pcd_buffer_size: int = 1000, seed: int = 0, ema_decay: float = 0.0,
                 name: str = "multigrid_ebm"):
        super().__init__(name=name)
        grids = tuple(int(g) for g in grids)
        if len(grids) < 2 or grids[0] != 1 or any(b <= a or b % a for a, b in zip(grids, grids[1:])):
            raise ValueError(f"grids={list(grids)} must start at 1 and increase, each dividing the next")
        if start not in STARTS:
            raise ValueError(f"start={start!r} is not allowed; allowed values: {list(STARTS)}")
        samplers = sampler if isinstance(sampler, dict) else {g: sampler for g in energy_nets}
        if sorted(samplers) != sorted(energy_nets) or not all(isinstance(v, LangevinSampler)
                                                             for v in samplers.values()):
            raise ValueError(f"sampler must be a LangevinSampler or a dict grid -> LangevinSampler for the "
                             f"grids {sorted(energy_nets)}, got {sampler!r}")
        if train_steps is not None and int(train_steps) < 1:
            raise ValueError(f"train_steps={train_steps!r} must be >= 1 (or None = sampler.steps)")
        self.grids = grids
        self.image_size = grids[-1]
        self.start = start
        self.trained_grids = tuple(sorted(int(g) for g in energy_nets))
        allowed = (tuple(g for g in grids if g > 1), (grids[-1],)) if start == "coarse" else ((grids[-1],),)
        if self.trained_grids not in allowed:
            raise ValueError(f"energy_nets has grids {list(self.trained_grids)}; start={start!r} with "
                             f"grids {list(grids)} needs exactly one of {[list(a) for a in allowed]}")
        channels = {net.channels for net in energy_nets.values()}
        if len(channels) != 1:
            raise ValueError(f"energy_nets disagree on channels: {sorted(channels)}")
        self.channels = channels.pop()
        for size, net in energy_nets.items():
            if not isinstance(net, EnergyNet) or net.grid_size != size:
                raise ValueError(f"energy_nets[{size}] must be an EnergyNet for grid {size}")
            if not net.built:
                net(tf.zeros([1, size, size, self.channels]))
        c = self.channels
        coarse_mean = [0.5] * c if coarse_mean is None else [float(v) for v in coarse_mean]
        coarse_std = [0.25] * c if coarse_std is None else [float(v) for v in coarse_std]
        if len(coarse_mean) != c or len(coarse_std) != c or min(coarse_std) < 0:
            raise ValueError(f"coarse_mean={coarse_mean} and coarse_std={coarse_std} must have {c} "
                             "entries each (one per channel), std >= 0")
        self.coarse_mean, self.coarse_std = coarse_mean, coarse_std
        self.seed = int(seed)
        self.pcd_buffer_size = int(pcd_buffer_size)
        self.sampler = samplers[self.trained_grids[-1]]
        self.nets = [energy_nets[g] for g in self.trained_grids]
        train_samplers = {g: s if train_steps is None else s.replace(steps=int(train_steps))
                          for g, s in samplers.items()}
        self._plain = _Plain(energy_fns={g: (lambda x, n=energy_nets[g]: n(x, training=False))
                                         for g in self.trained_grids}, optimizers={}, trackers={},
                             samplers=samplers, train_samplers=train_samplers)
        self.train_counter = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False,
                                             aggregation="only_first_replica", name="train_counter")
        self._previews = [self.add_weight(shape=(NUM_PREVIEW, g, g, c), initializer="zeros", trainable=False,
                                          aggregation="only_first_replica", name=f"last_samples_{g}")
                          for g in self.trained_grids]
        self._preview_count = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                              aggregation="only_first_replica", name="last_samples_count")
        self.pcd_buffer = None
        if start == "persistent":
            if self.pcd_buffer_size < 1:
                raise ValueError(f"pcd_buffer_size={pcd_buffer_size} must be >= the global batch size")
            self.pcd_buffer = self.add_weight(
                shape=(self.pcd_buffer_size, self.image_size, self.image_size, c),
                initializer=lambda shape, dtype=None: pyramid_ops.nearest_upsample(
                    self.sample_coarse(shape[0], [self.seed, -1]), shape[1]),
                trainable=False, aggregation="only_first_replica", name="pcd_buffer")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay={ema_decay!r} must be in [0, 1) (0 = off)")
        self.ema_decay = float(ema_decay)
        self._ema = [self.add_weight(shape=v.shape, initializer=lambda shape, dtype=None, v=v: tf.identity(v),
                                     trainable=False, aggregation="only_first_replica", name=f"ema_{g}_{j}")
                     for g, net in zip(self.trained_grids, self.nets) if self.ema_decay > 0
                     for j, v in enumerate(net.trainable_variables)]
        self._plain.trackers = {(m, g): keras.metrics.Mean(name=f"{m}_{g}") for g in self.trained_grids
                                for m in _METRICS}
        self.trackers = list(self._plain.trackers.values())
        self.built = True

    @property
    def energy_nets(self) -> dict:
        """dict grid size -> EnergyNet for every trained grid."""
        return dict(zip(self.trained_grids, self.nets))

    @property
    def grid_optimizers(self) -> dict:
        """dict grid size -> the Adam (possibly loss-scaled) of that grid, after `compile`."""
        return dict(self._plain.optimizers)

    def optimizers_by_name(self) -> dict:
        """The model contract's optimizers: {"grid_S": optimizer} per trained grid."""
        return {f"grid_{g}": opt for g, opt in self._plain.optimizers.items()}

    @property
    def metrics(self):
        return list(self.trackers)

    def compile(self, learning_rate: float = 1e-4, beta_1: float = 0.5, jit_compile: bool = False,
                steps_per_execution: int = 1):
        """Create one Adam per trained grid (built on that grid's variables).

        Call inside the strategy scope. Under a "mixed_float16" policy each Adam is wrapped in a
        `keras.optimizers.LossScaleOptimizer`. `model.optimizer` is the finest grid's optimizer (so
        `model.optimizer.iterations` counts train steps). `jit_compile` XLA-compiles the whole
        train step (the sampler has its own option).
        """
        if not learning_rate > 0:
            raise ValueError(f"learning_rate={learning_rate!r} must be > 0")
        if not 0 <= beta_1 < 1:
            raise ValueError(f"beta_1={beta_1!r} must be in [0, 1)")
        if not hasattr(keras.optimizers.Adam, "_all_reduce_sum_gradients"):
            raise RuntimeError(f"Keras {keras.__version__} renamed Optimizer._all_reduce_sum_gradients; "
                               "MultiGridEBM needs it to avoid reducing gradients twice across replicas")
        float16 = keras.mixed_precision.dtype_policy().name == "mixed_float16"
        opts = {}
        for g, net in zip(self.trained_grids, self.nets):
            opt = _SummedAdam(learning_rate=learning_rate, beta_1=beta_1, name=f"adam_{g}")
            if float16:
                opt = keras.optimizers.LossScaleOptimizer(opt, name=f"loss_scale_{g}")
            opt.build(net.trainable_variables)
            opts[g] = opt
        self._plain.optimizers = opts
        super().compile(optimizer=opts[self.image_size], jit_compile=jit_compile,
                        steps_per_execution=steps_per_execution)

    def call(self, images, training=False):
        """Energies of full-size images: dict grid size -> [N] (same as `energies`)."""
        return self.energies(images)

    # ---------------------------------------------------------------- training

    def _observed(self, data):
        if isinstance(data, (tuple, list)):
            data = data[0]
        if not isinstance(data, dict):
            raise ValueError("train_step batch must be a dict {'grid_S': float32 [N,S,S,C]}")
        finest = f"grid_{self.image_size}"
        if finest not in data:
            raise ValueError(f"batch has keys {sorted(data)}; it needs {finest!r} (and grid_1, ...)")
        obs = {}
        full = tf.cast(data[finest], tf.float32)
        for g in self.grids:
            key = f"grid_{g}"
            obs[g] = tf.cast(data[key], tf.float32) if key in data else pyramid_ops.box_downsample(full, g)
        return obs

    def _persistent_start(self, n, num_replicas, replica_id, step_seed):
        """This replica's chains from the buffer, and the global buffer indices of the batch."""
        size = self.pcd_buffer_size
        tf.debugging.assert_less_equal(n * num_replicas, size,
                                       message="pcd_buffer_size must be >= the global batch size")
        order = tf.argsort(tf.random.stateless_uniform([size], fold_seed(step_seed, -1), alg=RNG_ALG))
        global_idx = order[:n * num_replicas]
        local_idx = global_idx[replica_id * n:(replica_id + 1) * n]
        return tf.gather(tf.convert_to_tensor(self.pcd_buffer), local_idx), global_idx

    def train_step(self, data):
        ctx = tf.distribute.get_replica_context()
        num_replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        replica_id = ctx.replica_id_in_sync_group if ctx is not None else 0
        step_seed = tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(self.train_counter)])
        # The same seed on every replica (folded with 0, the value one device always used): the
        # sampler draws the global batch's noise and keeps this replica's rows.
        seed = fold_seed(step_seed, 0)
        # 1. The observed pyramid of the (per-replica) batch.
        obs = self._observed(data)
        n = tf.shape(obs[1])[0]
        # 2. Synthesize: the coarse-to-fine chain over the trained grids from this variant's start.
        if self.start == "persistent":
            x0, global_idx = self._persistent_start(n, num_replicas, replica_id, step_seed)
        else:
            x0 = obs[1] if self.start == "coarse" else obs[self.trained_grids[0]]
        synth, diags = coarse_to_fine(x0, seed, self.trained_grids, self._plain.energy_fns,
                                      self._plain.train_samplers)
        # 3. Per-grid losses mean f(synth) - mean f(obs), scaled for the global batch.
        variables = [net.trainable_variables for net in self.nets]
        with tf.GradientTape() as tape:
            total, losses, energies = 0.0, {}, {}
            for g, net in zip(self.trained_grids, self.nets):
                if net.batch_dependent:  # each batch normalised by its own statistics, as in the authors' code
                    e_obs, e_syn = net(obs[g], training=True), net(tf.stop_gradient(synth[g]), training=True)
                else:
                    e = net(tf.concat([obs[g], tf.stop_gradient(synth[g])], axis=0), training=True)
                    e_obs, e_syn = e[:n], e[n:]
                losses[g] = tf.reduce_mean(e_syn) - tf.reduce_mean(e_obs)
                energies[g] = (e_obs, e_syn)
                opt = self._plain.optimizers[g]
                scaled = losses[g] / num_replicas
                total += opt.scale_loss(scaled) if hasattr(opt, "scale_loss") else scaled
        # 4. Sum the gradients (and the persistent chains) over replicas in ONE all-reduce:
        # separate collectives per optimizer can get mismatched instance keys across the replica
        # threads of a MirroredStrategy trace. The optimizers then skip their own reduction.
        grads = tape.gradient(total, variables)
        sizes = [len(gv) for gv in grads]
        flat = [g for gv in grads for g in gv]
        if any(g is None for g in flat):
            raise ValueError("an energy net has a variable without gradient; check its layers")
        if self.pcd_buffer is not None:
            chains = synth[self.image_size]
            if num_replicas > 1:  # place this replica's chains in the global batch, zeros elsewhere
                chains = tf.scatter_nd(replica_id * n + tf.range(n)[:, None], chains,
                                       tf.concat([[n * num_replicas], tf.shape(chains)[1:]], 0))
            flat.append(chains)
        if num_replicas > 1:
            flat = ctx.all_reduce(tf.distribute.ReduceOp.SUM, flat)
        param_norms, pos = {}, 0
        for g, size, vs in zip(self.trained_grids, sizes, variables):
            gv = flat[pos:pos + size]
            pos += size
            opt = self._plain.optimizers[g]
            scale = opt.dynamic_scale if isinstance(opt, keras.optimizers.LossScaleOptimizer) else 1.0
            param_norms[g] = tf.linalg.global_norm(gv) / tf.cast(scale, tf.float32)  # before the update
            opt.apply_gradients(zip(gv, vs))
        # 5. State: weight averages, persistent chains, previews for TensorBoard, the step counter.
        if self._ema:
            k = tf.cast(self.train_counter, tf.float32)
            decay = tf.minimum(self.ema_decay, (1.0 + k) / (10.0 + k))
            live = [v for vs in variables for v in vs]
            for avg, var in zip(self._ema, live):
                avg.assign(decay * avg + (1.0 - decay) * tf.cast(var, avg.dtype))
        if self.pcd_buffer is not None:
            self.pcd_buffer.assign(tf.tensor_scatter_nd_update(
                tf.convert_to_tensor(self.pcd_buffer), global_idx[:, None], flat[-1]))
        for g, var in zip(self.trained_grids, self._previews):
            keep = synth[g][:NUM_PREVIEW]
            var.assign(tf.pad(keep, [[0, NUM_PREVIEW - tf.shape(keep)[0]], [0, 0], [0, 0], [0, 0]]))
        self._preview_count.assign(tf.minimum(n, NUM_PREVIEW))
        self.train_counter.assign_add(1)
        # 6. Metrics.
        for g in self.trained_grids:
            e_obs, e_syn = energies[g]
            values = {
                "loss": losses[g], "energy_gap": tf.reduce_mean(e_obs) - tf.reduce_mean(e_syn),
                "energy_obs": tf.reduce_mean(e_obs), "energy_synth": tf.reduce_mean(e_syn),
                "langevin_gain": tf.reduce_mean(diags[g]["energy_end"] - diags[g]["energy_start"]),
                "grad_norm": diags[g]["grad_norm"], "param_grad_norm": param_norms[g],
                "sample_mean": tf.reduce_mean(synth[g]), "sample_std": tf.math.reduce_std(synth[g]),
                "sample_abs_max": tf.reduce_max(tf.abs(synth[g])),
            }
            for m, v in values.items():
                self._plain.trackers[(m, g)].update_state(v)
        return {f"{m}/{g}": self._plain.trackers[(m, g)].result() for g in self.trained_grids for m in _METRICS}

    def use_averaged_weights(self) -> bool:
        """Copy the weight averages into the nets (before export); False when ema_decay is 0."""
        if not self._ema:
            return False
        live = [v for net in self.nets for v in net.trainable_variables]
        for avg, var in zip(self._ema, live):
            var.assign(tf.convert_to_tensor(avg))
        return True

    @property
    def last_samples(self) -> dict:
        """dict grid size -> float32 [k, S, S, C]: up to 16 synthesized images of the last train
        step (of the first replica), for TensorBoard; k = 0 before the first step."""
        k = tf.convert_to_tensor(self._preview_count)
        return {g: tf.convert_to_tensor(v)[:k] for g, v in zip(self.trained_grids, self._previews)}

    def tensorboard_previews(self, batch: dict, max_outputs: int = 8):
        """The model contract's TensorBoard pictures of the last train step.

        Args:
          batch: the observed pyramid batch {"grid_S": float32 [N, S, S, C]} (one replica's).
          max_outputs: images per tag.

        Returns:
          (images, histograms): {"synthesized/grid_S": float32 [k, S, S, C] in [0, 1]} and
          {"energy_observed/grid_S" | "energy_synthesized/grid_S": float32 [n]} per trained grid.
        """
        synth = self.last_samples
        obs_energy = self.energies(batch[f"grid_{self.image_size}"][:max_outputs * 4])
        images, histograms = {}, {}
        for g, x in synth.items():
            x = tf.clip_by_value(tf.cast(x, tf.float32), 0.0, 1.0)
            images[f"synthesized/grid_{g}"] = x[:max_outputs]
        for g, e in obs_energy.items():
            histograms[f"energy_observed/grid_{g}"] = e
            histograms[f"energy_synthesized/grid_{g}"] = self.energy_nets[g](synth[g][:max_outputs * 4])
        return images, histograms

    # ---------------------------------------------------------------- export (model contract)

    def export_signatures(self, max_num_samples: int) -> dict:
        """{name: tf.function} of the five signatures (`multigrid_signatures`)."""
        return multigrid_signatures.signature_functions(self, int(max_num_samples))

    def export_info(self) -> dict:
        """Facts for the export's config.json: grids, image_size, channels, trained_grids."""
        return {"grids": [int(g) for g in self.grids], "image_size": int(self.image_size),
                "channels": int(self.channels), "trained_grids": [int(g) for g in self.trained_grids]}


def build_model(grids, channels: int, variant: str = "multigrid", norm: str = "none",
                activation: str = "leaky_relu", width: float = 1.0, steps: int = 30,
                step_size: float = 0.3, reference_sigma: float = 1.0, use_reference: bool = False,
                noise: bool = False, clip: bool = True, jit_compile: bool = False,
                noise_scale: float = 1.0, noise_schedule: str = "constant",
                step_size_schedule: str = "constant", precondition: str = "none", coarse_mean=None,
                coarse_std=None, pcd_buffer_size: int = 1000, seed: int = 0,
                ema_decay: float = 0.0, grid_steps: dict | None = None,
                grid_step_sizes: dict | None = None, grid_preconditions: dict | None = None) -> MultiGridEBM:
    """Build the energy nets (only the trained grids), the sampler and the model.

    Call inside a strategy scope for distributed training; seeds Keras' initialisers with
    `seed` so the same seed gives the same initial weights. `variant` is a key of
    `multigrid_variants.VARIANTS`; the other arguments as in `EnergyNet`, `LangevinSampler` and
    `MultiGridEBM`. `grid_steps` / `grid_step_sizes` / `grid_preconditions`: dict grid size -> T /
    delta / precondition for the grids that differ from `steps` / `step_size` / `precondition`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not allowed; allowed values: {list(VARIANTS)}")
    trained, start, train_steps = VARIANTS[variant]
    grids = tuple(int(g) for g in grids)
    trained = [g for g in grids if g > 1] if trained == "all" else [grids[-1]]
    keras.utils.set_random_seed(seed)
    nets = {g: build_energy_net(g, channels, norm=norm, activation=activation, width=width) for g in trained}
    sampler = LangevinSampler(steps, step_size, reference_sigma=reference_sigma, use_reference=use_reference,
                              noise=noise, clip=clip, jit_compile=jit_compile,
                              noise_scale=noise_scale, noise_schedule=noise_schedule,
                              step_size_schedule=step_size_schedule, precondition=precondition)
    samplers = {g: sampler.replace(steps=int((grid_steps or {}).get(g, steps)),
                                   step_size=float((grid_step_sizes or {}).get(g, step_size)),
                                   precondition=(grid_preconditions or {}).get(g, precondition)) for g in trained}
    return MultiGridEBM(nets, samplers, grids, start=start, train_steps=train_steps, coarse_mean=coarse_mean,
                        coarse_std=coarse_std, pcd_buffer_size=pcd_buffer_size, seed=seed,
                        ema_decay=ema_decay)
