"""Feature spaces (plumbing, weight loading, errors) and compare_image_sets."""

import h5py
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format

from evaluators import domain_classifier, features, fid
from evaluators.features import FeatureUnavailable, get_feature_space


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    """No weights configured anywhere: env vars unset and an empty Keras cache (HOME)."""
    for name in (features.INCEPTION_V3_ENV, features.INCEPTION_2015_ENV,
                 features.ALLOW_DOWNLOAD_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 2
    # Class 0: dark images, class 1: bright images (trivially separable), 12x12 gray.
    images = (rng.uniform(0, 100, size=(200, 12, 12, 1)) + 120 * labels[:, None, None, None])
    out = str(tmp_path_factory.mktemp("domain"))
    domain_classifier.train_classifier(images.astype(np.uint8), labels, out, epochs=8,
                                       trained_on="synthetic")
    return out


def test_unknown_space_and_bad_images():
    with pytest.raises(ValueError, match="Unknown feature space"):
        get_feature_space("inception_v4")
    with pytest.raises(ValueError, match="only supported for inception_v3"):
        get_feature_space("efficientnet_lite0", _random_weights_for_tests=True)
    space = get_feature_space("efficientnet_lite0")
    with pytest.raises(ValueError, match="uint8"):
        space.extract(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="C in"):
        space.extract(np.zeros((2, 8, 8, 4), np.uint8))


def test_efficientnet_space_shapes_and_info():
    space = get_feature_space("efficientnet_lite0")
    images = np.random.default_rng(1).integers(0, 256, size=(3, 20, 20, 1), dtype=np.uint8)
    feats, logits = space.extract(images, batch_size=2)
    assert feats.shape == (3, 1280) and logits.shape == (3, 1000)
    assert feats.dtype == np.float32 and logits.dtype == np.float32
    assert space.name == "efficientnet_lite0" and space.info["feature_dim"] == 1280
    assert space.info["weights"].endswith(".pth")
    # Batching does not change the result.
    np.testing.assert_allclose(space.extract(images, batch_size=3)[0], feats, atol=1e-4)


def test_inception_v3_missing_weights_fail_fast(offline_env, tmp_path):
    with pytest.raises(FeatureUnavailable, match=features.INCEPTION_V3_ENV):
        get_feature_space("inception_v3")
    with pytest.raises(FeatureUnavailable, match="does not exist"):
        get_feature_space("inception_v3", inception_weights=str(tmp_path / "none.h5"))


def test_inception_v3_plumbing_and_legacy_h5_loading(offline_env, tmp_path, monkeypatch):
    space = get_feature_space("inception_v3", _random_weights_for_tests=True)
    assert "random" in space.info["weights"]
    images = np.random.default_rng(2).integers(0, 256, size=(2, 16, 16, 3), dtype=np.uint8)
    feats, logits = space.extract(images)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1000)
    assert np.all(np.isfinite(feats)) and feats.min() >= 0.0
    # Write these random weights in the legacy Keras .h5 layout of the real ImageNet file and
    # load them back through the real loading path (the environment variable).
    path = tmp_path / features.INCEPTION_V3_FILE
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, space.model)
    monkeypatch.setenv(features.INCEPTION_V3_ENV, str(path))
    loaded = get_feature_space("inception_v3")
    assert loaded.info["weights"] == str(path)
    # Same weights, layer by layer (a forward pass would only retrace the same graph).
    for ours, theirs in zip(loaded.model.weights, space.model.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=ours.path)
    assert len(loaded.model.weights) == len(space.model.weights) > 300
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"garbage")
    with pytest.raises(FeatureUnavailable, match="Could not load"):
        get_feature_space("inception_v3", weights=str(bad))


