"""The one validated configuration object of multigrid-ebm.

A `Config` has one frozen dataclass per stage (`data`, `pyramid`, `model`, `sampler`, `train`,
`eval`, `export`). It is built from a preset (see `pipeline/presets.py`) plus `--set
section.key=value` overrides, validated once at start-up, and travels between stages as JSON
(`to_json` / `from_json`), e.g. as a TFX component parameter.

Every problem raises `ConfigError` (a `ValueError`) whose message names the field and the
allowed values. Layers and the sampler never see this object: callers unpack it into explicit
constructor arguments.

Pixel convention: images are float32 in [0, 1] inside the model. Energy sign convention: the
network computes f(x), and p(x) is proportional to exp(f(x)), so higher f means more probable.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from trainers.config_values import ConfigError
from trainers.config_values import coerce as _coerce
from trainers.config_values import parse as _parse
from trainers.families import get_family
from trainers.thresholds import parse_threshold

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")
FEATURE_SPACES = ("domain", "efficientnet_lite0", "inception_v3", "inception_2015")
MASKS = ("square", "doodle", "pepper")
BEAM_RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner")




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
    runner: Beam runner name. DirectRunner is run in-memory, never through Prism.
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
    norm: normalization inside each energy net: `none` (default), `batch` or `spectral`.
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
    upsample_noise: CF-EBM (`cfebm`): std of the Gaussian noise added to a stage's samples after
    their nearest upsampling, before the next stage's chain (smooth MCMC). Others ignore it.
    coarse_steps: PatchGenCN (`patchgen`): Langevin steps at the coarsest scale (`steps` at the
    others; the reference uses 60 and 30). Others ignore it.
    sr_steps: PatchGenCN: noise-free Langevin steps of the finest net after each upsampling in
    super-resolution (measured on chelsea-patchgen: 3 steps give x2 PSNR 29.2 dB, 30 steps 18.0 dB,
    the chains sharpening past the truth). Others ignore it.
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
    upsample_noise: float = 0.05
    coarse_steps: int = 60
    sr_steps: int = 3


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
    jit_compile: XLA-compile the train step and its Langevin loops. For GPU/TPU: on a CPU it is
    10-20x slower than plain tf.function (docs/BENCHMARKS.md), and training warns.
    fade_images, stable_images: CF-EBM (`cfebm`): training images (summed over steps) over which
    a new stage's fade weight beta ramps from 0 to 1, and images of the stabilisation phase that
    follows each fade (and the first stage); the last stage trains until the budget ends.
    Other families ignore them.
    warm_start: start a fresh run from an exported model's weights (`trainers.warm_start`):
    `latest_blessed` (the model being served; the pipeline resolves it) or an export folder;
    empty = random initial weights.
    steps_per_scale, recovery_weight, init_from_previous: PatchGenCN (`patchgen`): train steps of
    each scale (the run's budget is scales * steps_per_scale, capped by max_steps), the weight of
    the self-supervised recovery task (0 = off), and whether a scale's net starts as a copy of
    the previous scale's. Other families ignore them.
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
    mixed_precision: bool = False
    jit_compile: bool = False
    pcd_buffer_size: int = 1000
    shuffle_buffer: int = 2048
    ema_decay: float = 0.0
    fade_images: int = 50_000
    stable_images: int = 50_000
    warm_start: str = ""
    steps_per_scale: int = 500
    recovery_weight: float = 0.1
    init_from_previous: bool = True
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

    model_name: the TF Serving model name (`serving/<model_name>/<version>/`).
    max_num_samples: cap on `num_samples` in the `sample` signature.
    """

    model_name: str = "multigrid_ebm"
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


@dataclasses.dataclass(frozen=True)
class Config:
    """All stages' settings; build with `Config.build` or `with_overrides`, never by hand."""

    name: str = "custom"
    data: DataConfig = DataConfig()
    pyramid: PyramidConfig = PyramidConfig()
    model: ModelConfig = ModelConfig()
    sampler: SamplerConfig = SamplerConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()

    def __post_init__(self):
        validate(self)

    @classmethod
    def build(cls, name: str = "custom", **sections: dict[str, Any]) -> "Config":
        """Config from plain dicts per section, e.g. `Config.build(train={"batch_size": 8})`."""
        kwargs = {}
        for section, values in sections.items():
            if section not in SECTIONS:
                raise ConfigError(f"unknown config section {section!r}; allowed: {sorted(SECTIONS)}")
            kwargs[section] = _make_section(section, values)
        return cls(name=name, **kwargs)

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> "Config":
        """A copy with `section.key=value` strings applied (values parsed by field type)."""
        cfg = self
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value")
            path, raw = item.split("=", 1)
            section, _, key = path.strip().partition(".")
            if section not in SECTIONS or not key:
                raise ConfigError(
                    f"override {item!r}: unknown section {section!r}; allowed: {sorted(SECTIONS)}")
            cls = SECTIONS[section]
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if key not in fields:
                raise ConfigError(f"unknown config key {section}.{key}; allowed: {sorted(fields)}")
            hint = typing.get_type_hints(cls)[key]
            value = _parse(f"{section}.{key}", raw.strip(), hint)
            new_section = dataclasses.replace(getattr(cfg, section), **{key: value})
            cfg = dataclasses.replace(cfg, **{section: new_section})
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        data = dict(data)
        name = data.pop("name", "custom")
        return cls.build(name, **data)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))


