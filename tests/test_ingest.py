"""components.ingest: layout, split determinism, rejects, failure modes; records readers;
skipped symbolic links, data.max_pixels and notes in the summary."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from components import ingest, records, sources
from components.ingest import IngestError


def _read_split(directory, split):
    return {ex["key"].decode(): ex for ex in records.ingested_dataset(directory, split).as_numpy_iterator()}


def test_folder_ingest_layout_rejects_and_round_trip(image_folder, tmp_path, capsys):
    out = str(tmp_path / "ingested")
    source = f"folder:{image_folder.root}"
    summary = ingest.run_ingest(source, out, 8, 3, eval_fraction=0.3, max_reject_fraction=0.5,
                                num_shards=2)
    assert sorted(os.listdir(out)) == ["eval", "labels.json", "rejects.jsonl", "summary.json", "train"]
    for split in ("train", "eval"):
        assert sorted(os.listdir(os.path.join(out, split))) == [
            "data-00000-of-00002.tfrecord.gz", "data-00001-of-00002.tfrecord.gz"]
    rejects = [json.loads(line) for line in open(os.path.join(out, "rejects.jsonl"))]
    assert {r["path"] for r in rejects} == set(image_folder.rejects)
    for r in rejects:
        assert r["reason"].startswith(image_folder.rejects[r["path"]])
    good = len(image_folder.images)
    assert summary["counts"]["train"] + summary["counts"]["eval"] == good
    assert summary["counts"]["rejected"] == len(image_folder.rejects)
    assert summary["counts"]["total"] == good + len(image_folder.rejects)
    assert summary == records.read_summary(out)
    assert summary["image_size"] == 8 and summary["channels"] == 3 and summary["source"] == source
    assert sum(summary["class_balance"]["all"].values()) == good
    assert summary["class_balance"]["all"] == {"0": 4, "1": 3}
    assert json.load(open(os.path.join(out, "labels.json"))) == {"classes": ["cat", "dog"]}
    expected = {i.key: i for i in sources.iter_source(source, 8, 3) if i.image is not None}
    seen = {}
    for split in ("train", "eval"):
        for key, ex in _read_split(out, split).items():
            assert ingest.split_of(key, 0.3) == split
            assert ex["image"].shape == (8, 8, 3) and ex["image"].dtype == np.uint8
            np.testing.assert_array_equal(ex["image"], expected[key].image)
            assert ex["label"] == expected[key].label
            seen[key] = split
    assert set(seen) == set(expected)
    err = capsys.readouterr().err
    assert "ingest: done" in err and "rejected" in err
    images, labels = sources.load_images(f"ingested:{out}:train", 8, 3)
    assert len(images) == summary["counts"]["train"] and labels.dtype == np.int64


def test_ingest_is_deterministic_and_rerun_replaces(idx_files, tmp_path):
    files = idx_files(tmp_path / "idx", n=40, rows=8, cols=8, gz=True)
    source = f"idx:{files.prefix}"
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    sa = ingest.run_ingest(source, a, 4, 1, eval_fraction=0.25, num_shards=3, progress_every=7)
    sb = ingest.run_ingest(source, b, 4, 1, eval_fraction=0.25, num_shards=3)
    assert sa["fingerprint"] == sb["fingerprint"] and sa["counts"] == sb["counts"]
    for split in ("train", "eval"):
        for name in os.listdir(os.path.join(a, split)):
            assert open(os.path.join(a, split, name), "rb").read() == \
                open(os.path.join(b, split, name), "rb").read()
    keys = [f"tiny/{i:06d}" for i in range(40)]
    assert sa["counts"]["eval"] == sum(ingest.split_of(k, 0.25) == "eval" for k in keys)
    assert sa["counts"]["eval"] > 0 and "labels" in sa and not os.path.exists(os.path.join(a, "labels.json"))
    # A smaller rerun into the same folder replaces it; the split of each key does not change.
    sc = ingest.run_ingest(source, a, 4, 1, eval_fraction=0.25, num_shards=1, limit=20)
    assert sorted(os.listdir(os.path.join(a, "train"))) == ["data-00000-of-00001.tfrecord.gz"]
    assert sc["counts"]["train"] + sc["counts"]["eval"] == 20
    for split in ("train", "eval"):
        assert all(ingest.split_of(k, 0.25) == split for k in _read_split(a, split))
    images, _ = sources.load_images(f"ingested:{a}", 4, 1)  # default split: eval
    assert len(images) == sc["counts"]["eval"]


def test_split_fraction_is_close_to_requested():
    keys = [f"k/{i}" for i in range(2000)]
    share = np.mean([ingest.split_of(k, 0.3) == "eval" for k in keys])
    assert 0.26 < share < 0.34
    assert all(ingest.split_of(k, 0.0) == "train" for k in keys[:50])


def _assert_not_complete(out):
    assert not os.path.exists(os.path.join(out, "summary.json"))
    assert not os.path.exists(os.path.join(out, "train"))
    assert not os.path.exists(os.path.join(out, "eval"))
    with pytest.raises(ValueError, match="not a complete ingest output"):
        records.ingested_dataset(out, "train")


def test_too_many_rejects_fails_and_leaves_nothing_complete(image_folder, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(IngestError, match=r"4 of 11 inputs rejected.*max_reject_fraction"):
        ingest.run_ingest(f"folder:{image_folder.root}", out, 8, 1)
    _assert_not_complete(out)
    assert len(open(os.path.join(out, "rejects.jsonl")).readlines()) == 4


def test_nothing_usable_fails(make_image_folder, tmp_path):
    bad = make_image_folder(tmp_path / "bad", (("x.png", "empty", 0, 0, 0),
                                               ("y.png", "textpng", 0, 0, 0)))
    out = str(tmp_path / "out")
    with pytest.raises(IngestError, match="no usable image"):
        ingest.run_ingest(f"folder:{bad.root}", out, 8, 1, max_reject_fraction=1.0)
    _assert_not_complete(out)
    with pytest.raises(IngestError, match="not a folder"):
        ingest.run_ingest(f"folder:{tmp_path / 'missing'}", str(tmp_path / "o2"), 8, 1)


def test_failed_rerun_removes_earlier_complete_output(flat_image_folder, make_image_folder, tmp_path):
    out = str(tmp_path / "out")
    ingest.run_ingest(f"folder:{flat_image_folder.root}", out, 8, 3)
    assert os.path.exists(os.path.join(out, "summary.json"))
    bad = make_image_folder(tmp_path / "bad", (("x.png", "empty", 0, 0, 0),))
    with pytest.raises(IngestError):
        ingest.run_ingest(f"folder:{bad.root}", out, 8, 3)
    _assert_not_complete(out)


def test_refuses_foreign_output_and_bad_arguments(flat_image_folder, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(IngestError, match="holds other files"):
        ingest.run_ingest(f"folder:{flat_image_folder.root}", str(out), 8, 3)
    assert (out / "precious.txt").read_text() == "keep me"
    with pytest.raises(IngestError, match="inside the source folder"):
        ingest.run_ingest(f"folder:{flat_image_folder.root}",
                          os.path.join(flat_image_folder.root, "out"), 8, 3)
    with pytest.raises(IngestError, match="eval_fraction"):
        ingest.run_ingest(f"folder:{flat_image_folder.root}", str(tmp_path / "x"), 8, 3,
                          eval_fraction=1.0)
    with pytest.raises(IngestError, match="all 4 usable images fell in the eval split"):
        ingest.run_ingest(f"folder:{flat_image_folder.root}", str(tmp_path / "y"), 8, 3,
                          eval_fraction=0.999999)


def test_tfds_mock_ingest(tmp_path):
    import tensorflow_datasets as tfds
    out = str(tmp_path / "cifar")
    with tfds.testing.mock_data(num_examples=20):
        summary = ingest.run_ingest("tfds:cifar10", out, 8, 3, eval_fraction=0.2)
    assert summary["counts"]["train"] + summary["counts"]["eval"] == 20
    assert summary["counts"]["rejected"] == 0 and summary["labels"] is None
    train = _read_split(out, "train")
    assert all(k.startswith("cifar10/train/") for k in train)
    assert all(ex["image"].shape == (8, 8, 3) and 0 <= ex["label"] < 10 for ex in train.values())


def _folder(root, write_png, rels, size=8):
    rng = np.random.default_rng(11)
    for rel in rels:
        write_png(os.path.join(root, *rel.split("/")), rng.integers(0, 256, (size, size, 3), np.uint8))
    return str(root)


def test_symlink_loop_is_reported_not_rejected(tmp_path, write_png, capsys):
    """The reported case: 13 files and a link to the root gave 575 inputs; now 13, and no fail."""
    root = _folder(tmp_path / "src", write_png,
                   [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(6)] + ["flat.png"])
    os.symlink(root, os.path.join(root, "cat", "loop"))
    os.symlink(os.path.join(root, "dog"), os.path.join(root, "puppy"))
    out = str(tmp_path / "out")
    summary = ingest.run_ingest(f"folder:{root}", out, 8, 3)  # default max_reject_fraction 0.05
    assert summary["counts"]["total"] == 13 and summary["counts"]["rejected"] == 0
    assert summary["counts"]["train"] + summary["counts"]["eval"] == 13
    assert [s["path"] for s in summary["skipped_links"]] == ["cat/loop", "puppy"]
    assert "points back up" in summary["skipped_links"][0]["reason"]
    assert "already read" in summary["skipped_links"][1]["reason"]
    assert summary["labels"] == ["cat", "dog"]  # no "puppy", no "loop"
    assert json.load(open(os.path.join(out, "labels.json"))) == {"classes": ["cat", "dog"]}
    assert summary["class_balance"]["all"] == {"0": 6, "1": 6, "-1": 1}
    assert open(os.path.join(out, "rejects.jsonl")).read() == ""
    keys = set(_read_split(out, "train")) | set(_read_split(out, "eval"))
    assert len(keys) == 13 and not any("loop" in k or "puppy" in k for k in keys)
    err = capsys.readouterr().err
    assert "not read: cat/loop" in err and "2 paths not read" in err


def test_max_pixels_rejects_and_notes_in_summary(tmp_path, write_png):
    root = _folder(tmp_path / "src", write_png, [f"s{i}.png" for i in range(4)])
    _folder(root, write_png, ["big.png"], size=16)
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 200)]
    frames[0].save(os.path.join(root, "anim.gif"), save_all=True, append_images=frames[1:])
    out = str(tmp_path / "out")
    summary = ingest.run_ingest(f"folder:{root}", out, 8, 1, max_reject_fraction=0.2,
                                max_pixels=100)
    assert summary["max_pixels"] == 100
    assert summary["counts"]["rejected"] == 1 and summary["counts"]["total"] == 6
    assert summary["reject_reasons"] == {"too large": 1}
    assert summary["notes"] == {"first frame only": 1}
    rejects = [json.loads(line) for line in open(os.path.join(out, "rejects.jsonl"))]
    assert rejects == [{"path": "big.png", "reason": "too large: 16x16 = 256 pixels > "
                        "data.max_pixels=100; downscale it or raise data.max_pixels"}]
    anim = {**_read_split(out, "train"), **_read_split(out, "eval")}["anim.gif"]
    assert (anim["image"] == 10).all()  # the first frame
    assert ingest.run_ingest(f"folder:{root}", str(tmp_path / "o2"), 8, 1,
                             max_reject_fraction=0.2)["counts"]["rejected"] == 0  # default limit
    with pytest.raises(IngestError, match="max_pixels=0"):
        ingest.run_ingest(f"folder:{root}", str(tmp_path / "o3"), 8, 1, max_pixels=0)


def test_missing_local_source_fails_before_the_output_is_touched(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(IngestError, match="does not exist or is not a folder"):
        ingest.run_ingest(f"folder:{tmp_path / 'missing'}", str(out), 8, 1)
    assert not out.exists()
    with pytest.raises(IngestError, match="neither"):
        ingest.run_ingest(f"idx:{tmp_path / 'missing'}", str(out), 8, 1)
    assert not out.exists()
