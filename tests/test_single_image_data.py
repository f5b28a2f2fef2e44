"""The single-image data path (PatchGenCN): `file:` sources, ingest, scale sizes and the scale
pyramid ops, the Beam scale-pyramid stage and the trainer's single-image dataset."""

import io
import json
import os

import numpy as np
import pytest

from PIL import Image

from components import image_decode, ingest, records, single_image
from components.ingest import IngestError
from components.source_spec import SourceError, check_source
from trainers import pyramid_ops
from tests.test_cli import assert_fast_usage_error
from trainers.config import Config, ConfigError


def _structured(height, width, channels=3, seed=0):
    """uint8 [H, W, C]: smooth gradients plus a bright square and noise (structure to resize)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), (x + y) / (height + width)], -1)
    base[height // 4: height // 2, width // 4: width // 2] = 1.0
    image = np.clip(base * 220 + rng.integers(0, 30, base.shape), 0, 255).astype(np.uint8)
    return image[..., :channels] if channels < 3 else image


def _save(path, array, fmt="PNG", **kwargs):
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[array.shape[-1]] if array.ndim == 3 else "L"
    Image.fromarray(array.squeeze(-1) if mode == "L" and array.ndim == 3 else array, mode).save(
        path, fmt, **kwargs)
    return str(path)


# ---------------------------------------------------------------------------------------------
# Config.

def test_config_fields_and_their_errors():
    cfg = Config.build(data={"source": "file:/x.jpg", "max_side": 100},
                       pyramid={"scale_factor": 0.75, "min_side": 25, "grids": [1, 7]})
    assert cfg.data.max_side == 100 and cfg.pyramid.scale_factor == 0.75  # grids ignored
    with pytest.raises(ConfigError, match=r"pyramid.scale_factor=0.0.*--set pyramid.scale_factor=0.75"):
        Config.build(data={"source": "file:/x.jpg"})
    with pytest.raises(ConfigError, match=r"pyramid.scale_factor=1.0 must be in \(0, 1\)"):
        Config.build(pyramid={"scale_factor": 1.0})
    with pytest.raises(ConfigError, match=r"pyramid.min_side=2 must be >= 3"):
        Config.build(pyramid={"scale_factor": 0.5, "min_side": 2})
    with pytest.raises(ConfigError, match=r"data.max_side=-1"):
        Config.build(data={"max_side": -1})
    assert Config().pyramid.scale_factor == 0.0 and Config().pyramid.min_side == 25


# ---------------------------------------------------------------------------------------------
# Pure scale ops.

def test_scale_sizes_for_128x96_at_0_75_min_25():
    sizes = pyramid_ops.scale_sizes(128, 96, 0.75, 25)
    assert sizes == [(40, 30), (54, 40), (72, 54), (96, 72), (128, 96)]
    assert pyramid_ops.scale_sizes(30, 40, 0.75, 25) == [(30, 40)]  # one scale: 22 < 25
    assert pyramid_ops.scale_sizes(25, 25, 0.5, 25) == [(25, 25)]
    with pytest.raises(ValueError, match=r"20x50 \(HxW\).*min_side=25"):
        pyramid_ops.scale_sizes(20, 50, 0.75, 25)
    with pytest.raises(ValueError, match="factor"):
        pyramid_ops.scale_sizes(64, 64, 1.0, 4)


def test_scale_pyramid_constant_stays_constant_and_finest_is_exact():
    image = np.full((2, 48, 36, 3), 0.3, np.float32)
    image[1] = 0.9
    levels = pyramid_ops.scale_pyramid(image, pyramid_ops.scale_sizes(48, 36, 0.75, 10))
    assert [tuple(level.shape[1:3]) for level in levels][-1] == (48, 36)
    np.testing.assert_array_equal(levels[-1].numpy(), image)
    for level in levels:
        assert level.dtype.name == "float32"
        np.testing.assert_allclose(level.numpy()[0], 0.3, atol=1e-6)
        np.testing.assert_allclose(level.numpy()[1], 0.9, atol=1e-6)


def test_resize_image_keeps_a_linear_ramp_linear_and_stays_in_range():
    """Antialiased bicubic reproduces linear functions away from the borders: the value at
    output column j is the ramp at its centre (j + 0.5) * W / w - 0.5, in input pixels."""
    width, out_w = 64, 24
    ramp = np.tile((np.arange(width, dtype=np.float32) / (width - 1))[None, :, None], (8, 1, 1))[None]
    out = pyramid_ops.resize_image(ramp, (8, out_w)).numpy()[0, 4, :, 0]
    centres = (np.arange(out_w) + 0.5) * width / out_w - 0.5
    np.testing.assert_allclose(out[4:-4], centres[4:-4] / (width - 1), atol=1e-4)  # TF: float32 kernel
    noisy = np.random.default_rng(0).integers(0, 2, (1, 40, 30, 1)).astype(np.float32)
    small = pyramid_ops.resize_image(noisy, (17, 13)).numpy()
    assert small.shape == (1, 17, 13, 1) and small.min() >= 0.0 and small.max() <= 1.0
    # every level is resized from the finest (not chained)
    sizes = [(10, 8), (20, 15), (40, 30)]
    levels = pyramid_ops.scale_pyramid(noisy, sizes)
    np.testing.assert_allclose(levels[0].numpy(), pyramid_ops.resize_image(noisy, (10, 8)).numpy())
    with pytest.raises(ValueError, match="finest"):
        pyramid_ops.scale_pyramid(noisy, [(10, 8)])


# ---------------------------------------------------------------------------------------------
# The file: source.

def test_file_source_checks(tmp_path):
    one, two, none = tmp_path / "one", tmp_path / "two", tmp_path / "none"
    for d in (one, two, none):
        d.mkdir()
    _save(one / "a.png", _structured(20, 30))
    (one / ".DS_Store").write_bytes(b"x")
    _save(two / "a.png", _structured(20, 30))
    _save(two / "b.jpg", _structured(20, 30), "JPEG")
    check_source(f"file:{one}")
    check_source(f"file:{one}/a.png")
    with pytest.raises(SourceError, match=r"file:.*two is a folder holding 2 image files \(a.png, b.jpg\);"
                                          r" give one image file.*folder:"):
        check_source(f"file:{two}")
    with pytest.raises(SourceError, match=r"holding 0 image files"):
        check_source(f"file:{none}")
    with pytest.raises(SourceError, match=r"does not exist"):
        check_source(f"file:{tmp_path}/missing.png")


def test_jpeg_draft_decodes_a_big_jpeg_at_reduced_size(tmp_path):
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[:, :2000] = 200
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    im = Image.open(io.BytesIO(data))
    assert image_decode.jpeg_draft(im, 100) == ("RGB", (0, 0, 500.0, 375.0))  # 1/8 of 4000x3000
    assert image_decode.jpeg_draft(Image.open(io.BytesIO(data)), 0) is None
    decoded = image_decode.decode_bytes(data, max_side=100)
    assert decoded.image.shape == (375, 500, 3)  # never decoded at 3000x4000
    assert image_decode.decode_bytes(data, max_pixels=10_000_000, max_side=100).reason.startswith("too large")
    path = _save(tmp_path / "big.jpg", big, "JPEG", quality=90)
    key, image = single_image.read_single_image(path, 3, max_side=100)
    assert key == "big.jpg" and image.shape == (75, 100, 3)
    assert abs(int(image[40, 10, 0]) - 200) <= 3 and int(image[40, 90, 0]) <= 3


def test_fit_single_image_channels_and_size():
    gray = _structured(80, 120, 1)
    rgb = single_image.fit_single_image(gray, 3, 60)
    assert rgb.shape == (40, 60, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    exact = gray.astype(np.float64).reshape(40, 2, 60, 2).mean(axis=(1, 3))
    assert np.abs(rgb[..., 0].astype(np.float64) - exact).max() <= 0.5 + 1e-6  # area = 2x2 box
    rgba = np.concatenate([_structured(10, 14), np.zeros((10, 14, 1), np.uint8)], -1)
    np.testing.assert_array_equal(single_image.fit_single_image(rgba, 3), rgba[..., :3])  # no upscale
    luma = single_image.fit_single_image(rgba, 1)
    assert luma.shape == (10, 14, 1)
    assert single_image.fit_single_image(_structured(7, 300), 3, 100).shape == (2, 100, 3)


@pytest.mark.parametrize("fmt,suffix", [("JPEG", "jpg"), ("PNG", "png")])
def test_ingest_one_image_goes_to_train_whatever_eval_fraction(tmp_path, fmt, suffix):
    image = _structured(80, 120)
    path = _save(tmp_path / f"photo.{suffix}", image, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    out = str(tmp_path / "ingested")
    summary = ingest.run_ingest(f"file:{path}", out, 32, 3, eval_fraction=0.99, max_side=60,
                                min_side=25, num_shards=2)
    assert summary["counts"] == {"train": 1, "eval": 0, "rejected": 0, "total": 1}
    assert summary["single_image"] is True
    assert (summary["height"], summary["width"], summary["image_size"]) == (40, 60, 60)
    train = list(records.ingested_dataset(out, "train").as_numpy_iterator())
    assert len(train) == 1 and train[0]["key"] == f"photo.{suffix}".encode() and train[0]["label"] == -1
    assert train[0]["image"].shape == (40, 60, 3)
    assert list(records.ingested_dataset(out, "eval").as_numpy_iterator()) == []
    exact = image.astype(np.float64).reshape(40, 2, 60, 2, 3).mean(axis=(1, 3))
    error = np.abs(train[0]["image"].astype(np.float64) - exact)
    if fmt == "PNG":
        assert error.max() <= 0.5 + 1e-6  # area resize by 2 = the 2x2 box mean, rounded
    else:
        assert error.mean() <= 4  # JPEG is lossy (noise, chroma subsampling)


def test_ingest_errors_name_the_file_its_size_and_the_fix(tmp_path):
    thin = _save(tmp_path / "thin.png", _structured(50, 1))
    with pytest.raises(IngestError, match=r"thin.png is 50x1 \(HxW\), its shorter side is below "
                                          r"pyramid.min_side=25; lower pyramid.min_side.*bigger image"):
        ingest.run_ingest(f"file:{thin}", str(tmp_path / "a"), 32, 3, min_side=25)
    with pytest.raises(IngestError, match=r"50x1 \(HxW\), its shorter side is below 2 pixels"):
        ingest.run_ingest(f"file:{thin}", str(tmp_path / "b"), 32, 3)
    small = _save(tmp_path / "small.png", _structured(80, 120))
    with pytest.raises(IngestError, match=r"is 20x30 \(HxW\) after data.max_side=30, its shorter side "
                                          r"is below pyramid.min_side=25"):
        ingest.run_ingest(f"file:{small}", str(tmp_path / "c"), 32, 3, max_side=30, min_side=25)
    assert not os.path.exists(tmp_path / "c" / "summary.json")
    two = tmp_path / "two"
    two.mkdir()
    _save(two / "a.png", _structured(30, 30))
    _save(two / "b.png", _structured(30, 30))
    with pytest.raises(IngestError, match="holding 2 image files"):
        ingest.run_ingest(f"file:{two}", str(tmp_path / "d"), 32, 3)


def test_grayscale_png_in_a_folder_gives_rgb(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    gray = _structured(30, 40, 1)
    _save(folder / "g.png", gray)
    out = str(tmp_path / "ingested")
    summary = ingest.run_ingest(f"file:{folder}", out, 32, 3)
    assert (summary["height"], summary["width"]) == (30, 40)
    (example,) = records.ingested_dataset(out, "train").as_numpy_iterator()
    np.testing.assert_array_equal(example["image"], np.repeat(gray, 3, -1))
    assert json.load(open(os.path.join(out, "summary.json")))["single_image"] is True


# ---------------------------------------------------------------------------------------------
# Beam scale-pyramid stage and the trainer's input.

@pytest.fixture(scope="module")
def scale_stages(tmp_path_factory):
    from components import pyramid_beam

    root = tmp_path_factory.mktemp("single")
    image = _structured(96, 128, seed=5)
    path = _save(root / "photo.png", image)
    ingest_dir, pyramid_dir = str(root / "ingested"), str(root / "pyramid")
    summary = ingest.run_ingest(f"file:{path}", ingest_dir, 32, 3, eval_fraction=0.5, min_side=25)
    metadata = pyramid_beam.run_pyramid(ingest_dir, pyramid_dir, (1, 4, 32), scale_factor=0.75,
                                        min_side=25)
    return image, ingest_dir, pyramid_dir, summary, metadata


def test_scale_pyramid_records_equal_pyramid_ops_and_metadata(scale_stages):
    image, ingest_dir, pyramid_dir, summary, metadata = scale_stages
    scales = [[30, 40], [40, 54], [54, 72], [72, 96], [96, 128]]
    assert metadata["format"] == "multigrid-ebm-scale-pyramid-v1" and metadata["single_image"] is True
    assert metadata["scales"] == scales and metadata["grids"] == []
    assert (metadata["height"], metadata["width"], metadata["image_size"]) == (96, 128, 128)
    assert metadata["channels"] == 3 and metadata["counts"] == {"train": 1, "eval": 0}
    assert (metadata["scale_factor"], metadata["min_side"]) == (0.75, 25)
    assert metadata["ingest"]["source"] == summary["source"] and metadata["runner"] == "DirectRunner"
    assert metadata["fingerprint"] and set(metadata["files"]) == {"train", "eval"}
    assert metadata == records.read_metadata(pyramid_dir)
    expected = [level.numpy()[0] for level in pyramid_ops.scale_pyramid(
        image[None].astype(np.float32) / 255.0, [tuple(s) for s in scales])]
    np.testing.assert_array_equal(expected[-1], image.astype(np.float32) / 255.0)
    import tensorflow as tf

    (serialized,) = [r.numpy() for r in tf.data.TFRecordDataset(
        records.split_files(pyramid_dir, "train"), compression_type="GZIP")]
    decoded = records.decode_scale_example(serialized, scales, 3)
    assert decoded["key"] == "photo.png" and decoded["label"] == -1
    for k, level in enumerate(expected):
        np.testing.assert_allclose(decoded[k], level, atol=1e-6)
        stats = metadata["scale_stats"][str(k)]
        np.testing.assert_allclose(stats["mean"], level.reshape(-1, 3).astype(np.float64).mean(0), atol=1e-9)
        np.testing.assert_allclose(stats["std"], level.reshape(-1, 3).astype(np.float64).std(0), atol=1e-9)
    assert metadata["coarse_mean"] == metadata["scale_stats"]["0"]["mean"]
    (example,) = records.scale_dataset(pyramid_dir, "train").as_numpy_iterator()
    assert [example[f"scale_{k}"].shape for k in range(5)] == [(h, w, 3) for h, w in scales]
    assert list(records.scale_dataset(pyramid_dir, "eval").as_numpy_iterator()) == []


def test_make_single_image_dataset_repeats_the_image(scale_stages):
    from trainers import data as data_lib

    image, _, pyramid_dir, _, metadata = scale_stages
    meta = data_lib.read_pyramid_metadata(pyramid_dir)
    assert meta["scales"] == metadata["scales"] and data_lib.is_scale_pyramid(meta)
    batches = list(data_lib.make_single_image_dataset(pyramid_dir, 4).take(3).as_numpy_iterator())
    assert len(batches) == 3
    for batch in batches:
        assert sorted(batch) == [f"scale_{k}" for k in range(5)]
        assert batch["scale_0"].shape == (4, 30, 40, 3) and batch["scale_4"].dtype == np.float32
        np.testing.assert_array_equal(batch["scale_4"][3], image.astype(np.float32) / 255.0)
        np.testing.assert_array_equal(batch["scale_0"][0], batch["scale_0"][2])
    with pytest.raises(data_lib.PyramidDataError, match="differ"):
        data_lib.make_single_image_dataset(pyramid_dir, 2, scales=[[30, 40]])


def test_train_geometry_check_compares_scale_fields(scale_stages):
    from trainers.train import check_geometry

    metadata = scale_stages[4]
    cfg = Config.build(data={"source": "file:/x.png", "channels": 3},
                       pyramid={"scale_factor": 0.75, "min_side": 25})
    check_geometry(cfg, metadata)
    with pytest.raises(ConfigError, match=r"pyramid.min_side=20 .* min_side=25"):
        check_geometry(Config.build(data={"source": "file:/x.png", "channels": 3},
                                    pyramid={"scale_factor": 0.75, "min_side": 20}), metadata)


def test_pyramid_stage_refuses_mismatched_inputs(scale_stages, tmp_path, make_data_stages):
    from components import pyramid_beam
    from trainers import data as data_lib

    _, ingest_dir, _, _, _ = scale_stages
    with pytest.raises(pyramid_beam.PyramidError, match=r"holds one image.*pyramid.scale_factor=0.75"):
        pyramid_beam.run_pyramid(ingest_dir, str(tmp_path / "p1"), (1, 4, 32))
    with pytest.raises(pyramid_beam.PyramidError, match=r"96x128 \(HxW\).*min_side=100"):
        pyramid_beam.run_pyramid(ingest_dir, str(tmp_path / "p2"), (), scale_factor=0.5, min_side=100)
    grid = make_data_stages(tmp_path / "grid", "builtin:mnist5k", 8, 1, (1, 4, 8), limit=20)
    with pytest.raises(pyramid_beam.PyramidError, match=r"ONE image.*file: source"):
        pyramid_beam.run_pyramid(grid.ingest_dir, str(tmp_path / "p3"), (), scale_factor=0.5, min_side=3)
    with pytest.raises(data_lib.PyramidDataError, match="not a single image's scale pyramid"):
        data_lib.make_single_image_dataset(grid.pyramid_dir, 2)


# ---------------------------------------------------------------------------------------------
# Command line: a too small image or a missing scale_factor is a usage error (exit 2), answered
# before TensorFlow, Beam or TFX is imported.

@pytest.mark.parametrize("argv, fragment", [
    (["ingest", "--data", "file:{thin}", "--image-size", "8", "--min-side", "25", "--output", "o"],
     "thin.png is 50x1 (HxW); its shorter side is below pyramid.min_side=25: lower pyramid.min_side"),
    (["ingest", "--data", "file:{thin}", "--image-size", "8", "--output", "o"], "below 2 pixels"),
    (["run", "--preset", "mnist5k-multigrid", "--data", "file:{photo}", "--set", "data.max_side=40",
      "--set", "pyramid.scale_factor=0.75", "--set", "pyramid.min_side=30"],
     "photo.png is 80x120 (HxW), 27x40 after data.max_side=40; its shorter side is below pyramid.min_side=30"),
    (["run", "--preset", "mnist5k-multigrid", "--data", "file:{photo}"], "--set pyramid.scale_factor=0.75"),
    (["run", "--preset", "mnist5k-multigrid", "--data", "file:{two}", "--set", "pyramid.scale_factor=0.75"],
     "holding 2 image files"),
    (["pyramid", "--input", "{tmp}", "--output", "o"], "needs --grids"),
])
def test_cli_single_image_usage_errors_exit_2(argv, fragment, tmp_path):

    thin = _save(tmp_path / "thin.png", _structured(50, 1))
    photo = _save(tmp_path / "photo.png", _structured(80, 120))
    (tmp_path / "two").mkdir()
    for name in ("a.png", "b.png"):
        _save(tmp_path / "two" / name, _structured(30, 30))
    argv = [a.format(thin=thin, photo=photo, two=tmp_path / "two", tmp=tmp_path) for a in argv]
    assert_fast_usage_error(argv, fragment)


@pytest.mark.tfx
def test_tfx_components_pass_the_single_image_settings(tmp_path):
    """The IngestImages and BuildPyramid executors' functions, called on artifacts by hand: the
    config's data.max_side and pyramid.scale_factor / min_side reach the stages."""
    pytest.importorskip("tfx", reason="TFX lives in the primary environment only")
    from components import artifacts
    from components.ingest_component import IngestImages
    from components.pyramid_component import BuildPyramid

    path = _save(tmp_path / "photo.png", _structured(80, 120))
    cfg = Config.build(data={"source": f"file:{path}", "channels": 3, "max_side": 60},
                       pyramid={"scale_factor": 0.5, "min_side": 10})
    images, pyramid = artifacts.Examples(), artifacts.Pyramid()
    images.uri, pyramid.uri = str(tmp_path / "ingested"), str(tmp_path / "pyramid")
    IngestImages.EXECUTOR_SPEC.executor_class._FUNCTION(config_json=cfg.to_json(), images=images)
    assert images.get_int_custom_property("num_train") == 1
    BuildPyramid.EXECUTOR_SPEC.executor_class._FUNCTION(config_json=cfg.to_json(), images=images,
                                                        pyramid=pyramid)
    metadata = records.read_metadata(pyramid.uri)
    assert metadata["scales"] == [[10, 15], [20, 30], [40, 60]]
    assert pyramid.get_string_custom_property("scales") == "10x15,20x30,40x60"
