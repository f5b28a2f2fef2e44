"""PatchGenCN from a photo file to an evaluated export: the real ingest (`file:`) and Beam scale
pyramid, `trainers.train.train` (budget = scales x steps_per_scale, exact resume across a scale
boundary), the export loaded in a fresh process (sample at any size, super_resolve, edit), the
single-image evaluation (metrics, report, blessing against a served model) and the CLI commands.
A 40x30 photo made here, scales 17x22 -> 22x30 -> 30x40, nets of 8-4-4-1 channels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from components.ingest import run_ingest
from components.pyramid_beam import run_pyramid
from evaluators.single_image_eval import evaluate_single_image
from pipeline.cli import main as cli_main
from tests.test_train import checkpoint_values
from trainers.config import Config
from trainers.train import train


def photo_array(h=30, w=40) -> np.ndarray:
    """A structured RGB picture: diagonal stripes, a bright disc, a colour ramp."""
    yy, xx = np.mgrid[:h, :w]
    r = 127 + 100 * np.sin((xx + yy) / 3.0)
    g = 255.0 * xx / w
    b = np.where((yy - h / 2) ** 2 + (xx - w / 3) ** 2 < 40, 240, 60)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def pg_config(**train_settings) -> Config:
    settings = dict(batch_size=2, steps_per_scale=2, checkpoint_every=1, log_every=1, image_log_every=2,
                    learning_rate=4e-4, seed=5)
    settings.update(train_settings)
    return Config.build(
        "pg", data=dict(source="file:photo.png", channels=3, max_side=40),
        pyramid=dict(scale_factor=0.75, min_side=16),
        model=dict(family="patchgen", width=0.125, patch_layers=4, norm="spectral", activation="elu"),
        sampler=dict(steps=2, coarse_steps=3, step_size=0.05, noise=True, noise_scale=0.1,
                     noise_schedule="linear"),
        train=settings, export=dict(max_num_samples=4))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(photo_array()).save(path)
    return str(path)


@pytest.fixture(scope="module")
def pyramid_dir(photo, tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("pg")
    run_ingest(f"file:{photo}", str(root / "ingest"), image_size=40, channels=3, max_side=40, min_side=16)
    meta = run_pyramid(str(root / "ingest"), str(root / "pyramid"), (), scale_factor=0.75, min_side=16)
    assert meta["scales"] == [[17, 22], [22, 30], [30, 40]]
    return str(root / "pyramid")


@pytest.fixture(scope="module")
def export_dir(pyramid_dir, tmp_path_factory) -> str:
    result = train(pg_config(), pyramid_dir, str(tmp_path_factory.mktemp("pg_run")))
    assert result.steps == 6 and result.stopped_by == "steps_per_scale"
    return result.export_dir


def test_export_config_says_single_image_and_every_scale_trained(export_dir):
    info = json.loads(open(os.path.join(export_dir, "assets", "config.json")).read())
    assert info["single_image"] is True and info["final_scale_reached"] is True
    assert (info["height"], info["width"], info["channels"]) == (30, 40, 3)
    assert info["scales"] == [[17, 22], [22, 30], [30, 40]] and info["train_steps"] == 6
    assert set(info["signatures"]) == {"sample", "energy", "super_resolve", "edit", "harmonize",
                                       "style_transfer"}


@pytest.mark.slow
def test_resume_across_a_scale_boundary_equals_the_uninterrupted_run(pyramid_dir, tmp_path):
    full = train(pg_config(), pyramid_dir, str(tmp_path / "full"), export=False)
    train(pg_config(max_steps=3), pyramid_dir, str(tmp_path / "resumed"), export=False)
    resumed = train(pg_config(), pyramid_dir, str(tmp_path / "resumed"), resume=True, export=False)
    assert full.steps == resumed.steps == 6
    a, b = checkpoint_values(full.checkpoint_dir), checkpoint_values(resumed.checkpoint_dir)
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


_FRESH = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    sig = tf.saved_model.load({path!r}).signatures
    out = {{}}
    s = sig["sample"](num_samples=tf.constant(2), seed=tf.constant(1), height=tf.constant(30),
                      width=tf.constant(80))["images"]
    out["wide"] = list(s.shape)
    out["sr"] = list(sig["super_resolve"](images=s, seed=tf.constant(0), scale=tf.constant(2))["images"].shape)
    mask = np.zeros([2, 30, 80, 1], np.uint8); mask[:, 5:20, 10:40] = 1
    e = sig["edit"](images=s, mask=tf.constant(mask), seed=tf.constant(2), start_scale=tf.constant(1))["images"]
    keep = mask[..., 0] == 0
    out["edit_keeps_unmasked"] = bool(np.array_equal(e.numpy()[keep], s.numpy()[keep]))
    try:
        sig["sample"](num_samples=tf.constant(1), seed=tf.constant(1), height=tf.constant(5),
                      width=tf.constant(40))
    except tf.errors.InvalidArgumentError as err:
        out["error"] = "height must be in" in str(err)
    print("JSON" + json.dumps(out))
""")


