"""Source strings (`data.source`, `--data`, `--real`, ...): parse them and check them cheaply.

Standard library only (no TensorFlow, Beam, numpy or Pillow), so the command line can reject a bad
source in well under a second, before any heavy import. The readers live in `components/sources.py`,
which re-exports `SourceError` and `parse_source`.

Forms (see `components/sources.py` for what each reads):
  `builtin:mnist5k`, `idx:PREFIX`, `folder:PATH`, `tfds:NAME[:SPLIT]`, `ingested:DIR[:SPLIT]`.

`check_source` checks local paths only; a remote URI (anything with "://", e.g. `gs://...`) is
checked by the stage that opens it.
"""

from __future__ import annotations

import os

KINDS = ("builtin", "idx", "folder", "tfds", "ingested")
BUILTINS = ("mnist5k",)
INGESTED_SPLITS = ("train", "eval")  # components.records.SPLITS (records imports TensorFlow)
INGESTED_MARKER = "summary.json"  # components.records.SUMMARY_FILE: written last by the ingest
FORMS = "builtin:mnist5k, idx:PREFIX, folder:PATH, tfds:NAME[:SPLIT] or ingested:DIR[:SPLIT]"


class SourceError(ValueError):
    """A source string or a whole source is unusable; the message names it and the fix."""


def parse_source(source: str) -> tuple[str, str]:
    """Split `KIND:ARG` and check the kind; SourceError naming the allowed forms otherwise."""
    kind, sep, arg = str(source).partition(":")
    if not sep or kind not in KINDS or not arg:
        raise SourceError(f"data source {source!r} must be {FORMS}")
    return kind, arg


def split_ingested(arg: str) -> tuple[str, str]:
    """`DIR[:SPLIT]` -> (DIR, SPLIT); the split defaults to `eval` (what evaluators read)."""
    head, _, tail = arg.rpartition(":")
    return (head, tail) if head and tail in INGESTED_SPLITS else (arg, "eval")


def idx_file_names(prefix: str, kind: str) -> tuple[str, str]:
    """The two accepted file names of an idx source's `images` or `labels` file (plain, .gz)."""
    name = f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    return name, name + ".gz"


def is_remote(path: str) -> bool:
    """True for URIs such as `gs://bucket/x`; those are not checked here."""
    return "://" in str(path)


def check_source(source: str) -> None:
    """Cheap checks of a source string before any heavy import.

    Checks the form; for local paths that the folder / idx files / ingest output exist; the name
    of a `builtin:` source. Remote URIs and `tfds:` names are left to the stage that opens them.

    Args:
      source: a source string, e.g. `folder:/data/cats` or `idx:/data/fashion-mnist/train`.

    Raises:
      SourceError: one line naming the source and the fix.
    """
    kind, arg = parse_source(source)
    if kind == "builtin" and arg not in BUILTINS:
        raise SourceError(f"builtin:{arg} is unknown; the only builtin source is builtin:mnist5k")
    if kind == "tfds" and not arg.partition(":")[0]:
        raise SourceError(f"data source {source!r} has no dataset name; give tfds:NAME[:SPLIT], "
                          "e.g. tfds:mnist or tfds:cifar10:test")
    path = split_ingested(arg)[0] if kind == "ingested" else arg
    if kind in ("builtin", "tfds") or is_remote(path):
        return
    if kind == "folder" and not os.path.isdir(path):
        raise SourceError(f"folder:{arg} does not exist or is not a folder; give a folder of images "
                          "(PNG, JPEG, BMP, GIF, WebP or TIFF; class subfolders become labels)")
    if kind == "idx":  # the labels file is looked for after the images file is read
        plain, gz = idx_file_names(arg, "images")
        if not (os.path.isfile(plain) or os.path.isfile(gz)):
            raise SourceError(f"idx:{arg}: neither {plain} nor {gz} exists; give the prefix before "
                              "'-images-idx3-ubyte', e.g. idx:/usr/share/datasets/fashion-mnist/train")
    if kind == "ingested":
        if not os.path.isdir(path):
            raise SourceError(f"ingested:{arg}: {path} does not exist or is not a folder; give the "
                              "output folder of an ingest run (optionally :train or :eval)")
        if not os.path.isfile(os.path.join(path, INGESTED_MARKER)):
            raise SourceError(f"ingested:{arg}: {path} has no {INGESTED_MARKER}, so it is not a "
                              "complete ingest output; rerun the ingest into it")
