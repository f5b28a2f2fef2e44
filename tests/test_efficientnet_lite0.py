"""EfficientNet-Lite0: torch-free checkpoint reading and the converted ImageNet classifier."""

import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest
import skimage.data

from evaluators import efficientnet_lite0 as enet


# ---------------------------------------------------------------- a tiny torch.save writer
def _fake_torch(monkeypatch):
    """Registers stand-ins for torch.FloatStorage / torch._utils._rebuild_tensor_v2 so that the
    standard pickler writes the same global references as torch.save does."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")
    storage_cls = type("FloatStorage", (), {"__module__": "torch"})

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch_mod.FloatStorage, torch_mod._utils = storage_cls, utils_mod
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)
    return storage_cls, _rebuild_tensor_v2


class _Storage:
    def __init__(self, key, flat):
        self.key, self.flat = key, flat


def _write_checkpoint(tensors, legacy, monkeypatch):
    """torch.save-like bytes of {name: (flat float32 storage, offset, size, stride)}."""
    storage_cls, rebuild = _fake_torch(monkeypatch)
    storages = {}

    class Tensor:
        def __init__(self, key, flat, offset, size, stride):
            self.args = (_Storage(key, flat), offset, size, stride)

        def __reduce__(self):
            return rebuild, self.args + (False, collections.OrderedDict())

    state = collections.OrderedDict()
    for i, (name, (flat, offset, size, stride)) in enumerate(tensors.items()):
        storages[str(i)] = flat
        state[name] = Tensor(str(i), flat, offset, size, stride)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", storage_cls, obj.key, "cpu", obj.flat.size)
            return None

    def dump(obj, handle):
        Pickler(handle, protocol=2).dump(obj)

    out = io.BytesIO()
    if legacy:
        pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)
        pickle.dump(1001, out, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True}, out, protocol=2)
        dump(state, out)
        pickle.dump(list(storages), out, protocol=2)
        for flat in storages.values():
            out.write(np.int64(flat.size).tobytes())
            out.write(flat.astype("<f4").tobytes())
        return out.getvalue()
    with zipfile.ZipFile(out, "w") as archive:
        buffer = io.BytesIO()
        dump(state, buffer)
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for key, flat in storages.items():
            archive.writestr(f"archive/data/{key}", flat.astype("<f4").tobytes())
    return out.getvalue()


@pytest.mark.parametrize("legacy", [True, False])
def test_reader_honours_offsets_and_strides(tmp_path, monkeypatch, legacy):
    flat = np.arange(30, dtype=np.float32)
    data = _write_checkpoint({
        "contiguous": (flat, 0, (2, 3), (3, 1)),
        "transposed": (flat, 2, (3, 4), (1, 3)),  # column-major view starting at element 2
        "scalar": (np.array([7.0], np.float32), 0, (), ()),
    }, legacy, monkeypatch)
    monkeypatch.undo()  # The reader must work without anything named torch.
    path = tmp_path / "ckpt.pth"
    path.write_bytes(data)
    state = enet.read_torch_state_dict(str(path))
    np.testing.assert_array_equal(state["contiguous"], flat[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["transposed"], flat[2:14].reshape(4, 3).T)
    assert state["scalar"].shape == () and float(state["scalar"]) == 7.0


def test_reader_rejects_non_checkpoints(tmp_path):
    path = tmp_path / "bad.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="neither a zip nor a legacy"):
        enet.read_torch_state_dict(str(path))
    with pytest.raises(ValueError, match="does not exist"):
        enet.read_torch_state_dict(str(tmp_path / "missing.pth"))


# ---------------------------------------------------------------- the shipped checkpoint
def test_shipped_state_dict_layout():
    state = enet.read_torch_state_dict(enet.default_checkpoint_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.running_var"].min() >= 0 and state["_bn0.running_var"].max() > 0
    assert not any("_se_" in key for key in state)  # Lite: no squeeze-excite


def test_conversion_classifies_bundled_photos():
    enet._CACHE.clear()
    model = enet.load_efficientnet_lite0()
    assert enet.load_efficientnet_lite0() is model  # cached per process
    cat, coffee = skimage.data.chelsea(), skimage.data.coffee()
    feats_cat, logits_cat = enet.extract(cat[None])
    feats_coffee, logits_coffee = enet.extract(coffee[None])
    assert feats_cat.shape == (1, 1280) and logits_cat.shape == (1, 1000)
    assert feats_cat.dtype == np.float32 and feats_cat.min() >= 0.0
    assert 281 <= int(np.argmax(logits_cat[0])) <= 285  # a domestic cat class
    assert 967 in np.argsort(-logits_coffee[0])[:5]  # espresso


def test_grayscale_is_replicated_and_bad_input_rejected():
    gray = skimage.data.camera()[::8, ::8][None, :, :, None]  # uint8 [1, 64, 64, 1]
    f_gray, l_gray = enet.extract(gray)
    f_rgb, l_rgb = enet.extract(np.repeat(gray, 3, axis=-1))
    np.testing.assert_allclose(f_gray, f_rgb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(l_gray, l_rgb, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="uint8"):
        enet.extract(gray.astype(np.float32))
    with pytest.raises(ValueError, match="C in"):
        enet.extract(np.zeros((1, 8, 8, 2), np.uint8))
