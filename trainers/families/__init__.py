"""The model-family registry: the one place that maps `model.family` to a family.

Plain Python that imports no TensorFlow, so the CLI and `trainers.config` can validate a config
before TensorFlow loads. A family is one module (plus presets); it registers a `Family`:

- `name`: the value of `model.family` that selects it (variants register their own names,
  e.g. the multi-grid module registers `multigrid`, `single_grid`, `cd1`, `pcd`);
- `signatures`: the SavedModel signatures its export has, i.e. its capabilities (`sample`,
  `sample_from_coarse`, `energy`, `inpaint`, `features`, `denoise`, `translate`, ...);
- `validate(config)`: checks the `model.` / `sampler.` (and family-specific `train.`) fields it
  reads, raising `ConfigError` naming the field;
- `build(config, metadata)`: the uncompiled Keras model, from the config and the pyramid
  metadata dict (`grids`, `image_size`, `channels`, `coarse_mean`, `coarse_std`); it imports the
  family's TensorFlow module only when called.

The model that `build` returns follows this contract (all the shared loop, checkpoints, the
divergence guard, TensorBoard and the export use; none of them tests a family's name):

- `compile(learning_rate, beta_1)`; `train_step(batch) -> {metric name: scalar}` on a pyramid
  batch `{"grid_S": float32 [N, S, S, C]}` (plus `"label": int32 [N]` when the model's optional
  attribute `uses_labels` is true); `metrics`. A metric named `sample_abs_max` or
  `sample_abs_max/...` is the largest |synthesized pixel|, one named `runaway` or `runaway/...`
  is >= 1 when the model sees a runaway coming (CF-EBM's watch), and one named `collapse` or
  `collapse/...` is >= 1 when the model has collapsed (e.g. a GAN's discriminator loss pinned
  at 0); the divergence guard watches all three.
- `optimizers_by_name() -> {name: optimizer}` (checkpoint keys, learning-rate cuts, TensorBoard).
- `tensorboard_previews(batch, max_outputs) -> (images {tag: float32 [k, H, W, C] in [0, 1]},
  histograms {tag: float32 [n]})`.
- `use_averaged_weights() -> bool`: load the weight averages before export (False if none).
- `export_signatures(max_num_samples) -> {name: tf.function with an input_signature}`, exactly
  the family's `signatures`, each validating its inputs in the graph.
- `export_info() -> dict`: JSON-able facts for the export's `config.json` (at least `grids`
  and `image_size`).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from trainers.config_values import ConfigError

# The modules that register the built-in families (imported on first look-up, without TF).
BUILTIN_SPECS = ("trainers.families.multigrid_spec", "trainers.families.cfebm_spec",
                 "trainers.families.gan_spec", "trainers.families.patchgen_spec")

_REGISTRY: dict[str, "Family"] = {}
_LOADED = False


@dataclasses.dataclass(frozen=True)
class Family:
    """One selectable model family (or variant); see the module docstring.

    Args:
      name: the `model.family` value, letters, digits and '_'.
      signatures: names of the SavedModel signatures its export has (its capabilities).
      build: (config, metadata) -> uncompiled Keras model following the model contract.
      validate: (config) -> None, raising ConfigError naming a bad field; None = nothing to check.
      variant_of: the family this one is a variant of (e.g. `cd1` of `multigrid`), or "".
      description: one line for `--help` and docs.
      mixed_precision: its model trains under a mixed-precision policy (`train.mixed_precision`
        `on` / `auto`); False: `auto` trains in float32 and `on` is refused by `validate`.
    """

    name: str
    signatures: tuple[str, ...]
    build: Callable[[Any, dict], Any]
    validate: Callable[[Any], None] | None = None
    variant_of: str = ""
    description: str = ""
    mixed_precision: bool = False

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"family name {self.name!r} must be letters, digits or '_'")
        if not self.signatures or len(set(self.signatures)) != len(self.signatures):
            raise ValueError(f"family {self.name!r}: signatures={list(self.signatures)} must be "
                             "distinct names, at least one")
        if not callable(self.build):
            raise ValueError(f"family {self.name!r}: build must be callable")

    def has(self, signature: str) -> bool:
        """Whether the family's export has `signature` (a capability)."""
        return signature in self.signatures


def _load_builtins() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for module in BUILTIN_SPECS:
            importlib.import_module(module)


