"""Tests of the CF-EBM family: the expand block, the stage schedule, smooth MCMC, an exact resume
in the middle of a fade, and the export (signatures, bad inputs naming the argument, in a fresh
process). Tiny shapes: stages 4 -> 8 px (model.base_size=4, pyramid grids 1-4-8), 1 channel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.test_train import checkpoint_values, write_pyramid
from trainers import families, pyramid_ops
from trainers.config import Config, ConfigError
from trainers.families.cfebm import CFEBM, build_model, stage_and_beta
from trainers.families.cfebm_net import ExpandingEnergyNet, avg_pool_2
from trainers.families.cfebm_spec import final_stage_images, stage_at, stage_sizes
from trainers.train import train

CAP = 8


def cf_config(**train_settings):
    settings = dict(batch_size=4, max_steps=5, fade_images=8, stable_images=4, checkpoint_every=2,
                    log_every=1, image_log_every=2, shuffle_buffer=16, seed=3)
    settings.update(train_settings)
    return Config.build("cf", data=dict(image_size=8, channels=1), pyramid=dict(grids=[1, 4, 8]),
                        model=dict(family="cfebm", base_size=4, width=0.0625, norm="spectral",
                                   activation="swish"),
                        sampler=dict(steps=2, step_size=0.1, noise=True, noise_scale=0.1,
                                     noise_schedule="linear", upsample_noise=0.05),
                        train=settings, export=dict(max_num_samples=CAP))


@pytest.fixture(scope="module")
def pyramid_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cf_pyramid")
    write_pyramid(root)
    return str(root)


# ------------------------------------------------------------------ network and schedule

@pytest.mark.parametrize("spectral", [True, False])
def test_expand_block_at_beta_0_is_the_previous_network_and_at_1_the_new_one(spectral):
    tf.keras.utils.set_random_seed(0)
    net = ExpandingEnergyNet((4, 8, 16), 1, width=8, activation="swish", spectral=spectral)
    net.build_all()
    x = tf.random.stateless_uniform([5, 16, 16, 1], [1, 2])
    for stage in (1, 2):
        x_s = x if stage == 2 else avg_pool_2(x)
        previous = net.energy(avg_pool_2(x_s), stage - 1)
        np.testing.assert_allclose(net.energy(x_s, stage, 0.0), previous, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(net.energy(x_s, stage, tf.constant(1.0)), net.energy(x_s, stage),
                                   rtol=1e-6, atol=1e-7)
        # In between, the block's features are the convex combination of both paths.
        mixed = net.expand(x_s, stage, 0.25)
        np.testing.assert_allclose(mixed, 0.25 * net.primal(x_s, stage) + 0.75 * net.fade(x_s, stage),
                                   rtol=1e-5, atol=1e-6)
    assert net.energy(x, 2).shape == [5]
    with pytest.raises(ValueError, match=r"stage 1 needs float32 \[N, 8, 8, 1\]"):
        net.energy(x, 1)


def test_stage_schedule_hand_cases_and_the_graph_version_agrees():
    # 3 stages, fade 4 images, stable 2: stage 0 for [0, 2), stage 1 fades over [2, 6),
    # stable [6, 8), stage 2 fades over [8, 12), then stays.
    expected = {0: (0, 1.0), 1: (0, 1.0), 2: (1, 0.0), 3: (1, 0.25), 5: (1, 0.75), 6: (1, 1.0),
                7: (1, 1.0), 8: (2, 0.0), 10: (2, 0.5), 12: (2, 1.0), 1000: (2, 1.0)}
    for images, want in expected.items():
        assert stage_at(images, 3, 4, 2) == want, images
    assert stage_at(3, 3, 0, 2) == (1, 1.0) and stage_at(4, 3, 0, 2) == (2, 1.0)  # no fade
    assert stage_at(10**6, 1, 4, 2) == (0, 1.0)
    assert final_stage_images(3, 4, 2) == 12
    for num, fade, stable in ((3, 4, 2), (2, 8, 4), (4, 0, 3), (3, 50_000, 50_000)):
        for images in list(range(0, 40)) + [10**5, 123_457, 3 * 10**5]:
            stage, beta = stage_and_beta(tf.constant(images, tf.int64), num, fade, stable)
            want_stage, want_beta = stage_at(images, num, fade, stable)
            assert int(stage) == want_stage and abs(float(beta) - want_beta) < 1e-6, (images, num)


def test_config_fields_are_validated_by_name():
    assert stage_sizes(8, 32) == (8, 16, 32) and stage_sizes(8, 64) == (8, 16, 32, 64)
    cfg = cf_config()
    assert families.get_family("cfebm").signatures == (
        "sample", "energy", "inpaint", "denoise", "translate")
    cases = [("model.base_size=3", "data.image_size=8 must be model.base_size=3 times"),
             ("model.base_size=8", "data.image_size=8 must be model.base_size=8 times"),
             ("model.norm=batch", "model.norm='batch' is not allowed"),
             ("train.stable_images=0", "train.stable_images=0 must be >= 1"),
             ("train.fade_images=-1", "train.fade_images=-1 must be >= 0"),
             ("sampler.upsample_noise=-0.1", "sampler.upsample_noise=-0.1 must be >= 0"),
             ("train.data_noise=-0.03", "train.data_noise=-0.03 must be >= 0"),
             ("sampler.grid_steps=16:3", "grid_steps entry '16:3' must be S:value with S one of the stage sizes"),
             ("sampler.grid_step_sizes=8:0", "sampler.grid_step_sizes entry '8:0' must be S:value"),
             ("train.ema_decay=0.9", "train.ema_decay=0.9 is not supported"),
             ("train.mixed_precision=on", "train.mixed_precision=on is not supported")]
    for override, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            cfg.with_overrides([override])
    assert cfg.with_overrides(["train.mixed_precision=auto"]).train.mixed_precision == "auto"  # trained as off
    assert not families.get_family("cfebm").mixed_precision and families.get_family("multigrid").mixed_precision


def test_smooth_mcmc_goes_through_every_stage_and_is_seeded():
    model = build_model((4, 8), 1, width=4, steps=2, step_size=0.1, noise_scale=0.1,
                        upsample_noise=0.05, fade_images=8, stable_images=4, seed=1)
    a = model.synthesize(3, tf.constant([1, 2]))
    b = model.synthesize(3, tf.constant([1, 2]))
    c = model.synthesize(3, tf.constant([1, 3]))
    assert sorted(a) == [4, 8] and a[4].shape == [3, 4, 4, 1] and a[8].shape == [3, 8, 8, 1]
    np.testing.assert_array_equal(a[8], b[8])
    assert not np.array_equal(a[8], c[8])
    assert float(tf.reduce_min(a[8])) >= 0 and float(tf.reduce_max(a[8])) <= 1
    images = tf.random.stateless_uniform([3, 8, 8, 1], [0, 1])
    mask = np.zeros([3, 8, 8, 1], np.float32)
    mask[:, 2:6, 2:6] = 1
    filled = model.inpaint(images, mask, tf.constant([0, 5]))
    keep = mask[..., 0] == 0
    np.testing.assert_array_equal(filled.numpy()[keep], images.numpy()[keep])
    assert model.denoise(images, tf.constant([0, 1])).shape == [3, 8, 8, 1]
    assert model.translate(images, tf.constant([0, 1])).shape == [3, 8, 8, 1]
    # An untrained model is at stage 0: its export is flagged, not refused (the downstream
    # baseline exports initial weights).
    info = model.export_info()
    assert info["stage"] == 0 and info["final_stage_reached"] is False and info["stages"] == [4, 8]


# ------------------------------------------------------------------ training and resume

def test_a_train_step_moves_the_current_stage_and_leaves_later_stages_alone():
    model = build_model((4, 8), 1, width=4, steps=2, step_size=0.5, noise_scale=0.01,
                        fade_images=8, stable_images=4, seed=1)
    model.compile(learning_rate=1e-2)
    before = {v.path: v.numpy().copy() for v in model.net.trainable_variables}
    out = tf.function(model.train_step)({"grid_8": tf.random.stateless_uniform([4, 8, 8, 1], [3, 4])})
    assert float(out["stage"]) == 0 and float(out["images_seen"]) == 4
    after = {v.path: v.numpy() for v in model.net.trainable_variables}
    moved = {k for k in before if not np.array_equal(before[k], after[k])}
    # Stage 0 uses from_rgb_4, block_4 (the head) and the dense output; Adam moves them (biases
    # too: no spectral renormalisation there; the output bias cancels in the loss), and nothing
    # of stage 1.
    assert "energy/kernel" in moved and "energy/bias" not in moved
    assert any("from_rgb_4" in k and "bias" in k for k in moved)
    assert not any("from_rgb_8" in k or "block_8" in k for k in moved), moved


def test_data_noise_adds_seeded_gaussian_noise_of_its_std_to_every_observed_size():
    model = build_model((4, 8), 1, width=4, steps=2, step_size=0.5, noise_scale=0.01,
                        fade_images=8, stable_images=4, seed=1, data_noise=0.03)
    images = tf.fill([64, 8, 8, 1], 0.5)
    seed = tf.constant([7, 9], tf.int64)
    noisy, again, plain = model._observed({"grid_8": images}, seed), model._observed(
        {"grid_8": images}, seed), model._observed({"grid_8": images})
    for size, count in ((4, 64 * 16), (8, 64 * 64)):
        residual = noisy[size].numpy() - 0.5
        # N(0, 0.03^2): the sample std of `count` draws is within 4 standard errors of 0.03 and
        # the mean within 4 standard errors of 0; nothing is clipped.
        assert abs(residual.std() - 0.03) < 4 * 0.03 / np.sqrt(2 * count)
        assert abs(residual.mean()) < 4 * 0.03 / np.sqrt(count)
        np.testing.assert_array_equal(noisy[size], again[size])
        np.testing.assert_array_equal(plain[size], np.full(plain[size].shape, 0.5, np.float32))
    assert not np.allclose(noisy[4], pyramid_ops.box_downsample(noisy[8], 4))  # drawn per size
    with pytest.raises(ValueError, match="data_noise=-0.1 must be >= 0"):
        build_model((4, 8), 1, width=4, fade_images=8, stable_images=4, data_noise=-0.1)


def test_per_stage_steps_change_only_their_stage_chain():
    common = dict(width=4, steps=2, step_size=0.1, noise_scale=0.1, fade_images=8, stable_images=4, seed=1)
    plain = build_model((4, 8), 1, **common)
    longer = build_model((4, 8), 1, stage_steps={8: 6}, stage_step_sizes={8: 0.3}, **common)
    assert [(v.settings.steps, v.settings.step_size) for v in longer.stage_samplers.values()] == [
        (2, 0.1), (6, 0.3)]
    assert plain.stage_samplers[8] is plain.sampler and longer.sampler.settings.steps == 2
    a, b = plain.synthesize(3, tf.constant([1, 2])), longer.synthesize(3, tf.constant([1, 2]))
    np.testing.assert_array_equal(a[4], b[4])  # the same weights and the same 4 px chain
    assert np.abs(a[8] - b[8]).max() > 1e-4  # a longer 8 px chain with a larger step
    # From the config: `finest` names the last stage; the stage sizes come from the pyramid.
    cfg = cf_config().with_overrides(["sampler.grid_steps=finest:5", "sampler.grid_step_sizes=4:0.2"])
    model = families.get_family("cfebm").build(cfg, {"grids": [1, 4, 8], "image_size": 8, "channels": 1})
    assert {s: (v.settings.steps, v.settings.step_size) for s, v in model.stage_samplers.items()} == {
        4: (2, 0.2), 8: (5, 0.1)}
    with pytest.raises(ValueError, match=r"stage_samplers keys \[16\] must be stage sizes \[4, 8\]"):
        CFEBM(plain.net, plain.sampler, 8, 4, stage_samplers={16: plain.sampler})


def test_resume_in_the_middle_of_a_fade_equals_the_uninterrupted_run(pyramid_dir, tmp_path):
    # batch 4, stable 4, fade 8: step 1 at stage 0, step 2 starts stage 1 (beta 0), step 3 at
    # beta 0.5, step 4 at beta 1. The "kill" after step 2 leaves the run in the middle of the fade.
    full = train(cf_config(max_steps=4), pyramid_dir, str(tmp_path / "full"), export=False)
    part = train(cf_config(max_steps=2), pyramid_dir, str(tmp_path / "resumed"), export=False)
    mid = checkpoint_values(part.checkpoint_dir)
    assert mid["model/images_seen/.ATTRIBUTES/VARIABLE_VALUE"] == 8
    assert mid["model/stage/.ATTRIBUTES/VARIABLE_VALUE"] == 1
    assert mid["model/beta/.ATTRIBUTES/VARIABLE_VALUE"] == 0.5
    resumed = train(cf_config(max_steps=4), pyramid_dir, str(tmp_path / "resumed"), resume=True,
                    export=False)
    assert full.steps == resumed.steps == 4
    a, b = checkpoint_values(full.checkpoint_dir), checkpoint_values(resumed.checkpoint_dir)
    assert sorted(a) == sorted(b)
    assert a["model/images_seen/.ATTRIBUTES/VARIABLE_VALUE"] == 16
    assert a["model/beta/.ATTRIBUTES/VARIABLE_VALUE"] == 1.0
    assert any("from_rgb_8" in k for k in a)
    assert a["model/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 4  # the Adam's state
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ------------------------------------------------------------------ export

@pytest.fixture(scope="module")
def export_dir(pyramid_dir, tmp_path_factory):
    result = train(cf_config(max_steps=4), pyramid_dir, str(tmp_path_factory.mktemp("cf_run")))
    return result.export_dir


@pytest.fixture(scope="module")
def loaded(export_dir):
    return tf.saved_model.load(export_dir)


_FRESH = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    model = tf.saved_model.load({path!r})
    sig = model.signatures
    out = {{"signatures": sorted(sig)}}
    def desc(d):
        return {{k: [list(v.shape), v.dtype.name] for k, v in d.items()}}
    s1 = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(1))
    s2 = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(1))
    out["sample"] = desc(s1)
    out["same_seed_same"] = bool(np.array_equal(s1["images"], s2["images"]))
    images = s1["images"]
    out["energy"] = desc(sig["energy"](images=images))
    mask = np.zeros([3, 8, 8, 1], np.uint8); mask[:, 2:6, 1:5] = 1
    r = sig["inpaint"](images=images, mask=tf.constant(mask), seed=tf.constant(3))
    keep = mask[..., 0] == 0
    out["observed_exact"] = bool(np.array_equal(r["images"].numpy()[keep], images.numpy()[keep]))
    d = sig["denoise"](images=images, seed=tf.constant(2))
    t = sig["translate"](images=images, seed=tf.constant(2))
    t2 = sig["translate"](images=images, seed=tf.constant(2))
    out["denoise"], out["translate"] = desc(d), desc(t)
    out["translate_same_seed"] = bool(np.array_equal(t["images"], t2["images"]))
    print("JSON" + json.dumps(out))
""")


