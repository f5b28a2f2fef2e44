"""The sections of `trainers.config.Config`: one frozen dataclass per stage, with its fields'
documentation, defaults and the allowed values that validation checks (`trainers.config`)."""

from __future__ import annotations

import dataclasses

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")
PRECISIONS = ("off", "on", "auto")
FEATURE_SPACES = ("domain", "efficientnet_lite0", "inception_v3", "inception_2015")
MASKS = ("square", "doodle", "pepper")
BEAM_RUNNERS = ("DirectRunner", "DaskRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")




@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Ingest: where images come from and how they are normalised.

    source: `builtin:mnist5k`, `idx:PATH_PREFIX`, `folder:PATH`, `tfds:NAME[:SPLIT]` or
    `file:PATH` (ONE image: an image file, or a folder holding exactly one image; for the
    single-image families such as PatchGenCN; needs pyramid.scale_factor > 0).
    image_size: side of the square images after center crop + area resize, pixels. A `file:`
    source is not cropped and ignores it (see max_side).
    max_side: `file:` sources only (others ignore it): the image's longer side is downscaled to
    this many pixels, aspect ratio kept, no crop (area averaging; an image already no larger is
    never upscaled); 0 = keep the decoded size.
    channels: 1 (grayscale) or 3 (RGB).
    eval_fraction: share of examples held out for evaluation, by a hash of the key.
    max_reject_fraction: the ingest fails when more than this share of inputs is rejected.
    limit: keep at most this many images (0 = all); for smoke runs.
    num_shards: TFRecord shards per split.
    max_pixels: an input image whose header says width * height is above this is rejected ("too
    large") before it is decoded (decompression bombs); 100 megapixels covers camera photos.
    classes: train only on the records with these labels (e.g. `3,5`; empty = every class), for
    every family: applied at the trainer's input; the records keep every class and the labels
    keep their values (one model per category, as the multi-grid paper does for CIFAR-10).
    span: for a source with `{SPAN}` (data that grows: `folder:/data/{SPAN}`, one folder per span
    named by digits): `latest` (the largest span), `N`, or a range `A-B`; `mgebm run` resolves
    `latest` to the span number when it starts, so the run records its span and TFX caching
    reruns the stages only when a new span arrives.
    """

    source: str = "builtin:mnist5k"
    image_size: int = 32
    channels: int = 1
    eval_fraction: float = 0.1
    max_reject_fraction: float = 0.05
    limit: int = 0
    num_shards: int = 2
    max_pixels: int = 100_000_000
    classes: tuple[int, ...] = ()
    span: str = "latest"
    max_side: int = 0


@dataclasses.dataclass(frozen=True)
class PyramidConfig:
    """Beam pyramid stage.

    grids: increasing square sizes, each dividing the next; the first is 1 and the last is
    data.image_size (e.g. (1, 4, 16, 32)).
    runner: Beam runner name. DirectRunner is run in-memory, never through Prism. DaskRunner runs
    on a dask.distributed cluster (`components/pyramid_dask.py`): the one at
    `--dask_client_address=HOST:PORT` in beam_args, else a local cluster of 2 worker processes.
    beam_args: extra Beam pipeline options passed through verbatim.
    num_shards: TFRecord files per split. 0 (default) = one file per Beam bundle, written as the
    records stream past: memory stays flat with the data set size. N >= 1 = exactly N files, which
    needs a shuffle that Beam's in-process runner holds in memory (memory grows with the data).
    scale_factor: 0 (default) = the square integer grids above; in (0, 1) = a scale pyramid of a
    single image (`file:` sources): scale k from the finest is the image resized by
    scale_factor**k (`trainers.pyramid_ops.scale_sizes`), and `grids` is ignored.
    min_side: with scale_factor > 0, the coarsest scale's shorter side is the smallest one still
    >= min_side pixels (>= 3).
    """

    grids: tuple[int, ...] = (1, 4, 16, 32)
    runner: str = "DirectRunner"
    beam_args: tuple[str, ...] = ()
    num_shards: int = 0
    scale_factor: float = 0.0
    min_side: int = 25


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The model family and its network settings.

    family: a registered family (`trainers.families.family_names()`): the multi-grid EBM
    (the default) or one of its baselines, ...; the family validates the fields it reads.
    norm: normalization inside each energy net: `none` (default), `batch`, `batch_stats` (the
    multi-grid authors' BatchNorm: always the statistics of the batch at hand, in the chains too;
    `trainers.networks`) or `spectral`.
    activation: nonlinearity after each conv.
    width: multiplier on every conv's channel count (1.0 = the reference code's widths).
    base_size: CF-EBM (`cfebm`): side of the first, coarsest stage; the stages double from it up
    to data.image_size (8 -> 16 -> 32). LAPGAN (`lapgan`): side of the coarsest level, the same way.
    Other families ignore it.
    gan_loss, conditional, num_classes, noise_dim, gp_weight: the GAN baselines (`lapgan`,
    `dcgan`; see `trainers.families.gan_spec`): TF-GAN's loss (`minimax`, `non_saturating`,
    `wasserstein_gp`), class-conditional generation (one-hot labels to both networks) over
    `num_classes` label values, the length of the coarsest level's noise vector, and the weight of
    the gradient penalty with `wasserstein_gp`. Other families ignore them.
    class_conditioning: conditional GANs, how the discriminators use the label: `concat` (its
    one-hot map with the inputs, the LAPGAN paper's), `projection` (a class embedding's inner
    product with the features, Miyato & Koyama 2018) or `acgan` (no label; they classify, with
    TF-GAN's AC-GAN losses, Odena et al. 2017). The generators always get the one-hot label.
    coarse_updates: LAPGAN (`lapgan`): discriminator and generator updates of the coarsest level
    per train step (>= 1; the extra ones reuse the step's real batch with fresh noise). That level
    is the cheapest and decides each image's class and layout. Other families ignore it.
    patch_layers: PatchGenCN (`patchgen`): valid 3x3 convs in each scale's patch energy net (the
    receptive field is 2 * patch_layers + 1 pixels). Other families ignore it.
    residual: CF-EBM (`cfebm`): the residual block, `scaled` (the reference code's: plain
    He-initialised from-RGB and skip 1x1 convs, (skip + main) / sqrt 2) or `plain` (spectral norm
    on every conv, an activation after from-RGB and after the sum; its pixel gradient shrinks
    about 17x per stage at initialisation). Other families ignore it.
    coarse_patch_layers: PatchGenCN: valid 3x3 convs of the coarsest scale's net (0 = patch_layers;
    e.g. 9: a 19 px receptive field over the scale that decides the layout).
    wide_from_side: PatchGenCN: the nets of scales whose longer side is at least this many pixels
    have twice the channels (0 = none; the reference's 64: 128-64-64-64-1 from 64 px on).
    """

    family: str = "multigrid"
    norm: str = "none"
    activation: str = "leaky_relu"
    width: float = 1.0
    base_size: int = 8
    gan_loss: str = "non_saturating"
    conditional: bool = False
    num_classes: int = 10
    noise_dim: int = 100
    gp_weight: float = 10.0
    class_conditioning: str = "concat"
    coarse_updates: int = 1
    patch_layers: int = 5
    residual: str = "scaled"
    coarse_patch_layers: int = 0
    wide_from_side: int = 0


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Langevin dynamics: x <- x + (delta^2/2) (grad f(x) - x / sigma^2) + delta * noise.

    steps: Langevin steps per grid (T).
    step_size: delta, in [0, 1] pixel units.
    reference_sigma: sigma of the reference Gaussian; used only when use_reference is true.
    use_reference: include the -x / sigma^2 term (the paper's formulation).
    noise: include the eta * delta * N(0, I) term (the paper's formulation; off in the reference
    code). noise_scale: eta; 1.0 is the textbook update, smaller values temper the noise.
    noise_schedule: `constant` (eta at every step) or `linear` (eta decaying to 0 at the last step
    of every chain, so samples end on noise-free steps); see `trainers.langevin.noise_factors`.
    step_size_schedule: `constant` (delta at every step) or `linear` (delta * (T - i) / T at step i);
    see `trainers.langevin.step_factors`.
    clip: clip samples to [0, 1] after each step.
    precondition: the multi-grid family: `none` or `binomial`, Langevin with its drift and noise
    smoothed by a 3x3 binomial blur (the same target for small steps; removes the checkerboard that
    stride-2 convs put in the energy's pixel gradient; `trainers.langevin`). Not in the paper.
    grid_steps, grid_step_sizes, grid_preconditions: the multi-grid family: `S:value` entries for
    the grids whose T, delta or precondition differ from `steps` / `step_size` / `precondition`,
    e.g. `16:15`, `32:binomial`, `finest:binomial` (S = the largest grid) (the paper uses one T
    and delta for every grid). CF-EBM reads grid_steps and grid_step_sizes for its stage sizes
    (e.g. `finest:50`: the last stage's chains). Others ignore them.
    upsample_noise: CF-EBM (`cfebm`): std of the Gaussian noise added to a stage's samples after
    their nearest upsampling, before the next stage's chain (smooth MCMC). Others ignore it.
    coarse_steps: PatchGenCN (`patchgen`): Langevin steps at the coarsest scale (`steps` at the
    others; the reference uses 60 and 30). Others ignore it.
    sr_steps: PatchGenCN: noise-free Langevin steps of the finest net after each upsampling in
    super-resolution (chelsea-patchgen, cascade: 3 steps give x2 PSNR 29.2 dB, 30 steps 18.0 dB,
    the chains sharpening past the truth; the presets use 2 after a `direct` upsampling). Others
    ignore it.
    train_coarse_noise: PatchGenCN: a training step's chains through the trained coarser scales
    run as sampling runs them, with their noise (so each scale trains on the inputs sampling will
    give it); false: noise-free (the reference's). Others ignore it.
    sr_upsampling: PatchGenCN: `cascade` (SinGAN's: upsampled by 1 / scale_factor at a time, a
    chain after each) or `direct` (one bicubic upsampling to the output size, then one chain).
    train_noise_schedule, train_noise_fraction: PatchGenCN: the chains' noise over each scale's
    training: `constant` (eta in every chain, and in sampling after training) or `linear` (the
    reference's: eta x max(0, 1 - t / (fraction x the scale's steps)) at the scale's step t, so the
    chains are noise-free from that fraction on, and so is sampling after training); see
    `trainers.scale_schedule.noise_factor`. The reference: linear over 0.25. Others ignore them.
    """

    steps: int = 30
    step_size: float = 0.3
    reference_sigma: float = 1.0
    use_reference: bool = False
    noise: bool = False
    noise_scale: float = 1.0
    noise_schedule: str = "constant"
    step_size_schedule: str = "constant"
    clip: bool = True
    precondition: str = "none"
    grid_steps: tuple[str, ...] = ()
    grid_step_sizes: tuple[str, ...] = ()
    grid_preconditions: tuple[str, ...] = ()
    upsample_noise: float = 0.05
    coarse_steps: int = 60
    sr_steps: int = 3
    sr_upsampling: str = "cascade"
    train_coarse_noise: bool = False
    train_noise_schedule: str = "constant"
    train_noise_fraction: float = 0.25


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training loop, budgets, checkpoints and scale.

    batch_size: global batch size. learning_rate, beta_1: Adam, one optimizer per grid.
    epochs / max_steps / max_minutes: the run stops at whichever ends first (0 = no limit for
    max_steps and max_minutes).
    checkpoint_every: steps between checkpoints (a final one is always written).
    max_retries: divergence-guard restarts from the last good checkpoint, each with the learning
    rate multiplied by retry_lr_factor.
    max_sample_abs: a synthesized pixel beyond this magnitude counts as exploding.
    pcd_buffer_size: persistent chains kept by a family that trains with them (>= batch_size).
    ema_decay: keep an exponential moving average of the energy nets' weights with this decay
    (0 = off; e.g. 0.99) and export the averaged weights (the chains of training use the live
    ones). The decay warms up as min(ema_decay, (1 + k) / (10 + k)) at step k.
    mixed_precision: `off` (float32), `on` (bfloat16 on CPU and TPU, float16 with loss scaling on
    GPU; variables and Langevin chains stay float32) or `auto`: bfloat16 only where it was measured
    to pay, a CPU with the AVX512_BF16 or AMX-BF16 instructions (1.5x the steps of float32 at the
    same quality) or a TPU; float32 elsewhere (GPU included: not measured). The train log names the
    policy chosen. Families without mixed precision take `auto` as `off`.
    jit_compile: XLA-compile the train step and its Langevin loops. For GPU/TPU: on a CPU it is
    10-20x slower than plain tf.function (docs/BENCHMARKS.md), and training warns.
    fade_images, stable_images: CF-EBM (`cfebm`): training images (summed over steps) over which
    a new stage's fade weight beta ramps from 0 to 1, and images of the stabilisation phase that
    follows each fade (and the first stage); the last stage trains until the budget ends.
    Other families ignore them.
    runaway_factor: CF-EBM (`cfebm`): the runaway watch (`trainers.families.cfebm_watch`) flags a
    step whose energy magnitude or Langevin gradient norm is more than this factor above its
    running average (or whose samples go flat); the divergence guard then restores the last
    checkpoint and lowers the learning rate. 0 = no watch. Other families ignore it.
    data_noise: CF-EBM (`cfebm`): std of the Gaussian noise added to the observed images of every
    training step, in [0, 1] pixel units (the reference code's 0.03; 0 = none). Others ignore it.
    warm_start: start a fresh run from an exported model's weights (`trainers.warm_start`):
    `latest_blessed` (the model being served; the pipeline resolves it) or an export folder;
    empty = random initial weights.
    steps_per_scale, recovery_weight, init_from_previous: PatchGenCN (`patchgen`): train steps of
    each scale (the run's budget is scales * steps_per_scale, capped by max_steps), the weight of
    the self-supervised recovery task (0 = off), and whether a scale's net starts as a copy of
    the previous scale's. Other families ignore them.
    scale_steps, scale_batch: PatchGenCN: train steps and chains per step of the coarsest scales,
    coarsest first (the other scales: steps_per_scale and batch_size; the budget is their sum),
    e.g. scale_steps=1000,500 and scale_batch=4,2: the cheap scales that decide the layout get more.
    lr_schedule, lr_end, lr_decay_fraction: PatchGenCN: each scale's learning rate, `constant` or
    `linear` (the reference's: from learning_rate down to lr_end over lr_decay_fraction of the
    scale's steps, then held; 4e-4 -> 5e-5 over 0.8); see `trainers.scale_schedule.lr_factor`.
    cluster_timeout_s: `multi_worker_mirrored`: seconds to wait for every task of TF_CONFIG to
    join (strategy start-up and the first collective); past it the process is ended with one
    line naming TF_CONFIG and the tasks it waited for (TensorFlow alone would wait forever).
    0 = wait forever.
    """

    batch_size: int = 64
    learning_rate: float = 1e-4
    beta_1: float = 0.5
    epochs: int = 10
    max_steps: int = 0
    max_minutes: float = 0.0
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10
    image_log_every: int = 100
    max_retries: int = 2
    retry_lr_factor: float = 0.5
    max_sample_abs: float = 1e3
    strategy: str = "default"
    tpu_address: str = ""
    mixed_precision: str = "off"
    jit_compile: bool = False
    pcd_buffer_size: int = 1000
    shuffle_buffer: int = 2048
    ema_decay: float = 0.0
    fade_images: int = 50_000
    stable_images: int = 50_000
    runaway_factor: float = 10.0
    data_noise: float = 0.0
    warm_start: str = ""
    steps_per_scale: int = 500
    recovery_weight: float = 0.1
    init_from_previous: bool = True
    scale_steps: tuple[int, ...] = ()
    scale_batch: tuple[int, ...] = ()
    lr_schedule: str = "constant"
    lr_end: float = 5e-5
    lr_decay_fraction: float = 0.8
    cluster_timeout_s: float = 300.0


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation: metrics, downstream classification, inpainting and blessing.

    features: feature spaces for FID/KID/IS (`domain`, `efficientnet_lite0`, `inception_v3`,
    `inception_2015`). num_samples: generated images for the metrics.
    svm_label_counts: labelled examples for the L2-SVM experiment.
    thresholds: blessing rules `metric<=value` or `metric>=value`, e.g. `fid/domain<=200`, or
    against the served model (the latest version under the serving root, re-evaluated on the
    candidate's images and seeds): `fid/domain<=baseline*1.05`, `precision/domain>=baseline-0.02`
    (feature-space metrics only; with no served model yet these rules pass and the absolute ones
    decide); the model is pushed only when all hold.
    num_ood: held-out images (and images per synthetic set: uniform noise, constant images,
    interpolations) for out-of-distribution detection by energy (0 = skip).
    ood_sources: other image sources told apart from the data by energy (e.g. `builtin:mnist5k`
    against a Fashion-MNIST model), each reported as `ood/auroc/<source>`.
    num_denoise: held-out images per noise level for denoising (0 = skip); denoise_levels:
    Gaussian noise standard deviations, each in (0, 1] with pixels in [0, 1].
    translate_source: an image source translated into the model's domain (e.g.
    `builtin:mnist5k` for a Fashion-MNIST model; empty = no translation experiment);
    num_translate: how many of its images.
    num_memorization: samples (and held-out images) whose nearest training images are found
    (0 = skip); memorization_spaces: feature spaces for it besides raw pixels (those of them
    that the evaluation computes; every training image is extracted once, so cheap ones suit it).
    """

    features: tuple[str, ...] = ("domain", "efficientnet_lite0")
    num_samples: int = 1000
    num_real: int = 1000
    kid_subsets: int = 10
    svm_label_counts: tuple[int, ...] = (1000, 2000, 4000)
    inpaint_masks: tuple[str, ...] = MASKS
    num_inpaint: int = 100
    num_diversity: int = 16
    num_ood: int = 500
    ood_sources: tuple[str, ...] = ()
    num_denoise: int = 100
    denoise_levels: tuple[float, ...] = (0.1, 0.2)
    translate_source: str = ""
    num_translate: int = 500
    num_memorization: int = 500
    memorization_spaces: tuple[str, ...] = ("domain",)
    classifier_epochs: int = 5
    thresholds: tuple[str, ...] = ()
    inception_weights: str = ""
    inception_2015_graph: str = ""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """SavedModel export and push.

    model_name: the TF Serving model name (`serving/<model_name>/<version>/`); empty (the
      default) = the preset's name, e.g. `mnist5k-multigrid` (also for `mnist5k-multigrid:smoke`),
      so each preset is served under its own name.
    max_num_samples: cap on `num_samples` in the `sample` signature.
    """

    model_name: str = ""
    max_num_samples: int = 1024


SECTIONS = {
    "data": DataConfig,
    "pyramid": PyramidConfig,
    "model": ModelConfig,
    "sampler": SamplerConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "export": ExportConfig,
}
