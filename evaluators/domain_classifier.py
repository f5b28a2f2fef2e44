"""A small domain classifier whose penultimate activations form the ``domain`` feature space.

Like TF-GAN's MNIST classifier score: a ConvNet trained on the labelled images of the data set the
generative model is trained on; FID/KID/IS computed in its space are reported together with its
held-out accuracy.

Network (float32 [N, H, W, C] in [0, 1] -> (features [N, 128], logits [N, K])):
    conv 3x3 32 ReLU -> max-pool 2 -> conv 3x3 64 ReLU -> max-pool 2 -> conv 3x3 64 ReLU ->
    flatten -> dense 128 ReLU ("features") -> dense K ("logits").

Saved layout (any tf.io.gfile path, gs:// included):
    DIR/classifier.keras  the Keras model (two outputs: features, logits)
    DIR/info.json         {"accuracy", "num_classes", "image_size", "channels", "trained_on",
                           "num_train", "num_validation", "epochs", "seed", "feature_dim"}
"""

import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

__all__ = ["DomainClassifier", "train_classifier", "load_classifier", "MODEL_FILE", "INFO_FILE"]

MODEL_FILE = "classifier.keras"
INFO_FILE = "info.json"
FEATURE_DIM = 128


def _check_images(images, name="images"):
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 in [0, 255]; got dtype {images.dtype}.")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be [N, H, W, C] with C in (1, 3); got shape {images.shape}.")
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"{name} must be square (H == W); got {images.shape[1:3]}.")
    return images


def _check_labels(labels, num_images):
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array; got shape {labels.shape}, "
                         f"dtype {labels.dtype}.")
    if labels.shape[0] != num_images:
        raise ValueError(f"labels has {labels.shape[0]} entries but images has {num_images}; "
                         "pass one label per image.")
    if labels.size and labels.min() < 0:
        raise ValueError("labels contain negative values (e.g. -1 for unlabelled images); the "
                         "domain classifier needs a labelled data set with labels 0..K-1.")
    if np.unique(labels).size < 2:
        raise ValueError("labels must contain at least 2 classes to train a classifier.")
    return labels.astype(np.int64)


def build_classifier(image_size, channels, num_classes):
    """The untrained network: float32 [N, S, S, C] in [0, 1] -> (features [N, 128], logits [N, K])."""
    inputs = keras.Input((image_size, image_size, channels), name="images")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    features = keras.layers.Dense(FEATURE_DIM, activation="relu", name="features")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, [features, logits], name="domain_classifier")


class DomainClassifier:
    """A trained domain classifier: ``extract`` maps uint8 images to (features, logits).

    Attributes:
        model: keras.Model float32 [N, S, S, C] in [0, 1] -> (features [N, 128], logits [N, K]).
        info: the info.json dict (held-out ``accuracy`` among others).
    """

    def __init__(self, model, info):
        self.model = model
        self.info = dict(info)
        self.image_size = int(info["image_size"])
        self.channels = int(info["channels"])

    def prepare(self, images):
        """uint8 [N, H, W, C] (any size, C in {1, 3}) -> float32 [N, S, S, C_model] in [0, 1].

        Images of another size are resized (bilinear, antialiased); RGB is converted to grayscale
        (ITU-R 601 luma) for a 1-channel classifier and grayscale replicated for a 3-channel one.
        """
        images = _check_images(images)
        x = tf.cast(images, tf.float32) / 255.0
        if images.shape[-1] == 3 and self.channels == 1:
            x = tf.image.rgb_to_grayscale(x)
        elif images.shape[-1] == 1 and self.channels == 3:
            x = tf.repeat(x, 3, axis=-1)
        if images.shape[1] != self.image_size:
            x = tf.image.resize(x, (self.image_size, self.image_size), method="bilinear",
                                antialias=True)
            x = tf.clip_by_value(x, 0.0, 1.0)
        return x

    def extract(self, images, batch_size=256):
        """Returns (features float32 [N, 128] (>= 0), logits float32 [N, K]) for uint8 images."""
        images = _check_images(images)
        feats, logits = [], []
        for start in range(0, images.shape[0], batch_size):
            f, l = self.model(self.prepare(images[start:start + batch_size]), training=False)
            feats.append(np.asarray(f, np.float32))
            logits.append(np.asarray(l, np.float32))
        if not feats:
            k = int(self.info["num_classes"])
            return np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, k), np.float32)
        return np.concatenate(feats), np.concatenate(logits)

    def accuracy(self, images, labels, batch_size=256):
        """Top-1 accuracy (float in [0, 1]) on uint8 images with integer labels [N]."""
        labels = _check_labels(labels, np.asarray(images).shape[0])
        _, logits = self.extract(images, batch_size)
        return float(np.mean(np.argmax(logits, axis=1) == labels))


