"""MultiGridEBM: train_step per family under fit, chains, determinism, synthesis, inpainting."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainers.config import Config
from trainers.langevin import LangevinSampler
from trainers.families.multigrid import MultiGridEBM, build_model
from trainers.train import model_from_config
from trainers.networks import build_energy_net

GRIDS = (1, 4, 8)


def make_batch(n=4, seed=0):
    x = np.random.default_rng(seed).uniform(size=(n, 8, 8, 1)).astype(np.float32)
    return {"grid_1": x.mean(axis=(1, 2), keepdims=True),
            "grid_4": x.reshape(n, 4, 2, 4, 2, 1).mean(axis=(2, 4)), "grid_8": x,
            "label": np.zeros([n], np.int64)}


def build(family="multigrid", seed=0, **kwargs):
    kwargs = {"width": 0.1, "steps": 2, "step_size": 0.3, "pcd_buffer_size": 8, **kwargs}
    model = build_model(GRIDS, 1, variant=family, seed=seed, **kwargs)
    model.compile(learning_rate=1e-3, beta_1=0.5)
    return model


def fit(model, batch, steps):
    ds = tf.data.Dataset.from_tensors(batch).repeat(steps)
    return model.fit(ds, epochs=1, verbose=0, shuffle=False).history


def weights(model):
    return [v.numpy() for v in model.trainable_variables]


def check_first_step(family, model, twin, batch, history):
    """The first step's chains and losses, recomputed from the twin that keeps the initial weights."""
    if family in ("multigrid", "single_grid"):
        expected = twin.synthesize(batch["grid_1"], tf.constant([0, 0]))  # noise off: seed irrelevant
    elif family == "cd1":  # exactly one Langevin step from the data
        fn = twin.energy_nets[8]
        one, _ = LangevinSampler(1, 0.3).run(fn, batch["grid_8"], [0, 0])
        two, _ = LangevinSampler(2, 0.3).run(fn, batch["grid_8"], [0, 0])
        assert np.abs(one.numpy() - two.numpy()).max() > 1e-4  # a second step would be visible
        expected = {8: one}
    else:
        return
    for g in model.trained_grids:
        np.testing.assert_allclose(model.last_samples[g].numpy(), expected[g].numpy(), atol=1e-5)
        net = twin.energy_nets[g]
        loss = net(expected[g]).numpy().mean() - net(batch[f"grid_{g}"]).numpy().mean()
        assert history[f"loss/{g}"][-1] == pytest.approx(loss, rel=1e-4, abs=1e-6)
        assert history[f"energy_gap/{g}"][-1] == pytest.approx(-loss, rel=1e-4, abs=1e-6)


def check_pcd_buffer(model, start, batch):
    after = model.pcd_buffer.numpy()
    changed = np.abs(after - start).reshape(len(start), -1).max(axis=1) > 0
    assert changed.sum() == len(batch["grid_8"])  # exactly the batch's chains were replaced
    last = model.last_samples[8].numpy()
    for row in after[changed]:
        assert min(np.abs(row - s).max() for s in last) == 0.0  # ... by this step's samples
    return after


@pytest.mark.parametrize("family, trained", [("multigrid", (4, 8)), ("single_grid", (8,)),
                                             ("cd1", (8,)), ("pcd", (8,))])