def register(family: Family, replace: bool = False) -> Family:
    """Add a family to the registry; returns it.

    Raises:
      ValueError: a different family already has that name and replace is False.
    """
    _load_builtins()
    if not isinstance(family, Family):
        raise ValueError(f"register needs a Family, got {type(family).__name__}")
    if family.name in _REGISTRY and not replace and _REGISTRY[family.name] is not family:
        raise ValueError(f"model family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a family (tests that register a toy family clean up with this)."""
    _REGISTRY.pop(name, None)


def family_names() -> list[str]:
    """Every registered `model.family` value: the built-in families in BUILTIN_SPECS order (however
    their modules were first imported), then the others in registration order."""
    _load_builtins()

    def rank(name: str) -> int:
        module = getattr(_REGISTRY[name].build, "__module__", "")
        return BUILTIN_SPECS.index(module) if module in BUILTIN_SPECS else len(BUILTIN_SPECS)

    return sorted(_REGISTRY, key=rank)  # stable: registration order within a module


def get_family(name: str) -> Family:
    """The family registered as `name`.

    Raises:
      ConfigError: no such family; the message names `model.family` and the allowed values.
    """
    _load_builtins()
    if name not in _REGISTRY:
        raise ConfigError(f"model.family={name!r} is not allowed; allowed values: {family_names()}")
    return _REGISTRY[name]


def require_plain_precision(train, family: str) -> None:
    """ConfigError for the train. options a family's model does not support: weight averages
    (`train.ema_decay`) and mixed precision (`auto` is allowed: such a family trains it as `off`)."""
    if train.ema_decay != 0:
        raise ConfigError(f"train.ema_decay={train.ema_decay} is not supported by model.family={family}; "
                          "set it to 0")
    if train.mixed_precision == "on":
        raise ConfigError(f"train.mixed_precision=on is not supported by model.family={family}; use off")


def require_noisy_langevin(sampler) -> None:
    """ConfigError for the `sampler.` fields of a family whose chains run with noise: steps >= 1,
    step_size > 0, noise_scale > 0 and known noise / step-size schedules."""
    schedules = ("constant", "linear")  # trainers.langevin.NOISE_SCHEDULES / STEP_SIZE_SCHEDULES
    checks = [(sampler.steps >= 1, f"sampler.steps={sampler.steps} must be >= 1"),
              (sampler.step_size > 0, f"sampler.step_size={sampler.step_size} must be > 0"),
              (sampler.noise_scale > 0, f"sampler.noise_scale={sampler.noise_scale} must be > 0")]
    for name in ("noise_schedule", "step_size_schedule"):
        value = getattr(sampler, name)
        checks.append((value in schedules, f"sampler.{name}={value!r} is not allowed; allowed "
                                           f"values: {list(schedules)}"))
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def require_metadata(metadata: dict, keys) -> None:
    """Raise ValueError naming the first of `keys` missing from the pyramid metadata dict."""
    for key in keys:
        if key not in metadata:
            raise ValueError(f"pyramid metadata lacks {key!r}; rebuild the pyramid (metadata.json)")


def grid_values(name: str, entries, grids, cast, allowed: tuple = (),
                kind: str = "the trained grids") -> dict:
    """`S:value` entries (`sampler.grid_steps`, `grid_step_sizes`, `grid_preconditions`) ->
    {S: cast(value)}. S is a grid size or `finest` (the largest of `grids`, so a preset's entry
    holds at any image size).

    Raises ConfigError naming `name` for an entry that is not `S:value`, a grid S that is not
    one of `grids` (named `kind` in the message), a value that is not > 0 (numbers) or not one of
    `allowed` (names), or a grid given twice."""
    out = {}
    for entry in entries:
        size, sep, value = str(entry).partition(":")
        try:
            size = max(grids) if size == "finest" and grids else size
            size, value = int(size), cast(value)
        except ValueError:
            size = value = None
        ok = value in allowed if allowed else value is not None and value > 0
        example = f"value one of {list(allowed)}, e.g. 32:{allowed[-1]}" if allowed else "value > 0, e.g. 16:15"
        if not (sep and size in grids and ok and size not in out):
            raise ConfigError(f"{name} entry {entry!r} must be S:value with S one of {kind} {list(grids)} "
                              f"or finest (each once) and {example}")
        out[size] = value
    return out
