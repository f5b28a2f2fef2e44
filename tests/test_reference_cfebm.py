"""The CF-EBM side-by-side benchmark (`benchmarks.reference_cfebm` and its torch worker): budgets,
the authors' settings with the equalised schedule, the data feed, and (where torch and a ProEBM
checkout are present) a few updates of the authors' code end to end."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import reference_cfebm, reference_cfebm_torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKOUT = os.environ.get("PROEBM_CHECKOUT", "/work/refs/YangNaruto+ProEBM")


def test_budgets_parse_and_bad_ones_are_named():
    assert reference_cfebm.parse_budgets("updates:300,minutes:2.5") == [("updates", 300), ("minutes", 2.5)]
    assert reference_cfebm.budget_name("updates", 300) == "updates300"
    assert reference_cfebm.budget_name("minutes", 2.5) == "minutes2.5"
    for bad in ("updates:1.5", "hours:2", "minutes:0", "updates:x", ""):
        with pytest.raises(ValueError, match="--budgets"):
            reference_cfebm.parse_budgets(bad)


def test_their_settings_equalise_batch_phases_and_steps():
    a = argparse.Namespace(stable_images=2000, fade_images=2000, langevin_steps=15, updates=300,
                           batch=32, base_channel=16)
    args = reference_cfebm_torch.their_args(a)
    # Their stage r lasts 2 * phases[r] images: 2000 at 8 px, then fades and stabilisations of 2000.
    assert args.phases == {8: 1000, 16: 2000, 32: 2000}
    assert args.batch == {} and args.batch_default == 32 and args.langevin_step == 15
    assert args.iterations == 300 and args.dataset == "mnist" and args.from_beginning
    assert args.lr == {8: pytest.approx(0.0015), 16: pytest.approx(0.0015), 32: pytest.approx(0.0015)}
    assert (args.spectral, args.res, args.pro, args.activation_fn) == (True, True, True, "swish")


def test_the_pyramid_fed_to_their_code_is_the_box_average():
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 1), dtype=np.uint8)
    got = reference_cfebm_torch._box(images, 8)
    assert got.shape == (3, 1, 8, 8) and got.dtype == np.float32
    want = images[..., 0].astype(np.float64).reshape(3, 8, 4, 8, 4).mean(axis=(2, 4)) / 255.0
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-6)


def test_a_missing_checkout_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        reference_cfebm.main(["--reference-checkout", str(tmp_path), "--workdir", str(tmp_path / "w")])
    assert "has no train_v0.py" in capsys.readouterr().err


def _torch_python():
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    latest = os.path.join(REPO, ".venv-latest", "bin", "python")
    return latest if os.path.exists(latest) else None


@pytest.mark.slow
def test_their_code_trains_through_every_stage_and_samples(tmp_path):
    python = _torch_python()
    if python is None or not os.path.exists(os.path.join(CHECKOUT, "train_v0.py")):
        pytest.skip("needs a Python with torch and torchvision (.venv-latest, docs) and a ProEBM "
                    "checkout (PROEBM_CHECKOUT)")
    probe = subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True, check=False)
    if probe.returncode and b"torchvision" in probe.stderr and b"No module" in probe.stderr:
        pytest.skip("torchvision is not installed beside torch")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "train.npz", train=rng.integers(0, 256, (64, 32, 32, 1), dtype=np.uint8))
    out = tmp_path / "samples.npz"
    # 16 images at 8 px, fades and stabilisations of 16: the 32 px fade ends after 80 images.
    proc = subprocess.run(
        [python, "-m", "benchmarks.reference_cfebm_torch", "--checkout", CHECKOUT, "--images",
         str(tmp_path / "train.npz"), "--out", str(out), "--batch", "8", "--stable-images", "16",
         "--fade-images", "16", "--langevin-steps", "2", "--updates", "12", "--num-samples", "5",
         "--threads", "1"], capture_output=True, text=True, cwd=REPO, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["updates"] == 12 and result["images_seen"] == 96
    assert result["stage_size"] == 32 and result["alpha"] == 1.0 and result["final_stage_reached"]
    samples = np.load(out)["samples"]
    assert samples.shape == (5, 32, 32, 1) and samples.dtype == np.uint8


def test_runs_are_evaluated_alike_and_summarised_over_seeds(tmp_path):
    from evaluators.features import FeatureSpace

    rng = np.random.default_rng(0)
    w_feat, w_logit = rng.normal(size=(64, 8)), rng.normal(size=(64, 4))

    def batch_fn(images):
        x = images.reshape(len(images), -1).astype(np.float64) / 255.0
        return (x @ w_feat).astype(np.float32), (x @ w_logit).astype(np.float32)

    space = FeatureSpace("projection", batch_fn, {"kind": "random projection for tests"})
    real = rng.integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    runs = {}
    for side in ("ours", "theirs"):
        for seed in (0, 1):
            samples = real if side == "ours" else np.full_like(real, 7 * seed + 30)  # theirs: flat
            path = tmp_path / f"{side}-{seed}.npz"
            np.savez(path, samples=samples)
            runs[f"{side}-updates5-s{seed}"] = {"side": side, "seed": seed, "budget": "updates5",
                                                "samples": str(path), "steps": 5, "final_stage_reached": True}
    metrics = reference_cfebm.evaluate_runs(runs, real, {"projection": space}, str(tmp_path / "runs"))
    assert metrics["ours-updates5-s0"]["projection"]["fid"] == pytest.approx(0.0, abs=1e-3)
    assert metrics["theirs-updates5-s1"]["projection"]["fid"] > 1.0
    assert not metrics["ours-updates5-s0"]["collapse"]["collapsed"]
    assert metrics["theirs-updates5-s0"]["collapse"]["collapsed"]  # flat images
    assert os.path.exists(tmp_path / "runs" / "theirs-updates5-s1" / "metrics.json")
    summary = reference_cfebm.summarize(runs, metrics)["updates5"]
    assert summary["theirs"]["collapsed"]["values"] == [1.0, 1.0]
    assert summary["ours"]["collapsed"]["mean"] == 0.0 and summary["ours"]["steps"]["std"] == 0.0
    assert summary["ours"]["fid/projection"]["values"][0] == pytest.approx(0.0, abs=1e-3)


def test_the_last_json_document_of_a_log_is_read():
    text = "tensorboard --logdir x\n[train] step 6/6\n{\n  \"steps\": 6,\n  \"export\": \"e\"\n}\n"
    assert reference_cfebm._last_json(text) == {"steps": 6, "export": "e"}
    assert reference_cfebm._last_json('{"updates": 3}') == {"updates": 3}