def test_train_step_each_family(family, trained):
    steps = 5 if family == "cd1" else 2  # cd1 must still run 1 step
    model, twin = build(family, seed=3, steps=steps), build(family, seed=3, steps=steps)
    assert model.trained_grids == trained and sorted(model.energy_nets) == list(trained)
    before = weights(model)
    batch = make_batch()
    if family == "pcd":
        start = model.pcd_buffer.numpy()
        assert start.shape == (8, 8, 8, 1) and start.min() >= 0 and start.max() <= 1
        # initialised from upsampled 1x1 draws: every chain starts as a constant image
        np.testing.assert_array_equal(start, np.broadcast_to(start[:, :1, :1], start.shape))
    history = fit(model, batch, 1)
    check_first_step(family, model, twin, batch, history)
    if family == "pcd":
        start = check_pcd_buffer(model, start, batch)
    history = fit(model, make_batch(seed=1), 1)  # reuses the traced train function
    if family == "pcd":
        check_pcd_buffer(model, start, batch)
    for g in trained:
        for m in ("loss", "energy_gap", "grad_norm", "sample_mean", "sample_std", "param_grad_norm"):
            assert np.isfinite(history[f"{m}/{g}"][-1]), (m, g)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(before, weights(model)))
    assert int(model.train_counter.numpy()) == 2 and int(model.optimizer.iterations.numpy()) == 2
    assert all(int(opt.iterations.numpy()) == 2 for opt in model.grid_optimizers.values())
    last = model.last_samples
    assert sorted(last) == list(trained) and last[8].shape == (4, 8, 8, 1)


def test_same_seed_same_model_with_noise():
    batch = make_batch()
    a, b = build(seed=5, noise=True, step_size=0.05), build(seed=5, noise=True, step_size=0.05)
    for model in (a, b):
        fit(model, batch, 2)
    for x, y in zip(weights(a), weights(b)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.last_samples[8].numpy(), b.last_samples[8].numpy())


def test_synthesize_is_traceable_with_dynamic_batch():
    model = build(noise=True, step_size=0.05)
    fn = tf.function(model.synthesize, input_signature=[tf.TensorSpec([None, 1, 1, 1]),
                                                        tf.TensorSpec([2], tf.int32)])
    for n in (2, 3):
        out = fn(model.sample_coarse(n, [0, n]), tf.constant([1, 2]))
        assert sorted(out) == list(GRIDS)
        for g in GRIDS:
            assert out[g].shape == (n, g, g, 1) and out[g].dtype == tf.float32
            assert out[g].numpy().min() >= 0 and out[g].numpy().max() <= 1
    coarse = tf.fill([2, 1, 1, 1], 0.5)
    a, b = fn(coarse, tf.constant([1, 2])), fn(coarse, tf.constant([1, 2]))
    c = fn(coarse, tf.constant([1, 3]))
    np.testing.assert_array_equal(a[8].numpy(), b[8].numpy())
    assert np.abs(a[8].numpy() - c[8].numpy()).max() > 0  # one 1x1 start, different samples
    # non-multigrid families fill the intermediate grids with box averages of the finest samples
    single = build("single_grid").synthesize(coarse, [0, 0])
    np.testing.assert_allclose(single[4].numpy(),
                               single[8].numpy().reshape(2, 4, 2, 4, 2, 1).mean(axis=(2, 4)), atol=1e-6)


def test_sample_coarse_statistics():
    model = build_model(GRIDS, 3, width=0.1, coarse_mean=[0.2, 0.5, 0.7], coarse_std=[0.05, 0.1, 0.05])
    z = model.sample_coarse(20000, [4, 2]).numpy()
    assert z.shape == (20000, 1, 1, 3) and z.min() >= 0 and z.max() <= 1
    np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), [0.2, 0.5, 0.7], atol=0.004)
    np.testing.assert_allclose(z.std(axis=(0, 1, 2)), [0.05, 0.1, 0.05], rtol=0.05)
    np.testing.assert_array_equal(z, model.sample_coarse(20000, [4, 2]).numpy())


@pytest.mark.parametrize("family", ["multigrid", "single_grid"])
def test_inpaint_keeps_observed_pixels(family):
    model = build(family, noise=True, step_size=0.05)
    images = make_batch(3)["grid_8"]
    mask = np.zeros([3, 8, 8, 1], np.float32)
    mask[:, 2:6, 2:6] = 1.0
    mask[2] = 1.0  # all missing
    fn = tf.function(model.inpaint, input_signature=[tf.TensorSpec([None, 8, 8, 1]),
                                                     tf.TensorSpec([None, 8, 8, 1]), tf.TensorSpec([2], tf.int32)])
    out = fn(images, mask, tf.constant([0, 1])).numpy()
    observed = np.broadcast_to(mask == 0, out.shape)
    np.testing.assert_array_equal(out[observed], images[observed])
    assert np.abs(out[~observed] - images[~observed]).max() > 0
    assert out.min() >= 0 and out.max() <= 1 and np.isfinite(out).all()


