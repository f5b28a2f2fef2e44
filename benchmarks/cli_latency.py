"""How long `mgebm` takes to answer: wall-clock time of whole commands, several code trees at once.

`python -m benchmarks.cli_latency --trees before=/tmp/mgebm-before,after=. --repeats 5` runs each
command as a fresh process (`python -m pipeline.cli ...` with the tree as working directory, so
that tree's code is imported) `--repeats` times, interleaving the trees so that machine load
hits them alike, and prints the median, min and max seconds per command and tree as JSON with a
table on stderr. Commands: `--help`, a usage error (an unknown source scheme), `presets`, and
`ingest` of 100 built-in digits.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import common

COMMANDS = {
    "help": ["--help"],
    "usage_error": ["ingest", "--data", "foo:bar", "--image-size", "32", "--output", "{tmp}/bad"],
    "presets": ["presets"],
    "ingest_100": ["ingest", "--data", "builtin:mnist5k", "--limit", "100", "--image-size", "32",
                   "--output", "{tmp}/ingest"],
}


def time_command(python: str, tree: str, argv: list[str]) -> tuple[float, int]:
    """(wall seconds, exit code) of one `python -m pipeline.cli ARGV` run in `tree`."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [a.replace("{tmp}", tmp) for a in argv]
        start = time.perf_counter()
        proc = subprocess.run([python, "-m", "pipeline.cli", *args], cwd=tree, capture_output=True,
                              timeout=600, check=False)
        return time.perf_counter() - start, proc.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--trees", default="current=.", help="NAME=PATH,... code trees to compare")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args(argv)
    trees = dict(item.split("=", 1) for item in args.trees.split(",") if item)
    times = {(t, c): [] for t in trees for c in COMMANDS}
    codes = {}
    for _ in range(args.repeats):
        for command, cmd_argv in COMMANDS.items():
            for tree, path in trees.items():
                seconds, code = time_command(args.python, path, cmd_argv)
                times[(tree, command)].append(seconds)
                codes[(tree, command)] = code
    doc = {"machine": common.machine_info(), "repeats": args.repeats, "trees": trees, "results": {}}
    rows = []
    for (tree, command), values in times.items():
        doc["results"].setdefault(command, {})[tree] = {
            "median_s": statistics.median(values), "min_s": min(values), "max_s": max(values),
            "exit_code": codes[(tree, command)]}
        rows.append([command, tree, f"{statistics.median(values):.2f}", f"{min(values):.2f}",
                     f"{max(values):.2f}", codes[(tree, command)]])
    doc["machine"]["loadavg_end"] = common.load_average()
    common.emit(doc, rows, ["command", "tree", "median s", "min s", "max s", "exit"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
