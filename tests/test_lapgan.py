"""Tests of the LAPGAN / DCGAN families: config fields named, each side's variables getting only
their own gradients, an exact resume, the export (labels checked naming the argument, a fresh
process) and the evaluator on the exports. Tiny shapes: levels 4 -> 8 px (model.base_size=4,
pyramid grids 1-4-8), 1 channel, labels i % 3 (tests.test_train.write_pyramid)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.test_train import checkpoint_values, event_tags, write_pyramid
from trainers.config import Config, ConfigError
from trainers.families import gan_spec
from trainers.families.lapgan import build_model
from trainers.families.lapgan_net import Discriminator
from trainers.train import train

CAP = 8


def gan_config(family="lapgan", conditional=True, gan_loss="non_saturating", classes=(0, 2), **train_settings):
    settings = dict(batch_size=4, max_steps=3, checkpoint_every=2, log_every=1, image_log_every=2,
                    shuffle_buffer=16, seed=3, learning_rate=1e-3)
    settings.update(train_settings)
    return Config.build("gan", data=dict(image_size=8, channels=1, classes=list(classes)),
                        pyramid=dict(grids=[1, 4, 8]),
                        model=dict(family=family, base_size=4, width=0.0625, norm="spectral",
                                   gan_loss=gan_loss, conditional=conditional, num_classes=3, noise_dim=8),
                        train=settings, export=dict(max_num_samples=CAP))


@pytest.fixture(scope="module")
def pyramid_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gan_pyramid")
    write_pyramid(root, n=24)
    return str(root)


def test_config_fields_are_validated_by_name():
    assert gan_config().model.gan_loss == "non_saturating"
    assert gan_spec.sizes_of(gan_config()) == (4, 8) and gan_spec.sizes_of(gan_config("dcgan")) == (8,)
    assert gan_spec.trained_classes(gan_config(classes=())) == (0, 1, 2)
    for override, message in [("model.gan_loss=hinge", "model.gan_loss='hinge' is not allowed"),
                              ("model.base_size=3", "data.image_size=8 must be model.base_size=3"),
                              ("model.norm=batch", "model.norm='batch' is not allowed"),
                              ("model.noise_dim=0", "model.noise_dim=0 must be >= 1"),
                              ("model.class_conditioning=label_smoothing",
                               "model.class_conditioning='label_smoothing' is not allowed"),
                              ("model.coarse_updates=0", "model.coarse_updates=0 must be an integer >= 1"),
                              ("data.classes=1,5", r"data.classes=\[1, 5\] must each be < model.num_classes=3"),
                              ("train.ema_decay=0.9", "train.ema_decay=0.9 is not supported")]:
        with pytest.raises(ConfigError, match=message):
            gan_config().with_overrides([override])
    gan_config(conditional=False).with_overrides(["data.classes=1,5"])  # labels unused: fine
    with pytest.raises(ConfigError, match="model.coarse_updates=2 needs model.family=lapgan"):
        gan_config("dcgan").with_overrides(["model.coarse_updates=2"])


def test_coarse_updates_step_the_coarsest_level_alone_first():
    model = build_model((4, 8), 1, width=4, noise_dim=8, spectral=True, num_classes=3, classes=(0, 1, 2),
                        class_conditioning="projection", coarse_updates=3, seed=1)
    model.compile(learning_rate=1e-2)
    calls = {"generator": [], "discriminator": []}
    for name, opt in model.optimizers_by_name().items():
        def record(pairs, name=name, original=opt.apply_gradients):
            pairs = list(pairs)
            calls[name].append({v.path for _, v in pairs})
            return original(pairs)
        opt.apply_gradients = record
    batch = {"grid_8": tf.random.stateless_uniform([4, 8, 8, 1], [3, 4]), "label": tf.constant([0, 1, 2, 0])}
    model.train_step(batch)
    for name, nets in (("generator", model.generators), ("discriminator", model.discriminators)):
        level0 = {v.path for v in nets[0].trainable_variables}
        every = {v.path for net in nets for v in net.trainable_variables}
        assert calls[name] == [level0, level0, every], name
    assert int(model.train_counter.numpy()) == 1


@pytest.mark.parametrize("gan_loss, conditioning", [("non_saturating", "concat"), ("wasserstein_gp", "concat"),
                                                    ("non_saturating", "acgan"), ("wasserstein_gp", "projection")])
def test_each_side_gets_only_its_own_gradients(gan_loss, conditioning):
    model = build_model((4, 8), 1, width=4, noise_dim=8, gan_loss=gan_loss, spectral=True, num_classes=3,
                        classes=(0, 1, 2), class_conditioning=conditioning, seed=1)
    model.compile(learning_rate=1e-2)
    g_paths = {v.path for v in model.generator_variables()}
    d_paths = {v.path for v in model.discriminator_variables()}
    assert g_paths and d_paths and not g_paths & d_paths
    assert g_paths | d_paths == {v.path for v in model.trainable_variables}
    applied = {}
    for name, opt in model.optimizers_by_name().items():
        def record(pairs, name=name, original=opt.apply_gradients):
            pairs = list(pairs)
            applied[name] = {v.path: g for g, v in pairs}
            return original(pairs)
        opt.apply_gradients = record
    batch = {"grid_8": tf.random.stateless_uniform([4, 8, 8, 1], [3, 4]), "label": tf.constant([0, 1, 2, 0])}
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    out = model.train_step(batch)
    assert set(applied["generator"]) == g_paths and set(applied["discriminator"]) == d_paths
    for grads in applied.values():
        assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads.values())
    after = {v.path: v.numpy() for v in model.trainable_variables}
    moved = {p for p in before if not np.array_equal(before[p], after[p])}
    assert moved & g_paths and moved & d_paths
    # The discriminator's loss does not reach the generators (their outputs are stopped).
    coarse, levels, labels = model.real_levels(batch)
    onehot = model.onehot(labels)
    with tf.GradientTape() as tape:
        fake = model.generate_level(0, 4, tf.constant([1, 2], tf.int64), onehot=onehot, training=True)
        loss = model._d_level_loss(0, coarse, tf.stop_gradient(fake), None, onehot,
                                   tf.constant([1, 2], tf.int64))[0]
    assert all(g is None for g in tape.gradient(loss, model.generator_variables()))
    assert out["collapse"] == 0.0 and np.isfinite(float(out["d_loss/8"]))
    assert ("d_class/8" in out and "g_class/4" in out) == (conditioning == "acgan")


def test_acgan_and_projection_discriminators_use_the_label_as_their_papers_do():
    model = build_model((4, 8), 1, width=4, noise_dim=8, spectral=True, num_classes=3, classes=(0, 1, 2),
                        class_conditioning="acgan", seed=1)
    x = tf.random.stateless_uniform([2, 4, 4, 1], [1, 1])
    for label in ([0, 1], [2, 2]):  # the label cannot change what the discriminator says
        logits, classes = model.discriminate(0, x, None, model.onehot(tf.constant(label)), with_classes=True)
        np.testing.assert_array_equal(model.discriminate(0, x), logits)
        assert logits.shape == (2,) and classes.shape == (2, 3)
    first_conv = model.discriminators[1].convs[0].layer  # spectral norm wraps it
    assert first_conv.kernel.shape[2] == 2  # residual + coarse image, no label planes
    assert model.export_info()["class_conditioning"] == "acgan"
    # Its class term is TF-GAN's cross-entropy on real plus generated inputs: near 2 log K untrained.
    batch = {"grid_8": tf.random.stateless_uniform([4, 8, 8, 1], [3, 4]), "label": tf.constant([0, 1, 2, 0])}
    coarse, _, labels = model.real_levels(batch)
    d_class = model._d_level_loss(0, coarse, coarse, None, model.onehot(labels), tf.constant([0, 0], tf.int64))[3]
    assert abs(float(d_class) - 2 * np.log(3)) < 0.5
    # A projection discriminator adds <embed(y), features> to the logit: the label moves it, and
    # its inputs have no label planes either.
    proj = build_model((4, 8), 1, width=4, noise_dim=8, spectral=False, num_classes=3, classes=(0, 1, 2),
                       class_conditioning="projection", seed=1)
    disc = proj.discriminators[0]
    a, b = (proj.discriminate(0, x, None, proj.onehot(tf.constant(y))) for y in ([0, 1], [2, 2]))
    assert not np.allclose(a, b) and disc.convs[0].kernel.shape[2] == 1
    h = tf.reshape(tf.nn.leaky_relu(disc.convs[0]((x - 0.5) * 2.0), 0.2), [2, -1])
    onehot = proj.onehot(tf.constant([0, 1]))
    want = (h @ disc.dense.kernel + disc.dense.bias)[:, 0] + tf.reduce_sum((onehot @ disc.embed.kernel) * h, -1)
    np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs the one-hot labels"):
        proj.discriminate(0, x)
    with pytest.raises(ValueError, match="conditioning='hinge' is not one of"):
        Discriminator(4, 1, 4, num_classes=3, conditioning="hinge")


def test_a_conditional_model_refuses_unlabelled_or_unknown_labels():
    model = build_model((8,), 1, width=4, noise_dim=8, num_classes=3, classes=(0, 1, 2), seed=1)
    model.compile()
    grid = tf.zeros([2, 8, 8, 1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="needs labelled records"):
        model.train_step({"grid_8": grid, "label": tf.constant([0, -1])})
    with pytest.raises(tf.errors.InvalidArgumentError, match="model.num_classes=3"):
        model.train_step({"grid_8": grid, "label": tf.constant([0, 3])})
    with pytest.raises(ValueError, match="needs 'label'"):
        model.train_step({"grid_8": grid})


def test_resume_equals_the_uninterrupted_run(pyramid_dir, tmp_path):
    config = gan_config(gan_loss="wasserstein_gp").with_overrides(["model.coarse_updates=2"])
    full = train(config.with_overrides(["train.max_steps=4"]), pyramid_dir, str(tmp_path / "full"), export=False)
    train(config.with_overrides(["train.max_steps=2"]), pyramid_dir, str(tmp_path / "resumed"), export=False)
    resumed = train(config.with_overrides(["train.max_steps=4"]), pyramid_dir, str(tmp_path / "resumed"),
                    resume=True, export=False)
    assert full.steps == resumed.steps == 4
    a, b = checkpoint_values(full.checkpoint_dir), checkpoint_values(resumed.checkpoint_dir)
    assert sorted(a) == sorted(b)
    assert any("moving_mean" in k for k in a) and any("vector_u" in k for k in a)
    assert a["model/train_counter/.ATTRIBUTES/VARIABLE_VALUE"] == 4
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    tags = event_tags(full.log_dir)
    assert {tags[t] for t in ("generated/4", "generated/8", "observed/grid_8")} == {"images"}
    assert not any("label" in t for t in tags)  # the batch's labels are no picture
    assert tags["logits_real/8"] == "histograms" and tags["d_loss/8"] == tags["collapse"] == "scalars"


# ------------------------------------------------------------------ export

@pytest.fixture(scope="module")
def export_dir(pyramid_dir, tmp_path_factory):
    return train(gan_config(), pyramid_dir, str(tmp_path_factory.mktemp("lapgan_run"))).export_dir


@pytest.fixture(scope="module")
def dcgan_export(pyramid_dir, tmp_path_factory):
    config = gan_config("dcgan", conditional=False, classes=(), max_steps=2)
    return train(config, pyramid_dir, str(tmp_path_factory.mktemp("dcgan_run"))).export_dir


_FRESH = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    sig = tf.saved_model.load({path!r}).signatures
    out = {{"signatures": sorted(sig)}}
    def desc(d):
        return {{k: [list(v.shape), v.dtype.name] for k, v in d.items()}}
    labels = tf.constant([0, 2, 2], tf.int32)
    s1 = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(1), labels=labels)
    s2 = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(1), labels=labels)
    s3 = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(2), labels=labels)
    out["sample"] = desc(s1)
    out["same_seed_same"] = bool(np.array_equal(s1["images"], s2["images"]))
    out["other_seed_differs"] = not np.array_equal(s1["images"], s3["images"])
    coarse = tf.fill([4, 4, 4, 1], 0.5)
    c = sig["sample_from_coarse"](coarse=coarse, seed=tf.constant(1), labels=tf.constant([0, 0, 0, 0]))
    out["from_coarse"] = desc(c)
    x = c["images"].numpy()
    out["one_start_differs"] = not np.array_equal(x[0], x[1])
    out["coarse_kept"] = bool(np.array_equal(c["grid_4"].numpy(), np.full([4, 4, 4, 1], 128, np.uint8)))
    print("JSON" + json.dumps(out))
""")


