"""`mgebm`: the command line of multigrid-ebm.

Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure, 3 the work folder is
in use by another run (`pipeline.workdir_lock`). User errors print one clear line (`--debug`
shows the traceback). TFX is imported only by `run` and `compile` (and by the tasks that
`run-spec` starts), so every other command also works in an environment without TFX.
"""

from __future__ import annotations

import argparse
import os
from contextlib import nullcontext
import sys
import warnings

from pipeline import single_image_commands
from pipeline.checks import UsageError, check_args
from pipeline.run_spec import DEFAULT_IMAGE

# Keras 3 everywhere: without this, importing TFX (tensorflow-transform) flips TensorFlow into
# legacy-Keras mode. Must happen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# google-api-core warns on every import under Python 3.10 (pulled in by Beam/TFX GCP extras).
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")


def _add_preset_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--preset", required=required,
                   help="preset name, NAME or NAME:smoke (see `mgebm presets`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config field; repeatable (e.g. --set train.max_minutes=5)")


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("multigrid-ebm")
    except metadata.PackageNotFoundError:
        return "unknown (not installed; run `make env`)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgebm", description="Multi-grid energy-based generative image models: "
        "ingest -> pyramid (Beam) -> train (Keras) -> evaluate -> export/push.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--verbose", action="store_true",
                        help="show every log line, also TensorFlow's known-harmless start-up noise "
                        "(default: filtered, see pipeline/logfilter.py; or set MGEBM_VERBOSE=1)")
    parser.add_argument("--version", action="version", version=f"mgebm {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="the whole pipeline with TFX LocalDagRunner (SQLite metadata)")
    _add_preset_args(p)
    p.add_argument("--data", help="image source overriding the preset's data.source")
    p.add_argument("--workdir", help="output folder (default: runs/<preset>)")

    p = sub.add_parser("compile", help="write a Kubeflow V2 pipeline spec (offline)")
    _add_preset_args(p)
    p.add_argument("--engine", choices=["kubeflow"], default="kubeflow")
    p.add_argument("--output", required=True, help="pipeline spec JSON to write")
    p.add_argument("--pipeline-root", help="pipeline root URI, e.g. gs://bucket/root")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="container image of the steps: the "
                   f"top-level Dockerfile's build (default {DEFAULT_IMAGE}; REGISTRY/multigrid-ebm:TAG)")
    p.add_argument("--data", help="image source overriding the preset's data.source")

    p = sub.add_parser("run-spec", help="run each task of a compiled Kubeflow V2 spec in dependency "
                       "order as its pod would, in this Python environment (see pipeline/run_spec.py)")
    p.add_argument("spec", help="the pipeline spec JSON that `mgebm compile --engine kubeflow` wrote")
    p.add_argument("--pipeline-root", help="local folder for the run's artifacts (default: the "
                   "spec's pipeline root, when local)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="the image this environment stands in for: "
                   f"every task must name it (default {DEFAULT_IMAGE}, or [REGISTRY/]multigrid-ebm:"
                   "<installed version>)")

    p = sub.add_parser("schedule", help="a recurring run of a compiled spec on Kubeflow Pipelines or "
                       "Vertex AI (see pipeline/schedules.py)")
    p.add_argument("--engine", choices=["kubeflow", "vertex"], required=True)
    p.add_argument("--spec", required=True, help="the pipeline spec JSON that `mgebm compile` wrote")
    p.add_argument("--cron", required=True, help="5 fields, e.g. '0 2 * * *' (every night at 02:00)")
    p.add_argument("--name", default="mgebm-nightly", help="display name of the schedule")
    p.add_argument("--host", help="KFP API endpoint (kubeflow), e.g. http://localhost:8080")
    p.add_argument("--experiment-id", default="", help="KFP experiment (kubeflow; default: the "
                   "server's default experiment)")
    p.add_argument("--project", help="Google Cloud project (vertex)")
    p.add_argument("--location", help="Vertex AI region (vertex), e.g. us-central1")
    p.add_argument("--service-account", default="", help="service account the runs use (vertex)")
    p.add_argument("--time-zone", default="UTC", help="time zone of --cron (vertex)")
    p.add_argument("--dry-run", action="store_true", help="print the request as JSON, send nothing")

    p = sub.add_parser("ingest", help="ingest stage alone: SRC -> TFRecords (no TFX)")
    p.add_argument("--data", required=True,
                   help="builtin:mnist5k | idx:PREFIX | folder:PATH | tfds:NAME[:SPLIT] | file:PATH (one image)")
    p.add_argument("--span", default="latest", help="for a source with {SPAN}: latest, N or A-B")
    p.add_argument("--image-size", type=int, default=None,
                   help="side of the stored square images (required but for a file: source, which "
                   "keeps its own size: see --max-side)")
    p.add_argument("--channels", type=int, choices=[1, 3], default=1)
    p.add_argument("--eval-fraction", type=float, default=0.1)
    p.add_argument("--max-reject-fraction", type=float, default=0.05)
    p.add_argument("--limit", type=int, default=0, help="keep at most N images (0 = all)")
    p.add_argument("--num-shards", type=int, default=2)
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images above this many pixels before decoding them "
                   "(default: data.max_pixels)")
    p.add_argument("--max-side", type=int, default=0,
                   help="file: sources: downscale the longer side to this (0 = as decoded)")
    p.add_argument("--min-side", type=int, default=0,
                   help="file: sources: refuse an image whose shorter side ends below this (pyramid.min_side)")
    p.add_argument("--output", required=True)

    p = sub.add_parser("pyramid", help="pyramid stage alone with Apache Beam (no TFX); "
                       "Beam options go after `--`")
    p.add_argument("--input", required=True, help="an ingest output folder")
    p.add_argument("--grids", default=None, help="comma-separated sizes, e.g. 1,4,16,32")
    p.add_argument("--scale-factor", type=float, default=0.0,
                   help="in (0, 1): the scale pyramid of a one-image (file:) ingest instead of --grids")
    p.add_argument("--min-side", type=int, default=25,
                   help="with --scale-factor: the coarsest scale's shorter side is >= this")
    p.add_argument("--runner", default="DirectRunner")
    p.add_argument("--num-shards", type=int, default=0,
                   help="files per split; 0 = one per Beam bundle (streams, flat memory)")
    p.add_argument("--output", required=True)
    p.add_argument("beam_args", nargs="*", help="Beam pipeline options (after --)")

    p = sub.add_parser("train", help="train a model on a pyramid folder and export a SavedModel")
    p.add_argument("--pyramid", required=True, help="a pyramid output folder")
    _add_preset_args(p)
    p.add_argument("--workdir", required=True)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")

    p = sub.add_parser("sample", help="sample from an exported model into a PNG grid")
    p.add_argument("--model", required=True, help="export folder (saved_model.pb inside)")
    p.add_argument("--num", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="PNG file: one row per grid size")
    p.add_argument("--gif", help="also write a GIF of the chain through the grids")
    p.add_argument("--labels", default="", help="class-conditional models: comma-separated labels, "
                   "cycled over the samples (default: the trained classes in turn)")
    p.add_argument("--height", type=int, default=0, help="single-image models: output height "
                   "(default the training image's)")
    p.add_argument("--width", type=int, default=0, help="single-image models: output width "
                   "(default the training image's; e.g. twice it for a panorama)")

    p = sub.add_parser("evaluate", help="evaluate an exported model against real images")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="real images (any source)")
    p.add_argument("--features", default="domain,efficientnet_lite0")
    p.add_argument("--num-samples", type=int)
    p.add_argument("--classifier", help="domain classifier folder (trained when absent)")
    p.add_argument("--random-model", help="export of the same nets with random weights (baseline)")
    p.add_argument("--ood-data", default="", help="comma-separated image sources to tell apart from "
                   "--data by energy (out-of-distribution AUROC), e.g. builtin:mnist5k")
    p.add_argument("--translate-data", default="", help="an image source to translate into the "
                   "model's domain (models with a translate signature), e.g. builtin:mnist5k")
    p.add_argument("--train-data", default="", help="the images the model was trained on (any "
                   "source): the memorization check compares samples with them")
    p.add_argument("--logs", help="TensorBoard log folder for the training curves")
    p.add_argument("--served-model", help="the SavedModel being served (e.g. SERVING/NAME/3): "
                   "re-evaluated on the same images and seeds, for rules like fid/domain<=baseline*1.05")
    p.add_argument("--output", required=True)
    _add_preset_args(p, required=False)

    p = sub.add_parser("fid", help="FID/KID between two image sets in a named feature space")
    p.add_argument("--real", required=True)
    p.add_argument("--fake", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--classifier", help="domain classifier folder (for --features domain)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, choices=[1, 3], default=1)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--kid-subsets", type=int, default=10)

    p = sub.add_parser("classifier", help="train the `domain` feature-space classifier")
    p.add_argument("--data", required=True)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--channels", type=int, choices=[1, 3], default=1)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--output", required=True)

    for name, what in (("denoise", "Langevin from noisy images under the learned energy"),
                       ("translate", "unpaired image-to-image translation: Langevin from source-"
                                     "domain images under a model trained on the target domain")):
        p = sub.add_parser(name, help=f"{what} (a model whose export has `{name}`)")
        p.add_argument("--model", required=True, help="export folder (saved_model.pb inside)")
        p.add_argument("--input", required=True,
                       help="images: a folder (or builtin:mnist5k | folder:PATH | idx:PREFIX | "
                       "tfds:NAME[:SPLIT])")
        p.add_argument("--output", required=True, help="folder for the PNGs and grid.png")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--limit", type=int, default=0, help="use at most N images (0 = all)")
        if name == "denoise":
            p.add_argument("--add-noise", type=float, default=0.0, metavar="SIGMA",
                           help="first add N(0, SIGMA^2) noise to [0, 1] pixels (0 = the inputs "
                           "are already noisy)")

    single_image_commands.add_parsers(sub)
    sub.add_parser("presets", help="list the presets")
    return parser


