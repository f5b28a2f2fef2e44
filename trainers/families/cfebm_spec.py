"""Registration of the CF-EBM family (plain Python, no TensorFlow) and its stage schedule.

`model.family = cfebm`: the coarse-to-fine expanding EBM (Zhao, Xie, Li, ICLR 2021). One energy
network grows at its input side: stages at `model.base_size`, twice that, ... up to
`data.image_size` (8 -> 16 -> 32 px); going to a new stage fades a new block in through the
expand block Expand(x) = beta * Primal(x) + (1 - beta) * Fade(x). Chains start from uniform
noise at the coarsest stage and go through every stage up to the current one (smooth MCMC).
The model lives in `trainers.families.cfebm`, imported on `build`.

The schedule (`stage_at`) is a pure function of the number of training images seen, so a
resumed run continues exactly where it stopped, in the middle of a fade too:

    stage 0:            images [0, S)                          beta = 1 (nothing to fade)
    stage k >= 1:       images [S + (k-1)(F+S), S + k(F+S))    beta = min(1, (images - start_k) / F)
    the last stage:     from its start to the end of training

with F = `train.fade_images` (F = 0: beta = 1 at once) and S = `train.stable_images`.

Fields read: `model.base_size`, `model.norm` (none | spectral), `model.activation`,
`model.residual` (scaled | plain),
`model.width`, `sampler.steps` (Langevin steps per stage), `sampler.step_size`,
`sampler.grid_steps` / `sampler.grid_step_sizes` (`S:value` for the stages S that differ),
`sampler.noise_scale`, `sampler.noise_schedule`, `sampler.upsample_noise`, `sampler.clip`,
`train.fade_images`, `train.stable_images`, `train.runaway_factor`, `train.data_noise`,
`train.seed`;
`train.ema_decay` must be 0.
"""

from __future__ import annotations

from trainers.config_values import ConfigError
from trainers.families import (Family, grid_values, register, require_metadata,
                               require_noisy_langevin, require_plain_precision)

NAME = "cfebm"
NORMS = ("none", "spectral")
ACTIVATIONS = ("leaky_relu", "elu", "swish", "relu")  # trainers.networks.ACTIVATIONS
RESIDUALS = ("scaled", "plain")  # trainers.families.cfebm_net.RESIDUALS
SIGNATURES = ("sample", "energy", "inpaint", "denoise", "translate")
METADATA_KEYS = ("grids", "image_size", "channels")
BASE_CHANNELS = 128  # channels of every block at model.width = 1.0


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(name: str, value, allowed: tuple) -> None:
    _require(value in allowed, f"{name}={value!r} is not allowed; allowed values: {list(allowed)}")


def stage_sizes(base_size: int, image_size: int) -> tuple[int, ...]:
    """The stage sizes base_size, 2 * base_size, ..., image_size.

    Raises:
      ConfigError: image_size is not base_size times a power of two >= 2 (at least two stages).
    """
    _require(isinstance(base_size, int) and base_size >= 2,
             f"model.base_size={base_size!r} must be an integer >= 2")
    sizes = [base_size]
    while sizes[-1] < image_size:
        sizes.append(sizes[-1] * 2)
    _require(sizes[-1] == image_size and len(sizes) >= 2,
             f"data.image_size={image_size} must be model.base_size={base_size} times 2, 4, 8, ... "
             f"(the stages double from the base size), e.g. {base_size * 2} or {base_size * 4}")
    return tuple(sizes)


def stage_at(images_seen: int, num_stages: int, fade_images: int, stable_images: int):
    """The stage index and fade weight after `images_seen` training images (see the docstring).

    Args:
      images_seen: training images seen before the step (>= 0).
      num_stages: K + 1 stages (>= 1). fade_images: F >= 0. stable_images: S >= 1.

    Returns:
      (stage int in [0, K], beta float in [0, 1]); beta is 1 at stage 0.
    """
    if images_seen < stable_images or num_stages == 1:
        return 0, 1.0
    period = fade_images + stable_images
    stage = min(num_stages - 1, 1 + (images_seen - stable_images) // period)
    start = stable_images + (stage - 1) * period
    if fade_images == 0:
        return stage, 1.0
    return stage, min(1.0, (images_seen - start) / fade_images)


def final_stage_images(num_stages: int, fade_images: int, stable_images: int) -> int:
    """Images after which the last stage's fade is complete (beta = 1 at the last stage)."""
    return (num_stages - 1) * (fade_images + stable_images)


def validate(config) -> None:
    """Check the fields CF-EBM reads; ConfigError names the first bad one."""
    m, s, t = config.model, config.sampler, config.train
    sizes = stage_sizes(m.base_size, config.data.image_size)
    _one_of("model.norm", m.norm, NORMS)
    _one_of("model.activation", m.activation, ACTIVATIONS)
    _one_of("model.residual", m.residual, RESIDUALS)
    _require(m.width > 0, f"model.width={m.width} must be > 0")
    require_noisy_langevin(s)
    grid_values("sampler.grid_steps", s.grid_steps, sizes, int, kind="the stage sizes")
    grid_values("sampler.grid_step_sizes", s.grid_step_sizes, sizes, float, kind="the stage sizes")
    _require(s.upsample_noise >= 0, f"sampler.upsample_noise={s.upsample_noise} must be >= 0")
    _require(t.fade_images >= 0, f"train.fade_images={t.fade_images} must be >= 0 (0 = no fade)")
    _require(t.stable_images >= 1, f"train.stable_images={t.stable_images} must be >= 1")
    _require(t.runaway_factor == 0 or t.runaway_factor > 1,
             f"train.runaway_factor={t.runaway_factor} must be > 1 (or 0: no runaway watch)")
    _require(t.data_noise >= 0, f"train.data_noise={t.data_noise} must be >= 0 (0 = none)")
    require_plain_precision(t, NAME)


def build(config, metadata: dict):
    """The uncompiled `CFEBM` from the config and the pyramid metadata.

    Raises:
      ValueError: metadata lacks a key.
    """
    require_metadata(metadata, METADATA_KEYS)
    from trainers.families import cfebm  # TensorFlow from here on

    m, s, t = config.model, config.sampler, config.train
    sizes = stage_sizes(m.base_size, int(metadata["image_size"]))
    return cfebm.build_model(
        sizes, int(metadata["channels"]),
        width=max(1, int(round(BASE_CHANNELS * m.width))), activation=m.activation,
        spectral=m.norm == "spectral", residual=m.residual, steps=s.steps, step_size=s.step_size,
        noise_scale=s.noise_scale, noise_schedule=s.noise_schedule,
        step_size_schedule=s.step_size_schedule, clip=s.clip,
        upsample_noise=s.upsample_noise, fade_images=t.fade_images,
        stable_images=t.stable_images, seed=t.seed, runaway_factor=t.runaway_factor,
        data_noise=t.data_noise,
        stage_steps=grid_values("sampler.grid_steps", s.grid_steps, sizes, int, kind="the stage sizes"),
        stage_step_sizes=grid_values("sampler.grid_step_sizes", s.grid_step_sizes, sizes, float,
                                     kind="the stage sizes"))


register(Family(name=NAME, signatures=SIGNATURES, build=build, validate=validate,
                description="CF-EBM (Zhao et al. 2021): a coarse-to-fine expanding energy "
                            "network with fade-in blocks and smooth MCMC"))
