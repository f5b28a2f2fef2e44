"""LAPGAN (Denton et al. 2015) and DCGAN as one Keras model: a Laplacian pyramid of GANs.

`LapGAN` holds per level k (sizes s_0 < s_1 < ... < s_K; DCGAN: K = 0) a generator and a
discriminator (`trainers.families.lapgan_net`): level 0 a `NoiseGenerator` from z, levels
k >= 1 a `ResidualGenerator` of the Laplacian residual at s_k given the nearest-upsampled real
coarser image l_k = up(x_{s_{k-1}}). The discriminator of level 0 sees the image, that of level
k the residual h_k = x_{s_k} - l_k together with l_k (and, when conditional, every network gets
the one-hot label: `class_conditioning` says how the discriminators use it, see
`lapgan_net`; with `acgan` they get no label and classify instead). Levels are trained
independently, each on the real pyramid of the batch (`pyramid_ops.laplacian_pyramid`); their
losses are summed, which gives each level's networks exactly their own level's gradients (the
variables are disjoint).

One `train_step` (keras-io style, two optimizers `generator` and `discriminator`):
1. seeds: stateless, (train.seed, train_counter) folded with each level size (noise) or
   10_000 + size (the gradient penalty's interpolation weights). Under a strategy with R
   replicas the noise and the interpolation weights are drawn for the global batch and split,
   and batch norm is synchronized across replicas, so R replicas (or workers) train the model
   one process trains on the same global batch;
2. the generators' outputs on their noise, recorded on the generator tape;
3. the discriminator step (not recorded there): TF-GAN's discriminator loss on the real and the
   (stopped) generated inputs of every level, plus `gp_weight` times the gradient penalty for
   `wasserstein_gp` and TF-GAN's AC-GAN classification term with `acgan`; an Adam step on the
   discriminators' variables only;
4. the generator step: TF-GAN's generator loss of the updated discriminators on the same
   generated inputs (plus the AC-GAN term with `acgan`); an Adam step on the generators'
   variables only;
   With `coarse_updates` U > 1, steps 2-4 run U - 1 more times first for level 0 alone (its
   own variables, the step's real batch, noise seeded by (train.seed, train_counter, j)): the
   coarsest level is the cheapest and decides each image's class and layout;
5. metrics per level (`d_loss/S`, `g_loss/S`, `d_real/S`, `d_fake/S` mean logits, `gp/S`; with
   `acgan` the classification terms `d_class/S`, `g_class/S`) and
   `collapse` (1 when a level's discriminator loss is pinned at 0 or its generator loss
   explodes; the divergence guard stops on it).

Sampling (`synthesize`): the coarsest level from noise (or a given coarse image), then
x_{s_k} = clip(up(x_{s_{k-1}}) + G_k(up(x_{s_{k-1}}), noise, label), 0, 1) up to the image size.
Pixels are float32 in [0, 1].
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainers import gan_losses, pyramid_ops
from trainers.chain import fold_seed
from trainers.langevin import global_batch_draw
from trainers.families import lapgan_signatures
from trainers.families.lapgan_net import Discriminator, NoiseGenerator, ResidualGenerator, _centre

TFGAN_KIND = {"minimax": "minimax", "non_saturating": "non_saturating", "wasserstein_gp": "wasserstein"}
PINNED_D_LOSS = 1e-3  # a discriminator loss below this (non-Wasserstein) counts as a collapse
EXPLODED_G_LOSS = {"minimax": 1e2, "non_saturating": 1e2, "wasserstein_gp": 1e4}


class _Plain:
    """An untracked holder (keeps optimizers and the trackers dict out of Keras tracking)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class LapGAN(keras.Model):
    """A Laplacian pyramid of GANs (one level: DCGAN); see the module docstring.

    Args:
      generators, discriminators: one per level, built (`build_model` makes them).
      sizes: the level sizes, increasing, each twice the previous (one size: DCGAN).
      channels: C. noise_dim: length of level 0's z.
      gan_loss: `minimax`, `non_saturating` or `wasserstein_gp`. gp_weight: the penalty's weight.
      num_classes: one-hot depth (0 = unconditional). classes: the labels a conditional model accepts.
      class_conditioning: conditional only, how the discriminators (built with the same value)
        use the label: `concat`, `projection` or `acgan` (they classify: AC-GAN's extra loss terms).
      coarse_updates: updates of level 0's networks per train step (>= 1); see the module docstring.
      seed: the training seed.
    """

    def __init__(self, generators, discriminators, sizes, channels: int, noise_dim: int,
                 gan_loss: str = "non_saturating", gp_weight: float = 10.0, num_classes: int = 0,
                 classes=(), class_conditioning: str = "concat", coarse_updates: int = 1, seed: int = 0,
                 name: str = "lapgan"):
        super().__init__(name=name)
        sizes = tuple(int(s) for s in sizes)
        if len(generators) != len(sizes) or len(discriminators) != len(sizes):
            raise ValueError(f"need one generator and one discriminator per level {list(sizes)}")
        if gan_loss not in TFGAN_KIND:
            raise ValueError(f"gan_loss={gan_loss!r} is not one of {list(TFGAN_KIND)}")
        if num_classes and not classes:
            raise ValueError("a conditional model (num_classes > 0) needs its trained classes")
        if num_classes and any(d.conditioning != class_conditioning for d in discriminators):
            raise ValueError(f"class_conditioning={class_conditioning!r} needs discriminators built with it")
        if any(not 0 <= int(c) < max(num_classes, 1) for c in classes):
            raise ValueError(f"classes={list(classes)} must each be in [0, num_classes={num_classes})")
        if int(coarse_updates) < 1:
            raise ValueError(f"coarse_updates={coarse_updates!r} must be >= 1")
        self.generators, self.discriminators = list(generators), list(discriminators)
        self.sizes, self.channels, self.noise_dim = sizes, int(channels), int(noise_dim)
        self.image_size = sizes[-1]
        self.gan_loss, self.gp_weight = gan_loss, float(gp_weight)
        self.num_classes, self.classes = int(num_classes), tuple(int(c) for c in classes)
        self.class_conditioning = class_conditioning if self.num_classes else "concat"
        self.acgan = self.class_conditioning == "acgan"
        self.uses_labels = bool(self.num_classes)  # the data pipeline adds "label" to batches
        self.coarse_updates, self.seed = int(coarse_updates), int(seed)
        self.train_counter = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False,
                                             aggregation="only_first_replica", name="train_counter")
        names = ["collapse"]
        for s in sizes:
            names += [f"d_loss/{s}", f"g_loss/{s}", f"d_real/{s}", f"d_fake/{s}"]
            names += [f"gp/{s}"] if gan_loss == "wasserstein_gp" else []
            names += [f"d_class/{s}", f"g_class/{s}"] if self.acgan else []
        self._names = names
        self._plain = _Plain(g_opt=None, d_opt=None,
                             trackers={m: keras.metrics.Mean(name=m.replace("/", "_")) for m in names})
        self.trackers = list(self._plain.trackers.values())
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers)

    def generator_variables(self):
        return [v for g in self.generators for v in g.trainable_variables]

    def discriminator_variables(self):
        return [v for d in self.discriminators for v in d.trainable_variables]

    def optimizers_by_name(self) -> dict:
        """The model contract's optimizers: {"generator": Adam, "discriminator": Adam}."""
        return {"generator": self._plain.g_opt, "discriminator": self._plain.d_opt}

    def compile(self, learning_rate: float = 2e-4, beta_1: float = 0.5, jit_compile: bool = False,
                steps_per_execution: int = 1):
        """Two Adam(learning_rate, beta_1, beta_2=0.999), built on each side's variables."""
        if not learning_rate > 0:
            raise ValueError(f"learning_rate={learning_rate!r} must be > 0")
        if not 0 <= beta_1 < 1:
            raise ValueError(f"beta_1={beta_1!r} must be in [0, 1)")
        g_opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=0.999,
                                      name="adam_generator")
        d_opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=0.999,
                                      name="adam_discriminator")
        g_opt.build(self.generator_variables())
        d_opt.build(self.discriminator_variables())
        self._plain.g_opt, self._plain.d_opt = g_opt, d_opt
        super().compile(optimizer=g_opt, jit_compile=jit_compile, steps_per_execution=steps_per_execution)

    def call(self, num_samples, training=False):
        return self.synthesize(num_samples, tf.constant([0, 0], tf.int64))[self.image_size]

    # ---------------------------------------------------------------- pieces

    def onehot(self, labels):
        """int [N] -> float32 [N, num_classes] (None for an unconditional model)."""
        if not self.num_classes:
            return None
        return tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=tf.float32)

    def _noise(self, k, n, seed):
        s = self.sizes[k]
        shape = [n, self.noise_dim] if k == 0 else [n, s, s, 1]
        # Drawn for the global batch and split: R replicas train one process's model.
        return global_batch_draw(lambda sh: tf.random.stateless_normal(sh, seed=fold_seed(seed, s)), tf.stack(shape))

    def generate_level(self, k, n, seed, coarse_up=None, onehot=None, training=False):
        """Level k's generator output: an image at s_0 (k = 0) or the residual at s_k."""
        if k == 0:
            return self.generators[0](self._noise(0, n, seed), onehot, training=training)
        return self.generators[k](coarse_up, self._noise(k, n, seed), onehot, training=training)

    def discriminate(self, k, x, coarse_up=None, onehot=None, training=False, with_classes=False):
        """Level k's logits float32 [N] of an image (k = 0) or a residual with its coarse image;
        (logits, class logits [N, K]) with `with_classes` (AC-GAN)."""
        inputs = [_centre(x)] if k == 0 else [x, _centre(coarse_up)]
        return self.discriminators[k](inputs, onehot, training=training, with_classes=with_classes)

    def synthesize(self, n, seed, onehot=None, coarse=None) -> dict:
        """{S: float32 [N, S, S, C] in [0, 1]} at every level from noise (or from `coarse` at s_0)."""
        x = self.generate_level(0, n, seed, onehot=onehot) if coarse is None else tf.cast(coarse, tf.float32)
        out = {self.sizes[0]: x}
        for k in range(1, len(self.sizes)):
            up = pyramid_ops.nearest_upsample(x, self.sizes[k])
            x = tf.clip_by_value(up + self.generate_level(k, n, seed, up, onehot), 0.0, 1.0)
            out[self.sizes[k]] = x
        return out

    def real_levels(self, data):
        """The batch's real Laplacian inputs: (x_{s_0}, {s_k: (residual, coarse_up)}, labels or None)."""
        if isinstance(data, (tuple, list)):
            data = data[0]
        finest = f"grid_{self.image_size}"
        if not isinstance(data, dict) or finest not in data:
            raise ValueError(f"train_step batch must be a dict with {finest!r} float32 [N,S,S,C]")
        full = tf.cast(data[finest], tf.float32)
        pyr = {s: tf.cast(data[f"grid_{s}"], tf.float32) if f"grid_{s}" in data
               else pyramid_ops.box_downsample(full, s) for s in self.sizes}
        coarse, residuals = pyramid_ops.laplacian_pyramid(pyr, self.sizes)
        ups = {big: pyramid_ops.nearest_upsample(pyr[small], big) for small, big in zip(self.sizes, self.sizes[1:])}
        labels = None
        if self.num_classes:
            if "label" not in data:
                raise ValueError("a conditional model's batch needs 'label' int32 [N]")
            labels = tf.cast(data["label"], tf.int32)
            checks = [tf.debugging.assert_greater_equal(
                          labels, 0, message="a conditional model needs labelled records (a label -1 was "
                          "read); set model.conditional=false or use labelled data"),
                      tf.debugging.assert_less(labels, self.num_classes, message=f"a label is >= "
                                               f"model.num_classes={self.num_classes}; raise it")]
            with tf.control_dependencies(checks):
                labels = tf.identity(labels)
        return coarse, {s: (residuals[s], ups[s]) for s in self.sizes[1:]}, labels

    # ---------------------------------------------------------------- training

    def _d_level_loss(self, k, real, fake, coarse_up, onehot, seed):
        """(total, GAN loss, penalty, AC-GAN term, real logits [N], fake logits [N]) of level k."""
        n = tf.shape(real)[0]
        out = self.discriminate(k, tf.concat([real, fake], 0),
                                None if coarse_up is None else tf.concat([coarse_up, coarse_up], 0),
                                None if onehot is None else tf.concat([onehot, onehot], 0), training=True,
                                with_classes=self.acgan)
        logits, class_logits = out if self.acgan else (out, None)
        real_logits, fake_logits = logits[:n], logits[n:]
        loss = gan_losses.discriminator_loss(TFGAN_KIND[self.gan_loss], real_logits, fake_logits)
        gp, class_loss = tf.constant(0.0), tf.constant(0.0)
        if self.gan_loss == "wasserstein_gp":
            gp = gan_losses.gradient_penalty(lambda x: self.discriminate(k, x, coarse_up, onehot), real, fake,
                                             fold_seed(seed, 10_000 + self.sizes[k]))
        if self.acgan:
            class_loss = gan_losses.acgan_discriminator_loss(class_logits[:n], class_logits[n:], onehot)
        return loss + self.gp_weight * gp + class_loss, loss, gp, class_loss, real_logits, fake_logits

    def _g_level_loss(self, k, fake, coarse_up, onehot):
        """(total, AC-GAN term) of level k's generator against the (updated) discriminator."""
        if not self.acgan:
            loss = gan_losses.generator_loss(TFGAN_KIND[self.gan_loss], self.discriminate(k, fake, coarse_up, onehot))
            return loss, tf.constant(0.0)
        logits, class_logits = self.discriminate(k, fake, coarse_up, onehot, with_classes=True)
        class_loss = gan_losses.acgan_generator_loss(class_logits, onehot)
        return gan_losses.generator_loss(TFGAN_KIND[self.gan_loss], logits) + class_loss, class_loss

    def train_step(self, data):
        ctx = tf.distribute.get_replica_context()
        num_replicas = ctx.num_replicas_in_sync if ctx is not None else 1
        # 1. Seeds of this step.
        step_seed = tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(self.train_counter)])
        seed = fold_seed(step_seed, 0)  # the same on every replica: the noise is drawn globally
        coarse, levels, labels = self.real_levels(data)
        onehot = self.onehot(labels) if labels is not None else None
        n = tf.shape(coarse)[0]
        reals = [coarse] + [levels[s][0] for s in self.sizes[1:]]
        ups = [None] + [levels[s][1] for s in self.sizes[1:]]
        for j in range(1, self.coarse_updates):
            self._coarse_update(coarse, onehot, n, fold_seed(step_seed, j), num_replicas)
        g_vars, d_vars = self.generator_variables(), self.discriminator_variables()
        with tf.GradientTape() as g_tape:
            # 2. Every level's generated input (its real coarser image upsampled, as in the paper).
            fakes = [self.generate_level(k, n, seed, ups[k], onehot, training=True) for k in range(len(self.sizes))]
            # 3. Discriminator step (not recorded on the generator tape).
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    d_out = [self._d_level_loss(k, reals[k], tf.stop_gradient(fakes[k]), ups[k], onehot, seed)
                             for k in range(len(self.sizes))]
                    d_total = tf.add_n([o[0] for o in d_out]) / num_replicas
                d_grads = d_tape.gradient(d_total, d_vars)
                self._plain.d_opt.apply_gradients(zip(d_grads, d_vars))
            # 4. Generator step against the updated discriminators.
            g_out = [self._g_level_loss(k, fakes[k], ups[k], onehot) for k in range(len(self.sizes))]
            g_total = tf.add_n([o[0] for o in g_out]) / num_replicas
        g_grads = g_tape.gradient(g_total, g_vars)
        self._plain.g_opt.apply_gradients(zip(g_grads, g_vars))
        self.train_counter.assign_add(1)
        # 5. Metrics.
        values, collapsed = {}, []
        for k, s in enumerate(self.sizes):
            _, d_loss, gp, d_class, real_logits, fake_logits = d_out[k]
            g_loss = g_out[k][0] - g_out[k][1]  # the GAN term alone, as for unconditional models
            values.update({f"d_loss/{s}": d_loss, f"g_loss/{s}": g_loss,
                           f"d_real/{s}": tf.reduce_mean(real_logits), f"d_fake/{s}": tf.reduce_mean(fake_logits)})
            if self.gan_loss == "wasserstein_gp":
                values[f"gp/{s}"] = gp
            if self.acgan:
                values.update({f"d_class/{s}": d_class, f"g_class/{s}": g_out[k][1]})
            if self.gan_loss != "wasserstein_gp":
                collapsed.append(d_loss < PINNED_D_LOSS)
            collapsed.append(tf.abs(g_loss) > EXPLODED_G_LOSS[self.gan_loss])
        values["collapse"] = tf.cast(tf.reduce_any(tf.stack(collapsed)), tf.float32)
        for m in self._names:
            self._plain.trackers[m].update_state(values[m])
        return {m: self._plain.trackers[m].result() for m in self._names}

    def _coarse_update(self, real, onehot, n, seed, num_replicas):
        """One more discriminator then generator Adam step of level 0 alone (steps 2-4 for k = 0)."""
        g_vars, d_vars = self.generators[0].trainable_variables, self.discriminators[0].trainable_variables
        with tf.GradientTape() as g_tape:
            fake = self.generate_level(0, n, seed, onehot=onehot, training=True)
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    d_total = self._d_level_loss(0, real, tf.stop_gradient(fake), None, onehot, seed)[0]
                    d_total = d_total / num_replicas
                d_grads = d_tape.gradient(d_total, d_vars)
                self._plain.d_opt.apply_gradients(zip(d_grads, d_vars))
            g_total = self._g_level_loss(0, fake, None, onehot)[0] / num_replicas
        g_grads = g_tape.gradient(g_total, g_vars)
        self._plain.g_opt.apply_gradients(zip(g_grads, g_vars))

    # ---------------------------------------------------------------- model contract

    def use_averaged_weights(self) -> bool:
        """No weight averages in this family."""
        return False

    def preview_labels(self, n: int):
        """int32 [n]: the trained classes in turn (for previews and default sampling)."""
        classes = self.classes or (0,)
        return tf.constant([classes[i % len(classes)] for i in range(n)], tf.int32)

    def tensorboard_previews(self, batch: dict, max_outputs: int = 8):
        """({"generated/S": float32 [k, H, W, C] in [0, 1]} per level, nearest-upsampled to the image
        size, {"logits_real/S" | "logits_fake/S": discriminator logits [n]}) with a fixed seed (the
        scalars d_real/S, d_fake/S are their means during training)."""
        onehot = self.onehot(self.preview_labels(max_outputs)) if self.num_classes else None
        samples = self.synthesize(max_outputs, tf.constant([self.seed, -1], tf.int64), onehot)
        images = {f"generated/{s}": pyramid_ops.nearest_upsample(x, self.image_size) for s, x in samples.items()}
        coarse, levels, labels = self.real_levels({k: v[:max_outputs] for k, v in batch.items()})
        real_onehot = self.onehot(labels) if labels is not None else None
        histograms = {f"logits_real/{self.sizes[0]}": self.discriminate(0, coarse, None, real_onehot),
                      f"logits_fake/{self.sizes[0]}": self.discriminate(0, samples[self.sizes[0]], None, onehot)}
        for s, (residual, up) in levels.items():
            histograms[f"logits_real/{s}"] = self.discriminate(self.sizes.index(s), residual, up, real_onehot)
        return images, histograms

    def export_signatures(self, max_num_samples: int) -> dict:
        """{name: tf.function}: `sample` (and `sample_from_coarse` with two levels or more)."""
        return lapgan_signatures.signature_functions(self, int(max_num_samples))

    def export_info(self) -> dict:
        """Facts for config.json: the level sizes as `grids`, image_size, channels, `coarse_size`
        (the input size of `sample_from_coarse`), `conditional`, `class_conditioning`, `classes`,
        `num_classes`, `gan_loss`, `coarse_updates`."""
        return {"grids": [int(s) for s in self.sizes], "image_size": int(self.image_size),
                "channels": int(self.channels), "trained_grids": [int(s) for s in self.sizes],
                "levels": [int(s) for s in self.sizes], "coarse_size": int(self.sizes[0]),
                "conditional": bool(self.num_classes), "classes": [int(c) for c in self.classes],
                "class_conditioning": self.class_conditioning,
                "num_classes": int(self.num_classes), "gan_loss": self.gan_loss,
                "coarse_updates": self.coarse_updates, "train_steps": int(self.train_counter.numpy())}


