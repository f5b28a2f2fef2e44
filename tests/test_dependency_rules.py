"""The design's dependency rules, read from the source with `ast` (every import, also those inside
functions): arrows point pipeline -> components -> trainers / evaluators, and

- trainers never import components, pipeline or evaluators;
- evaluators never import trainers' families or components (they know a model only through its
  SavedModel and config.json), nor pipeline;
- components never import pipeline; nothing outside pipeline imports it;
- no two modules import each other, directly or round a longer loop.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("trainers", "evaluators", "components", "pipeline")
# importer package -> the module prefixes it must never import.
FORBIDDEN = {
    "trainers": ("components", "pipeline", "evaluators"),
    "evaluators": ("trainers.families", "components", "pipeline"),
    "components": ("pipeline",),
}


def module_files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """{dotted module name: file} of every module of PACKAGES under root (a package is its
    `__init__.py`)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: pathlib.Path, modules: dict) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file; `from pkg import mod` counts as
    importing `pkg.mod` when that is a module, relative imports are resolved."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[:len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                found.append((node.lineno, full if full in modules else base))
    return found


def import_graph(root: pathlib.Path) -> dict[str, list[tuple[int, str]]]:
    """{module: [(line, imported module of PACKAGES)]} for the project's packages under root."""
    modules = module_files(root)
    return {name: [(line, target) for line, target in imports_of(name, path, modules)
                   if target.split(".")[0] in PACKAGES and target != name]
            for name, path in modules.items()}


def forbidden_arrows(root: pathlib.Path) -> list[str]:
    """'file:line: A imports B (rule)' for every import the rules forbid."""
    modules = module_files(root)
    out = []
    for name, targets in import_graph(root).items():
        banned = FORBIDDEN.get(name.split(".")[0], ())
        for line, target in targets:
            for prefix in banned:
                if target == prefix or target.startswith(prefix + "."):
                    rel = modules[name].relative_to(root)
                    out.append(f"{rel}:{line}: {name} imports {target} "
                               f"({name.split('.')[0]} must not import {prefix})")
    return out


def import_cycles(root: pathlib.Path) -> list[list[str]]:
    """Every import loop between the modules (each found once, from its smallest member)."""
    graph = {name: sorted({t for _, t in targets}) for name, targets in import_graph(root).items()}
    cycles = []

    def walk(start, node, path):
        for nxt in graph.get(node, ()):
            if nxt == start:
                cycles.append(path + [start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return cycles


def test_the_packages_keep_the_dependency_rules():
    assert forbidden_arrows(ROOT) == []


def test_no_module_imports_another_that_imports_it_back():
    assert import_cycles(ROOT) == []


def test_the_scan_sees_every_package_and_lazy_imports():
    graph = import_graph(ROOT)
    assert all(any(name.startswith(p) for name in graph) for p in PACKAGES)
    # An import inside a function counts: the family spec imports its TensorFlow module on build.
    assert "trainers.families.multigrid" in {t for _, t in graph["trainers.families.multigrid_spec"]}
    assert "trainers.families.multigrid_variants" in {t for _, t in graph["trainers.families.multigrid"]}


def _tree(root: pathlib.Path, files: dict[str, str]) -> None:
    for package in PACKAGES:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.mark.parametrize("rel, text, rule", [
    ("trainers/train.py", "from components import records\n", "trainers must not import components"),
    ("trainers/train.py", "def f():\n    import pipeline.cli\n", "trainers must not import pipeline"),
    ("trainers/train.py", "from evaluators.metrics import fid\n", "trainers must not import evaluators"),
    ("evaluators/eval.py", "from trainers.families.patchgen_signatures import SIDE_FACTOR\n",
     "evaluators must not import trainers.families"),
    ("evaluators/eval.py", "from ..components import sources\n", "evaluators must not import components"),
    ("components/ingest.py", "from pipeline import checks\n", "components must not import pipeline"),
])
def test_a_forbidden_import_is_found_with_its_file_and_line(tmp_path, rel, text, rule):
    _tree(tmp_path, {rel: text, "trainers/families/__init__.py": "",
                     "trainers/families/patchgen_signatures.py": "SIDE_FACTOR = 4\n",
                     "evaluators/metrics.py": "", "components/records.py": "", "components/sources.py": "",
                     "pipeline/cli.py": "", "pipeline/checks.py": "", "trainers/thresholds.py": ""})
    found = forbidden_arrows(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"{rel}:{text.count(chr(10))}:") and rule in found[0]


def test_allowed_imports_and_a_cycle_are_told_apart(tmp_path):
    _tree(tmp_path, {"evaluators/blessing.py": "from trainers.thresholds import parse\n",
                     "components/evaluator_component.py": "from evaluators import blessing\n",
                     "pipeline/cli.py": "from components import evaluator_component\n",
                     "trainers/thresholds.py": "", "trainers/families/__init__.py": "",
                     "trainers/families/a.py": "from trainers.families import b\n",
                     "trainers/families/b.py": "def f():\n    from trainers.families.a import x\n"})
    assert forbidden_arrows(tmp_path) == []
    assert import_cycles(tmp_path) == [["trainers.families.a", "trainers.families.b", "trainers.families.a"]]
