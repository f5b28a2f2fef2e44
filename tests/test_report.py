"""report.html and metrics.json (evaluators/report.py)."""

import base64
import io
import json
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from evaluators import report


def _write_logs(log_dir):
    for run, offset in (("train", 0.0), ("eval", 1.0)):
        writer = tf.summary.create_file_writer(str(log_dir / run))
        with writer.as_default():
            for step in range(5):
                tf.summary.scalar("loss/16", offset + 10.0 - step, step=step)
                tf.summary.scalar("energy_gap/16", 0.5 * step, step=step)
            tf.summary.image("samples", np.zeros((1, 4, 4, 1), np.float32), step=0)
            tf.summary.histogram("weights", np.arange(10.0), step=0)
        writer.close()


def test_read_scalars_finds_runs_and_values(tmp_path):
    _write_logs(tmp_path)
    scalars = report.read_scalars(str(tmp_path))
    assert set(scalars) == {"train", "eval"}
    assert set(scalars["train"]) == {"loss/16", "energy_gap/16"}  # image and histogram skipped
    steps, values = scalars["eval"]["loss/16"]
    assert steps == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(values, [11.0, 10.0, 9.0, 8.0, 7.0])
    assert report.read_scalars(str(tmp_path / "missing")) == {}


def test_tile_images_layout():
    images = np.arange(5 * 2 * 3 * 1, dtype=np.uint8).reshape(5, 2, 3, 1)
    grid = report.tile_images(images, ncols=2, pad=1, pad_value=200)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 1)
    np.testing.assert_array_equal(grid[1:3, 1:4], images[0])
    np.testing.assert_array_equal(grid[1:3, 5:8], images[1])
    np.testing.assert_array_equal(grid[7:9, 1:4], images[4])
    assert (grid[7:9, 5:8] == 200).all()  # empty slot
    with pytest.raises(ValueError, match="uint8"):
        report.tile_images(images.astype(np.float32), 2)


def test_metrics_json_has_no_nan_and_notes_replacements(tmp_path):
    metrics = {"feature_spaces": {"domain": {"fid": np.float32(3.5), "kid_std": float("nan"),
                                             "num_real": np.int64(10)}},
               "diversity": {"ratio": float("inf")}, "arr": np.arange(3)}
    written = report.write_metrics_json(str(tmp_path / "m" / "metrics.json"), metrics)
    text = (tmp_path / "m" / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    parsed = json.loads(text)
    assert parsed == written
    assert parsed["schema_version"] == report.SCHEMA_VERSION
    assert parsed["feature_spaces"]["domain"] == {"fid": 3.5, "kid_std": None, "num_real": 10}
    assert parsed["diversity"]["ratio"] is None and parsed["arr"] == [0, 1, 2]
    assert any("feature_spaces/domain/kid_std" in n for n in parsed["notes"])
    assert any("diversity/ratio" in n for n in parsed["notes"])


def test_report_has_every_section_and_embedded_pngs(tmp_path):
    _write_logs(tmp_path / "logs")
    rng = np.random.default_rng(0)
    images = {"samples/grid_4": rng.integers(0, 256, (14, 26, 1), dtype=np.uint8),
              "samples/grid_16": rng.integers(0, 256, (38, 74, 3), dtype=np.uint8),
              "inpainting/square": rng.integers(0, 256, (20, 40, 3), dtype=np.uint8),
              "diversity": rng.integers(0, 256, (10, 30, 3), dtype=np.uint8)}
    metrics = {
        "model": {"dir": "/models/x"},
        "feature_spaces": {"domain": {"fid": 12.5, "kid": 0.01, "kid_std": 0.002, "precision": 0.7,
                                      "recall": 0.6, "inception_score": 8.1, "num_real": 100,
                                      "num_fake": 100, "info": {"accuracy": 0.99},
                                      "reference": {"fid": 1.25}}},
        "downstream": {"columns": [1000], "rows": {"svm/raw_pixels": {"1000": 0.25}}, "notes": []},
        "inpainting": {"masks": {"square": {"mean_fill": {"error": 0.125, "psnr": 14.5,
                                                          "num_images": 4}}}},
        "diversity": {"within_start_mean": 0.0625},
        "blessing": {"blessed": False, "checks": [{"rule": "fid/domain<=10", "value": 12.5,
                                                   "passed": False, "reason": "violates"}]},
        "notes": ["a note <b>"],
    }
    path = report.write_report(str(tmp_path / "out"), metrics, images,
                               {"train": {"batch_size": 8}}, log_dir=str(tmp_path / "logs"))
    text = open(path, encoding="utf-8").read()
    for title in report.SECTION_TITLES:
        assert f">{title}</h2>" in text, title
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(uris) == len(images) + 1  # + the training curves
    shapes = sorted(Image.open(io.BytesIO(base64.b64decode(u))).size for u in uris)
    assert (26, 14) in shapes and (74, 38) in shapes
    for expected in ("12.5", "1.25", "0.25", "0.125", "14.5", "0.0625", "NOT BLESSED",
                     "fid/domain&lt;=10", "&quot;batch_size&quot;: 8", "a note &lt;b&gt;",
                     "baseline: real vs real", "svm/raw_pixels"):
        assert expected in text, expected
    assert "no TensorBoard scalars" not in text and "http" not in text.replace("http-equiv", "")


def test_report_without_logs_or_metrics_says_so(tmp_path):
    path = report.write_report(str(tmp_path), {}, {}, {}, log_dir=None)
    text = open(path, encoding="utf-8").read()
    assert text.count("not computed") >= 4 and "no TensorBoard log folder given" in text
    with pytest.raises(ValueError, match="tile_images"):
        report.write_report(str(tmp_path), {}, {"x": np.zeros((2, 4, 4, 3), np.uint8)}, {})
