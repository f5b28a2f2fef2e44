"""Must-show sanity of FID/KID on real Fashion-MNIST images (slow; ~5 min on 2 CPU cores).

Two disjoint halves of 2,000 training images (resized to 32x32) are compared with each other and
with Gaussian-noised copies (sigma 0.15, 0.3, 0.6 in [0, 1] units, clipped) in the
``efficientnet_lite0`` space and in the ``domain`` space (a classifier trained on 10,000 other
Fashion-MNIST training images and their labels). Expected:
    FID(half, half) < FID(half, noised half, 0.15) / 3;  |KID(half, half)| <= 3 kid_std;
    FID grows monotonically with sigma.

Run: .venv/bin/python -m pytest -p no:xdist -q -m slow -s tests/test_fid_sanity.py
 or: .venv/bin/python tests/test_fid_sanity.py   (prints the figures as JSON)
"""

import json
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from components.sources import read_idx
from evaluators import domain_classifier, fid
from evaluators.features import get_feature_space

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
SIGMAS = (0.15, 0.3, 0.6)
NUM_EVAL = 2000
NUM_CLASSIFIER = 10000


def load_fashion(num, offset=0, size=32):
    images = read_idx(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz"), "images")[offset:offset + num]
    labels = read_idx(os.path.join(FASHION_DIR, "train-labels-idx1-ubyte.gz"), "labels")[offset:offset + num]
    resized = tf.image.resize(tf.cast(images[..., None], tf.float32), (size, size),
                              method="bilinear", antialias=True)
    return np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8), labels.astype(np.int64)


def add_noise(images, sigma, seed):
    x = images.astype(np.float32) / 255.0
    x = x + sigma * np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def sanity_figures(space, images):
    """FID/KID of half vs half and half vs noised other half per sigma, in ``space``."""
    half_a, half_b = images[: len(images) // 2], images[len(images) // 2:]
    feats_a, _ = space.extract(half_a)
    feats_b, _ = space.extract(half_b)
    out = {"space": space.name, "halves": fid.compare_activations(feats_a, feats_b)}
    for i, sigma in enumerate(SIGMAS):
        noised, _ = space.extract(add_noise(half_b, sigma, seed=i))
        out[f"noise_{sigma}"] = fid.compare_activations(feats_a, noised)
    return out


def check(figures):
    halves = figures["halves"]
    fids = [figures[f"noise_{s}"]["fid"] for s in SIGMAS]
    assert halves["fid"] < fids[0] / 3, figures
    assert abs(halves["kid"]) <= 3 * halves["kid_std"], figures
    assert fids[0] < fids[1] < fids[2], figures


def run_all(classifier_dir):
    images, _ = load_fashion(NUM_EVAL)
    train_images, train_labels = load_fashion(NUM_CLASSIFIER, offset=NUM_EVAL)  # disjoint
    info = domain_classifier.train_classifier(train_images, train_labels, classifier_dir,
                                              epochs=3, seed=0, trained_on="fashion-mnist train "
                                              f"[{NUM_EVAL}:{NUM_EVAL + NUM_CLASSIFIER}] 32x32")
    results = {"domain_classifier_accuracy": info["accuracy"]}
    for name in ("efficientnet_lite0", "domain"):
        space = get_feature_space(name, classifier_dir=classifier_dir)
        results[name] = sanity_figures(space, images)
    return results


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(FASHION_DIR),
                    reason="needs the Debian package dataset-fashion-mnist")
def test_fid_sanity_on_fashion_mnist(tmp_path):
    results = run_all(str(tmp_path / "classifier"))
    print(json.dumps(results, indent=1))
    assert results["domain_classifier_accuracy"] > 0.8
    check(results["efficientnet_lite0"])
    check(results["domain"])


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run_all(os.path.join(tmp, "classifier")), indent=1))
