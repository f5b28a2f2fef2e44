"""The multi-grid energy-based model (Gao et al., CVPR 2018) and its baselines, as a Keras model.

`MultiGridEBM` holds one `EnergyNet` per trained grid and a `LangevinSampler`, and trains with a
custom `train_step` (keras-io style) under `model.fit`, `tf.distribute` strategies and mixed
precision. Families (`family`):

- "multigrid": chains start from the observed 1x1 images; at each grid S > 1 in turn the previous
  grid's samples are upsampled (nearest) and moved by T Langevin steps of f_S. All grids > 1 are
  trained together, one Adam each.
- "single_grid": only the finest net; chains from the upsampled observed 1x1 images, T steps.
- "cd1": only the finest net; chains start from the observed images, exactly 1 step.
- "pcd": only the finest net; persistent chains in a buffer [pcd_buffer_size, H, W, C]
  (initialised from upsampled 1x1 draws of N(coarse_mean, coarse_std)), T steps per batch.

Per trained grid: loss_S = mean f_S(synth) - mean f_S(obs) (synth under stop_gradient).
Pixels are float32 in [0, 1]; p(x) is proportional to exp(f(x)) (higher f = more probable).

Randomness is stateless: train step k uses the seed (seed, k) (k = `model.train_counter`), folded
with the replica id and the grid size, so the same seed and data give the same model on one
device. Under a strategy each replica's loss is divided by `num_replicas_in_sync` and the
train step sums all grids' gradients over replicas in one all-reduce, so N replicas give the same
update as one device on the same global batch (tested with MirroredStrategy on 2 logical CPUs).
Create the model, and call `compile`, inside the strategy's scope; use one MirroredStrategy
object per process (a second one over the same devices reuses collective keys).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainers import pyramid_ops
from trainers.langevin import RNG_ALG, LangevinSampler
from trainers.networks import EnergyNet, build_energy_net

FAMILIES = ("multigrid", "single_grid", "cd1", "pcd")
NUM_PREVIEW = 16
_METRICS = ("loss", "energy_gap", "energy_obs", "energy_synth", "langevin_gain", "grad_norm",
            "param_grad_norm", "sample_mean", "sample_std", "sample_abs_max")


class _Plain:
    """An untracked holder (keeps callables and int-keyed dicts out of Keras/TF tracking)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def _fold(seed, value):
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), tf.cast(value, tf.int64), alg=RNG_ALG)


def _seed2(seed):
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or seed.shape[0] != 2 or seed.dtype not in (tf.int32, tf.int64):
        raise ValueError(f"seed must be an int32 tensor of shape [2], got {seed.dtype.name} {seed.shape}")
    return tf.cast(seed, tf.int64)


