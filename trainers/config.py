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

from trainers.config_sections import (BEAM_RUNNERS, FEATURE_SPACES, MASKS, PRECISIONS, SECTIONS, STRATEGIES,
                                      DataConfig, EvalConfig, ExportConfig, ModelConfig, PyramidConfig,
                                      SamplerConfig, TrainConfig)
from trainers.config_values import ConfigError
from trainers.config_values import coerce as _coerce
from trainers.config_values import parse as _parse
from trainers.families import get_family
from trainers.thresholds import parse_threshold

__all__ = ["Config", "ConfigError", "default_model_name", "validate", "validate_grids", "BEAM_RUNNERS",
           "FEATURE_SPACES", "MASKS", "STRATEGIES", "SECTIONS"]


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
        if not self.export.model_name:  # served under the preset's own name by default
            object.__setattr__(self, "export", dataclasses.replace(
                self.export, model_name=default_model_name(self.name)))
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
        """A copy with `section.key=value` strings applied (values parsed by field type).

        The whole set is validated once, after every override is applied, so overrides that must
        change together (`data.image_size=16` with `pyramid.grids=1,4,16`) work in any order.
        """
        changes: dict[str, dict] = {}
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
            changes.setdefault(section, {})[key] = _parse(f"{section}.{key}", raw.strip(), hint)
        if not changes:
            return self
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)
                                            for section, values in changes.items()})

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


def default_model_name(config_name: str) -> str:
    """The serving model name of a preset: its name without the size, `mnist5k-multigrid:smoke` ->
    `mnist5k-multigrid` (TF Serving's `serving/<name>/<version>/`, `/v1/models/<name>:predict`)."""
    return config_name.partition(":")[0]


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
    _one_of("train.mixed_precision", t.mixed_precision, PRECISIONS)
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
             f"export.model_name={x.model_name!r} must be letters, digits, '_' or '-' (empty = the "
             f"preset's name); set --set export.model_name=NAME")
    _require(x.max_num_samples >= 1, f"export.max_num_samples={x.max_num_samples} must be >= 1")
    family = get_family(m.family)  # ConfigError naming model.family and the registered names
    if family.validate is not None:
        family.validate(cfg)  # the model. / sampler. / train. fields the family reads
