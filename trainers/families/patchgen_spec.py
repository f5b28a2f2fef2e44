"""Registration of the PatchGenCN family (plain Python, no TensorFlow) and its scale schedule.

`model.family = patchgen`: Patchwise Generative ConvNet (Zheng, Xie, Li, CVPR 2021), internal
learning from ONE image. A pyramid of small fully convolutional patch energy nets, one per scale
of the image's scale pyramid (constant factor `pyramid.scale_factor`, e.g. 0.75, coarsest shorter
side about `pyramid.min_side`; written by the pyramid stage from a `file:` source), trained
coarse to fine, one scale after the other. The model lives in `trainers.families.patchgen`,
imported on `build`.

Schedule (pure functions of the step, `trainers.scale_schedule`, so a resumed run continues
exactly): scale k trains P_k steps after the coarser ones, P_k = `train.scale_steps[k]` for the
coarsest scales it names, else `train.steps_per_scale`; the run's budget is their sum (capped by
`train.max_steps`). With `train.init_from_previous` the net of scale k starts, at its first step,
as a copy of the (trained) net of scale k - 1 where both have one architecture. Each scale's
learning rate follows `train.lr_schedule` and its chains' noise `sampler.train_noise_schedule`.

The reference code's settings (zilongzheng/PatchGenCN), each one `--set` away:
`train.lr_schedule=linear` (4e-4 -> `train.lr_end=5e-5` over `train.lr_decay_fraction=0.8`),
`sampler.train_noise_schedule=linear` with `sampler.noise_schedule=constant` (noise constant
along a chain, annealed to 0 over `sampler.train_noise_fraction=0.25` of each scale's training),
`model.wide_from_side=64` (128-64-64-64-1 nets from 64 px on), `train.init_from_previous=false`.

Fields read: `model.width` (channels: 2b, b, b, b with b = round(32 * width)), `model.activation`,
`model.norm` (none | spectral: every conv but the last), `model.patch_layers` (valid 3x3 convs per
net: receptive field 2 * layers + 1 px), `model.coarse_patch_layers`, `model.wide_from_side`
(`scale_channels`), `sampler.steps` (Langevin steps at every scale but the
coarsest), `sampler.coarse_steps` (at the coarsest), `sampler.sr_steps` and
`sampler.sr_upsampling` (super-resolution),
`sampler.step_size`, `sampler.noise_scale`,
`sampler.noise_schedule`, `sampler.step_size_schedule`, `sampler.clip`,
`sampler.train_noise_schedule`, `sampler.train_noise_fraction`, `sampler.train_coarse_noise`,
`train.steps_per_scale`,
`train.scale_steps`, `train.scale_batch`, `train.lr_schedule`, `train.lr_end`,
`train.lr_decay_fraction`, `train.recovery_weight`, `train.init_from_previous`, `train.seed`;
`pyramid.scale_factor` must be > 0; `train.ema_decay` must be 0, `train.mixed_precision` off or auto (taken as off) and
`train.strategy` default.
"""

from __future__ import annotations

import math

from trainers import scale_schedule
from trainers.config_values import ConfigError
from trainers.families import (Family, register, require_metadata, require_noisy_langevin,
                               require_plain_precision)

NAME = "patchgen"
NORMS = ("none", "spectral")
ACTIVATIONS = ("leaky_relu", "elu", "swish", "relu")  # trainers.networks.ACTIVATIONS
SR_UPSAMPLING = ("cascade", "direct")  # trainers.families.patchgen.SR_UPSAMPLING
SIGNATURES = ("sample", "energy", "super_resolve", "edit", "harmonize", "style_transfer")
METADATA_KEYS = ("scales", "channels", "scale_factor")
BASE_CHANNELS = 32  # b at model.width = 1.0 (the reference's small net: 64, 32, 32, 32, 1)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(name: str, value, allowed: tuple) -> None:
    _require(value in allowed, f"{name}={value!r} is not allowed; allowed values: {list(allowed)}")


def scale_at(step: int, num_scales: int, steps_per_scale: int, scale_steps=()) -> int:
    """The scale index (0 = coarsest) that trains at global step `step` (>= 0)."""
    return scale_schedule.scale_at(step, scale_schedule.steps_of_scales(num_scales, steps_per_scale,
                                                                        scale_steps))


def sizes_for(height: int, width: int, num_scales: int, factor: float) -> list[tuple[int, int]]:
    """The (h, w) of every scale, coarsest first, for an output of height x width: scale k is
    round(height * factor ** (L - 1 - k)) x round(width * ...) (at least 1), the rule the pyramid
    stage uses, so the training image's own size gives its recorded scales."""
    out = []
    for k in range(num_scales):
        power = factor ** (num_scales - 1 - k)
        out.append((max(1, round(height * power)), max(1, round(width * power))))
    return out


def channels_of(width: float, layers: int) -> list[int]:
    """Output channels of the `layers` convs of one scale's net: 2b, b, ..., b, 1."""
    b = max(1, int(round(BASE_CHANNELS * width)))
    return [2 * b] + [b] * (layers - 2) + [1]


def scale_channels(width: float, layers: int, scales, coarse_layers: int = 0,
                   wide_from_side: int = 0) -> list[list[int]]:
    """Output channels of every scale's net, coarsest first: `channels_of(width, layers)`, with
    `coarse_layers` convs at the coarsest scale (0 = layers) and twice the width at scales whose
    longer side is >= wide_from_side (0 = none)."""
    out = []
    for k, (h, w) in enumerate(scales):
        wide = bool(wide_from_side) and max(h, w) >= wide_from_side
        out.append(channels_of(width * (2 if wide else 1), (coarse_layers or layers) if k == 0 else layers))
    return out


