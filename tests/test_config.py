"""Config validation, presets, smoke sizes and overrides."""

import pytest

from pipeline.presets import PRESETS, SMOKE, SMOKE_BY_PRESET, load_preset
from trainers.config import Config, ConfigError, validate_grids
from trainers.thresholds import parse_threshold


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_and_its_smoke_size_validate(name):
    full = load_preset(name)
    smoke = load_preset(name + ":smoke")
    # Smoke shrinks counts and budgets, never the geometry.
    assert smoke.data.image_size == full.data.image_size
    assert smoke.data.channels == full.data.channels
    assert smoke.pyramid.grids == full.pyramid.grids
    assert smoke.train.batch_size <= full.train.batch_size
    assert smoke.sampler.steps <= full.sampler.steps
    assert smoke.eval.num_samples <= full.eval.num_samples


def test_required_presets_geometry():
    assert load_preset("mnist5k-multigrid").pyramid.grids == (1, 4, 16, 32)
    assert load_preset("mnist5k-multigrid").data.source == "builtin:mnist5k"
    assert load_preset("fashion-mnist-multigrid").pyramid.grids == (1, 4, 16, 32)
    cifar = load_preset("cifar10-multigrid")
    assert (cifar.data.image_size, cifar.data.channels) == (32, 3)
    celeba = load_preset("celeba64-multigrid")
    assert (celeba.data.image_size, celeba.data.channels, celeba.pyramid.grids) == (64, 3, (1, 4, 16, 64))


def test_smoke_never_touches_geometry_keys():
    assert set(SMOKE_BY_PRESET) <= set(PRESETS)
    for smoke in [SMOKE, *SMOKE_BY_PRESET.values()]:
        assert "image_size" not in smoke.get("data", {})
        assert "channels" not in smoke.get("data", {})
        assert "grids" not in smoke.get("pyramid", {})
        assert "base_size" not in smoke.get("model", {})


def test_overrides_parse_by_type():
    cfg = load_preset("mnist5k-multigrid", ["train.batch_size=16", "sampler.noise=true",
                                            "train.learning_rate=3e-4", "eval.features=domain"])
    assert cfg.train.batch_size == 16 and cfg.sampler.noise is True
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.eval.features == ("domain",)


@pytest.mark.parametrize("override, fragment", [
    ("train.bogus=1", "train.bogus"),
    ("nosuch.key=1", "unknown section 'nosuch'"),
    ("train.batch_size=abc", "train.batch_size must be an integer"),
    ("train.batch_size=0", "train.batch_size=0"),
    ("model.family=gan",
     "allowed values: ['multigrid', 'single_grid', 'cd1', 'pcd', 'cfebm', 'lapgan', 'dcgan', 'patchgen']"),
    ("data.channels=2", "data.channels=2"),
    ("pyramid.grids=1,3,32", "divisible by 3"),
    ("pyramid.grids=2,4,32", "must start at 1"),
    ("pyramid.grids=1,4,16", "must end at the image size 32"),
    ("pyramid.num_shards=-1", "pyramid.num_shards=-1 must be >= 0"),
    ("sampler.noise=maybe", "sampler.noise must be true or false"),
    ("eval.features=fancy", "eval.features"),
    ("eval.thresholds=fid/domain<x", "metric<=value"),
    ("train.strategy=gpu", "train.strategy"),
    ("noequals", "section.key=value"),
])
def test_bad_override_names_the_field(override, fragment):
    with pytest.raises(ConfigError, match=None) as err:
        load_preset("mnist5k-multigrid", [override])
    assert fragment in str(err.value)


def test_unknown_preset_and_size():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        load_preset("nope")
    with pytest.raises(ConfigError, match="unknown preset size 'huge'"):
        load_preset("mnist5k-multigrid:huge")


