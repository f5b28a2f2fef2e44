"""End to end on a real (tiny, untrained) SavedModel: the numpy client and `evaluate_model`."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from evaluators import evaluate, push
from evaluators.blessing import flatten_metrics
from evaluators.features import FeatureSpace
from evaluators.model_client import ExportedModel
from trainers import train as train_lib
from trainers.config import Config
from trainers.export import export_saved_model

META = {"grids": [1, 4, 8], "image_size": 8, "channels": 1, "coarse_mean": [0.3], "coarse_std": [0.1]}


def _export(path, seed):
    cfg = Config.build(data={"image_size": 8, "channels": 1}, pyramid={"grids": [1, 4, 8]},
                       sampler={"steps": 2, "noise": True}, model={"width": 0.25},
                       train={"seed": seed}, export={"max_num_samples": 16})
    return export_saved_model(train_lib.build_model(cfg, META), path, cfg, META)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return _export(str(root / "model"), 0), _export(str(root / "random"), 1)


@pytest.fixture(scope="module")
def model(exports):
    return ExportedModel(exports[0])


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images[:360], data.target[:360].astype(np.int64)


def _train_digits():
    """Digits not among the fixture's 360: stand-ins for the model's training images."""
    return np.round(load_digits().images[400:700] * (255.0 / 16.0)).astype(np.uint8)[..., None]


def _projection_space():
    """A real FeatureSpace whose extractor is a fixed random projection (cheap, deterministic)."""
    rng = np.random.default_rng(0)
    w_feat, w_logit = rng.normal(size=(64, 16)), rng.normal(size=(64, 10))

    def batch_fn(images):
        x = images.reshape(len(images), -1).astype(np.float64) / 255.0
        return (x @ w_feat).astype(np.float32), (x @ w_logit).astype(np.float32)

    return FeatureSpace("projection", batch_fn, {"kind": "random projection for tests"})


def test_client_batches_within_the_cap_and_matches_the_signature(model):
    assert model.max_num_samples == 16 and model.grids == [1, 4, 8]
    assert model.trained_grids == [4, 8] and model.image_size == 8 and model.channels == 1
    out = model.sample(40, seed=3)  # 3 signature calls of 16, 16, 8
    assert set(out) == {"images", "grid_1", "grid_4", "grid_8"}
    assert out["images"].shape == (40, 8, 8, 1) and out["images"].dtype == np.uint8
    assert out["grid_4"].shape == (40, 4, 4, 1)
    direct = model.signatures["sample"](num_samples=tf.constant(16), seed=tf.constant(3))
    np.testing.assert_array_equal(out["images"][:16], direct["images"].numpy())
    np.testing.assert_array_equal(model.sample(40, seed=3)["images"], out["images"])
    assert not np.array_equal(out["images"][:16], out["images"][16:32])  # batches differ

    feats, energies = model.features(out["images"]), model.energy(out["images"])
    assert sorted(feats) == [4, 8] and sorted(energies) == [4, 8]
    assert feats[8].shape[0] == 40 and feats[8].dtype == np.float32 and energies[4].shape == (40,)

    mask = np.zeros((20, 8, 8, 1), np.uint8)
    mask[:, 2:6, 2:6] = 1
    filled = model.inpaint(out["images"][:20], mask, seed=1)
    keep = mask[..., 0] == 0
    np.testing.assert_array_equal(filled[keep], out["images"][:20][keep])
    coarse = model.sample_from_coarse(np.full((18, 1, 1, 1), 0.5, np.float32), seed=2)
    assert coarse["images"].shape == (18, 8, 8, 1)


def test_client_rejects_bad_inputs(model, tmp_path):
    with pytest.raises(ValueError, match="saved_model.pb"):
        ExportedModel(str(tmp_path))
    with pytest.raises(ValueError, match=r"uint8 \[N, 8, 8, 1\]"):
        model.features(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="num_samples"):
        model.sample(0)
    with pytest.raises(ValueError, match="mask"):
        model.inpaint(np.zeros((2, 8, 8, 1), np.uint8), np.zeros((2, 8, 8, 1), np.float32))


def test_evaluate_model_end_to_end(exports, digits, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MGEBM_STDERR_TTY", raising=False)  # captured stderr: plain lines
    images, labels = digits
    log_dir = tmp_path / "logs"
    with tf.summary.create_file_writer(str(log_dir / "train")).as_default():
        for step in range(3):
            tf.summary.scalar("loss/8", 1.0 / (step + 1), step=step)
    out_dir = tmp_path / "eval"
    metrics = evaluate.evaluate_model(
        exports[0], evaluate.EvalData(images, labels, train_images=_train_digits()), str(out_dir),
        {"projection": _projection_space()}, evaluate.EvalOptions(
            num_samples=40, kid_subsets=4, label_counts=(20, 200), masks=("square", "pepper"),
            num_inpaint=6, num_diversity=6, log_dir=str(log_dir), random_model_dir=exports[1],
            thresholds=("fid/projection<=1e9", "inpainting/square/model/error<=1"), seed=0,
            num_memorization=30, memorization_spaces=("projection", "absent")))

    on_disk = json.loads((out_dir / "metrics.json").read_text())
    assert on_disk == metrics
    space = metrics["feature_spaces"]["projection"]
    assert space["fid"] > space["reference"]["fid"] >= 0  # untrained samples are far from data
    assert space["num_real"] == 360 and space["num_fake"] == 40
    assert 1.0 <= space["inception_score"] <= 10.0 and space["info"]["kind"].startswith("random")
    down = metrics["downstream"]
    assert set(down["rows"]) == {"svm/model_finest_grid", "mlp/model_all_grids", "svm/raw_pixels",
                                 "svm/random_finest_grid", "mlp/random_all_grids"}
    assert down["num_test"] == 72 and down["rows"]["svm/raw_pixels"]["200"] < 0.3
    inp = metrics["inpainting"]["masks"]
    assert set(inp) == {"square", "pepper"} and set(inp["square"]) == {"model", "mean_fill", "interpolation"}
    assert metrics["diversity"]["num_starts"] == 3 and metrics["diversity"]["samples_per_start"] == 2
    assert metrics["blessing"]["blessed"] is True and len(metrics["blessing"]["checks"]) == 2
    assert metrics["model"]["trained_grids"] == [4, 8]
    ood = metrics["ood"]  # held-out images against the three synthetic sets, by energy
    assert ood["grid"] == 8 and sorted(ood["auroc"]) == ["constant", "interpolation", "uniform_noise"]
    assert all(0.0 <= v <= 1.0 for v in ood["auroc"].values()) and "energies" not in ood
    assert sorted(ood["auroc_by_grid"]) == ["4", "8"]  # JSON keys
    mem = metrics["memorization"]  # samples vs held-out images, nearest of 300 training digits
    assert set(mem["spaces"]) == {"pixels", "projection"} and mem["ratio"] > 0
    assert mem["spaces"]["pixels"]["num_generated"] == 30 and mem["spaces"]["pixels"]["num_train"] == 300
    assert flatten_metrics(metrics)["memorization/pixels/ratio"] == mem["ratio"]
    html = (out_dir / "report.html").read_text()
    assert "memorization/samples and their nearest training images" in html
    assert html.count("data:image/png;base64,") >= 3 + 2 + 1 + 1 + 1  # grids, masks, div, data, curves
    assert "no TensorBoard scalars" not in html and "svm/random_finest_grid" in html
    assert "Out-of-distribution detection" in html and "uniform_noise" in html
    err = capsys.readouterr().err  # progress per experiment, with counts
    for done in ("sampling: 40/40 images", "features projection: 400/400 images",
                 "downstream classification: 14/14 steps", "inpainting: 6/6 runs",
                 "diversity: 3/3 starts", "out-of-distribution: 288/288 images"):
        assert f"[evaluate] {done.split(':')[0]}: started" in err
        assert f"[evaluate] {done}, done in " in err
    assert "\r" not in err

    # A failing threshold: not blessed, and the caller pushes nothing.
    failing = evaluate.evaluate_model(
        exports[0], evaluate.EvalData(images[:40]), str(tmp_path / "eval2"), {}, evaluate.EvalOptions(
            num_samples=8, masks=(), num_inpaint=0, num_diversity=0, thresholds=("fid/projection<=1",)))
    assert failing["blessing"]["blessed"] is False and failing["downstream"] is None
    assert "not computed" in failing["blessing"]["checks"][0]["reason"]
    serving = tmp_path / "serving"
    for result in (metrics, failing):
        if result["blessing"]["blessed"]:
            push.push_model(exports[0], str(serving), "tiny")
    assert os.listdir(serving / "tiny") == ["1"]


def test_served_model_is_reevaluated_on_the_same_images_and_seeds(exports, digits, tmp_path, capsys):
    images, _ = digits
    served = push.push_model(exports[0], str(tmp_path / "serving"), "tiny")["pushed_dir"]
    cheap = dict(num_samples=40, kid_subsets=4, masks=(), num_inpaint=0, num_diversity=0, num_ood=0,
                 num_denoise=0, seed=3)
    same = evaluate.evaluate_model(
        exports[0], evaluate.EvalData(images), str(tmp_path / "same"), {"projection": _projection_space()},
        evaluate.EvalOptions(thresholds=("fid/projection<=baseline", "precision/projection>=baseline"),
                             served_model_dir=served, **cheap))
    base = same["baseline_model"]  # the served copy of the same model: the very same figures
    assert base["version"] == 1 and base["dir"] == served
    for key in ("fid", "kid", "precision", "recall"):
        assert base["feature_spaces"]["projection"][key] == same["feature_spaces"]["projection"][key]
    assert same["blessing"]["blessed"] and same["blessing"]["baseline_version"] == 1
    assert "[evaluate] blessed (compared with served version 1)" in capsys.readouterr().out
    html = (tmp_path / "same" / "report.html").read_text()
    assert "projection (served model, version 1)" in html and "samples/served model (version 1)" in html

    other = evaluate.evaluate_model(  # served: another (differently initialised) model
        exports[0], evaluate.EvalData(images), str(tmp_path / "other"), {"projection": _projection_space()},
        evaluate.EvalOptions(thresholds=("fid/projection<=baseline-1e6",), served_model_dir=exports[1], **cheap))
    assert other["baseline_model"]["version"] is None  # not a version folder
    assert other["baseline_model"]["feature_spaces"]["projection"]["fid"] != \
        other["feature_spaces"]["projection"]["fid"]
    check = other["blessing"]["checks"][0]
    assert not other["blessing"]["blessed"] and "violates" in check["reason"]
    assert check["baseline"] == other["baseline_model"]["feature_spaces"]["projection"]["fid"]


def test_evaluate_rejects_mismatched_images(exports, tmp_path):
    with pytest.raises(ValueError, match=r"uint8 \[N, 8, 8, 1\]"):
        evaluate.evaluate_model(exports[0], evaluate.EvalData(np.zeros((10, 16, 16, 1), np.uint8)),
                                str(tmp_path), {}, evaluate.EvalOptions(num_samples=4))
    images = np.zeros((10, 8, 8, 1), np.uint8)
    with pytest.raises(ValueError, match="kid_subsets"):
        evaluate.evaluate_model(exports[0], evaluate.EvalData(images), str(tmp_path),
                                {"projection": _projection_space()},
                                evaluate.EvalOptions(num_samples=6, kid_subsets=4))
    with pytest.raises(ValueError, match="together"):
        evaluate.evaluate_model(exports[0], evaluate.EvalData(images, test_images=images), str(tmp_path), {})