def test_export_signatures_in_a_fresh_process(export_dir):
    info = json.loads(open(os.path.join(export_dir, "assets", "config.json")).read())
    assert info["family"] == "cfebm" and info["final_stage_reached"] is True
    assert info["stages"] == [4, 8] and info["grids"] == [4, 8] and info["image_size"] == 8
    assert info["signatures"] == ["sample", "energy", "inpaint", "denoise", "translate"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _FRESH.format(path=export_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")][-1][4:])
    assert out["signatures"] == sorted(["sample", "energy", "inpaint", "denoise", "translate"])
    assert out["sample"] == {"images": [[3, 8, 8, 1], "uint8"], "grid_4": [[3, 4, 4, 1], "uint8"],
                             "grid_8": [[3, 8, 8, 1], "uint8"]}
    assert out["energy"] == {"energy_8": [[3], "float32"]}
    assert out["denoise"] == out["translate"] == {"images": [[3, 8, 8, 1], "uint8"]}
    assert out["same_seed_same"] and out["observed_exact"] and out["translate_same_seed"]


def test_evaluator_runs_denoising_and_translation_on_the_export(export_dir, tmp_path, capsys, monkeypatch):
    from sklearn.datasets import load_digits

    from evaluators import evaluate
    from evaluators.blessing import flatten_metrics
    from evaluators.features import FeatureSpace

    monkeypatch.delenv("MGEBM_STDERR_TTY", raising=False)
    digits = np.round(load_digits().images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # [N, 8, 8, 1]
    weights = np.random.default_rng(0).normal(size=(64, 12))
    space = FeatureSpace("projection", lambda x: ((x.reshape(len(x), -1) / 255.0) @ weights,) * 2,
                         {"kind": "random projection for tests"})
    metrics = evaluate.evaluate_model(
        export_dir, evaluate.EvalData(digits[:120], translate_images=255 - digits[200:232],
                                      translate_name="inverted digits"),
        str(tmp_path / "eval"), {"projection": space}, evaluate.EvalOptions(
            num_samples=16, kid_subsets=4, masks=("square",), num_inpaint=2, num_diversity=0, num_ood=8,
            num_denoise=5, denoise_levels=(0.1, 0.3),
            thresholds=("denoising/0.1/model/psnr>=0", "translation/projection/translated/fid>=0")))
    den = metrics["denoising"]
    assert list(den["levels"]) == ["0.1", "0.3"] and den["ssim_window"] == "7x7 uniform"
    for level in den["levels"].values():
        assert set(level) == {"noisy", "nl_means", "model"} and level["model"]["num_images"] == 5
        assert 0.0 < level["model"]["psnr"] < 100.0 and -1.0 <= level["model"]["ssim"] <= 1.0
    tr = metrics["translation"]
    assert tr["source"] == "inverted digits" and tr["num_source"] == 32 and 0.0 < tr["change"] <= 1.0
    assert set(tr["spaces"]["projection"]) == {"translated", "source"}
    assert metrics["blessing"]["blessed"] is True
    assert "denoising" not in metrics["skipped"] and "translation" not in metrics["skipped"]
    flat = flatten_metrics(metrics)
    assert "denoising/0.3/nl_means/ssim" in flat and "translation/projection/source/kid" in flat
    report = (tmp_path / "eval" / "report.html").read_text()
    assert "sigma 0.3 (clean | noisy | nl_means | model)" in report
    assert "inverted digits -&gt; this model (source | translated)" in report
    err = capsys.readouterr().err
    assert "[evaluate] denoising: 6/6 runs, done in " in err
    without = evaluate.evaluate_model(export_dir, evaluate.EvalData(digits[:40]), str(tmp_path / "eval2"), {},
                                      evaluate.EvalOptions(num_samples=8, masks=(), num_inpaint=0,
                                                           num_diversity=0, num_ood=0, num_denoise=0))
    assert without["skipped"]["translation"].startswith("no source domain given")
    assert without["skipped"]["denoising"] == "eval.num_denoise=0 or no eval.denoise_levels"


def test_bad_inputs_raise_invalid_argument_naming_the_argument(loaded):
    good = tf.zeros([2, 8, 8, 1], tf.uint8)
    seed = tf.constant(1)
    cases = [("sample", dict(num_samples=tf.constant(0), seed=seed), r"num_samples must be in \[1, 8\]"),
             ("sample", dict(num_samples=tf.constant(CAP + 1), seed=seed), "num_samples must be in"),
             ("sample", dict(num_samples=tf.constant([2]), seed=seed), "num_samples must be a scalar"),
             ("sample", dict(num_samples=tf.constant(2), seed=tf.constant([1, 2])), "seed must be a scalar"),
             ("energy", dict(images=tf.zeros([8, 8, 1], tf.uint8)), "images must have rank 4"),
             ("energy", dict(images=tf.zeros([2, 4, 4, 1], tf.uint8)), r"images must have shape \[N, 8, 8, 1\]"),
             ("energy", dict(images=tf.zeros([0, 8, 8, 1], tf.uint8)), "images must hold N >= 1"),
             ("inpaint", dict(images=good, mask=tf.fill([2, 8, 8, 1], tf.constant(2, tf.uint8)), seed=seed),
              "mask must hold 0"),
             ("inpaint", dict(images=good, mask=tf.zeros([3, 8, 8, 1], tf.uint8), seed=seed),
              "mask must have the same N"),
             ("inpaint", dict(images=good, mask=tf.zeros([2, 8, 8, 3], tf.uint8), seed=seed),
              r"mask must have shape \[N, 8, 8, 1\]")]
    for name in ("denoise", "translate"):
        cases += [(name, dict(images=tf.zeros([8, 8, 1], tf.uint8), seed=seed), "images must have rank 4"),
                  (name, dict(images=tf.zeros([2, 8, 8, 3], tf.uint8), seed=seed),
                   r"images must have shape \[N, 8, 8, 1\]"),
                  (name, dict(images=tf.zeros([0, 8, 8, 1], tf.uint8), seed=seed), "images must hold N >= 1"),
                  (name, dict(images=tf.zeros([CAP + 1, 8, 8, 1], tf.uint8), seed=seed),
                   r"the number of images N must be in \[1, 8\]"),
                  (name, dict(images=good, seed=tf.constant([1, 2])), "seed must be a scalar")]
    for name, kwargs, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            loaded.signatures[name](**kwargs)
    # uint8 pixels cannot be out of range; a wrong dtype is refused at the signature boundary.
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)):
        loaded.signatures["denoise"](images=tf.zeros([2, 8, 8, 1], tf.float32), seed=seed)


@pytest.mark.parametrize("name", ["mnist5k-cfebm", "fashion-mnist-cfebm", "cifar10-cfebm",
                                  "celeba64-cfebm"])
def test_presets_smoke_schedule_reaches_the_final_stage(name):
    from pipeline.presets import load_preset

    full, smoke = load_preset(name), load_preset(f"{name}:smoke")
    assert full.model.family == smoke.model.family == "cfebm"
    assert smoke.pyramid.grids == full.pyramid.grids and smoke.data.image_size == full.data.image_size
    sizes = stage_sizes(smoke.model.base_size, smoke.data.image_size)
    assert sizes[0] == 8 and set(sizes) <= set(smoke.pyramid.grids)
    t = smoke.train
    images = t.max_steps * t.batch_size
    assert stage_at(images, len(sizes), t.fade_images, t.stable_images) == (len(sizes) - 1, 1.0)
    assert final_stage_images(len(sizes), t.fade_images, t.stable_images) < images  # a stable step too
    assert full.sampler.noise_schedule == "linear" and full.sampler.steps == 15


# ------------------------------------------------------------------ CLI

def _png_folder(root, n=3):
    from PIL import Image

    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8), mode="L").save(root / f"{i}.png")
    return root


