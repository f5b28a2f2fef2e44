"""Spans: a source with `{SPAN}` (data that grows), `data.span`, and what a run records."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from components import ingest, source_spec, sources
from pipeline.runners import resolve_latest_span
from trainers.config import Config, ConfigError


def _span(root, name, values, classes=("a", "b")):
    """A span folder: one 6x6 PNG per value (the value fills it), alternating class folders."""
    for i, value in enumerate(values):
        folder = os.path.join(root, str(name), classes[i % len(classes)])
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(np.full((6, 6), value, np.uint8)).save(os.path.join(folder, f"i{i}.png"))


@pytest.fixture()
def grown(tmp_path):
    root = tmp_path / "data"
    _span(root, 1, [10, 20])
    _span(root, 2, [30, 40, 50])
    _span(root, 20261201, [60])  # a date stamp is a span number too
    os.makedirs(root / "incoming")  # not digits: not a span
    return str(root)


def test_spans_resolve_latest_one_or_a_range(grown):
    src = f"folder:{grown}/{{SPAN}}"
    assert source_spec.resolve_spans(src) == [(20261201, f"folder:{grown}/20261201")]
    assert source_spec.resolve_spans(src, "2") == [(2, f"folder:{grown}/2")]
    assert [n for n, _ in source_spec.resolve_spans(src, "1-3")] == [1, 2]
    assert source_spec.resolve_spans(f"idx:{grown}/{{SPAN}}/train", "1") == [(1, f"idx:{grown}/1/train")]
    assert source_spec.parse_span_spec("latest") == (None, None)
    assert source_spec.parse_span_spec("4-9") == (4, 9)


def test_span_errors_name_the_source_and_the_fix(grown, tmp_path):
    src = f"folder:{grown}/{{SPAN}}"
    present = r"data.span=7 matches none of the spans present \[1, 2, 20261201\]"
    with pytest.raises(source_spec.SourceError, match=present):
        source_spec.resolve_spans(src, "7")
    for spec in ("3-1", "x", "1-", "-2"):
        with pytest.raises(source_spec.SourceError, match="data.span"):
            source_spec.resolve_spans(src, spec)
    with pytest.raises(source_spec.SourceError, match="one whole folder name"):
        source_spec.resolve_spans(f"folder:{grown}/day{{SPAN}}")
    with pytest.raises(source_spec.SourceError, match="one whole folder name"):
        source_spec.resolve_spans("builtin:{SPAN}")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(source_spec.SourceError, match="holds no span folder"):
        source_spec.check_source(f"folder:{empty}/{{SPAN}}")
    with pytest.raises(source_spec.SourceError, match="cannot list"):
        source_spec.check_source(f"folder:{tmp_path}/absent/{{SPAN}}")


def test_loading_a_range_reads_every_span_once_with_span_prefixed_keys(grown):
    src = f"folder:{grown}/{{SPAN}}"
    images, labels = sources.load_images(src, 6, 1, span="1-2")
    assert sorted(int(v) for v in images[:, 0, 0, 0]) == [10, 20, 30, 40, 50]
    keys = [item.key for item in sources.iter_source(src, 6, 1, span="1-2")]
    assert keys[0].startswith("1/") and keys[-1].startswith("2/") and len(set(keys)) == 5
    latest, _ = sources.load_images(src, 6, 1)
    assert latest[:, 0, 0, 0].tolist() == [60]
    assert sources.load_images(src, 6, 1, limit=3, span="1-2")[0].shape[0] == 3
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1]


def test_a_range_with_different_class_folders_is_refused(grown):
    _span(grown, 3, [70, 80], classes=("a", "c"))
    with pytest.raises(source_spec.SourceError, match="different class folders"):
        sources.load_images(f"folder:{grown}/{{SPAN}}", 6, 1, span="2-3")


def test_ingest_records_the_spans_it_read(grown, tmp_path):
    out = str(tmp_path / "ingested")
    summary = ingest.run_ingest(f"folder:{grown}/{{SPAN}}", out, 6, 1, eval_fraction=0.0,
                                span="1-2", progress_every=0)
    assert summary["spans"] == [1, 2] and summary["counts"]["train"] == 5
    with open(os.path.join(out, "summary.json")) as f:
        assert json.load(f)["spans"] == [1, 2]
    plain = ingest.run_ingest(f"folder:{grown}/1", str(tmp_path / "plain"), 6, 1, progress_every=0)
    assert plain["spans"] is None


def test_config_and_the_run_fix_the_latest_span(grown):
    cfg = Config.build(data={"source": f"folder:{grown}/{{SPAN}}"})
    assert cfg.data.span == "latest"
    fixed = resolve_latest_span(cfg)
    assert fixed.data.span == "20261201" and fixed.data.source == cfg.data.source
    assert resolve_latest_span(fixed) is fixed  # an explicit span stays
    plain = Config.build(data={"source": "builtin:mnist5k"})
    assert resolve_latest_span(plain) is plain
    with pytest.raises(ConfigError, match=r"data.span=3 needs a source with \{SPAN\}"):
        Config.build(data={"source": "builtin:mnist5k", "span": "3"})
    with pytest.raises(ConfigError, match="data.span='2-1'"):
        Config.build(data={"source": f"folder:{grown}/{{SPAN}}", "span": "2-1"})
