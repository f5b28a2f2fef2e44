"""README.md's command lines against the real command line: every `mgebm` command in its code
blocks parses with `pipeline.cli.build_parser()`, names real presets and config fields, and the
cheap ones run (`mgebm presets`, `--help` of every command used, the one-image ingest)."""

from __future__ import annotations

import pathlib
import re
import shlex

import numpy as np
import pytest

from pipeline import cli
from pipeline.checks import feature_names
from pipeline.presets import load_preset

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
_OPERATOR = set("&|;<>()")


def code_blocks(text: str) -> list[str]:
    """The contents of the fenced code blocks of a Markdown text."""
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def mgebm_commands(text: str) -> list[list[str]]:
    """The arguments of every `mgebm` (or `.../mgebm`) command in the code blocks, at a command's
    place in its line (first, after a shell operator or an environment assignment): backslash
    continuations joined, comments dropped, cut at the next shell operator (`&&`, `|`, `>>`...)."""
    commands = []
    for block in code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            for i, token in enumerate(tokens):
                before = tokens[i - 1] if i else ";"
                at_command = (set(before) <= _OPERATOR or before in ("do", "then", "time")
                              or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", before))
                if at_command and (token == "mgebm" or token.endswith("/mgebm")):
                    args = []
                    for arg in tokens[i + 1:]:
                        if arg and set(arg) <= _OPERATOR:
                            break
                        args.append(arg)
                    commands.append(args)
    return commands


def parse(argv: list[str]):
    """`mgebm ARGV` parsed as `cli.main` parses it (Beam options after `--` set aside)."""
    if "--" in argv:
        argv = argv[:argv.index("--")]
    return cli.build_parser().parse_args(argv)


COMMANDS = mgebm_commands(README.read_text(encoding="utf-8"))


def test_the_extraction_finds_the_readme_commands():
    text = ("```bash\nmgebm presets  # list\n.venv/bin/mgebm run --preset p \\\n    --set a.b=1 >> log 2>&1\n```\n"
            "`mgebm inline --not-a-block`\n"
            "```\n0 2 * * * cd /srv && .venv/bin/mgebm run --data 'folder:/d/{SPAN}' | tee x\n"
            "X=1 mgebm compile --pipeline-root gs://b/mgebm\n```\n")
    assert mgebm_commands(text) == [["presets"], ["run", "--preset", "p", "--set", "a.b=1"],
                                    ["run", "--data", "folder:/d/{SPAN}"],
                                    ["compile", "--pipeline-root", "gs://b/mgebm"]]
    assert len(COMMANDS) >= 15
    used = {argv[0] for argv in COMMANDS}
    assert {"presets", "run", "ingest", "pyramid", "train", "sample", "evaluate"} <= used


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a)[:80] for a in COMMANDS])
def test_every_readme_command_parses_with_real_presets_and_fields(argv):
    try:
        args = parse(argv)
    except SystemExit as exit_:
        pytest.fail(f"README's `mgebm {' '.join(argv)}` does not parse (exit {exit_.code})")
    assert args.command, argv
    if getattr(args, "preset", None):
        load_preset(args.preset, list(args.overrides))  # ConfigError names a bad preset or field
    if args.command in ("evaluate", "fid"):
        feature_names(args.features)


def test_help_of_every_command_in_the_readme(capsys):
    for command in sorted({argv[0] for argv in COMMANDS}):
        with pytest.raises(SystemExit) as exit_:
            cli.build_parser().parse_args([command, "--help"])
        assert exit_.value.code == 0
        assert f"usage: mgebm {command}" in capsys.readouterr().out


def test_mgebm_presets_runs_and_lists_every_preset_the_readme_names(capsys):
    assert ["presets"] in COMMANDS
    assert cli.main(["presets"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()}
    named = {args.preset.split(":")[0] for args in map(parse, COMMANDS) if getattr(args, "preset", None)}
    assert named and named <= listed


def test_readme_one_image_ingest_runs_as_written(tmp_path, capsys):
    """The README's `mgebm ingest --data file:...` (no --image-size: a file: source keeps its own
    size) on a generated photo in place of the README's file name."""
    from PIL import Image

    ingests = [a for a in COMMANDS if a[0] == "ingest" and any(x.startswith("file:") for x in a)]
    assert ingests, "README shows no one-image ingest"
    photo = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (120, 300, 3), dtype=np.uint8)).save(photo)
    argv = list(ingests[0])
    argv[argv.index("--data") + 1] = f"file:{photo}"
    argv[argv.index("--output") + 1] = str(tmp_path / "out")
    assert cli.main(argv) == 0, capsys.readouterr().err
    summary = (tmp_path / "out" / "summary.json").read_text()
    side = int(argv[argv.index("--max-side") + 1])
    assert f'"width": {min(side, 300)}' in summary and '"single_image": true' in summary