def test_energies_and_features_of_the_pyramid():
    model = build()
    batch = make_batch()
    energies, feats = model.energies(batch["grid_8"]), model.features(batch["grid_8"])
    assert sorted(energies) == sorted(feats) == [4, 8]
    for g in (4, 8):
        net = model.energy_nets[g]
        np.testing.assert_allclose(energies[g].numpy(), net(batch[f"grid_{g}"]).numpy(), rtol=1e-5, atol=1e-6)
        assert feats[g].shape == (4, net.feature_dim)
    with pytest.raises(ValueError, match="images"):
        model.energies(tf.zeros([2, 4, 4, 1]))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_train_step(policy):
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = build()
        before = weights(model)
        history = fit(model, make_batch(), 1)
        assert all(np.isfinite(v[-1]) for v in history.values())
        assert model.trainable_variables[0].dtype == "float32"
        assert model.energy_nets[8].convs[0].compute_dtype == policy.split("_")[1]
        assert all(np.abs(a - b).max() > 0 for a, b in zip(before, weights(model)))
        if policy == "mixed_float16":  # loss scaling: one LossScaleOptimizer per grid
            assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in model.grid_optimizers.values())
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def test_jit_compiled_sampler_inside_fit():
    history = fit(build(jit_compile=True), make_batch(), 1)
    assert np.isfinite(history["loss/8"][-1])


def test_model_from_config():
    cfg = Config.build(data={"image_size": 8, "channels": 1}, pyramid={"grids": [1, 4, 8]},
                       model={"family": "pcd", "width": 0.1}, sampler={"steps": 3},
                       train={"batch_size": 4, "pcd_buffer_size": 16, "seed": 7})
    meta = {"grids": [1, 4, 8], "image_size": 8, "channels": 1, "coarse_mean": [0.3], "coarse_std": [0.1]}
    model = model_from_config(cfg, meta)
    assert model.start == "persistent" and model.sampler.steps == 3 and model.seed == 7
    assert model.pcd_buffer.shape == (16, 8, 8, 1) and model.coarse_mean == [0.3]
    with pytest.raises(ValueError, match="grids"):
        model_from_config(cfg, {**meta, "grids": [1, 2, 8]})
    with pytest.raises(ValueError, match="coarse_std"):
        model_from_config(cfg, {k: v for k, v in meta.items() if k != "coarse_std"})


def test_bad_arguments_raise():
    sampler = LangevinSampler(1, 0.1)
    nets = {8: build_energy_net(8, 1, width=0.1)}
    with pytest.raises(ValueError, match="start"):
        MultiGridEBM(nets, sampler, GRIDS, start="gan")
    with pytest.raises(ValueError, match="needs exactly"):
        MultiGridEBM({4: build_energy_net(4, 1, width=0.1)}, sampler, GRIDS)
    with pytest.raises(ValueError, match="needs exactly"):
        MultiGridEBM({4: build_energy_net(4, 1, width=0.1), **nets}, sampler, GRIDS, start="observed")
    with pytest.raises(ValueError, match="variant"):
        build_model(GRIDS, 1, variant="gan")
    with pytest.raises(ValueError, match="grids"):
        MultiGridEBM(nets, sampler, (1, 3, 8))
    with pytest.raises(ValueError, match="coarse_mean"):
        MultiGridEBM(nets, sampler, GRIDS, coarse_mean=[0.1, 0.2])
    model = MultiGridEBM(nets, sampler, GRIDS)
    with pytest.raises(ValueError, match="seed"):
        model.synthesize(tf.zeros([1, 1, 1, 1]), [1, 2, 3])
    with pytest.raises(ValueError, match="coarse"):
        model.synthesize(tf.zeros([1, 2, 2, 1]), [1, 2])