def test_export_works_in_a_fresh_process(export_dir):
    result = subprocess.run([sys.executable, "-c", _FRESH.format(path=export_dir)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads([ln for ln in result.stdout.splitlines() if ln.startswith("JSON")][0][4:])
    assert out == {"wide": [2, 30, 80, 3], "sr": [2, 60, 160, 3], "edit_keeps_unmasked": True, "error": True}


def test_single_image_evaluation_writes_metrics_report_and_blesses_against_the_served_model(
        export_dir, tmp_path):
    # The export compared with itself as the served model: the same images and seeds give the
    # same SIFID, so `<=baseline*1.05` passes and `<=baseline*0.5` fails.
    metrics = evaluate_single_image(export_dir, photo_array(), str(tmp_path), num_samples=4,
                                    served_model_dir=export_dir,
                                    thresholds=["sifid/efficientnet_lite0<=baseline*1.05",
                                                "sifid/efficientnet_lite0<=baseline*0.5",
                                                "nearest_patch/mean>=0",
                                                "harmonization/colour_distance_after>=0"])
    for key in ("sifid/efficientnet_lite0", "diversity/single_image", "nearest_patch/mean", "hf_energy/ratio",
                "baseline/quilting/sifid/efficientnet_lite0", "baseline/patch_shuffle/nearest_patch/mean"):
        assert np.isfinite(metrics[key]), key
    served = metrics["baseline_model"]["metrics"]["sifid/efficientnet_lite0"]
    assert served == pytest.approx(metrics["sifid/efficientnet_lite0"], rel=1e-9)
    assert [c["passed"] for c in metrics["blessing"]["checks"]] == [True, False, True, True]
    # The disc (a colour the photo lacks) starts far from its surroundings: ring 30 / 12 -> 2 px.
    harmonization = metrics["harmonization"]
    assert harmonization["ring_px"] == 2 and harmonization["colour_distance_before"] > 0.3
    assert np.isfinite(harmonization["colour_distance_after"])
    assert set(metrics["super_resolution"]) == {"x2", "x4"}  # inputs 15x20 and 7x10 (>= 6 px)
    assert metrics["super_resolution"]["x4"]["input_size"] == [7, 10]
    assert all(v[m]["psnr"] > 5 for v in metrics["super_resolution"].values() for m in ("model", "bicubic"))
    html = open(tmp_path / "report.html").read()
    for title in ("Samples", "SIFID, diversity, nearest patch", "Super-resolution",
                  "Editing, harmonization, style transfer", "Blessing", "served model (version"):
        assert title in html
    assert html.count("<img") >= 6
    assert sorted(os.listdir(tmp_path / "pictures")) == [
        "edit.png", "harmonize.png", "samples.png", "samples_wide.png", "style_transfer.png",
        "super_resolution_x2.png", "super_resolution_x4.png"]
    with pytest.raises(ValueError, match="training image"):
        evaluate_single_image(export_dir, photo_array()[:20], str(tmp_path / "bad"))


def test_single_image_evaluation_reads_the_side_range_from_the_exports_config_json(export_dir, tmp_path):
    """The evaluator knows the sizes the signatures accept only from config.json: [6, 160] here
    (the coarsest of 3 scales at 0.75 must keep 3 px: ceil(3 / 0.75**2); 4x the longer side 40)."""
    import shutil

    with open(os.path.join(export_dir, "assets", "config.json"), encoding="utf-8") as f:
        info = json.load(f)
    assert info["side_range"] == [6, 160]
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    del info["side_range"]
    (copy / "assets" / "config.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="config.json has no side_range.*mgebm train --resume"):
        evaluate_single_image(str(copy), photo_array(), str(tmp_path / "eval"))


@pytest.mark.slow
def test_cli_applications_write_pngs_and_bad_flags_exit_2(export_dir, photo, tmp_path, capsys):
    mask = np.zeros((30, 40), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    runs = {"super-resolve": ["--scale", "2"], "edit": ["--mask", str(tmp_path / "mask.png")]}
    for command, extra in runs.items():
        out = tmp_path / f"{command}.png"
        assert cli_main([command, "--model", export_dir, "--input", photo, "--output", str(out), *extra]) == 0
        result = np.asarray(Image.open(out))
        assert result.shape == ((60, 80, 3) if command == "super-resolve" else (30, 40, 3))
    assert cli_main(["sample", "--model", export_dir, "--num", "2", "--width", "60",
                     "--output", str(tmp_path / "s.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "s.png")).shape[1] > 2 * 60
    capsys.readouterr()
    assert cli_main(["style-transfer", "--model", export_dir, "--input", photo, "--output",
                     str(tmp_path / "x.png"), "--start-scale", "7"]) == 2
    assert "--start-scale=7 must be in [0, 2]" in capsys.readouterr().err
    assert cli_main(["super-resolve", "--model", export_dir, "--input", photo, "--output",
                     str(tmp_path / "x.png"), "--scale", "9"]) == 2
    assert "scale must be in [1, 8]" in capsys.readouterr().err
    Image.fromarray(mask[:20]).save(tmp_path / "small_mask.png")
    assert cli_main(["edit", "--model", export_dir, "--input", photo, "--mask", str(tmp_path / "small_mask.png"),
                     "--output", str(tmp_path / "x.png")]) == 2
    assert "must be the input's size 30x40" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.tfx
def test_photo_patchgen_smoke_end_to_end(photo, tmp_path):
    pytest.importorskip("tfx", reason="TFX lives in the primary environment only")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--preset", "photo-patchgen:smoke",
         "--data", f"file:{photo}", "--workdir", str(tmp_path / "run"), "--set", "data.max_side=40",
         "--set", "pyramid.min_side=16", "--set", "model.width=0.125"],
        capture_output=True, text=True, timeout=1800, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    assert result.returncode == 0, result.stderr[-5000:]
    report = [ln.split(None, 1)[1] for ln in result.stdout.splitlines() if ln.startswith("report:")][0]
    metrics = json.loads(open(report.replace("report.html", "metrics.json")).read())
    assert metrics["model"]["family"] == "patchgen" and metrics["model"]["scales"][-1] == [30, 40]
    assert "sifid/efficientnet_lite0" in metrics and metrics["blessing"]["blessed"] is True
    assert os.path.isdir(tmp_path / "run" / "serving" / "photo-patchgen" / "1")  # its own name