def train_classifier(images, labels, output_dir, epochs=5, seed=0, validation_fraction=0.1,
                     batch_size=64, learning_rate=1e-3, trained_on=""):
    """Trains the domain classifier, evaluates it on a held-out split and saves it.

    Args:
        images: uint8 [N, S, S, C], C in {1, 3}.
        labels: int [N], values 0..K-1 (K >= 2).
        output_dir: directory (tf.io.gfile path) for classifier.keras and info.json.
        epochs: training epochs (>= 1).
        seed: seeds the split and Keras (``keras.utils.set_random_seed``, which also seeds the
            global Python/numpy/TF generators).
        validation_fraction: held-out fraction in (0, 1).
        batch_size: training batch size.
        learning_rate: Adam learning rate.
        trained_on: free-text description of the data (e.g. the source string), stored in info.

    Returns:
        The info dict written to info.json; ``accuracy`` is the held-out top-1 accuracy.
    """
    images = _check_images(images)
    labels = _check_labels(labels, images.shape[0])
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction}.")
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs}.")
    n = images.shape[0]
    num_val = int(round(n * validation_fraction))
    if num_val < 1 or n - num_val < 2:
        raise ValueError(f"{n} images are too few for a held-out split of {validation_fraction}; "
                         "pass more images or change validation_fraction.")
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = order[:num_val], order[num_val:]
    num_classes = int(labels.max()) + 1
    image_size, channels = int(images.shape[1]), int(images.shape[-1])

    keras.utils.set_random_seed(seed)
    model = build_classifier(image_size, channels, num_classes)
    trainer = keras.Model(model.inputs, model.outputs[1])
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_train = images[train_idx].astype(np.float32) / 255.0
    trainer.fit(x_train, labels[train_idx], batch_size=batch_size, epochs=int(epochs),
                shuffle=True, verbose=0)
    info = {
        "num_classes": num_classes,
        "image_size": image_size,
        "channels": channels,
        "trained_on": str(trained_on),
        "num_train": int(train_idx.size),
        "num_validation": int(num_val),
        "epochs": int(epochs),
        "seed": int(seed),
        "feature_dim": FEATURE_DIM,
    }
    classifier = DomainClassifier(model, info)
    info["accuracy"] = classifier.accuracy(images[val_idx], labels[val_idx])
    _save(model, info, output_dir)
    return info


def _save(model, info, output_dir):
    tf.io.gfile.makedirs(output_dir)
    tmp = tempfile.mkdtemp(prefix="mgebm_classifier_")
    try:
        local = os.path.join(tmp, MODEL_FILE)
        model.save(local)
        tf.io.gfile.copy(local, os.path.join(output_dir, MODEL_FILE), overwrite=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with tf.io.gfile.GFile(os.path.join(output_dir, INFO_FILE), "w") as handle:
        handle.write(json.dumps(info, indent=2, sort_keys=True))


def load_classifier(classifier_dir):
    """Loads a classifier saved by :func:`train_classifier`.

    Args:
        classifier_dir: directory (tf.io.gfile path) with classifier.keras and info.json.

    Returns:
        DomainClassifier.
    """
    model_path = os.path.join(classifier_dir, MODEL_FILE)
    info_path = os.path.join(classifier_dir, INFO_FILE)
    for path in (model_path, info_path):
        if not tf.io.gfile.exists(path):
            raise ValueError(f"{path} does not exist: train a classifier first with "
                             "`mgebm classifier --data SRC --output DIR` (or train_classifier).")
    with tf.io.gfile.GFile(info_path, "r") as handle:
        info = json.loads(handle.read())
    tmp = tempfile.mkdtemp(prefix="mgebm_classifier_")
    try:
        local = os.path.join(tmp, MODEL_FILE)
        tf.io.gfile.copy(model_path, local, overwrite=True)
        model = keras.models.load_model(local, compile=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return DomainClassifier(model, info)
