"""The PatchGenCN lever and side-by-side benchmarks: arm definitions, the summary of the
evaluator's metrics, one tiny in-process run, and (with a checkout of the authors' code named by
$MGEBM_PATCHGEN_CHECKOUT) the side-by-side on a tiny image."""

import json
import os

import numpy as np
import pytest

from benchmarks import patchgen_levers as levers
from benchmarks import patchgen_train as pt
from benchmarks import reference_patchgen


def test_arms_and_coarse_heavy_steps():
    assert levers.coarse_heavy_steps(60, 4) == [180, 120, 60, 30]
    assert levers.coarse_heavy_steps(60, 2) == [180, 30] and levers.coarse_heavy_steps(5, 1) == [5]
    arms = levers.parse_arms("as_shipped,coarse_heavy", ["mine=train.lr_schedule=linear; model.width=2"])
    assert list(arms) == ["as_shipped", "coarse_heavy", "mine"]
    assert arms["coarse_heavy"](60, 3) == ["train.scale_steps=180,120,30"]
    assert arms["mine"](60, 3) == ["train.lr_schedule=linear", "model.width=2"]
    assert arms["as_shipped"](60, 3) == []
    with pytest.raises(SystemExit, match="unknown arm 'fast'"):
        levers.parse_arms("fast", [])
    with pytest.raises(SystemExit, match="NAME=section.key=value"):
        levers.parse_arms("", ["nothing"])
    # Every predefined arm is a valid configuration of the preset.
    from pipeline.presets import load_preset

    for make in levers.ARMS.values():
        load_preset("chelsea-patchgen", make(60, 4))


def test_summary_reads_the_evaluators_keys():
    metrics = {"sifid/efficientnet_lite0": 10.0, "baseline/quilting/sifid/efficientnet_lite0": 5.0,
               "hf_energy/ratio": 1.1, "super_resolution": {"x2": {"model": {"psnr": 30.0}, "bicubic": {"psnr": 29.0}}},
               "harmonization": {"colour_distance_before": 0.5, "colour_distance_after": 0.2}}
    s = pt.summary(metrics)
    assert (s["sifid"], s["sifid_quilting"], s["hf_ratio"], s["sr_x2_psnr"], s["sr_x2_bicubic"]) == (10, 5, 1.1, 30, 29)
    assert (s["harm_before"], s["harm_after"], s["diversity"]) == (0.5, 0.2, None)


def test_tiny_lever_run_writes_json_and_pictures(tmp_path):
    out = tmp_path / "levers.json"
    assert levers.main(["--max-side", "40", "--min-side", "16", "--steps-per-scale", "1", "--arms", "as_shipped",
                        "--set", "sampler.steps=1", "--set", "sampler.coarse_steps=1", "--set", "model.width=0.25",
                        "--num-samples", "2", "--no-applications", "--out", str(out),
                        "--pictures", str(tmp_path / "pics")]) == 0
    doc = json.loads(out.read_text())
    run = doc["arms"]["as_shipped"]["runs"][0]
    assert doc["scales"] == [[20, 30], [27, 40]] and run["steps"] == 2 and run["scale_steps"] == [1, 1]
    assert np.isfinite(run["summary"]["sifid"]) and np.isfinite(run["summary"]["hf_ratio"])
    assert run["summary"]["sr_x2_psnr"] is None and os.path.isfile(tmp_path / "pics" / "as_shipped_s0.png")


def test_side_by_side_refuses_a_folder_without_the_authors_code(tmp_path):
    with pytest.raises(SystemExit, match="no train.py / models.py"):
        reference_patchgen.main(["--reference-checkout", str(tmp_path)])


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MGEBM_PATCHGEN_CHECKOUT"),
                    reason="set MGEBM_PATCHGEN_CHECKOUT to a checkout of zilongzheng/PatchGenCN")
def test_side_by_side_with_the_authors_code_on_a_tiny_image(tmp_path):
    out = tmp_path / "sbs.json"
    assert reference_patchgen.main([
        "--reference-checkout", os.environ["MGEBM_PATCHGEN_CHECKOUT"], "--max-side", "40", "--steps-per-scale", "2",
        "--set", "pyramid.min_side=16", "--set", "sampler.steps=1", "--set", "sampler.coarse_steps=1",
        "--num-samples", "2", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["scales"] == [[20, 30], [27, 40]] and doc["reference"]["completed"] is True
    for side in ("reference", "ours"):
        assert np.isfinite(doc[side]["summary"]["sifid"]) and doc[side]["train_s"] > 0
    assert doc["ratio_train_s"] == pytest.approx(doc["reference"]["train_s"] / doc["ours"]["train_s"])
