"""Domain classifier: trains to high held-out accuracy on real digits, saves/loads, checks input."""

import json
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from evaluators import domain_classifier as dc


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = np.clip(data.images * 16.0, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    images = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)[..., None]  # [N, 16, 16, 1]
    return images, data.target.astype(np.int64)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    images, labels = digits
    out = str(tmp_path_factory.mktemp("classifier"))
    info = dc.train_classifier(images, labels, out, epochs=5, seed=0, trained_on="sklearn digits")
    return out, info


def test_trains_to_high_held_out_accuracy_and_writes_info(trained):
    out, info = trained
    assert info["accuracy"] > 0.9
    assert info["num_classes"] == 10 and info["image_size"] == 16 and info["channels"] == 1
    assert info["num_validation"] == 180 and info["num_train"] == 1797 - 180
    with open(os.path.join(out, dc.INFO_FILE)) as handle:
        assert json.load(handle) == info
    assert os.path.isfile(os.path.join(out, dc.MODEL_FILE))


def test_load_reproduces_predictions_and_extracts_features(trained, digits):
    out, info = trained
    images, labels = digits
    classifier = dc.load_classifier(out)
    assert classifier.info == info
    feats, logits = classifier.extract(images[:50], batch_size=16)
    assert feats.shape == (50, dc.FEATURE_DIM) and logits.shape == (50, 10)
    assert feats.dtype == np.float32 and feats.min() >= 0.0
    assert np.mean(np.argmax(logits, 1) == labels[:50]) > 0.9
    # Mismatched channels / sizes are adapted: RGB 32x32 copies of the digits still classify.
    rgb = np.repeat(np.repeat(np.repeat(images[:50], 2, axis=1), 2, axis=2), 3, axis=-1)
    assert classifier.accuracy(rgb, labels[:50]) > 0.8


@pytest.mark.parametrize("labels, match", [
    (np.full(20, -1), "negative"),
    (np.zeros(19, np.int64), "one label per image"),
    (np.zeros(20, np.int64), "at least 2 classes"),
    (np.linspace(0, 1, 20), "integer"),
])
def test_bad_labels_raise(tmp_path, labels, match):
    images = np.zeros((20, 8, 8, 1), np.uint8)
    with pytest.raises(ValueError, match=match):
        dc.train_classifier(images, labels, str(tmp_path))


def test_bad_images_and_missing_dir_raise(tmp_path):
    labels = np.arange(20) % 2
    with pytest.raises(ValueError, match="uint8"):
        dc.train_classifier(np.zeros((20, 8, 8, 1), np.float32), labels, str(tmp_path))
    with pytest.raises(ValueError, match="C in"):
        dc.train_classifier(np.zeros((20, 8, 8, 2), np.uint8), labels, str(tmp_path))
    with pytest.raises(ValueError, match="validation_fraction"):
        dc.train_classifier(np.zeros((20, 8, 8, 1), np.uint8), labels, str(tmp_path),
                            validation_fraction=1.0)
    with pytest.raises(ValueError, match="mgebm classifier"):
        dc.load_classifier(str(tmp_path / "nothing"))
