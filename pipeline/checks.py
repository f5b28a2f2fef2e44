"""Command-line checks that run before TensorFlow, Beam or TFX is imported.

`check_args(args)` validates everything a user can get wrong on the command line that needs no
heavy library: the preset and its `--set` overrides, source strings (scheme, and for local paths
that the folder or files exist), local input folders, counts and sizes. A problem raises
`UsageError` (exit code 2) with one line naming the argument and the fix, in well under a
second. Remote URIs (`gs://...`) are checked later by the stage that opens them.
"""

from __future__ import annotations

import json
import os

from components.source_spec import SourceError, check_source
from pipeline.presets import load_preset
from trainers.config import BEAM_RUNNERS, FEATURE_SPACES, ConfigError


class UsageError(ValueError):
    """A bad command line: exit code 2."""


def _is_remote(path: str) -> bool:
    return "://" in str(path)


def _source(flag: str, source: str) -> None:
    try:
        check_source(source)
    except SourceError as err:
        raise UsageError(f"{flag}: {err}") from None


def _single_image(flag: str, source: str, max_side: int, min_side: int) -> None:
    """A local `file:` source's image, by its header only (Pillow, no decode), must keep a shorter
    side >= min_side (>= 2) after its longer side is fitted to max_side."""
    kind, _, arg = str(source).partition(":")
    if kind != "file" or _is_remote(arg):
        return
    from PIL import Image, UnidentifiedImageError  # pylint: disable=import-outside-toplevel

    from components.image_decode import fit_longer_side  # pylint: disable=import-outside-toplevel
    from components.source_spec import single_image_path  # pylint: disable=import-outside-toplevel

    path = single_image_path(arg)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, UnidentifiedImageError, ValueError):
        return  # not readable as an image: the ingest names the reason
    fitted = fit_longer_side(height, width, max_side)
    if min(fitted) < max(min_side, 2):
        after = f", {fitted[0]}x{fitted[1]} after data.max_side={max_side}" if fitted != (height, width) else ""
        raise UsageError(f"{flag}: {path} is {height}x{width} (HxW){after}; its shorter side is below "
                         f"{'pyramid.min_side=' + str(min_side) if min_side >= 2 else '2 pixels'}: lower "
                         "pyramid.min_side (or raise data.max_side) or give a bigger image")


def _at_least(flag: str, value, minimum) -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{flag}={value} must be >= {minimum}")


def _local_dir(flag: str, path: str, must_hold: str | None = None, what: str = "") -> None:
    """A local folder must exist (and hold `must_hold`); remote URIs are left to the stage."""
    if _is_remote(path):
        return
    if not os.path.isdir(path):
        raise UsageError(f"{flag} {path} does not exist or is not a folder; give {what}")
    if must_hold and not os.path.exists(os.path.join(path, must_hold)):
        raise UsageError(f"{flag} {path} has no {must_hold}; give {what}")


