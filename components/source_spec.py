"""Source strings (`data.source`, `--data`, `--real`, ...): parse them and check them cheaply.

Standard library only (no TensorFlow, Beam, numpy or Pillow), so the command line can reject a bad
source in well under a second, before any heavy import. The readers live in `components/sources.py`,
which re-exports `SourceError` and `parse_source`.

Forms (see `components/sources.py` for what each reads):
  `builtin:mnist5k`, `idx:PREFIX`, `folder:PATH`, `tfds:NAME[:SPLIT]`, `ingested:DIR[:SPLIT]`,
  `file:PATH` (ONE image: an image file, or a folder holding exactly one image file, found by
  `single_image_path`).

`check_source` checks local paths only; a remote URI (anything with "://", e.g. `gs://...`) is
checked by the stage that opens it.

Spans (data that grows): a `folder:` or `idx:` path may hold `{SPAN}` as one whole path component,
e.g. `folder:/data/{SPAN}` or `idx:/data/{SPAN}/train`; every folder there named by digits is a
span (`1`, `2`, ... or a date stamp such as `20261201`), and `data.span` picks them: `latest`
(the default: the largest), `N`, or a range `A-B` (every span from A to B that exists, read one
after the other; keys then start with `SPAN/`). Spans are taken as immutable: a run on span N
reads what span N held when it ran.
"""

from __future__ import annotations

import os

KINDS = ("builtin", "idx", "folder", "tfds", "ingested", "file")
BUILTINS = ("mnist5k",)
INGESTED_SPLITS = ("train", "eval")  # components.records.SPLITS (records imports TensorFlow)
INGESTED_MARKER = "summary.json"  # components.records.SUMMARY_FILE: written last by the ingest
FORMS = ("builtin:mnist5k, idx:PREFIX, folder:PATH, tfds:NAME[:SPLIT], ingested:DIR[:SPLIT] or "
         "file:PATH")
# the extensions components.raw_readers reads (it imports TensorFlow; this module does not)
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


SPAN_TOKEN = "{SPAN}"


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
    if has_spans(source):
        if not is_remote(arg):
            check_source(resolve_spans(source)[-1][1])
        return
    if kind == "builtin" and arg not in BUILTINS:
        raise SourceError(f"builtin:{arg} is unknown; the only builtin source is builtin:mnist5k")
    if kind == "tfds" and not arg.partition(":")[0]:
        raise SourceError(f"data source {source!r} has no dataset name; give tfds:NAME[:SPLIT], "
                          "e.g. tfds:mnist or tfds:cifar10:test")
    path = split_ingested(arg)[0] if kind == "ingested" else arg
    if kind in ("builtin", "tfds") or is_remote(path):
        return
    if kind == "file":
        single_image_path(arg)
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


def single_image_path(arg: str, listdir=None, isdir=None) -> str:
    """The image file a `file:PATH` source names: PATH itself, or the one image in folder PATH.

    Args:
      arg: PATH (after `file:`). listdir / isdir: folder listing and test (default `os.listdir` /
        `os.path.isdir`; pass `tf.io.gfile`'s for remote paths).

    Raises:
      SourceError: PATH does not exist, is not an image file, or is a folder holding no image or
        more than one (hidden files, names starting with ".", are not counted).
    """
    isdir = isdir or os.path.isdir
    fix = "give one image file (PNG, JPEG, BMP, GIF, WebP or TIFF) or a folder holding exactly one"
    if isdir(arg):
        names = sorted(n.rstrip("/") for n in (listdir or os.listdir)(arg) if not n.startswith("."))
        images = [n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
        if len(images) != 1:
            shown = ", ".join(images[:5]) + (" ..." if len(images) > 5 else "")
            raise SourceError(f"file:{arg} is a folder holding {len(images)} image files"
                              f"{' (' + shown + ')' if images else ''}; {fix} (for many images use "
                              f"folder:{arg})")
        return arg.rstrip("/") + "/" + images[0]
    if not is_remote(arg) and not os.path.isfile(arg):
        raise SourceError(f"file:{arg} does not exist; {fix}")
    if os.path.splitext(arg)[1].lower() not in IMAGE_EXTENSIONS:
        raise SourceError(f"file:{arg} is not an image file by its extension; {fix}")
    return arg


def has_spans(source: str) -> bool:
    """True when the source names spans (`{SPAN}` in its path)."""
    return SPAN_TOKEN in str(source)


def parse_span_spec(spec: str) -> tuple[int | None, int | None]:
    """`latest` -> (None, None); `N` -> (N, N); `A-B` -> (A, B). SourceError naming data.span."""
    text = str(spec).strip()
    if text == "latest":
        return None, None
    first, sep, last = text.partition("-")
    if first.isdigit() and (not sep or last.isdigit()):
        low, high = int(first), int(last) if sep else int(first)
        if low <= high:
            return low, high
    raise SourceError(f"data.span={spec!r} must be latest, a span number N or a range A-B with A <= B "
                      "(e.g. data.span=3 or data.span=1-3)")


def span_parent(source: str) -> tuple[str, str, str]:
    """(KIND, the folder holding the span folders, the path after `{SPAN}/`) of a span source."""
    kind, arg = parse_source(source)
    head, sep, tail = arg.partition(SPAN_TOKEN)
    if kind not in ("folder", "idx") or not sep or SPAN_TOKEN in tail or (head and not head.endswith("/")) \
            or (tail and not tail.startswith("/")):
        raise SourceError(f"data source {source!r}: {SPAN_TOKEN} must be one whole folder name in a "
                          "folder: or idx: path, e.g. folder:/data/{SPAN} or idx:/data/{SPAN}/train")
    return kind, head.rstrip("/") or ".", tail.lstrip("/")


def resolve_spans(source: str, spec: str = "latest", listdir=None) -> list[tuple[int, str]]:
    """The spans a run reads: [(span, concrete source)], in span order.

    Args:
      source: a source with `{SPAN}` (see the module docstring).
      spec: data.span: `latest`, `N` or `A-B`.
      listdir: lists a folder's entry names (default `os.listdir`; pass `tf.io.gfile.listdir` for
        remote paths).
    Raises:
      SourceError: no span folder, or the requested spans are absent (the message lists those
        present).
    """
    kind, parent, tail = span_parent(source)
    low, high = parse_span_spec(spec)
    try:
        names = (listdir or os.listdir)(parent)
    except Exception as err:  # noqa: BLE001 -- os and tf.io.gfile listers raise different errors
        raise SourceError(f"data source {source!r}: cannot list {parent} ({err}); create it with one "
                          "folder per span named by digits, e.g. 1, 2, ...") from None
    spans = sorted(int(n.rstrip("/")) for n in names if n.rstrip("/").isdigit())
    if not spans:
        raise SourceError(f"data source {source!r}: {parent} holds no span folder (names of digits, "
                          "e.g. 1, 2 or 20261201); add one or drop {SPAN} from the source")
    chosen = [spans[-1]] if low is None else [s for s in spans if low <= s <= high]
    if not chosen:
        raise SourceError(f"data source {source!r}: data.span={spec} matches none of the spans "
                          f"present {spans[:20]}; pick one of them or data.span=latest")
    def concrete(span: int) -> str:
        name = next(n.rstrip("/") for n in names if n.rstrip("/").isdigit() and int(n.rstrip("/")) == span)
        return f"{kind}:" + "/".join(p for p in (parent, name, tail) if p)
    return [(span, concrete(span)) for span in chosen]
