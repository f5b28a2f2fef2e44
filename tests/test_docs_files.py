"""docs/ holds what the documents cite: every result JSON and picture under docs/ is named by
README.md or docs/BENCHMARKS.md, and every docs/ file they name exists."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "BENCHMARKS.md", ROOT / "docs" / "SERVING.md")
_CITED = re.compile(r"(?:docs/)?((?:results|pictures)/[A-Za-z0-9_.{},-]+\.(?:json|png|gif))")


def cited_paths() -> set[str]:
    """Paths under docs/ the documents name (`docs/results/x.json`, `pictures/y.png` relative to
    docs/), with `{1,2,3}` expanded."""
    paths = set()
    for document in DOCUMENTS:
        for name in _CITED.findall(document.read_text(encoding="utf-8")):
            brace = re.search(r"\{([^}]*)\}", name)
            options = brace.group(1).split(",") if brace else [""]
            paths |= {name.replace(brace.group(0), o) if brace else name for o in options}
    return paths


def test_every_file_under_docs_is_cited_and_every_citation_exists():
    cited = cited_paths()
    present = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*")
               if p.is_file() and p.suffix in (".json", ".png", ".gif")}
    assert len(cited) >= 10
    assert sorted(present - cited) == [], "files under docs/ that no document cites"
    assert sorted(cited - present) == [], "cited files missing under docs/"