def _tiny_inception_graph(path):
    """A GraphDef with TF-GAN's tensor names: Mul:0 -> pool_3:0 [N,1,1,3] -> logits:0 [N,2]."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 299, 299, 3], name="Mul")
        pool = tf.reduce_mean(x, axis=[1, 2], keepdims=True, name="pool_3")
        weights = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
        tf.matmul(tf.reshape(pool, [-1, 3]), weights, name="logits")
    with open(path, "wb") as handle:
        handle.write(graph.as_graph_def().SerializeToString())


def test_inception_2015_missing_and_synthetic_graph(offline_env, tmp_path, monkeypatch):
    with pytest.raises(FeatureUnavailable, match=features.INCEPTION_2015_ENV):
        get_feature_space("inception_2015")
    with pytest.raises(FeatureUnavailable, match="does not exist"):
        get_feature_space("inception_2015", inception_2015_graph=str(tmp_path / "none.pb"))
    path = str(tmp_path / "graph.pb")
    _tiny_inception_graph(path)
    monkeypatch.setenv(features.INCEPTION_2015_ENV, path)
    space = get_feature_space("inception_2015")
    colours = np.array([[0, 127.5, 255], [255, 255, 0]])
    images = np.broadcast_to(colours[:, None, None, :], (2, 10, 10, 3)).round().astype(np.uint8)
    feats, logits = space.extract(images)
    expected = images[:, 0, 0, :] / 127.5 - 1.0  # resize keeps flat colours flat
    np.testing.assert_allclose(feats, expected, atol=1e-3)
    np.testing.assert_allclose(logits, expected @ np.array([[1, 0], [0, 1], [1, -1]]), atol=1e-3)
    bad = str(tmp_path / "bad.pb")
    with open(bad, "wb") as handle:
        handle.write(tf.Graph().as_graph_def().SerializeToString())
    with pytest.raises(FeatureUnavailable, match="lacks tensor"):
        get_feature_space("inception_2015", weights=bad)


def test_domain_space_reports_accuracy(classifier_dir):
    with pytest.raises(FeatureUnavailable, match="mgebm classifier"):
        get_feature_space("domain")
    with pytest.raises(FeatureUnavailable, match="does not exist"):
        get_feature_space("domain", classifier_dir=classifier_dir + "_missing")
    space = get_feature_space("domain", classifier_dir=classifier_dir)
    assert space.info["accuracy"] > 0.9 and space.info["trained_on"] == "synthetic"
    feats, logits = space.extract(np.zeros((5, 12, 12, 1), np.uint8))
    assert feats.shape == (5, 128) and logits.shape == (5, 2)


def test_compare_image_sets(classifier_dir):
    space = get_feature_space("domain", classifier_dir=classifier_dir)
    rng = np.random.default_rng(3)
    dark = rng.uniform(0, 100, size=(40, 12, 12, 1)).astype(np.uint8)
    dark2 = rng.uniform(0, 100, size=(40, 12, 12, 1)).astype(np.uint8)
    bright = (rng.uniform(0, 100, size=(40, 24, 24, 3)) + 120).astype(np.uint8)  # other size/C
    same = fid.compare_image_sets(dark, dark2, space, kid_subsets=4)
    far = fid.compare_image_sets(dark, bright, space, kid_subsets=4)
    assert set(same) == {"features", "fid", "kid", "kid_std", "precision", "recall", "num_real",
                         "num_fake", "space_info"}
    assert same["features"] == "domain" and same["num_real"] == 40 and same["num_fake"] == 40
    assert same["space_info"]["accuracy"] == space.info["accuracy"]
    assert far["fid"] > 10 * max(same["fid"], 1e-6) and far["kid"] > same["kid"]
    assert far["precision"] < 0.2 and same["precision"] > 0.5
    assert all(np.isfinite(same[k]) for k in ("fid", "kid", "kid_std", "precision", "recall"))
    with pytest.raises(ValueError, match="at least 20"):
        fid.compare_image_sets(dark[:10], dark2, space, kid_subsets=10)
    with pytest.raises(ValueError, match="uint8"):
        fid.compare_image_sets(dark.astype(np.float32), dark2, space)