class _SummedAdam(keras.optimizers.Adam):
    """Adam whose gradients arrive already summed over replicas (MultiGridEBM.train_step does one
    all-reduce for all grids), so it skips Keras' own per-optimizer all-reduce."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


class MultiGridEBM(keras.Model):
    """Multi-grid EBM; see the module docstring.

    Args:
      energy_nets: dict grid size -> EnergyNet, exactly `trained_grids` (all grids > 1 for
        "multigrid", the finest grid otherwise).
      sampler: the Langevin sampler (its `steps` is T; "cd1" trains with a 1-step copy).
      grids: increasing sizes starting at 1, each dividing the next, e.g. (1, 4, 16, 32).
      family: "multigrid", "single_grid", "cd1" or "pcd".
      coarse_mean, coarse_std: per-channel [C] statistics of the training 1x1 images (for
        `sample_coarse` and the pcd buffer); default 0.5 and 0.25.
      pcd_buffer_size: persistent chains kept by "pcd" (>= the global batch size).
      seed: training seed.
      ema_decay: 0 (off) or the decay in (0, 1) of an exponential moving average of every net's
        trainable weights, updated after each step with the decay warmed up as
        min(ema_decay, (1 + k) / (10 + k)) at step k; `use_averaged_weights` copies it into the
        nets (for export). The chains of training always use the live weights.
    """

    def __init__(self, energy_nets: dict, sampler: LangevinSampler, grids, family: str = "multigrid",
                 coarse_mean=None, coarse_std=None, pcd_buffer_size: int = 1000, seed: int = 0,
                 ema_decay: float = 0.0, name: str = "multigrid_ebm"):
        super().__init__(name=name)
        grids = tuple(int(g) for g in grids)
        if len(grids) < 2 or grids[0] != 1 or any(b <= a or b % a for a, b in zip(grids, grids[1:])):
            raise ValueError(f"grids={list(grids)} must start at 1 and increase, each dividing the next")
        if family not in FAMILIES:
            raise ValueError(f"family={family!r} is not allowed; allowed values: {list(FAMILIES)}")
        if not isinstance(sampler, LangevinSampler):
            raise ValueError(f"sampler must be a LangevinSampler, got {type(sampler).__name__}")
        self.grids = grids
        self.image_size = grids[-1]
        self.family = family
        self.trained_grids = tuple(g for g in grids if g > 1) if family == "multigrid" else (grids[-1],)
        if sorted(energy_nets) != list(self.trained_grids):
            raise ValueError(f"energy_nets has grids {sorted(energy_nets)}; family {family!r} with grids "
                             f"{list(grids)} needs exactly {list(self.trained_grids)}")
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
        self.sampler = sampler
        self.train_sampler = sampler.replace(steps=1) if family == "cd1" else sampler
        self.nets = [energy_nets[g] for g in self.trained_grids]
        self._plain = _Plain(energy_fns={g: (lambda x, n=energy_nets[g]: n(x, training=False))
                                         for g in self.trained_grids}, optimizers={}, trackers={})
        self.train_counter = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False,
                                             aggregation="only_first_replica", name="train_counter")
        self._previews = [self.add_weight(shape=(NUM_PREVIEW, g, g, c), initializer="zeros", trainable=False,
                                          aggregation="only_first_replica", name=f"last_samples_{g}")
                          for g in self.trained_grids]
        self._preview_count = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False,
                                              aggregation="only_first_replica", name="last_samples_count")
        self.pcd_buffer = None
        if family == "pcd":
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

    def train_step(self, data):
        ctx = tf.distribute.get_replica_context()
        num_replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        replica_id = ctx.replica_id_in_sync_group if ctx is not None else 0
        step_seed = tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(self.train_counter)])
        seed = _fold(step_seed, replica_id)
        # 1. The observed pyramid of the (per-replica) batch.
        obs = self._observed(data)
        n = tf.shape(obs[1])[0]
        # 2. Synthesize: run the chains of this family.
        synth, diags = {}, {}
        if self.family == "multigrid":
            x = obs[1]
            for g in self.trained_grids:
                x = pyramid_ops.nearest_upsample(x, g)
                x, diags[g] = self.sampler.run(self._plain.energy_fns[g], x, _fold(seed, g))
                synth[g] = x
        else:
            g = self.image_size
            if self.family == "single_grid":
                x0 = pyramid_ops.nearest_upsample(obs[1], g)
            elif self.family == "cd1":
                x0 = obs[g]
            else:
                size = self.pcd_buffer_size
                tf.debugging.assert_less_equal(n * num_replicas, size,
                                               message="pcd_buffer_size must be >= the global batch size")
                order = tf.argsort(tf.random.stateless_uniform([size], _fold(step_seed, -1), alg=RNG_ALG))
                global_idx = order[:n * num_replicas]
                local_idx = global_idx[replica_id * n:(replica_id + 1) * n]
                x0 = tf.gather(tf.convert_to_tensor(self.pcd_buffer), local_idx)
            x, diags[g] = self.train_sampler.run(self._plain.energy_fns[g], x0, _fold(seed, g))
            synth[g] = x
        # 3. Per-grid losses mean f(synth) - mean f(obs), scaled for the global batch.
        variables = [net.trainable_variables for net in self.nets]
        with tf.GradientTape() as tape:
            total, losses, energies = 0.0, {}, {}
            for g, net in zip(self.trained_grids, self.nets):
                e = net(tf.concat([obs[g], tf.stop_gradient(synth[g])], axis=0), training=True)
                e_obs, e_syn = e[:n], e[n:]
                losses[g] = tf.reduce_mean(e_syn) - tf.reduce_mean(e_obs)
                energies[g] = (e_obs, e_syn)
                opt = self._plain.optimizers[g]
                scaled = losses[g] / num_replicas
                total += opt.scale_loss(scaled) if hasattr(opt, "scale_loss") else scaled
        # 4. Sum the gradients (and the pcd chains) over replicas in ONE all-reduce: separate
        # collectives per optimizer can get mismatched instance keys across the replica threads
        # of a MirroredStrategy trace. The optimizers then skip their own reduction.
        grads = tape.gradient(total, variables)
        sizes = [len(gv) for gv in grads]
        flat = [g for gv in grads for g in gv]
        if any(g is None for g in flat):
            raise ValueError("an energy net has a variable without gradient; check its layers")
        if self.family == "pcd":
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
        if self.family == "pcd":
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

    # ---------------------------------------------------------------- inference

    def sample_coarse(self, num, seed):
        """1x1 starts: float32 [num, 1, 1, C] from N(coarse_mean, coarse_std), clipped to [0, 1].

        Args:
          num: int32 scalar (Python int or tensor). seed: int32 [2].
        """
        shape = tf.stack([tf.cast(num, tf.int32), 1, 1, self.channels])
        z = tf.random.stateless_normal(shape, _seed2(seed), alg=RNG_ALG)
        return tf.clip_by_value(z * tf.constant(self.coarse_std) + tf.constant(self.coarse_mean), 0.0, 1.0)

    def _check_images(self, images, name, channels=None):
        images = tf.convert_to_tensor(images)
        c = self.channels if channels is None else channels
        if images.shape.rank != 4 or images.shape[1:] != (self.image_size, self.image_size, c):
            raise ValueError(f"{name} must be float32 [N, {self.image_size}, {self.image_size}, {c}], "
                             f"got shape {images.shape}")
        return tf.cast(images, tf.float32)

    def synthesize(self, coarse, seed) -> dict:
        """The full sampling chain from 1x1 starts.

        Args:
          coarse: float32 [N, 1, 1, C] in [0, 1]. seed: int32 [2].

        Returns:
          dict grid size -> float32 [N, S, S, C] in [0, 1] for every grid (grid 1 is `coarse`).
          "multigrid": T steps at every grid > 1, each from the previous grid's samples; the
          other families run T steps of the finest net from the upsampled 1x1 image and give the
          intermediate grids as box averages of the finest samples.
        """
        coarse = tf.convert_to_tensor(coarse, tf.float32)
        if coarse.shape.rank != 4 or coarse.shape[1:] != (1, 1, self.channels):
            raise ValueError(f"coarse must be float32 [N, 1, 1, {self.channels}], got shape {coarse.shape}")
        seed = _seed2(seed)
        out, x = {1: coarse}, coarse
        if self.family == "multigrid":
            for g in self.trained_grids:
                x = pyramid_ops.nearest_upsample(x, g)
                x, _ = self.sampler.run(self._plain.energy_fns[g], x, _fold(seed, g))
                out[g] = x
            return out
        g = self.image_size
        x, _ = self.sampler.run(self._plain.energy_fns[g], pyramid_ops.nearest_upsample(coarse, g), _fold(seed, g))
        for s in self.grids[1:]:
            out[s] = pyramid_ops.box_downsample(x, s)
        return out

    def energies(self, images) -> dict:
        """dict trained grid size -> float32 [N] energies f_S of the pyramid of full-size images
        float32 [N, H, W, C] in [0, 1]."""
        pyr = pyramid_ops.build_pyramid(self._check_images(images, "images"), self.grids)
        return {g: net(pyr[g], training=False) for g, net in zip(self.trained_grids, self.nets)}

    def features(self, images) -> dict:
        """dict trained grid size -> float32 [N, D_S] pooled activations (see networks.py)."""
        pyr = pyramid_ops.build_pyramid(self._check_images(images, "images"), self.grids)
        return {g: net.features(pyr[g], training=False) for g, net in zip(self.trained_grids, self.nets)}

    def inpaint(self, images, mask, seed):
        """Fill the missing pixels by Langevin, coarse to fine, with observed pixels clamped.

        At grid 1 the start is the mean of each image's observed pixels (coarse_mean if none);
        at each trained grid S the image with its missing pixels filled by the upsampled previous
        result is box-averaged to S, and Langevin moves only the S-pixels whose block contains a
        missing pixel. The finest grid moves exactly the missing pixels.

        Args:
          images: float32 [N, H, W, C] in [0, 1]. mask: float32 [N, H, W, 1], 1 = missing.
          seed: int32 [2].

        Returns:
          float32 [N, H, W, C]; observed pixels (mask 0) equal `images` exactly.
        """
        images = self._check_images(images, "images")
        mask = self._check_images(mask, "mask", channels=1)
        seed = _seed2(seed)
        missing = mask > 0.5
        known = 1.0 - tf.cast(missing, tf.float32)
        count = tf.reduce_sum(known, axis=[1, 2], keepdims=True)
        mean = tf.reduce_sum(images * known, axis=[1, 2], keepdims=True) / tf.maximum(count, 1.0)
        x = tf.where(count > 0, mean, tf.reshape(tf.constant(self.coarse_mean), [1, 1, 1, -1]))
        for g in self.trained_grids:
            up = pyramid_ops.nearest_upsample(x, self.image_size)
            filled = tf.where(missing, up, images)
            start = pyramid_ops.box_downsample(filled, g)
            movable = tf.cast(pyramid_ops.box_downsample(tf.cast(missing, tf.float32), g) > 0, tf.float32)
            x, _ = self.sampler.run(self._plain.energy_fns[g], start, _fold(seed, g), mask=movable)
        return tf.where(missing, x, images)


def build_model(grids, channels: int, family: str = "multigrid", norm: str = "none",
                activation: str = "leaky_relu", width: float = 1.0, steps: int = 30,
                step_size: float = 0.3, reference_sigma: float = 1.0, use_reference: bool = False,
                noise: bool = False, clip: bool = True, jit_compile: bool = False,
                noise_scale: float = 1.0, noise_schedule: str = "constant", coarse_mean=None,
                coarse_std=None, pcd_buffer_size: int = 1000, seed: int = 0,
                ema_decay: float = 0.0) -> MultiGridEBM:
    """Build the energy nets (only the trained grids), the sampler and the model.

    Call inside a strategy scope for distributed training; seeds Keras' initialisers with
    `seed` so the same seed gives the same initial weights. Arguments as in `EnergyNet`,
    `LangevinSampler` and `MultiGridEBM`.
    """
    grids = tuple(int(g) for g in grids)
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not allowed; allowed values: {list(FAMILIES)}")
    trained = [g for g in grids if g > 1] if family == "multigrid" else [grids[-1]]
    keras.utils.set_random_seed(seed)
    nets = {g: build_energy_net(g, channels, norm=norm, activation=activation, width=width) for g in trained}
    sampler = LangevinSampler(steps, step_size, reference_sigma=reference_sigma, use_reference=use_reference,
                              noise=noise, clip=clip, jit_compile=jit_compile,
                              noise_scale=noise_scale, noise_schedule=noise_schedule)
    return MultiGridEBM(nets, sampler, grids, family=family, coarse_mean=coarse_mean, coarse_std=coarse_std,
                        pcd_buffer_size=pcd_buffer_size, seed=seed, ema_decay=ema_decay)