def test_export_in_a_fresh_process(export_dir):
    info = json.loads(open(os.path.join(export_dir, "assets", "config.json")).read())
    assert info["family"] == "lapgan" and info["signatures"] == ["sample", "sample_from_coarse"]
    assert info["grids"] == [4, 8] and info["coarse_size"] == 4 and info["conditional"] is True
    assert info["classes"] == [0, 2] and info["num_classes"] == 3
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _FRESH.format(path=export_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")][-1][4:])
    assert out["signatures"] == ["sample", "sample_from_coarse"]
    assert out["sample"] == {"images": [[3, 8, 8, 1], "uint8"], "grid_4": [[3, 4, 4, 1], "uint8"],
                             "grid_8": [[3, 8, 8, 1], "uint8"]}
    assert out["from_coarse"]["images"] == [[4, 8, 8, 1], "uint8"]
    assert out["same_seed_same"] and out["other_seed_differs"]
    assert out["one_start_differs"] and out["coarse_kept"]


def test_bad_inputs_raise_invalid_argument_naming_the_argument(export_dir):
    sig = tf.saved_model.load(export_dir).signatures
    seed, n = tf.constant(1), tf.constant(2)
    cases = [("sample", dict(num_samples=n, seed=seed, labels=tf.constant([0, 1])),
              r"labels must each be one of the trained classes \[0, 2\]"),
             ("sample", dict(num_samples=n, seed=seed, labels=tf.constant([0, -1])), "labels must each be one"),
             ("sample", dict(num_samples=n, seed=seed, labels=tf.constant([0, 2, 2])),
              "labels must hold one label per sample"),
             ("sample", dict(num_samples=n, seed=seed, labels=tf.constant(0)), "labels must have rank 1"),
             ("sample", dict(num_samples=tf.constant(CAP + 1), seed=seed, labels=tf.zeros([CAP + 1], tf.int32)),
              r"num_samples must be in \[1, 8\]"),
             ("sample", dict(num_samples=n, seed=tf.constant([1, 2]), labels=tf.constant([0, 2])),
              "seed must be a scalar"),
             ("sample_from_coarse", dict(coarse=tf.zeros([2, 8, 8, 1]), seed=seed, labels=tf.constant([0, 2])),
              r"coarse must have shape \[N, 4, 4, 1\]"),
             ("sample_from_coarse", dict(coarse=tf.fill([2, 4, 4, 1], 2.0), seed=seed, labels=tf.constant([0, 2])),
              r"coarse must lie in \[0, 1\]"),
             ("sample_from_coarse", dict(coarse=tf.zeros([2, 4, 4, 1]), seed=seed, labels=tf.constant([1, 2])),
              "labels must each be one of the trained classes")]
    for name, kwargs, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            sig[name](**kwargs)


def test_client_passes_labels_and_evaluator_skips_what_a_gan_lacks(export_dir, dcgan_export, tmp_path):
    from evaluators import evaluate
    from evaluators.model_client import ExportedModel

    client = ExportedModel(export_dir)
    assert client.conditional and client.classes == [0, 2] and client.coarse_size == 4
    assert client.sample_labels(5).tolist() == [0, 2, 0, 2, 0]
    assert client.sample(3, seed=1)["images"].shape == (3, 8, 8, 1)
    with pytest.raises(ValueError, match=r"labels \[1\] are not among the trained classes"):
        client.sample(2, labels=[0, 1])
    plain = ExportedModel(dcgan_export)
    assert not plain.conditional and plain.signature_names == ["sample"]
    with pytest.raises(ValueError, match="not class-conditional"):
        plain.sample(2, labels=[0, 1])

    from evaluators.features import FeatureSpace

    images, _, _ = write_pyramid(tmp_path / "real", n=40, seed=5)
    real = np.round(images * 255).astype(np.uint8)
    weights = np.random.default_rng(0).normal(size=(64, 6))
    domain = FeatureSpace("domain", lambda x: ((x.reshape(len(x), -1) / 255.0) @ weights,
                                               (x.reshape(len(x), -1) / 255.0) @ weights[:, :3]),
                          {"kind": "random projection standing in for the domain classifier"})
    for model_dir, name in [(dcgan_export, "dcgan"), (export_dir, "lapgan")]:
        metrics = evaluate.evaluate_model(
            model_dir, evaluate.EvalData(real, np.arange(40) % 3, train_images=real[:20]), str(tmp_path / name),
            {"domain": domain}, evaluate.EvalOptions(num_samples=8, kid_subsets=4, masks=("square",), num_inpaint=2,
                                                     num_diversity=4, num_ood=8, num_denoise=2, num_memorization=8,
                                                     memorization_spaces=()))
        assert metrics["model"]["family"] == name
        skipped = metrics["skipped"]
        for experiment in ("downstream", "inpainting", "ood", "denoising"):
            assert skipped[experiment].startswith("the model has no"), (experiment, skipped)
        assert metrics["memorization"] is not None
        assert metrics["feature_spaces"]["domain"]["fid"] is not None
        if name == "dcgan":
            assert skipped["diversity"] == "the model has no 'sample_from_coarse' signature"
            assert skipped["conditional"] == "the model is not class-conditional"
        else:
            assert "diversity" not in skipped
            div = metrics["diversity"]
            assert div["num_starts"] == 2 and div["samples_per_start"] == 2 and div["fraction_pairs_differ"] > 0
            assert any(n.startswith("data.classes=[0, 2]: 27 of 40 real images") for n in metrics["notes"])
            cond = metrics["conditional"]
            assert cond["classes"] == [0, 2] and cond["num_samples_per_class"] == 4
            assert sorted(cond["fid"]["domain"]["per_class"]) == ["0", "2"]
            assert 0.0 <= cond["label_accuracy"] <= 1.0 and sorted(cond["label_accuracy_per_class"]) == ["0", "2"]
            # The judge's own accuracy on the real images of the trained classes (no held-out split given).
            labels = np.arange(40) % 3
            mine = np.isin(labels, [0, 2])
            judged = np.argmax((real[mine].reshape(int(mine.sum()), -1) / 255.0) @ weights[:, :3], axis=1)
            assert cond["label_accuracy_real"] == pytest.approx(np.mean(judged == labels[mine]))
            assert 0.0 <= cond["label_accuracy_from_real_coarse"] <= 1.0
            report = (tmp_path / name / "report.html").read_text()
            assert "Label accuracy of the <code>domain</code> classifier" in report
            assert "the same classifier on held-out real images of these classes" in report
            assert "Refined from the held-out images' own coarsest level" in report


def test_cli_samples_with_labels_and_refuses_bad_ones(export_dir, dcgan_export, tmp_path, capsys):
    from pipeline.cli import main

    png = tmp_path / "grid.png"
    assert main(["sample", "--model", export_dir, "--num", "4", "--labels", "2,0", "--output", str(png)]) == 0
    assert png.exists()
    assert main(["sample", "--model", export_dir, "--num", "2", "--output", str(tmp_path / "default.png")]) == 0
    capsys.readouterr()
    for model, labels, fragment in [(export_dir, "1", "each must be one of the trained classes [0, 2]"),
                                    (export_dir, "x", "must be comma-separated integers"),
                                    (dcgan_export, "0", "is not class-conditional")]:
        assert main(["sample", "--model", model, "--labels", labels, "--output", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1, err