def test_json_round_trip():
    cfg = load_preset("celeba64-multigrid:smoke", ["eval.thresholds=fid/domain<=10,kid/domain<=0.5"])
    again = Config.from_json(cfg.to_json())
    assert again == cfg
    assert again.eval.thresholds == ("fid/domain<=10", "kid/domain<=0.5")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_family_is_served_under_its_presets_name(name):
    assert load_preset(name).export.model_name == name
    assert load_preset(name + ":smoke").export.model_name == name  # one name for both sizes
    assert load_preset(name, ["export.model_name=digits_v2"]).export.model_name == "digits_v2"
    assert load_preset(name, ["export.model_name="]).export.model_name == name  # empty = the default
    again = Config.from_json(load_preset(name + ":smoke").to_json())
    assert again.export.model_name == name


def test_model_name_must_be_servable():
    assert Config().export.model_name == "custom"  # a config without a preset: its own name
    with pytest.raises(ConfigError, match="export.model_name='a b'.*set --set export.model_name=NAME"):
        Config.build("a b")
    with pytest.raises(ConfigError, match="export.model_name='x/y'"):
        load_preset("mnist5k-multigrid", ["export.model_name=x/y"])


def test_validate_grids_and_thresholds():
    validate_grids((1, 4, 16, 64), 64)
    validate_grids((1, 2, 8, 32), 32)
    with pytest.raises(ConfigError):
        validate_grids((1,), 1)
    assert parse_threshold("fid/domain<=150") == ("fid/domain", "<=", 150.0)
    assert parse_threshold("accuracy/svm>=0.5") == ("accuracy/svm", ">=", 0.5)


def test_stage_configs_isolate_caching():
    from pipeline.create_pipeline import stage_config_json

    base = load_preset("mnist5k-multigrid:smoke")
    changed = base.with_overrides(["eval.thresholds=fid/domain<=1", "eval.num_samples=20"])
    trainer_sections = ("model", "sampler", "train", "export")
    # An evaluation change leaves the ingest, pyramid and trainer parameters (cache keys) alone...
    assert stage_config_json(base, ()) == stage_config_json(changed, ())
    assert stage_config_json(base, trainer_sections) == stage_config_json(changed, trainer_sections)
    # ...and reaches the evaluator.
    assert stage_config_json(base, ("eval", "train")) != stage_config_json(changed, ("eval", "train"))
    # A training change reaches the trainer but not ingest.
    longer = base.with_overrides(["train.max_steps=9"])
    assert stage_config_json(base, trainer_sections) != stage_config_json(longer, trainer_sections)
    assert stage_config_json(base, ()) == stage_config_json(longer, ())
    stage = Config.from_json(stage_config_json(changed, ("eval",)))
    assert stage.data == changed.data and stage.eval == changed.eval
    assert stage.train == Config().train


def test_overrides_that_change_together_apply_in_any_order():
    base = load_preset("mnist5k-multigrid")
    for order in (["data.image_size=16", "pyramid.grids=1,4,16"], ["pyramid.grids=1,4,16", "data.image_size=16"]):
        cfg = base.with_overrides(order)
        assert cfg.data.image_size == 16 and list(cfg.pyramid.grids) == [1, 4, 16]
    with pytest.raises(ConfigError, match="must end at the image size 16"):
        base.with_overrides(["data.image_size=16"])


def test_mixed_precision_is_off_on_or_auto_and_auto_picks_bfloat16_only_on_bf16_hardware(tmp_path):
    import tensorflow as tf
    from trainers import scale
    base = load_preset("mnist5k-multigrid")
    for mode in ("off", "on", "auto"):
        assert base.with_overrides([f"train.mixed_precision={mode}"]).train.mixed_precision == mode
    with pytest.raises(ConfigError, match=r"train.mixed_precision='true' is not allowed; allowed values: \['off'"):
        base.with_overrides(["train.mixed_precision=true"])
    cpu = tf.distribute.get_strategy()  # the CPU-only test machine
    assert scale.precision_policy("off", cpu, {"avx512_bf16"}) == "float32"
    assert scale.precision_policy("on", cpu, set()) == "mixed_bfloat16"
    assert scale.precision_policy("auto", cpu, {"avx2", "fma"}) == "float32"
    assert scale.precision_policy("auto", cpu, {"avx2", "avx512_bf16"}) == "mixed_bfloat16"
    assert scale.precision_policy("auto", cpu, {"amx_bf16"}) == "mixed_bfloat16"
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert scale.cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert scale.cpu_flags(str(tmp_path / "missing")) == set()
