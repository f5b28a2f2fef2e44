"""The `mgebm` command line: help, exit codes, usage errors (no traceback)."""

import subprocess
import sys

import pytest

from pipeline.cli import main


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "ingest", "pyramid", "train", "sample", "evaluate", "fid",
                    "classifier", "compile", "presets"):
        assert command in result.stdout


def test_presets_command(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "mnist5k-multigrid" in out and "celeba64-multigrid" in out


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--pyramid", "x", "--preset", "nope", "--workdir", "w"], "unknown preset 'nope'"),
    (["train", "--pyramid", "x", "--preset", "mnist5k-multigrid", "--workdir", "w",
      "--set", "train.lr=1"], "unknown config key train.lr"),
    (["pyramid", "--input", "x", "--grids", "1,a", "--output", "y"], "--grids"),
    (["fid", "--real", "builtin:mnist5k", "--fake", "builtin:mnist5k", "--features", "pixels"],
     "unknown feature space 'pixels'"),
])
def test_usage_errors_exit_2_with_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err


def test_runtime_failure_exits_1_without_traceback(tmp_path):
    result = run_cli("ingest", "--data", f"folder:{tmp_path / 'missing'}", "--image-size", "8",
                     "--output", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "missing" in result.stderr


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