@pytest.mark.parametrize("command", ["denoise", "translate"])
def test_cli_writes_outputs_and_a_side_by_side_grid(command, export_dir, tmp_path, capsys):
    from PIL import Image

    from pipeline.cli import main

    src = _png_folder(tmp_path / "src")
    out = tmp_path / "out"
    extra = ["--add-noise", "0.1"] if command == "denoise" else []
    assert main([command, "--model", export_dir, "--input", str(src), "--output", str(out),
                 "--seed", "4", *extra]) == 0
    assert "wrote 3" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["00000_input.png", "00000_output.png", "00001_input.png", "00001_output.png",
                     "00002_input.png", "00002_output.png", "grid.png"]
    assert np.asarray(Image.open(out / "00001_output.png")).shape == (8, 8)
    assert np.asarray(Image.open(out / "grid.png")).shape[0] == 8 + 2 * 2


def test_cli_usage_errors_exit_2_with_one_line(export_dir, tmp_path, capsys):
    from pipeline.cli import main

    src = _png_folder(tmp_path / "src")
    lacking = tmp_path / "lacking"
    (lacking / "assets").mkdir(parents=True)
    (lacking / "saved_model.pb").write_bytes(b"")
    (lacking / "assets" / "config.json").write_text(json.dumps({"family": "toy", "signatures": ["sample"]}))
    cases = [(["denoise", "--model", str(tmp_path / "none"), "--input", str(src), "--output", "o"],
              "--model"),
             (["translate", "--model", str(lacking), "--input", str(src), "--output", "o"],
              "has no 'translate' signature"),
             (["translate", "--model", export_dir, "--input", str(tmp_path / "nope"), "--output", "o"],
              "does not exist"),
             (["denoise", "--model", export_dir, "--input", str(src), "--output", "o",
               "--add-noise", "-1"], "--add-noise=-1.0 must be >= 0")]
    for argv, fragment in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1, err