def _locked_workdir(args) -> str | None:
    """The work folder a command writes its run into (held by `pipeline.workdir_lock`), or None."""
    if args.command == "run":
        from pipeline.workdir_lock import default_workdir

        return args.workdir or default_workdir(args.preset)
    if args.command == "train":
        return args.workdir
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, beam_extra = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    # --- quiet logs (pipeline/logfilter.py): filter fd 2 before TensorFlow is imported ---
    from pipeline import logfilter

    logfilter.install(verbose=args.verbose)
    # --- end quiet logs ---
    if args.command is None:
        parser.print_help()
        return 2
    if beam_extra:
        args.beam_args = list(getattr(args, "beam_args", []) or []) + beam_extra
    from trainers.config import ConfigError  # light import (no TensorFlow)

    from pipeline import workdir_lock

    try:
        check_args(args)  # before TensorFlow, Beam or TFX is imported: usage errors answer at once
        workdir = _locked_workdir(args)
        with workdir_lock.hold(workdir) if workdir else nullcontext():
            from pipeline import commands

            return int(getattr(commands, "cmd_" + args.command.replace("-", "_"))(args) or 0)
    except workdir_lock.WorkdirBusy as err:
        print(f"mgebm {args.command}: busy: {err}", file=sys.stderr)
        return workdir_lock.EXIT_BUSY
    except (UsageError, ConfigError) as err:
        if args.debug:
            raise
        print(f"mgebm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mgebm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # runtime failure: one clear line, traceback with --debug
        if args.debug:
            raise
        print(f"mgebm {args.command}: failed: {type(err).__name__}: {err}", file=sys.stderr)
        print("(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