def validate(config) -> None:
    """Check the fields PatchGenCN reads; ConfigError names the first bad one."""
    m, s, t, p = config.model, config.sampler, config.train, config.pyramid
    _require(p.scale_factor > 0,
             f"model.family={NAME} learns one image's scale pyramid: set pyramid.scale_factor in "
             f"(0, 1), e.g. --set pyramid.scale_factor=0.75 (it is {p.scale_factor})")
    _one_of("model.norm", m.norm, NORMS)
    _one_of("model.activation", m.activation, ACTIVATIONS)
    _require(m.width > 0, f"model.width={m.width} must be > 0")
    _require(m.patch_layers >= 2, f"model.patch_layers={m.patch_layers} must be >= 2")
    _require(m.coarse_patch_layers == 0 or m.coarse_patch_layers >= 2,
             f"model.coarse_patch_layers={m.coarse_patch_layers} must be 0 (= model.patch_layers) or >= 2")
    _require(m.wide_from_side >= 0, f"model.wide_from_side={m.wide_from_side} must be >= 0 (0 = off)")
    _one_of("sampler.train_noise_schedule", s.train_noise_schedule, scale_schedule.TRAIN_NOISE_SCHEDULES)
    _require(0 < s.train_noise_fraction <= 1,
             f"sampler.train_noise_fraction={s.train_noise_fraction} must be in (0, 1]")
    _one_of("train.lr_schedule", t.lr_schedule, scale_schedule.LR_SCHEDULES)
    _require(0 < t.lr_decay_fraction <= 1, f"train.lr_decay_fraction={t.lr_decay_fraction} must be in (0, 1]")
    _require(0 < t.lr_end, f"train.lr_end={t.lr_end} must be > 0")
    _require(t.lr_schedule == "constant" or t.lr_end < t.learning_rate,
             f"train.lr_end={t.lr_end} must be below train.learning_rate={t.learning_rate} with "
             "train.lr_schedule=linear")
    _require(all(v >= 1 for v in t.scale_steps), f"train.scale_steps={t.scale_steps} must be counts >= 1")
    _require(all(v >= 1 for v in t.scale_batch), f"train.scale_batch={t.scale_batch} must be counts >= 1")
    _require(s.coarse_steps >= 1, f"sampler.coarse_steps={s.coarse_steps} must be >= 1")
    _require(s.sr_steps >= 1, f"sampler.sr_steps={s.sr_steps} must be >= 1")
    _one_of("sampler.sr_upsampling", s.sr_upsampling, SR_UPSAMPLING)
    require_noisy_langevin(s)
    _require(t.steps_per_scale >= 1, f"train.steps_per_scale={t.steps_per_scale} must be >= 1")
    _require(t.recovery_weight >= 0,
             f"train.recovery_weight={t.recovery_weight} must be >= 0 (0 = no recovery task)")
    _require(not math.isnan(t.recovery_weight), "train.recovery_weight must be a number")
    _require(t.strategy == "default",
             f"train.strategy={t.strategy} is not supported by model.family={NAME}: one image trains one "
             "scale at a time (batch 1 in the presets), nothing to split over replicas; use default "
             "(it uses the GPU when there is one)")
    require_plain_precision(t, NAME)


def build(config, metadata: dict):
    """The uncompiled `PatchGenCN` from the config and the scale-pyramid metadata.

    Raises:
      ValueError: metadata lacks a key (not a scale pyramid: rebuild it with
        pyramid.scale_factor > 0).
    """
    require_metadata(metadata, METADATA_KEYS)
    from trainers.families import patchgen  # TensorFlow from here on

    m, s, t = config.model, config.sampler, config.train
    scales = [(int(h), int(w)) for h, w in metadata["scales"]]
    for name, values in (("train.scale_steps", t.scale_steps), ("train.scale_batch", t.scale_batch)):
        if len(values) > len(scales):
            raise ValueError(f"{name}={values} names {len(values)} scales; this image's pyramid has "
                             f"{len(scales)} ({scales}): give at most {len(scales)} counts, coarsest first")
    return patchgen.build_model(
        scales, int(metadata["channels"]), float(metadata["scale_factor"]),
        scale_channels=scale_channels(m.width, m.patch_layers, scales, m.coarse_patch_layers, m.wide_from_side),
        activation=m.activation,
        spectral=m.norm == "spectral", steps=s.steps, coarse_steps=s.coarse_steps,
        sr_steps=s.sr_steps, step_size=s.step_size, noise_scale=s.noise_scale,
        noise_schedule=s.noise_schedule,
        step_size_schedule=s.step_size_schedule, clip=s.clip, steps_per_scale=t.steps_per_scale,
        recovery_weight=t.recovery_weight, init_from_previous=t.init_from_previous, seed=t.seed,
        scale_steps=t.scale_steps, scale_batch=t.scale_batch, lr_schedule=t.lr_schedule, lr_end=t.lr_end,
        lr_decay_fraction=t.lr_decay_fraction, train_noise_schedule=s.train_noise_schedule,
        train_noise_fraction=s.train_noise_fraction, sr_upsampling=s.sr_upsampling,
        coarse_noise=s.train_coarse_noise)


register(Family(name=NAME, signatures=SIGNATURES, build=build, validate=validate,
                description="PatchGenCN (Zheng et al. 2021): a pyramid of patch energy nets "
                            "learned from one image, trained coarse to fine"))
