"""CF-EBM end to end: `mgebm run --preset mnist5k-cfebm:smoke` through the TFX LocalDagRunner
(slow; needs TFX). The smoke schedule reaches the final stage, so the export samples at 32 px,
and the evaluator runs what the family's signatures allow and names what it skipped."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("tfx", reason="TFX lives in the primary environment only")
pytestmark = [pytest.mark.tfx, pytest.mark.slow]


def test_mnist5k_cfebm_smoke_end_to_end(tmp_path):
    workdir = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--preset", "mnist5k-cfebm:smoke",
         "--workdir", str(workdir), "--set", "eval.features=domain",
         "--set", "eval.translate_source=builtin:mnist5k"],
        capture_output=True, text=True, cwd=os.getcwd(), env=env, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    report = [ln.split(None, 1)[1] for ln in result.stdout.splitlines() if ln.startswith("report:")][0]
    metrics = json.loads(open(report.replace("report.html", "metrics.json")).read())
    assert metrics["model"]["family"] == "cfebm"
    assert "fid/domain" in json.dumps(metrics)
    # no features / sample_from_coarse signatures; unconditional, so no per-class figures
    assert set(metrics["skipped"]) == {"downstream", "diversity", "conditional"}
    assert metrics["skipped"]["conditional"] == "the model is not class-conditional"
    assert set(metrics["denoising"]["levels"]) == {"0.1", "0.2"}
    assert metrics["translation"]["source"] == "builtin:mnist5k"
    configs = list(workdir.rglob("assets/config.json"))
    assert configs
    for path in configs:
        info = json.loads(path.read_text())
        if info.get("family") == "cfebm" and "random_init" not in str(path):
            assert info["final_stage_reached"] is True and info["image_size"] == 32
