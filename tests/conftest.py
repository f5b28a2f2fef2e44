"""Shared test fixtures: tiny image folders (good and bad files), idx files, small data-stage outputs.

Fixtures:
  * `image_folder`: class subfolders `cat/` (label 0) and `dog/` (label 1) with PNG (gray, RGB,
    RGBA, non-square), JPEG and BMP images plus bad files: truncated PNG, 0-byte PNG, text named
    .png, a .txt file, and a hidden `.DS_Store` (skipped). Returns `ImageFolder`.
  * `flat_image_folder`: 4 PNGs directly in the folder (labels -1).
  * `make_image_folder`: the factory behind both, `make_image_folder(root, spec)`.
  * `idx_files`: writes MNIST-format idx files; `idx_files(tmp_dir, n, rows, cols, gz)` -> IdxFiles.
  * `write_png`: `write_png(path, uint8 array [H, W] or [H, W, C], fmt="PNG")` through Pillow.
  * `make_data_stages`: `make_data_stages(root, source, image_size, channels, grids, limit=0,
    eval_fraction=0.2)` runs ingest + the Beam pyramid stage (in-process runner) into
    ROOT/ingested and ROOT/pyramid and returns DataStages(ingest_dir, pyramid_dir, summary,
    metadata); e.g. `make_data_stages(tmp, "builtin:mnist5k", 16, 1, (1, 4, 16), limit=64)`
    (a few seconds). Factory fixtures are session-scoped, so module fixtures can use them.
"""

from __future__ import annotations

import gzip
import io
import os
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class ImageFolder(NamedTuple):
    """A test image folder: root path, good images by relative key, expected labels and rejects."""

    root: str
    images: dict  # rel key -> original uint8 array [H, W, C] as written (JPEG: before compression)
    formats: dict  # rel key -> "PNG" | "JPEG" | "BMP"
    labels: dict  # rel key -> int label
    rejects: dict  # rel key -> expected reason prefix
    classes: list


def _encode(array: np.ndarray, fmt: str) -> bytes:
    array = np.asarray(array, np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _write_image(path, array, fmt="PNG") -> None:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(_encode(array, fmt))


@pytest.fixture(scope="session")
def write_png():
    """Factory: write_png(path, uint8 array, fmt="PNG"|"JPEG"|"BMP")."""
    return _write_image


def _random_image(rng, height, width, channels):
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


DEFAULT_SPEC = (
    # (relative path, kind, height, width, channels) ; kind: PNG/JPEG/BMP or a bad-file kind
    ("cat/a_gray.png", "PNG", 16, 16, 1),
    ("cat/b_rgb.png", "PNG", 16, 24, 3),
    ("cat/c_photo.jpg", "JPEG", 32, 32, 3),
    ("cat/sub/d_nested.png", "PNG", 8, 8, 3),
    ("cat/broken.png", "truncated", 16, 16, 3),
    ("cat/readme.txt", "text", 0, 0, 0),
    ("dog/e_rgba.png", "PNG", 16, 16, 4),
    ("dog/f_bitmap.bmp", "BMP", 16, 16, 3),
    ("dog/g_big.png", "PNG", 48, 32, 3),
    ("dog/empty.png", "empty", 0, 0, 0),
    ("dog/notes.png", "textpng", 0, 0, 0),
    ("dog/.DS_Store", "hidden", 0, 0, 0),
)

EXPECTED_REASON = {"truncated": "corrupt or truncated", "text": "unsupported file type",
                   "empty": "empty file", "textpng": "not an image"}


def _make_image_folder(root, spec=DEFAULT_SPEC, seed=0) -> ImageFolder:
    rng = np.random.default_rng(seed)
    root = str(root)
    os.makedirs(root, exist_ok=True)
    images, formats, rejects = {}, {}, {}
    for rel, kind, height, width, channels in spec:
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind in ("PNG", "JPEG", "BMP"):
            array = _random_image(rng, height, width, channels)
            if kind == "JPEG":  # smooth content so JPEG stays close to the original
                array = np.sort(array, axis=1)
            _write_image(path, array, kind)
            images[rel], formats[rel] = array, kind
        else:
            with open(path, "wb") as f:
                if kind == "truncated":
                    data = _encode(_random_image(rng, height, width, channels), "PNG")
                    f.write(data[: len(data) // 2])
                elif kind in ("text", "textpng"):
                    f.write(b"this is not an image\n")
                elif kind == "hidden":
                    f.write(b"\x00\x01junk")
            if kind in EXPECTED_REASON:
                rejects[rel] = EXPECTED_REASON[kind]
    tops = sorted({rel.split("/", 1)[0] for rel in images if "/" in rel})
    labels = {rel: (tops.index(rel.split("/", 1)[0]) if "/" in rel else -1) for rel in images}
    labels.update({rel: (tops.index(rel.split("/", 1)[0]) if "/" in rel and rel.split("/", 1)[0]
                         in tops else -1) for rel in rejects})
    return ImageFolder(root, images, formats, labels, rejects, tops)


@pytest.fixture(scope="session")
def make_image_folder():
    """Factory: make_image_folder(root, spec=DEFAULT_SPEC, seed=0) -> ImageFolder."""
    return _make_image_folder


@pytest.fixture
def image_folder(tmp_path) -> ImageFolder:
    return _make_image_folder(tmp_path / "images")


@pytest.fixture
def flat_image_folder(tmp_path) -> ImageFolder:
    spec = tuple((f"img{i}.png", "PNG", 8, 8, 3) for i in range(4))
    return _make_image_folder(tmp_path / "flat", spec, seed=1)


class IdxFiles(NamedTuple):
    prefix: str
    images: np.ndarray  # uint8 [N, rows, cols]
    labels: np.ndarray  # uint8 [N]
    image_path: str
    label_path: str


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def _write_idx(directory, n=12, rows=8, cols=8, gz=False, name="tiny", seed=0) -> IdxFiles:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    directory = str(directory)
    os.makedirs(directory, exist_ok=True)
    prefix = os.path.join(directory, name)
    paths = []
    for kind, array, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
        data = _idx_bytes(array, magic)
        path = f"{prefix}-{kind}-ubyte" + (".gz" if gz else "")
        with open(path, "wb") as f:
            f.write(gzip.compress(data, mtime=0) if gz else data)
        paths.append(path)
    return IdxFiles(prefix, images, labels, paths[0], paths[1])


@pytest.fixture(scope="session")
def idx_files():
    """Factory: idx_files(directory, n=12, rows=8, cols=8, gz=False, name="tiny", seed=0) -> IdxFiles."""
    return _write_idx


class DataStages(NamedTuple):
    ingest_dir: str
    pyramid_dir: str
    summary: dict
    metadata: dict


def _make_data_stages(root, source, image_size, channels, grids, limit=0, eval_fraction=0.2,
                      max_reject_fraction=0.05) -> DataStages:
    from components import ingest, pyramid_beam  # pylint: disable=import-outside-toplevel

    root = str(root)
    ingest_dir, pyramid_dir = os.path.join(root, "ingested"), os.path.join(root, "pyramid")
    summary = ingest.run_ingest(source, ingest_dir, image_size, channels, eval_fraction=eval_fraction,
                                max_reject_fraction=max_reject_fraction, limit=limit,
                                progress_every=0)
    metadata = pyramid_beam.run_pyramid(ingest_dir, pyramid_dir, grids)
    return DataStages(ingest_dir, pyramid_dir, summary, metadata)


@pytest.fixture(scope="session")
def make_data_stages():
    """Factory: make_data_stages(root, source, image_size, channels, grids, ...) -> DataStages."""
    return _make_data_stages
