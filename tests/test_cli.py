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
                    "classifier", "compile", "run-spec", "presets"):
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
    # A complete-looking ingest output whose summary.json is not JSON: only the stage can tell.
    bad = tmp_path / "ingest"
    bad.mkdir()
    (bad / "summary.json").write_text("{not json")
    result = run_cli("pyramid", "--input", str(bad), "--grids", "1,4", "--output", str(tmp_path / "p"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "mgebm pyramid: failed" in result.stderr


# Usage errors that must be caught before TensorFlow, Beam or TFX is imported.
_FAST_USAGE_ERRORS = [
    (["ingest", "--data", "foo:bar", "--image-size", "8", "--output", "o"], "--data"),
    (["ingest", "--data", "builtin:mnist5k", "--image-size", "0", "--output", "o"], "--image-size=0"),
    (["ingest", "--data", "builtin:mnist5k", "--output", "o"], "--image-size is required for --data builtin:mnist5k"),
    (["ingest", "--data", "folder:{tmp}/missing", "--image-size", "8", "--output", "o"], "missing"),
    (["ingest", "--data", "idx:{tmp}/nothing", "--image-size", "8", "--output", "o"], "idx3-ubyte"),
    (["ingest", "--data", "builtin:mnist5k", "--image-size", "8", "--eval-fraction", "1.5",
      "--output", "o"], "--eval-fraction"),
    (["pyramid", "--input", "{tmp}/missing", "--grids", "1,4", "--output", "o"], "--input"),
    (["pyramid", "--input", "{tmp}", "--grids", "1,4", "--output", "o"], "summary.json"),
    (["train", "--pyramid", "{tmp}", "--preset", "mnist5k-multigrid", "--workdir", "w"], "metadata.json"),
    (["train", "--pyramid", "{tmp}", "--preset", "nope", "--workdir", "w"], "unknown preset"),
    (["run", "--preset", "mnist5k-multigrid", "--data", "folder:{tmp}/missing"], "--data"),
    (["run", "--preset", "mnist5k-multigrid", "--set", "sampler.steps=0"], "sampler.steps=0"),
    (["sample", "--model", "{tmp}", "--output", "x.png"], "saved_model.pb"),
    (["sample", "--model", "{tmp}/missing", "--output", "x.png"], "--model"),
    (["evaluate", "--model", "{tmp}/m", "--data", "builtin:mnist5k", "--output", "o"], "--model"),
    (["fid", "--real", "builtin:nope", "--fake", "builtin:mnist5k", "--features", "domain"], "--real"),
    (["classifier", "--data", "tfds", "--output", "o"], "--data"),
]


def assert_fast_usage_error(argv: list[str], fragment: str) -> None:
    """`mgebm ARGV` in a fresh process exits 2 with one stderr line holding `fragment`, before
    TensorFlow, Beam, TFX or Keras is imported."""
    code = ("import sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
            "heavy = [m for m in ('tensorflow', 'apache_beam', 'tfx', 'keras') if m in sys.modules]; "
            "print('HEAVY=' + ','.join(heavy)); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "HEAVY=\n" in result.stdout, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert lines[0].startswith(f"mgebm {argv[0]}: error:")


@pytest.mark.parametrize("argv, fragment", _FAST_USAGE_ERRORS)
def test_usage_errors_exit_2_before_tensorflow_is_imported(argv, fragment, tmp_path):
    assert_fast_usage_error([a.replace("{tmp}", str(tmp_path)) for a in argv], fragment)


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("mgebm ") and result.stdout.split()[1][0].isdigit()


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