def build_model(sizes, channels: int, width: int = 64, noise_dim: int = 100, gan_loss: str = "non_saturating",
                gp_weight: float = 10.0, spectral: bool = False, num_classes: int = 0, classes=(),
                class_conditioning: str = "concat", coarse_updates: int = 1, seed: int = 0) -> LapGAN:
    """Build every level's networks (seeded by `seed`) and the model; arguments as in `LapGAN`."""
    keras.utils.set_random_seed(seed)
    sizes = tuple(int(s) for s in sizes)
    # Batch norm over the global batch where a strategy splits it (one replica: the plain moments).
    sync = tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1
    gens, discs = [], []
    for k, s in enumerate(sizes):
        if k == 0:
            gen = NoiseGenerator(s, channels, width, noise_dim, num_classes, name=f"generator_{s}",
                                 synchronized=sync)
            disc = Discriminator(s, channels, width, num_classes, spectral, class_conditioning,
                                 name=f"discriminator_{s}")
        else:
            gen = ResidualGenerator(s, channels, width, num_classes, name=f"generator_{s}", synchronized=sync)
            disc = Discriminator(s, 2 * channels, width, num_classes, spectral, class_conditioning,
                                 name=f"discriminator_{s}")
        gen.build_all()
        disc.build_all()
        gens.append(gen)
        discs.append(disc)
    return LapGAN(gens, discs, sizes, channels, noise_dim, gan_loss=gan_loss, gp_weight=gp_weight,
                  num_classes=num_classes, classes=classes, class_conditioning=class_conditioning,
                  coarse_updates=coarse_updates, seed=seed)
