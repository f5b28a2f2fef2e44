"""components.pyramid_beam on Beam's in-process runner: grids, keys, metadata, failure modes."""

import gzip
import json
import os

import numpy as np
import pytest

from components import ingest, pyramid_beam, pyramid_fns, records
from components.pyramid_beam import PyramidError
from trainers.config import ConfigError

GRIDS = (1, 4, 16)
SPEC = tuple((f"{c}/d{i:04d}.{ext}", fmt, h, w, 3)
             for c, i, ext, fmt, h, w in [
                 (0, 1, "png", "PNG", 16, 16), (0, 2, "png", "PNG", 32, 32), (0, 3, "jpg", "JPEG", 24, 20),
                 (1, 4, "bmp", "BMP", 16, 16), (1, 5, "png", "PNG", 40, 48), (1, 6, "png", "PNG", 16, 16),
                 (2, 7, "png", "PNG", 64, 64), (2, 8, "jpg", "JPEG", 16, 16), (2, 9, "png", "PNG", 20, 16),
                 (2, 10, "png", "PNG", 16, 16), (3, 11, "png", "PNG", 12, 12), (3, 12, "png", "PNG", 16, 16)]
             ) + (("3/broken.png", "truncated", 16, 16, 3),)


def np_box(image, size):
    h, w, c = image.shape
    return image.reshape(size, h // size, size, w // size, c).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def stages(tmp_path_factory, make_image_folder):
    root = tmp_path_factory.mktemp("beam")
    folder = make_image_folder(root / "images", SPEC, seed=3)
    ingest_dir, pyramid_dir = str(root / "ingested"), str(root / "pyramid")
    summary = ingest.run_ingest(f"folder:{folder.root}", ingest_dir, 16, 3, eval_fraction=0.25,
                                max_reject_fraction=0.2, num_shards=2)
    metadata = pyramid_beam.run_pyramid(
        ingest_dir, pyramid_dir, GRIDS, num_shards=2, batch_size=4,
        beam_args=["--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    return folder, ingest_dir, pyramid_dir, summary, metadata


def _ingested(ingest_dir, split):
    return {ex["key"].decode(): ex for ex in records.ingested_dataset(ingest_dir, split).as_numpy_iterator()}


def _pyramid(pyramid_dir, split):
    return {ex["key"].decode(): ex for ex in
            records.pyramid_dataset(pyramid_dir, split, GRIDS, 3).as_numpy_iterator()}


def test_every_grid_equals_numpy_box_average_of_the_ingested_image(stages):
    folder, ingest_dir, pyramid_dir, summary, _ = stages
    all_keys = set()
    for split in ("train", "eval"):
        ingested, pyramid = _ingested(ingest_dir, split), _pyramid(pyramid_dir, split)
        assert set(pyramid) == set(ingested)
        for key, ex in pyramid.items():
            image = ingested[key]["image"].astype(np.float64) / 255.0
            for size in GRIDS:
                grid = ex[f"grid_{size}"]
                assert grid.shape == (size, size, 3) and grid.dtype == np.float32
                np.testing.assert_allclose(grid, np_box(image, size), atol=1e-5, rtol=0)
            assert ex["label"] == folder.labels[key] == int(key.split("/")[0])
        all_keys |= set(pyramid)
    assert all_keys == set(folder.images)  # keys are the file names relative to the folder
    assert summary["counts"]["rejected"] == 1


def test_metadata_counts_and_stats_equal_numpy(stages):
    _, ingest_dir, pyramid_dir, summary, metadata = stages
    assert metadata == records.read_metadata(pyramid_dir)
    assert metadata["grids"] == list(GRIDS) and metadata["image_size"] == 16 and metadata["channels"] == 3
    assert metadata["counts"] == {"train": summary["counts"]["train"], "eval": summary["counts"]["eval"]}
    assert metadata["fingerprint"] == pyramid_beam.ingest_fingerprint(ingest_dir)
    assert metadata["ingest"]["fingerprint"] == summary["fingerprint"]
    images = np.stack([ex["image"] for ex in _ingested(ingest_dir, "train").values()]) / 255.0
    for size in GRIDS:
        levels = np.stack([np_box(im, size) for im in images]).reshape(-1, 3)
        stats = metadata["grid_stats"][str(size)]
        np.testing.assert_allclose(stats["mean"], levels.mean(axis=0), atol=1e-7)
        np.testing.assert_allclose(stats["std"], levels.std(axis=0), atol=1e-7)
    coarse = images.mean(axis=(1, 2))
    np.testing.assert_allclose(metadata["coarse_mean"], coarse.mean(axis=0), atol=1e-7)
    np.testing.assert_allclose(metadata["coarse_std"], coarse.std(axis=0), atol=1e-7)
    for split in ("train", "eval"):
        assert sorted(os.listdir(os.path.join(pyramid_dir, split))) == [
            "data-00000-of-00002.tfrecord.gz", "data-00001-of-00002.tfrecord.gz"]
    assert sorted(os.listdir(pyramid_dir)) == ["eval", "metadata.json", "train"]


def test_stats_combine_fn_is_exact_in_any_order():
    rng = np.random.default_rng(0)
    fn = pyramid_fns.GridStatsFn((1, 2, 4), 2)
    data = rng.integers(0, 256, (10, 4, 4, 2), dtype=np.uint8)
    parts = [{"images": data[i:i + n]} for i, n in ((0, 3), (3, 1), (4, 6))]
    accs = [fn.add_input(fn.create_accumulator(), b) for b in parts]
    out = fn.extract_output(fn.merge_accumulators([accs[0], fn.create_accumulator(),
                                                   fn.merge_accumulators(accs[1:])]))
    other = fn.extract_output(fn.merge_accumulators(accs[::-1]))
    assert out == other and out["count"] == 10
    x = data / 255.0
    for s in (1, 2, 4):
        levels = x.reshape(10, s, 4 // s, s, 4 // s, 2).mean(axis=(2, 4)).reshape(-1, 2)
        np.testing.assert_allclose(out["grids"][str(s)]["mean"], levels.mean(0), atol=1e-12)
        np.testing.assert_allclose(out["grids"][str(s)]["std"], levels.std(0), atol=1e-12)
    empty = fn.extract_output(fn.create_accumulator())
    assert empty["count"] == 0 and empty["grids"]["1"]["std"] == [0.0, 0.0]


def _file_bytes(folder):
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files if f.endswith(records.SHARD_SUFFIX)}


def test_rerun_reproducible_empty_eval_and_crash_leaves_no_metadata(idx_files, tmp_path):
    files = idx_files(tmp_path / "idx", n=9, rows=8, cols=8)
    ingest_dir = str(tmp_path / "ing")
    ingest.run_ingest(f"idx:{files.prefix}", ingest_dir, 8, 1, eval_fraction=0.0, num_shards=1)
    out = str(tmp_path / "pyr")
    first = pyramid_beam.run_pyramid(ingest_dir, out, (1, 2, 8))  # default: one file per bundle
    first_bytes = _file_bytes(out)
    second = pyramid_beam.run_pyramid(ingest_dir, out, (1, 2, 8))
    assert first == second and first["counts"] == {"train": 9, "eval": 0}
    assert _file_bytes(out) == first_bytes  # the in-process runner writes identical files again
    assert first["num_shards"] == 0 and first["files"]["train"] >= 1
    assert len(list(records.pyramid_dataset(out, "eval").as_numpy_iterator())) == 0
    train = list(records.pyramid_dataset(out, "train").as_numpy_iterator())
    assert sorted(ex["key"].decode() for ex in train) == [f"tiny/{i:06d}" for i in range(9)]
    # A run that crashes inside the pipeline leaves no metadata.json (the earlier one is gone too).
    shard = os.path.join(ingest_dir, "train", "data-00000-of-00001.tfrecord.gz")
    with open(shard, "wb") as f:  # valid gzip, corrupt TFRecord framing
        f.write(gzip.compress(b"\x05\x00\x00\x00\x00\x00\x00\x00garbage-record-data"))
    with pytest.raises(Exception, match="(?i)corrupt|truncated|data loss|length"):
        pyramid_beam.run_pyramid(ingest_dir, out, (1, 2, 8), num_shards=1)
    assert not os.path.exists(os.path.join(out, "metadata.json"))
    with pytest.raises(ValueError, match="not a complete pyramid output"):
        records.read_metadata(out)


def test_bad_inputs_fail_before_writing(stages, tmp_path):
    _, ingest_dir, _, _, _ = stages
    out = str(tmp_path / "out")
    with pytest.raises(ConfigError, match="must end at the image size 16"):
        pyramid_beam.run_pyramid(ingest_dir, out, (1, 4, 8))
    with pytest.raises(ConfigError, match="divisible"):
        pyramid_beam.run_pyramid(ingest_dir, out, (1, 3, 16))
    with pytest.raises(PyramidError, match="allowed values"):
        pyramid_beam.run_pyramid(ingest_dir, out, GRIDS, runner="PrismRunner")
    with pytest.raises(PyramidError, match="num_shards=-1 must be >= 0"):
        pyramid_beam.run_pyramid(ingest_dir, out, GRIDS, num_shards=-1)
    with pytest.raises(PyramidError, match="not a complete ingest output"):
        pyramid_beam.run_pyramid(str(tmp_path), out, GRIDS)
    assert not os.path.exists(out)


@pytest.mark.slow
def test_multi_processing_direct_runner(stages, tmp_path):
    _, ingest_dir, _, _, metadata = stages
    out = str(tmp_path / "mp")
    again = pyramid_beam.run_pyramid(
        ingest_dir, out, GRIDS, beam_args=["--direct_num_workers=2",
                                          "--direct_running_mode=multi_processing"])
    assert again["counts"] == metadata["counts"]
    np.testing.assert_allclose(again["grid_stats"]["16"]["mean"], metadata["grid_stats"]["16"]["mean"],
                               atol=1e-12)
    assert json.load(open(os.path.join(out, "metadata.json")))["fingerprint"] == metadata["fingerprint"]


def _raw_records(pyramid_dir, split):
    """The split's serialized records as bytes, sorted (whatever the file boundaries)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    files = records.split_files(pyramid_dir, split)
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))


@pytest.mark.slow
def test_several_worker_processes_write_byte_identical_records(stages, tmp_path):
    """The pyramid stage on DirectRunner with 2 worker processes gives the same set of
    records as the single-process run, byte for byte."""
    _, ingest_dir, _, _, _ = stages
    single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
    a = pyramid_beam.run_pyramid(ingest_dir, single, GRIDS)
    b = pyramid_beam.run_pyramid(ingest_dir, multi, GRIDS, beam_args=[
        "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    assert a["counts"] == b["counts"] and a["fingerprint"] == b["fingerprint"]
    for split in records.SPLITS:
        one, two = _raw_records(single, split), _raw_records(multi, split)
        assert len(one) == a["counts"][split] and one == two, split