def _make_section(section: str, values: dict[str, Any]):
    cls = SECTIONS[section]
    if isinstance(values, cls):
        return values
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in dict(values).items():
        if key not in fields:
            raise ConfigError(f"unknown config key {section}.{key}; allowed: {sorted(fields)}")
        kwargs[key] = _coerce(f"{section}.{key}", value, hints[key])
    return cls(**kwargs)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(name: str, value: Any, allowed: tuple) -> None:
    _require(value in allowed, f"{name}={value!r} is not allowed; allowed values: {list(allowed)}")


def validate_grids(grids: tuple[int, ...] | list[int], image_size: int, name: str = "pyramid.grids") -> None:
    """Raise ConfigError unless grids start at 1, increase, each divides the next, end at image_size."""
    grids = tuple(grids)
    _require(len(grids) >= 2, f"{name}={list(grids)} needs at least two sizes, e.g. 1,4,16,{image_size}")
    _require(all(isinstance(g, int) and g >= 1 for g in grids), f"{name}={list(grids)} must be positive integers")
    _require(grids[0] == 1, f"{name}={list(grids)} must start at 1 (chains start from the 1x1 image)")
    for small, big in zip(grids, grids[1:]):
        _require(big > small and big % small == 0,
                 f"{name}={list(grids)}: {big} must be larger than and divisible by {small}")
    _require(grids[-1] == image_size,
             f"{name}={list(grids)} must end at the image size {image_size} (data.image_size)")