def feature_names(text: str) -> list[str]:
    """Split `--features a,b` and check each name; UsageError naming the allowed spaces."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--features is empty; allowed: {list(FEATURE_SPACES)}")
    for name in names:
        if name not in FEATURE_SPACES:
            raise UsageError(f"--features: unknown feature space {name!r}; allowed: {list(FEATURE_SPACES)}")
    return names


def parse_grids(text: str) -> list[int]:
    """`--grids 1,4,16,32` -> [1, 4, 16, 32]; UsageError when it is not integers."""
    try:
        grids = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise UsageError(f"--grids={text!r} must be comma-separated integers, e.g. 1,4,16,32") from None
    if not grids:
        raise UsageError(f"--grids={text!r} is empty; give sizes such as 1,4,16,32")
    return grids


def _preset_config(args, data: str | None = None):
    overrides = list(getattr(args, "overrides", []) or [])
    if data:
        overrides.append(f"data.source={data}")
    return load_preset(args.preset, overrides)  # ConfigError: exit 2 with the field named


def input_source(text: str) -> str:
    """`--input` of denoise/translate: a source string (`folder:PATH`, `idx:PREFIX`, ...) or a
    plain path, read as `folder:PATH`."""
    kind = str(text).partition(":")[0]
    return text if kind in ("builtin", "idx", "folder", "tfds", "ingested", "file") else f"folder:{text}"


def _exports(flag: str, model_dir: str, signature: str) -> None:
    """A local export must declare `signature` in its config.json (read without TensorFlow)."""
    path = os.path.join(model_dir, "assets", "config.json")
    if _is_remote(model_dir) or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    names = info.get("signatures")
    if names is not None and signature not in names:
        raise UsageError(f"{flag} {model_dir} has no {signature!r} signature (model family "
                         f"{info.get('family', 'unknown')!r} exports {names})")


class ScheduleError(UsageError):
    """A bad cron expression, spec file or engine argument; the message names it."""


def check_cron(cron: str) -> str:
    """The 5-field cron expression, stripped; ScheduleError naming `--cron` otherwise."""
    fields = str(cron).split()
    allowed = set("0123456789*/,-")
    if len(fields) != 5 or not all(f and set(f) <= allowed for f in fields):
        raise ScheduleError(f"--cron {cron!r} must have 5 fields (minute hour day month weekday, digits, "
                            "*, /, - or ,), e.g. '0 2 * * *' for every night at 02:00")
    return " ".join(fields)


def check_schedule_args(engine: str, spec_path: str, cron: str, dry_run: bool, host: str | None,
                        project: str | None, location: str | None) -> None:
    """What `mgebm schedule` can check before TensorFlow or an engine's SDK loads (seconds, not
    the half minute their imports take here): the cron expression, each engine's required flags
    and, for a local path, that the spec file exists. ScheduleError naming the flag otherwise."""
    check_cron(cron)
    if engine == "vertex":
        require_vertex_place(project, location)
    if "://" not in spec_path and not os.path.isfile(spec_path):
        raise ScheduleError(f"--spec {spec_path}: not a readable JSON pipeline spec (no such file); "
                            "write one with `mgebm compile --preset NAME --output SPEC.json`")
    if engine == "kubeflow" and not dry_run and not host:
        raise ScheduleError("--host is required to send the schedule to Kubeflow Pipelines "
                            "(or use --dry-run to print it)")


def require_vertex_place(project: str | None, location: str | None) -> None:
    """ScheduleError unless both --project and --location are given (Vertex AI)."""
    if not project or not location:
        raise ScheduleError("--project and --location are required for --engine vertex "
                            "(e.g. --project my-project --location us-central1)")


_MODEL = "an export folder of `mgebm train` (WORKDIR/export, with saved_model.pb inside)"


def check_args(args) -> None:
    """Validate `args` of any command; raise UsageError or ConfigError (both exit 2)."""
    command = args.command
    if getattr(args, "preset", None):
        cfg = _preset_config(args, getattr(args, "data", None) if command in ("run", "compile") else None)
        if command in ("run", "compile"):
            _source("data.source" if not args.data else "--data", cfg.data.source)
            _single_image("data.source" if not args.data else "--data", cfg.data.source,
                          cfg.data.max_side, cfg.pyramid.min_side if cfg.pyramid.scale_factor > 0 else 0)
        for source in cfg.eval.ood_sources:
            _source("eval.ood_sources", source)
        if cfg.eval.translate_source:
            _source("eval.translate_source", cfg.eval.translate_source)
    if command in ("ingest", "classifier"):
        _source("--data", args.data)
    if command in ("ingest", "fid", "classifier"):
        _at_least("--image-size", args.image_size, 1)
        _at_least("--limit", args.limit, 0)
    if command == "ingest":
        if args.image_size is None and str(args.data).partition(":")[0] != "file":
            raise UsageError(f"--image-size is required for --data {args.data}: the side of the stored "
                             "square images, e.g. --image-size 32 (only a file: source keeps its own size)")
        if not 0.0 <= args.eval_fraction < 1.0:
            raise UsageError(f"--eval-fraction={args.eval_fraction} must be in [0, 1)")
        if not 0.0 <= args.max_reject_fraction <= 1.0:
            raise UsageError(f"--max-reject-fraction={args.max_reject_fraction} must be in [0, 1]")
        _at_least("--num-shards", args.num_shards, 1)
        _at_least("--max-pixels", args.max_pixels, 1)
        _at_least("--max-side", args.max_side, 0)
        _at_least("--min-side", args.min_side, 0)
        _single_image("--data", args.data, args.max_side, args.min_side)
    elif command == "pyramid":
        if not 0.0 <= args.scale_factor < 1.0:
            raise UsageError(f"--scale-factor={args.scale_factor} must be in (0, 1), or 0 for --grids")
        if args.scale_factor > 0:
            _at_least("--min-side", args.min_side, 3)
        elif not args.grids:
            raise UsageError("mgebm pyramid needs --grids (e.g. 1,4,16,32), or --scale-factor for the "
                             "ingest of one image (a file: source)")
        else:
            _at_least("--grids", min(parse_grids(args.grids)), 1)
        _local_dir("--input", args.input, "summary.json", "an output folder of `mgebm ingest`")
        _at_least("--num-shards", args.num_shards, 0)
        if args.runner not in BEAM_RUNNERS:
            raise UsageError(f"--runner={args.runner!r} is not allowed; allowed: {list(BEAM_RUNNERS)}")
    elif command == "train":
        _local_dir("--pyramid", args.pyramid, "metadata.json", "an output folder of `mgebm pyramid`")
    elif command == "sample":
        _local_dir("--model", args.model, "saved_model.pb", _MODEL)
        _at_least("--num", args.num, 1)
    elif command == "evaluate":
        _local_dir("--model", args.model, "saved_model.pb", _MODEL)
        _source("--data", args.data)
        for source in (s.strip() for s in args.ood_data.split(",")):
            if source:
                _source("--ood-data", source)
        for flag, source in (("--translate-data", args.translate_data), ("--train-data", args.train_data)):
            if source:
                _source(flag, source)
        feature_names(args.features)
        _at_least("--num-samples", args.num_samples, 2)
        for flag, path in (("--classifier", args.classifier), ("--random-model", args.random_model)):
            if path:
                _local_dir(flag, path, None, "an existing folder")
    elif command == "fid":
        _source("--real", args.real)
        _source("--fake", args.fake)
        if len(feature_names(args.features)) != 1:
            raise UsageError("--features takes exactly one feature space for `mgebm fid`")
        _at_least("--kid-subsets", args.kid_subsets, 1)
    elif command == "classifier":
        _at_least("--epochs", args.epochs, 1)
    elif command == "schedule":
        check_schedule_args(args.engine, args.spec, args.cron, args.dry_run, args.host, args.project,
                           args.location)
    elif command in ("denoise", "translate"):
        _local_dir("--model", args.model, "saved_model.pb", _MODEL)
        _exports("--model", args.model, command)
        _source("--input", input_source(args.input))
        _at_least("--limit", args.limit, 0)
        if command == "denoise" and args.add_noise < 0:
            raise UsageError(f"--add-noise={args.add_noise} must be >= 0")


__all__ = ["ConfigError", "ScheduleError", "UsageError", "check_args", "check_cron", "check_schedule_args",
           "feature_names", "input_source", "parse_grids", "require_vertex_place"]
