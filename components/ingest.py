"""Ingest stage: any image source -> checked, normalized, split, sharded GZIP TFRecords.

Output layout (OUTPUT = `output_dir`):
  OUTPUT/train/data-00000-of-0000N.tfrecord.gz, OUTPUT/eval/... : `tf.train.Example{image: PNG
      bytes of uint8 [S, S, C], label: int64 (-1 when none), key: bytes}` (see components/records.py);
      examples go to shards round-robin in source order.
  OUTPUT/rejects.jsonl : one {"path": key, "reason": text} object per rejected input.
  OUTPUT/labels.json   : {"classes": [name of label 0, name of label 1, ...]} for folder sources
      with class subfolders.
  OUTPUT/summary.json  : counts per split, rejects, class balance, image_size, channels, source,
      max_pixels, fingerprint; `skipped_links`: [{"path", "reason"}] for paths not read (symbolic
      links into loops or to folders / files already read: not inputs, so neither in the counts
      nor in rejects.jsonl, and each is also logged); `notes`: {kind: count} for used images
      with a note (e.g. "first frame only" for animated GIFs); written LAST.

A `file:PATH` source (one image, `components/single_image.py`) stores that image at its own
aspect ratio, uint8 [H, W, C] (longer side fitted to `max_side`), ALWAYS in the train split
whatever eval_fraction says; the eval split's shards are valid empty files. Its summary adds
`"single_image": true, "height": H, "width": W` and has `"image_size": max(H, W)`.

Split: an example goes to eval iff int(sha1(key)[:8 bytes]) / 2**64 < eval_fraction, so the split
depends only on the key (stable across runs, machines, limits and source order).

Completeness / atomic-write strategy: the output is complete iff `summary.json` exists. A run first
removes a previous run's summary.json and shards (it refuses to touch a folder holding anything
else), writes shards in place, and writes summary.json only after every check passed. On any
failure it deletes the shards it wrote (rejects.jsonl is kept so the user can see why) and raises
`IngestError`. This works on every gfile filesystem (GCS has no atomic folder rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import sys
import time
from collections import Counter

import tensorflow as tf

from components import records, sources

OUTPUT_NAMES = ("train", "eval", "rejects.jsonl", "summary.json", "labels.json")
_MAX_SKIP_LOGS = 20


class IngestError(ValueError):
    """The ingest cannot produce a usable dataset; the message names the source and the fix."""


def split_of(key: str, eval_fraction: float) -> str:
    """"eval" or "train" by a stable hash of the key (sha1, first 8 bytes as a fraction)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return "eval" if int.from_bytes(digest[:8], "big") / 2.0**64 < eval_fraction else "train"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _norm(path: str) -> str:
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def _prepare_output(output_dir: str, source: str) -> None:
    sources.check_source(source)  # a missing local source fails before the output is touched
    kind, arg = sources.parse_source(source)
    if kind == "folder":
        src, out = _norm(arg), _norm(output_dir)
        if out == src or out.startswith(src.rstrip("/") + "/"):
            raise IngestError(f"output folder {output_dir} is inside the source folder {arg}; "
                              "write the ingest output somewhere else")
    if tf.io.gfile.exists(output_dir):
        if not tf.io.gfile.isdir(output_dir):
            raise IngestError(f"output {output_dir} exists and is not a folder; choose a folder path")
        others = sorted(name.rstrip("/") for name in tf.io.gfile.listdir(output_dir)
                        if name.rstrip("/") not in OUTPUT_NAMES)
        if others:
            raise IngestError(f"output folder {output_dir} holds other files {others[:5]}; "
                              "give an empty or new folder (only an earlier ingest output is replaced)")
        records.remove_outputs(output_dir, ("summary.json",) + OUTPUT_NAMES)
    for split in records.SPLITS:
        tf.io.gfile.makedirs(posixpath.join(output_dir, split))


def _examples(reasons: list[str], limit: int = 3) -> str:
    return "; ".join(reasons[:limit]) + (" ..." if len(reasons) > limit else "")


