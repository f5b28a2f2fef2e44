"""Registration of the multi-grid family and its baselines (plain Python, no TensorFlow).

`model.family` values (the model lives in `trainers.families.multigrid`, imported on `build`):

- `multigrid`: the paper (Gao et al., CVPR 2018); one energy net per grid > 1, chains start from
  the observed 1x1 images and run T Langevin steps at every grid, all grids trained together.
- `single_grid`: only the finest net; chains from the upsampled observed 1x1 images, T steps.
- `cd1`: only the finest net; chains start from the observed images, exactly 1 step.
- `pcd`: only the finest net; persistent chains (`train.pcd_buffer_size` of them), T steps.

Fields read: `model.norm`, `model.activation`, `model.width`, every `sampler.` field (with
`sampler.grid_steps` / `grid_step_sizes` / `grid_preconditions` per grid),
`train.pcd_buffer_size` (pcd), `train.ema_decay`, `train.jit_compile`, `train.seed`.
"""

from __future__ import annotations

from trainers.config_values import ConfigError
from trainers.families import Family, grid_values, register, require_metadata
from trainers.families.multigrid_variants import VARIANTS

NORMS = ("none", "batch", "batch_stats", "spectral")  # trainers.networks.NORMS (no TF import here)
ACTIVATIONS = ("leaky_relu", "elu", "swish", "relu")  # trainers.networks.ACTIVATIONS
NOISE_SCHEDULES = ("constant", "linear")  # trainers.langevin.NOISE_SCHEDULES
STEP_SIZE_SCHEDULES = ("constant", "linear")  # trainers.langevin.STEP_SIZE_SCHEDULES
PRECONDITIONS = ("none", "binomial")  # trainers.langevin.PRECONDITIONS
SIGNATURES = ("sample", "sample_from_coarse", "energy", "inpaint", "features")

METADATA_KEYS = ("grids", "image_size", "channels", "coarse_mean", "coarse_std")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(name: str, value, allowed: tuple) -> None:
    _require(value in allowed, f"{name}={value!r} is not allowed; allowed values: {list(allowed)}")


def _trained_grids(config) -> list[int]:
    grids = [int(g) for g in config.pyramid.grids if int(g) > 1]
    return grids if VARIANTS[config.model.family][0] == "all" else grids[-1:]


def validate(config) -> None:
    """Check the fields the multi-grid family reads; ConfigError names the first bad one."""
    m, s, t = config.model, config.sampler, config.train
    _one_of("model.norm", m.norm, NORMS)
    _one_of("model.activation", m.activation, ACTIVATIONS)
    _require(m.width > 0, f"model.width={m.width} must be > 0")
    _require(s.steps >= 1, f"sampler.steps={s.steps} must be >= 1")
    _require(s.step_size > 0, f"sampler.step_size={s.step_size} must be > 0")
    _require(s.reference_sigma > 0, f"sampler.reference_sigma={s.reference_sigma} must be > 0")
    _require(s.noise_scale > 0, f"sampler.noise_scale={s.noise_scale} must be > 0")
    _one_of("sampler.noise_schedule", s.noise_schedule, NOISE_SCHEDULES)
    _one_of("sampler.step_size_schedule", s.step_size_schedule, STEP_SIZE_SCHEDULES)
    _one_of("sampler.precondition", s.precondition, PRECONDITIONS)
    grid_values("sampler.grid_steps", s.grid_steps, _trained_grids(config), int)
    grid_values("sampler.grid_step_sizes", s.grid_step_sizes, _trained_grids(config), float)
    grid_values("sampler.grid_preconditions", s.grid_preconditions, _trained_grids(config), str, PRECONDITIONS)
    if VARIANTS[m.family][1] == "persistent":
        _require(t.pcd_buffer_size >= t.batch_size,
                 f"train.pcd_buffer_size={t.pcd_buffer_size} must be >= train.batch_size={t.batch_size}")


def build(config, metadata: dict):
    """The uncompiled `MultiGridEBM` for `config.model.family` (a key of VARIANTS).

    Args:
      config: a validated `Config`. metadata: the pyramid metadata dict (METADATA_KEYS).

    Raises:
      ValueError: metadata lacks a key.
    """
    require_metadata(metadata, METADATA_KEYS)
    from trainers.families import multigrid  # TensorFlow from here on

    m, s, t = config.model, config.sampler, config.train
    return multigrid.build_model(
        metadata["grids"], int(metadata["channels"]), variant=m.family, norm=m.norm,
        activation=m.activation, width=m.width, steps=s.steps, step_size=s.step_size,
        reference_sigma=s.reference_sigma, use_reference=s.use_reference, noise=s.noise,
        noise_scale=s.noise_scale, noise_schedule=s.noise_schedule,
        step_size_schedule=s.step_size_schedule, precondition=s.precondition, clip=s.clip,
        jit_compile=t.jit_compile, ema_decay=t.ema_decay,
        coarse_mean=metadata["coarse_mean"], coarse_std=metadata["coarse_std"],
        pcd_buffer_size=t.pcd_buffer_size, seed=t.seed,
        grid_steps=grid_values("sampler.grid_steps", s.grid_steps, _trained_grids(config), int),
        grid_step_sizes=grid_values("sampler.grid_step_sizes", s.grid_step_sizes, _trained_grids(config), float),
        grid_preconditions=grid_values("sampler.grid_preconditions", s.grid_preconditions, _trained_grids(config),
                                       str, PRECONDITIONS))


_DESCRIPTIONS = {
    "multigrid": "multi-grid EBM (Gao et al. 2018): one energy per grid, coarse-to-fine chains",
    "single_grid": "baseline: the finest grid's energy only, chains from the upsampled 1x1 image",
    "cd1": "baseline: contrastive divergence, one Langevin step from the data",
    "pcd": "baseline: persistent contrastive divergence",
}

for _name in VARIANTS:
    register(Family(name=_name, signatures=SIGNATURES, build=build, validate=validate,
                    variant_of="" if _name == "multigrid" else "multigrid",
                    description=_DESCRIPTIONS[_name], mixed_precision=True))
