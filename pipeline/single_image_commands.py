"""The commands of single-image models (config.json `"single_image": true`, e.g. PatchGenCN).

- `mgebm sample --model M --num N --output grid.png [--height H --width W]`: random images at any
  size (default the training size), one PNG grid;
- `mgebm super-resolve --model M --input IMAGE --output OUT.png [--scale 2]`;
- `mgebm edit | harmonize --model M --input IMAGE --mask MASK.png --output OUT.png
  [--start-scale K]`: MASK is a PNG of the input's size, white (>= 128) = the edited or inserted
  pixels (the only ones that change);
- `mgebm style-transfer --model M --input IMAGE --output OUT.png [--start-scale K]`.

`--start-scale` defaults to the middle scale (L // 2 of L scales): coarser starts change more.
Inputs are read with the `file:` source's decoder (any size, RGB or gray as the model has it);
a bad flag is a UsageError (exit 2) naming it. Each command prints the file it wrote.
"""

from __future__ import annotations

import os
import re

import numpy as np

from pipeline.checks import UsageError

APPLICATIONS = {"super-resolve": "super_resolve", "edit": "edit", "harmonize": "harmonize",
                "style-transfer": "style_transfer"}


def _model(path: str, signature: str):
    from evaluators.model_client import ExportedModel  # pylint: disable=import-outside-toplevel

    model = ExportedModel(path)
    if not model.config.get("single_image") or not model.has(signature):
        raise UsageError(f"--model {path} is not a single-image model with a {signature!r} signature "
                         f"(it exports {model.signature_names}); train one with a *-patchgen preset")
    return model


def _read(flag: str, path: str, channels: int, max_side: int = 0) -> np.ndarray:
    from components.single_image import read_single_image  # pylint: disable=import-outside-toplevel
    from components.source_spec import SourceError  # pylint: disable=import-outside-toplevel

    try:
        return read_single_image(path, channels, max_side)[1]
    except (SourceError, ValueError, OSError) as err:
        raise UsageError(f"{flag} {path}: {err}") from None


def _call(model, signature: str, **inputs) -> np.ndarray:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    tensors = {k: tf.constant(v, tf.uint8 if isinstance(v, np.ndarray) else tf.int32)
               for k, v in inputs.items()}
    try:
        return model.signatures[signature](**tensors)["images"].numpy()
    except tf.errors.InvalidArgumentError as err:  # the signature's own check, naming the input
        text = str(err)
        found = re.search(r"assertion failed: \[(.*?)\] \[Condition", text)
        raise UsageError(f"{signature}: {found.group(1) if found else text.splitlines()[0]}") from None


def _save(image: np.ndarray, path: str) -> None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from evaluators.report_parts import png_bytes  # pylint: disable=import-outside-toplevel

    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(png_bytes(image))
    print(f"wrote {path}")


def sample(args, model) -> int:
    """`mgebm sample` for a single-image model."""
    from evaluators.report_parts import tile_images  # pylint: disable=import-outside-toplevel

    height = args.height or int(model.config["height"])
    width = args.width or int(model.config["width"])
    out, done = [], 0
    while done < args.num:
        n = min(model.max_num_samples, args.num - done)
        out.append(_call(model, "sample", num_samples=n, seed=args.seed + done, height=height, width=width))
        done += n
    _save(tile_images(np.concatenate(out), ncols=min(4, args.num)), args.output)
    return 0


def application(args) -> int:
    """super-resolve / edit / harmonize / style-transfer: one input image, one output PNG."""
    signature = APPLICATIONS[args.command]
    model = _model(args.model, signature)
    channels, scales = int(model.config["channels"]), len(model.config["scales"])
    image = _read("--input", args.input, channels)
    if signature == "super_resolve":
        out = _call(model, signature, images=image[None], seed=args.seed, scale=args.scale)
        _save(out[0], args.output)
        return 0
    start = scales // 2 if args.start_scale is None else args.start_scale
    if not 0 <= start < scales:
        raise UsageError(f"--start-scale={start} must be in [0, {scales - 1}] (the model has {scales} scales)")
    inputs = dict(images=image[None], seed=args.seed, start_scale=start)
    if signature in ("edit", "harmonize"):
        mask = _read("--mask", args.mask, 1)
        if mask.shape[:2] != image.shape[:2]:
            raise UsageError(f"--mask {args.mask} is {mask.shape[0]}x{mask.shape[1]} (HxW); it must "
                             f"be the input's size {image.shape[0]}x{image.shape[1]}")
        inputs["mask"] = (mask >= 128).astype(np.uint8)[None]
    _save(_call(model, signature, **inputs)[0], args.output)
    return 0


def evaluate(args, model, ev) -> int:
    """`mgebm evaluate` of a single-image model: --data file:PATH is its training image (fitted
    to the model's training size)."""
    import json  # pylint: disable=import-outside-toplevel

    from evaluators.single_image import SIFID_SPACES  # pylint: disable=import-outside-toplevel
    from evaluators.single_image_eval import evaluate_single_image  # pylint: disable=import-outside-toplevel
    from evaluators.single_image_eval import resize_uint8  # pylint: disable=import-outside-toplevel

    kind, _, path = str(args.data).partition(":")
    if kind != "file":
        raise UsageError(f"--data {args.data}: a single-image model is evaluated against its one "
                         "training image: give --data file:PATH")
    h, w = int(model.config["height"]), int(model.config["width"])
    # The ingest's fitting (area downscale of the longer side), then the exact training size.
    image = resize_uint8(_read("--data", path, int(model.config["channels"]), max(h, w)), h, w)
    spaces = [s.strip() for s in args.features.split(",") if s.strip() in SIFID_SPACES]
    if not spaces:
        raise UsageError(f"--features {args.features}: single-image models use {list(SIFID_SPACES)}")
    metrics = evaluate_single_image(
        args.model, image, args.output, spaces=spaces,
        num_samples=args.num_samples or (ev.num_samples if ev else 8),
        thresholds=list(ev.thresholds) if ev else [], served_model_dir=args.served_model,
        inception_weights=ev.inception_weights if ev else "", log_dir=args.logs)
    print(json.dumps(metrics.get("blessing", {}), indent=2))
    print(f"report:  {args.output}/report.html")
    print(f"metrics: {args.output}/metrics.json")
    return 0


def add_parsers(sub) -> None:
    """The four application sub-commands of `mgebm`."""
    helps = {"super-resolve": "super-resolution of an image by a single-image model (PatchGenCN)",
             "edit": "harmonise a pasted or painted edit (MASK white = edited pixels) into the image",
             "harmonize": "an inserted object (MASK white) takes on the image's local statistics",
             "style-transfer": "the content of an image with the trained image's patch statistics"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("--model", required=True, help="export folder of a single-image model")
        p.add_argument("--input", required=True, help="image file (PNG, JPEG, ...)")
        p.add_argument("--output", required=True, help="PNG file")
        p.add_argument("--seed", type=int, default=0)
        if name == "super-resolve":
            p.add_argument("--scale", type=int, default=2, help="output size / input size (1-8)")
        else:
            p.add_argument("--start-scale", type=int, default=None,
                           help="scale the chains start at (0 = coarsest; default the middle one)")
        if name in ("edit", "harmonize"):
            p.add_argument("--mask", required=True, help="PNG of the input's size, white = may change")