def run_ingest(source: str, output_dir: str, image_size: int, channels: int,
               eval_fraction: float = 0.1, max_reject_fraction: float = 0.05, limit: int = 0,
               num_shards: int = 2, progress_every: int = 1000,
               max_pixels: int = sources.DEFAULT_MAX_PIXELS, span: str = "latest",
               max_side: int = 0, min_side: int = 0) -> dict:
    """Read, check and normalize every input of `source` into sharded GZIP TFRecords.

    Args:
      source: `builtin:mnist5k`, `idx:PREFIX`, `folder:PATH` or `tfds:NAME[:SPLIT]`; local paths
        are checked before the output folder is touched.
      output_dir: output folder (gfile path); created; an earlier ingest output there is replaced.
      image_size: side of the stored square images (not used for a `file:` source, which keeps
        its own size: 0 there). channels: 1 or 3.
      eval_fraction: share of keys held out for eval, in [0, 1).
      max_reject_fraction: fail when rejected / inputs is above this, in [0, 1].
      limit: stop after this many usable images (0 = all).
      num_shards: shards per split (>= 1).
      progress_every: print progress to stderr every this many inputs (0 = never).
      max_pixels: reject ("too large") an image file whose header says width * height > this,
        before decoding it (>= 1; data.max_pixels).
      span: data.span (`latest`, `N` or `A-B`) for a source with `{SPAN}`; the spans read are
        recorded in the summary (`spans`).
      max_side, min_side: `file:` sources only (data.max_side; pyramid.min_side, 0 = no check):
        see `components/single_image.py`; image_size is then not used.

    Returns:
      The summary dict also written to OUTPUT/summary.json.

    Raises:
      IngestError: bad arguments, unusable source, nothing usable, empty train split, or too many
        rejects. No summary.json and no shards are left behind.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise IngestError(f"eval_fraction={eval_fraction} must be in [0, 1)")
    if not 0.0 <= max_reject_fraction <= 1.0:
        raise IngestError(f"max_reject_fraction={max_reject_fraction} must be in [0, 1]")
    single = str(source).partition(":")[0] == "file"
    if num_shards < 1 or limit < 0 or (image_size < 1 and not single) or channels not in (1, 3) \
            or max_pixels < 1 or max_side < 0 or min_side < 0:
        raise IngestError(f"bad ingest arguments: num_shards={num_shards} (>= 1), limit={limit} "
                          f"(>= 0), image_size={image_size} (>= 1 but for a file: source), "
                          f"channels={channels} (1 or 3), "
                          f"max_pixels={max_pixels} (>= 1), max_side={max_side} (>= 0), "
                          f"min_side={min_side} (>= 0)")
    try:
        _prepare_output(output_dir, source)
        spans = ([n for n, _ in sources.concrete_spans(source, span)] if sources.has_spans(source)
                 else None)
    except sources.SourceError as err:
        raise IngestError(str(err)) from None
    start = time.time()
    _log(f"ingest: {source}{f' span {spans}' if spans else ''} -> {output_dir} "
         + (f"(one image, longer side <= {max_side or 'as decoded'}, x{channels})" if single
            else f"({image_size}x{image_size}x{channels})"))
    try:
        summary = _ingest(source, output_dir, image_size, channels, eval_fraction,
                          max_reject_fraction, limit, num_shards, progress_every, start,
                          max_pixels, span, spans, (max_side, min_side) if single else None)
    except BaseException:
        records.remove_outputs(output_dir, ("summary.json", "train", "eval", "labels.json"))
        raise
    counts = summary["counts"]
    _log(f"ingest: done in {time.time() - start:.1f}s: {counts['train']} train, {counts['eval']} "
         f"eval, {counts['rejected']} rejected of {counts['total']} inputs; classes "
         f"{dict(sorted(summary['class_balance']['all'].items()))}; "
         f"rejects: {dict(summary['reject_reasons']) or 'none'}"
         + (f"; {len(summary['skipped_links'])} paths not read (summary.json skipped_links)"
            if summary["skipped_links"] else "")
         + (f"; notes: {summary['notes']}" if summary["notes"] else ""))
    return summary


def _ingest(source, output_dir, image_size, channels, eval_fraction, max_reject_fraction, limit,
            num_shards, progress_every, start, max_pixels, span, spans, single) -> dict:
    writers = {split: [tf.io.TFRecordWriter(
        posixpath.join(output_dir, split, records.shard_name(i, num_shards)), options="GZIP")
        for i in range(num_shards)] for split in records.SPLITS}
    counts = Counter()
    balance = {split: Counter() for split in records.SPLITS}
    reasons, reject_kinds, skipped, notes = [], Counter(), [], Counter()
    fingerprint = hashlib.sha256()
    shape = None
    side_args = {"max_side": single[0], "min_side": single[1]} if single else {}
    try:
        with tf.io.gfile.GFile(posixpath.join(output_dir, "rejects.jsonl"), "w") as rejects:
            rejects.write("")  # gfile creates a file on its first write: keep it when no rejects
            try:
                for item in sources.iter_source(source, image_size, channels, limit, max_pixels,
                                                span, **side_args):
                    if item.skipped:  # not an input (e.g. a link into a loop): reported only
                        skipped.append({"path": item.key, "reason": item.note})
                        if len(skipped) <= _MAX_SKIP_LOGS:
                            _log(f"ingest: not read: {item.key}: {item.note}"
                                 + (" (further ones only in summary.json)"
                                    if len(skipped) == _MAX_SKIP_LOGS else ""))
                        continue
                    counts["total"] += 1
                    if item.note and item.image is not None:
                        notes[item.note.split(":", 1)[0]] += 1
                    if item.image is None:
                        counts["rejected"] += 1
                        rejects.write(json.dumps({"path": item.key, "reason": item.reason}) + "\n")
                        reasons.append(f"{item.key}: {item.reason}")
                        reject_kinds[item.reason.split(":", 1)[0].split(";", 1)[0]] += 1
                    else:
                        split = "train" if single else split_of(item.key, eval_fraction)
                        shape = item.image.shape
                        png = tf.io.encode_png(item.image).numpy()
                        writers[split][counts[split] % num_shards].write(
                            records.encode_ingest_example(png, item.label, item.key))
                        counts[split] += 1
                        balance[split][str(item.label)] += 1
                        fingerprint.update(f"{split}\t{item.key}\t{item.label}\t".encode("utf-8"))
                        fingerprint.update(hashlib.sha256(png).digest())
                    if progress_every and counts["total"] % progress_every == 0:
                        rate = counts["total"] / max(time.time() - start, 1e-6)
                        _log(f"ingest: {counts['total']} inputs, {counts['train'] + counts['eval']} "
                             f"ok, {counts['rejected']} rejected ({rate:.0f}/s)")
            except sources.SourceError as err:
                raise IngestError(str(err)) from None
    finally:
        for split_writers in writers.values():
            for writer in split_writers:
                writer.close()

    usable, total = counts["train"] + counts["eval"], counts["total"]
    if usable == 0:
        detail = f"; rejects: {_examples(reasons)}" if reasons else ""
        raise IngestError(f"source {source!r} gave no usable image ({total} inputs, "
                          f"{counts['rejected']} rejected{detail}); check the path and that it holds "
                          f"images (reasons in {output_dir}/rejects.jsonl)")
    fraction = counts["rejected"] / total
    if fraction > max_reject_fraction:
        raise IngestError(f"source {source!r}: {counts['rejected']} of {total} inputs rejected "
                          f"({fraction:.1%} > max_reject_fraction {max_reject_fraction:.1%}): "
                          f"{_examples(reasons)}; fix or remove the bad files (all listed in "
                          f"{output_dir}/rejects.jsonl) or raise data.max_reject_fraction")
    if counts["train"] == 0:
        raise IngestError(f"source {source!r}: all {usable} usable images fell in the eval split; "
                          "add images or lower data.eval_fraction")

    names = sources.label_names(source, span)
    if names:
        records.write_json(posixpath.join(output_dir, "labels.json"), {"classes": names})
    all_balance = balance["train"] + balance["eval"]
    summary = {
        "format": "multigrid-ebm-ingest-v1",
        "source": source,
        "spans": spans,
        "image_size": int(image_size),
        "channels": int(channels),
        "eval_fraction": float(eval_fraction),
        "max_reject_fraction": float(max_reject_fraction),
        "max_pixels": int(max_pixels),
        "limit": int(limit),
        "num_shards": int(num_shards),
        "counts": {"train": counts["train"], "eval": counts["eval"],
                   "rejected": counts["rejected"], "total": total},
        "class_balance": {"train": dict(balance["train"]), "eval": dict(balance["eval"]),
                          "all": dict(all_balance)},
        "reject_reasons": dict(reject_kinds),
        "skipped_links": skipped,
        "notes": dict(notes),
        "labels": names,
        "split_rule": "eval iff sha1(key)[:8] / 2**64 < eval_fraction",
        "fingerprint": fingerprint.hexdigest(),
    }
    if single:
        summary.update({"single_image": True, "height": int(shape[0]), "width": int(shape[1]),
                        "image_size": int(max(shape[:2])), "max_side": int(single[0]),
                        "split_rule": "single image: always train"})
    records.write_json(posixpath.join(output_dir, records.SUMMARY_FILE), summary)
    return summary
