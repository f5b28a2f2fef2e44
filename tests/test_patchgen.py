"""Tests of the PatchGenCN family's model: the patch energy net, the scale schedule, a train step
that moves only the current scale's net (and copies the previous one at a scale's first step),
sampling at any size, the applications' signatures and their input checks. Tiny shapes: scales
12x16 -> 16x21 -> 21x28, nets of 8-4-4-1 channels, 3-4 Langevin steps."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from trainers.config import Config, ConfigError
from trainers.families import get_family
from trainers.families.patchgen import build_model
from trainers.families.patchgen_net import PatchEnergyNet
from trainers.families.patchgen_signatures import limits, signature_functions
from trainers.families.patchgen_spec import channels_of, scale_at, sizes_for

SCALES = [(12, 16), (16, 21), (21, 28)]
CAP = 4


def tiny_model(**kwargs):
    settings = dict(channels=(8, 4, 4, 1), steps=3, coarse_steps=4, steps_per_scale=2, seed=0)
    settings.update(kwargs)
    learning_rate = settings.pop("learning_rate", 4e-4)
    model = build_model(SCALES, 3, 0.75, **settings)
    model.compile(learning_rate=learning_rate, beta_1=0.5)
    return model


def image_batch(n=2):
    rng = np.random.RandomState(0)
    image = rng.rand(1, *SCALES[-1], 3).astype("float32")
    return {f"scale_{k}": np.repeat(tf.image.resize(image, s).numpy().clip(0, 1), n, 0)
            for k, s in enumerate(SCALES)}


def test_patch_energy_is_the_sum_of_a_full_size_map_at_any_size():
    tf.keras.utils.set_random_seed(1)
    net = PatchEnergyNet(3, [6, 4, 1], activation="elu", spectral=True)
    for h, w in [(5, 9), (13, 7)]:
        x = tf.random.stateless_uniform([2, h, w, 3], [1, h])
        emap = net.energy_map(x)
        assert emap.shape == (2, h, w, 1)
        np.testing.assert_allclose(net(x), tf.reduce_sum(emap, [1, 2, 3]), rtol=1e-5)
    # A local change moves only the patches within the receptive field (2 * layers + 1 = 7 px).
    x = tf.random.stateless_uniform([1, 15, 15, 3], [2, 2]).numpy()
    y = x.copy()
    y[0, 7, 7] += 0.3
    changed = np.abs((net.energy_map(y) - net.energy_map(x)).numpy())[0, ..., 0] > 0
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 4 and rows.max() <= 10 and cols.min() >= 4 and cols.max() <= 10


def test_copy_from_makes_two_nets_equal_and_refuses_another_architecture():
    a, b = PatchEnergyNet(3, [4, 1], name="a"), PatchEnergyNet(3, [4, 1], name="b")
    x = tf.random.stateless_uniform([2, 6, 6, 3], [0, 1])
    assert not np.allclose(a(x), b(x))
    b.copy_from(a)
    np.testing.assert_array_equal(a(x), b(x))
    with pytest.raises(ValueError, match="another architecture"):
        PatchEnergyNet(3, [5, 1], name="c").copy_from(a)


def test_scale_schedule_and_sizes():
    assert [scale_at(s, 3, 4) for s in range(14)] == [0] * 4 + [1] * 4 + [2] * 6
    model = tiny_model()
    assert [int(model.scale_of(tf.constant(s, tf.int64))) for s in range(8)] == [0, 0, 1, 1, 2, 2, 2, 2]
    # The training image's own size gives its recorded scales; the graph version agrees.
    assert sizes_for(21, 28, 3, 0.75) == [(12, 16), (16, 21), (21, 28)]
    graph = model.scale_sizes(tf.constant(21), tf.constant(40))
    assert [(int(h), int(w)) for h, w in graph] == sizes_for(21, 40, 3, 0.75) == [(12, 22), (16, 30), (21, 40)]
    assert channels_of(1.0, 5) == [64, 32, 32, 32, 1] and channels_of(0.5, 3) == [32, 16, 1]


def test_config_requires_a_scale_pyramid_and_checks_fields_by_name():
    base = dict(model=dict(family="patchgen"))
    with pytest.raises(ConfigError, match="pyramid.scale_factor"):
        Config.build("p", **base)
    good = Config.build("p", data=dict(source="file:/x.png", max_side=64), pyramid=dict(scale_factor=0.75),
                        **base)
    assert get_family(good.model.family).has("super_resolve")
    for override, field in [("model.patch_layers=1", "model.patch_layers"),
                            ("sampler.coarse_steps=0", "sampler.coarse_steps"),
                            ("train.steps_per_scale=0", "train.steps_per_scale"),
                            ("train.recovery_weight=-1", "train.recovery_weight"),
                            ("model.norm=batch", "model.norm"),
                            ("train.strategy=mirrored", "train.strategy")]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            good.with_overrides([override])


def test_train_steps_move_only_the_current_scale_and_a_new_scale_starts_from_the_previous():
    # Without spectral norm (whose power iteration rescales a copied kernel a little at once).
    model = tiny_model(learning_rate=1e-9, spectral=False)
    step = tf.function(model.train_step)
    batch = image_batch()

    def weights(k):
        return [v.numpy().copy() for v in model.nets[k].trainable_variables]

    before = [weights(k) for k in range(3)]
    out = step(batch)
    assert float(out["scale"]) == 0 and all(np.isfinite(float(v)) for v in out.values())
    assert not all(np.array_equal(a, b) for a, b in zip(weights(0), before[0]))
    for k in (1, 2):
        assert all(np.array_equal(a, b) for a, b in zip(weights(k), before[k]))
    step(batch)
    out = step(batch)  # the first step of scale 1: net 1 := net 0, then a (tiny) update
    assert float(out["scale"]) == 1
    for a, b in zip(weights(1), weights(0)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(weights(2), before[2]))
    assert 0 <= float(out["recovery_mse"]) < 1 and float(out["collapse"]) == 0
    assert model.export_info()["trained_scales"] == 1


def test_export_info_records_the_sides_the_signatures_accept():
    """config.json's side_range: the coarsest of 3 scales at 0.75 keeps >= 3 px from a side of
    ceil(3 / 0.75**2) = 6; the largest is 4x the training image's longer side (28)."""
    assert tiny_model().export_info()["side_range"] == [6, 112]