def validate(cfg: Config) -> None:
    """Check every field's range; raise ConfigError naming the first bad field."""
    d, p, m, t, e, x = cfg.data, cfg.pyramid, cfg.model, cfg.train, cfg.eval, cfg.export
    kind = d.source.split(":", 1)[0] if ":" in d.source else ""
    _require(kind in ("builtin", "idx", "folder", "tfds", "file"),
             f"data.source={d.source!r} must be builtin:mnist5k, idx:PREFIX, folder:PATH, "
             "tfds:NAME[:SPLIT] or file:PATH")
    low, _, high = d.span.partition("-")
    _require(d.span == "latest" or (low.isdigit() and (high.isdigit() or d.span == low)
                                    and int(low) <= int(high or low)),
             f"data.span={d.span!r} must be latest, a span number N or a range A-B with A <= B")
    _require(d.span == "latest" or "{SPAN}" in d.source,
             f"data.span={d.span} needs a source with {{SPAN}} in its path, e.g. folder:/data/{{SPAN}}; "
             f"data.source is {d.source!r}")
    _require(d.image_size >= 1, f"data.image_size={d.image_size} must be >= 1")
    _one_of("data.channels", d.channels, (1, 3))
    _require(0.0 <= d.eval_fraction < 1.0, f"data.eval_fraction={d.eval_fraction} must be in [0, 1)")
    _require(0.0 <= d.max_reject_fraction <= 1.0,
             f"data.max_reject_fraction={d.max_reject_fraction} must be in [0, 1]")
    _require(d.limit >= 0, f"data.limit={d.limit} must be >= 0 (0 = all)")
    _require(d.num_shards >= 1, f"data.num_shards={d.num_shards} must be >= 1")
    _require(d.max_pixels >= 1, f"data.max_pixels={d.max_pixels} must be >= 1 (pixels per input image)")
    _require(all(c >= 0 for c in d.classes) and len(set(d.classes)) == len(d.classes),
             f"data.classes={list(d.classes)} must be distinct labels >= 0 (empty = every class)")
    _require(d.max_side >= 0, f"data.max_side={d.max_side} must be >= 0 (0 = keep the decoded size)")
    _require(0.0 <= p.scale_factor < 1.0,
             f"pyramid.scale_factor={p.scale_factor} must be in (0, 1) for a scale pyramid, or 0 for "
             "the integer grids")
    _require(p.min_side >= 3, f"pyramid.min_side={p.min_side} must be >= 3 (pixels)")
    _require(kind != "file" or p.scale_factor > 0,
             f"data.source={d.source!r} is one image, which needs a scale pyramid, but "
             f"pyramid.scale_factor={p.scale_factor}; set e.g. --set pyramid.scale_factor=0.75")
    _require(d.max_side == 0 or d.max_side >= p.min_side or p.scale_factor == 0,
             f"data.max_side={d.max_side} is below pyramid.min_side={p.min_side}: no scale would fit; "
             f"raise data.max_side or lower pyramid.min_side")
    if p.scale_factor == 0:
        validate_grids(p.grids, d.image_size)
    _one_of("pyramid.runner", p.runner, BEAM_RUNNERS)
    _require(p.num_shards >= 0, f"pyramid.num_shards={p.num_shards} must be >= 0 (0 = one file per bundle)")
    _require(t.batch_size >= 1, f"train.batch_size={t.batch_size} must be >= 1")
    _require(t.learning_rate > 0, f"train.learning_rate={t.learning_rate} must be > 0")
    _require(0 <= t.beta_1 < 1, f"train.beta_1={t.beta_1} must be in [0, 1)")
    _require(t.epochs >= 1, f"train.epochs={t.epochs} must be >= 1")
    _require(t.max_steps >= 0, f"train.max_steps={t.max_steps} must be >= 0 (0 = no limit)")
    _require(t.max_minutes >= 0, f"train.max_minutes={t.max_minutes} must be >= 0 (0 = no limit)")
    _require(t.checkpoint_every >= 1, f"train.checkpoint_every={t.checkpoint_every} must be >= 1")
    _require(t.log_every >= 1, f"train.log_every={t.log_every} must be >= 1")
    _require(t.image_log_every >= 1, f"train.image_log_every={t.image_log_every} must be >= 1")
    _require(t.max_retries >= 0, f"train.max_retries={t.max_retries} must be >= 0")
    _require(0 < t.retry_lr_factor < 1, f"train.retry_lr_factor={t.retry_lr_factor} must be in (0, 1)")
    _require(t.max_sample_abs > 1, f"train.max_sample_abs={t.max_sample_abs} must be > 1")
    _one_of("train.strategy", t.strategy, STRATEGIES)
    _require(t.shuffle_buffer >= 1, f"train.shuffle_buffer={t.shuffle_buffer} must be >= 1")
    _require(0.0 <= t.ema_decay < 1.0, f"train.ema_decay={t.ema_decay} must be in [0, 1) (0 = off)")
    _require(t.cluster_timeout_s >= 0,
             f"train.cluster_timeout_s={t.cluster_timeout_s} must be >= 0 (0 = wait forever)")
    for name in e.features:
        _one_of("eval.features", name, FEATURE_SPACES)
    _require(e.num_samples >= 2, f"eval.num_samples={e.num_samples} must be >= 2")
    _require(e.num_real >= 2, f"eval.num_real={e.num_real} must be >= 2")
    _require(e.kid_subsets >= 4, f"eval.kid_subsets={e.kid_subsets} must be >= 4")
    _require(all(n >= 10 for n in e.svm_label_counts),
             f"eval.svm_label_counts={list(e.svm_label_counts)} must each be >= 10")
    for name in e.inpaint_masks:
        _one_of("eval.inpaint_masks", name, MASKS)
    _require(e.num_inpaint >= 1, f"eval.num_inpaint={e.num_inpaint} must be >= 1")
    _require(e.num_diversity >= 2, f"eval.num_diversity={e.num_diversity} must be >= 2")
    _require(e.num_ood >= 0, f"eval.num_ood={e.num_ood} must be >= 0 (0 = no out-of-distribution test)")
    _require(e.num_denoise >= 0, f"eval.num_denoise={e.num_denoise} must be >= 0 (0 = no denoising test)")
    _require(all(0.0 < float(v) <= 1.0 for v in e.denoise_levels),
             f"eval.denoise_levels={list(e.denoise_levels)} must each be in (0, 1] (pixels in [0, 1])")
    _require(e.num_translate >= 2 * e.kid_subsets,
             f"eval.num_translate={e.num_translate} must be >= 2 * eval.kid_subsets ({2 * e.kid_subsets})")
    _require(e.num_memorization >= 0, f"eval.num_memorization={e.num_memorization} must be >= 0 (0 = skip)")
    _require(e.classifier_epochs >= 1, f"eval.classifier_epochs={e.classifier_epochs} must be >= 1")
    for rule in e.thresholds:
        parse_threshold(rule)
    _require(bool(x.model_name) and x.model_name.replace("_", "").replace("-", "").isalnum(),
             f"export.model_name={x.model_name!r} must be letters, digits, '_' or '-'")
    _require(x.max_num_samples >= 1, f"export.max_num_samples={x.max_num_samples} must be >= 1")
    family = get_family(m.family)  # ConfigError naming model.family and the registered names
    if family.validate is not None:
        family.validate(cfg)  # the model. / sampler. / train. fields the family reads