def test_weight_average_follows_the_warmed_up_ema_and_is_exported_on_request():
    decay = 0.9
    model = build(ema_decay=decay)
    assert not build().use_averaged_weights()  # off by default: nothing to copy
    batch = make_batch()
    expected = weights(model)
    for k in range(4):  # numpy replay of avg <- d avg + (1 - d) w with d = min(decay, (1+k)/(10+k))
        fit(model, batch, 1)
        d = min(decay, (1 + k) / (10 + k))
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights(model))]
    live = weights(model)
    assert model.use_averaged_weights()
    for got, want in zip(weights(model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert any(np.abs(w - e).max() > 1e-6 for w, e in zip(live, expected))  # the average differs
    with pytest.raises(ValueError, match="ema_decay"):
        build(ema_decay=1.0)


def test_finest_names_the_largest_grid_at_any_image_size():
    from trainers.families import grid_values  # pylint: disable=import-outside-toplevel

    assert grid_values("sampler.grid_preconditions", ["finest:binomial"], [4, 16], str, ("none", "binomial")) == \
        {16: "binomial"}
    with pytest.raises(ValueError, match="each once"):
        grid_values("sampler.grid_preconditions", ["finest:binomial", "16:none"], [4, 16], str, ("none", "binomial"))
    from pipeline.presets import load_preset  # pylint: disable=import-outside-toplevel

    for size, grids in ((32, "1,4,16,32"), (16, "1,4,16"), (64, "1,4,16,64")):  # the demo preset at any size
        cfg = load_preset("mnist5k-multigrid", [f"data.image_size={size}", f"pyramid.grids={grids}"])
        assert cfg.sampler.grid_preconditions == ("finest:binomial",)


def test_steps_and_step_size_per_grid_reach_training_and_synthesis():
    from trainers.chain import coarse_to_fine
    model = build(grid_steps={4: 1}, grid_step_sizes={8: 0.1})
    assert [(s.steps, s.step_size) for s in (model._plain.samplers[4], model._plain.samplers[8])] == [(1, 0.3),
                                                                                                        (2, 0.1)]
    batch = make_batch()
    by_hand, _ = coarse_to_fine(tf.constant(batch["grid_1"]), tf.constant([0, 0], tf.int64), (4, 8),
                                model._plain.energy_fns, {4: LangevinSampler(1, 0.3), 8: LangevinSampler(2, 0.1)})
    for g, x in model.synthesize(batch["grid_1"], tf.constant([0, 0])).items():
        if g > 1:
            np.testing.assert_allclose(x.numpy(), by_hand[g].numpy(), atol=1e-6)
    fit(model, batch, 1)  # the training chains run the same samplers (noise off: seed irrelevant)
    for g in (4, 8):
        np.testing.assert_allclose(model.last_samples[g].numpy(), by_hand[g].numpy(), atol=1e-5)
    cfg = Config.build(data={"image_size": 8, "channels": 1}, pyramid={"grids": [1, 4, 8]}, model={"width": 0.1},
                       sampler={"steps": 3, "grid_steps": ["4:2"], "grid_step_sizes": ["8:0.05"],
                                "grid_preconditions": ["8:binomial"]})
    meta = {"grids": [1, 4, 8], "image_size": 8, "channels": 1, "coarse_mean": [0.3], "coarse_std": [0.1]}
    samplers = model_from_config(cfg, meta)._plain.samplers
    assert (samplers[4].steps, samplers[4].step_size, samplers[8].steps, samplers[8].step_size) == (2, 0.3, 3, 0.05)
    assert (samplers[4].precondition, samplers[8].precondition) == ("none", "binomial")
    for bad in (["sampler.grid_preconditions=8:gauss"], ["sampler.grid_steps=8:0"], ["sampler.grid_steps=2:5"]):
        with pytest.raises(ValueError, match="must be S:value with S one of the trained grids"):
            cfg.with_overrides(bad)