def test_without_init_from_previous_the_new_scale_keeps_its_own_weights():
    model = tiny_model(learning_rate=1e-9, init_from_previous=False, recovery_weight=0.0)
    step = tf.function(model.train_step)
    batch = image_batch()
    for _ in range(3):
        out = step(batch)
    assert float(out["recovery_mse"]) == 0
    assert not np.allclose(model.nets[1].trainable_variables[0], model.nets[0].trainable_variables[0])


@pytest.fixture(scope="module")
def sigs():
    model = tiny_model()
    step = tf.function(model.train_step)
    batch = image_batch()
    for _ in range(6):
        step(batch)
    return model, signature_functions(model, CAP)


def test_sample_at_the_training_size_and_a_wider_aspect_is_seeded(sigs):
    _, s = sigs
    args = dict(num_samples=tf.constant(2), seed=tf.constant(3))
    a = s["sample"](height=tf.constant(21), width=tf.constant(28), **args)["images"].numpy()
    b = s["sample"](height=tf.constant(21), width=tf.constant(28), **args)["images"].numpy()
    wide = s["sample"](height=tf.constant(21), width=tf.constant(56), **args)["images"].numpy()
    assert a.shape == (2, 21, 28, 3) and a.dtype == np.uint8 and wide.shape == (2, 21, 56, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # two chains differ
    other = s["sample"](height=tf.constant(21), width=tf.constant(28), num_samples=tf.constant(2),
                        seed=tf.constant(4))["images"].numpy()
    assert not np.array_equal(a, other)


def test_applications_shapes_and_masked_pixels_exact(sigs):
    model, s = sigs
    x = tf.constant(np.random.RandomState(1).randint(0, 256, (2, 21, 28, 3)).astype(np.uint8))
    for scale in (2, 4):
        out = s["super_resolve"](images=x, seed=tf.constant(0), scale=tf.constant(scale))["images"]
        assert out.shape == (2, 21 * scale, 28 * scale, 3) and out.dtype == tf.uint8
    mask = np.zeros((2, 21, 28, 1), np.uint8)
    mask[:, 6:14, 8:18] = 1
    keep = mask[..., 0] == 0
    for name in ("edit", "harmonize"):
        for start in range(model.num_scales):
            out = s[name](images=x, mask=tf.constant(mask), seed=tf.constant(0),
                          start_scale=tf.constant(start))["images"].numpy()
            np.testing.assert_array_equal(out[keep], x.numpy()[keep])
            if name == "edit" or start < model.num_scales - 1:  # noise, or a down- and upsampling
                assert not np.array_equal(out[~keep], x.numpy()[~keep])
    styled = s["style_transfer"](images=x, seed=tf.constant(0), start_scale=tf.constant(1))["images"]
    assert styled.shape == x.shape
    assert s["energy"](images=x)["energy"].shape == (2,)


@pytest.mark.parametrize("name,args,needle", [
    ("sample", dict(num_samples=5, seed=0, height=21, width=28), "num_samples must be in"),
    ("sample", dict(num_samples=1, seed=0, height=2, width=28), "height must be in"),
    ("sample", dict(num_samples=1, seed=0, height=21, width=10_000), "width must be in"),
    ("sample", dict(num_samples=[1], seed=0, height=21, width=28), "num_samples must be a scalar"),
    ("super_resolve", dict(images="rgb", seed=0, scale=9), "scale must be in"),
    ("super_resolve", dict(images="gray", seed=0, scale=2), "must have 3 channels"),
    ("super_resolve", dict(images="big", seed=0, scale=8), "output side"),
    ("edit", dict(images="rgb", mask="bad", seed=0, start_scale=0), "mask must hold 0"),
    ("harmonize", dict(images="rgb", mask="small", seed=0, start_scale=0), "mask must have shape"),
    ("style_transfer", dict(images="rgb", seed=0, start_scale=3), "start_scale must be in"),
])
def test_bad_inputs_raise_invalid_argument_naming_the_argument(sigs, name, args, needle):
    _, s = sigs
    arrays = {"rgb": np.zeros((1, 21, 28, 3), np.uint8), "gray": np.zeros((1, 21, 28, 1), np.uint8),
              "big": np.zeros((1, 40, 28, 3), np.uint8), "bad": np.full((1, 21, 28, 1), 2, np.uint8),
              "small": np.zeros((1, 20, 28, 1), np.uint8)}
    feed = {}
    for key, value in args.items():
        value = arrays.get(value, value) if isinstance(value, str) else value
        feed[key] = tf.constant(value, tf.uint8 if key in ("images", "mask") else tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=needle):
        s[name](**feed)


def test_limits_follow_the_coarsest_scale_and_the_training_size(sigs):
    model, _ = sigs
    low, high = limits(model)
    assert low == 6 and high == 4 * 28  # 6 * 0.75^2 = 3.4 -> 3 px at the coarsest scale
