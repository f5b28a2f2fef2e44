"""The `mgebm` commands: each parses nothing, takes argparse args, calls library code."""

from __future__ import annotations

import json
import os
import sys

from pipeline import single_image_commands
from pipeline.checks import UsageError, feature_names, input_source, parse_grids
from pipeline.presets import PRESETS, load_preset
from pipeline.workdir_lock import default_workdir


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _config(args, data: str | None = None):
    overrides = list(args.overrides)
    if data:
        overrides.append(f"data.source={data}")
    return load_preset(args.preset, overrides)


def cmd_presets(args) -> int:
    for name, sections in sorted(PRESETS.items()):
        d, p = sections["data"], sections["pyramid"]
        if p.get("scale_factor"):  # one image: its longer side, the scale pyramid
            source = d["source"] if len(d["source"]) <= 45 else "file:..." + d["source"][-36:]
            geometry = (f"longer side {d['max_side']}px x{d['channels']} scales x{p['scale_factor']} "
                        f"down to {p['min_side']}px")
        else:
            source = d["source"]
            geometry = f"{d['image_size']}px x{d['channels']} grids {p['grids']}"
        print(f"{name:28s} {source:45s} {geometry}   (also {name}:smoke)")
    return 0


def cmd_run(args) -> int:
    from pipeline.runners import run_local

    cfg = _config(args, args.data)
    workdir = args.workdir or default_workdir(args.preset)
    _log(f"[mgebm] running pipeline {cfg.name} on {cfg.data.source} in {workdir}")
    _log(f"[mgebm] TensorBoard: tensorboard --logdir {os.path.join(workdir, 'train_state')}")
    outputs = run_local(cfg, workdir)
    print(json.dumps({k: v["uri"] for k, v in outputs.items()}, indent=2))
    evaluation = outputs.get("evaluation")
    if evaluation:
        print(f"report:  {os.path.join(evaluation['uri'], 'report.html')}")
        print(f"metrics: {os.path.join(evaluation['uri'], 'metrics.json')}")
    pushed = outputs.get("pushed", {}).get("properties", {})
    if pushed.get("pushed"):
        print(f"pushed:  {pushed.get('pushed_destination')}")
    else:
        reason = pushed.get("reason") or "the model was not blessed"
        print(f"pushed:  no ({reason}; see the report's blessing section)")
    return 0


def cmd_compile(args) -> int:
    from pipeline.runners import compile_kubeflow

    cfg = _config(args, args.data)
    root = args.pipeline_root or os.path.abspath(default_workdir(args.preset) + "-kfp")
    path = compile_kubeflow(cfg, args.output, root, args.image)
    print(f"wrote Kubeflow V2 pipeline spec {path} (pipeline root {root}, image {args.image})")
    return 0


def cmd_run_spec(args) -> int:
    from pipeline import run_spec

    try:
        summary = run_spec.run_spec(args.spec, args.pipeline_root, image=args.image)
    except run_spec.SpecError as err:
        raise UsageError(str(err)) from None
    print(json.dumps({f"{task}.{key}": artifact["uri"] for task, info in summary["tasks"].items()
                      for key, artifact in info["outputs"].items()}, indent=2))
    print(f"run:     {summary['run_dir']}")
    print(run_spec.pushed_line(summary))
    return 0


def cmd_schedule(args) -> int:
    from pipeline import schedules

    job = schedules.load_spec(args.spec)
    if args.engine == "kubeflow":
        request = schedules.kfp_recurring_run(job, args.cron, args.name, args.experiment_id)
    else:
        request = schedules.vertex_schedule(job, args.cron, args.name, args.project, args.location,
                                            args.service_account, args.time_zone)
    if args.dry_run:
        print(schedules.to_json(request))
        return 0
    if args.engine == "kubeflow":  # --host checked with the other flags (pipeline.checks)
        created = schedules.submit_kfp(request, args.host)
    else:
        created = schedules.submit_vertex(request, args.location)
    print(f"scheduled {args.name} on {args.engine} ({args.cron}): {getattr(created, 'name', '') or created}")
    return 0


def cmd_ingest(args) -> int:
    from components.ingest import run_ingest

    extra = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    summary = run_ingest(source=args.data, output_dir=args.output, image_size=args.image_size or 0,
                         channels=args.channels, eval_fraction=args.eval_fraction,
                         max_reject_fraction=args.max_reject_fraction, limit=args.limit,
                         num_shards=args.num_shards, span=args.span, max_side=args.max_side,
                         min_side=args.min_side, **extra)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_pyramid(args) -> int:
    from components.pyramid_beam import run_pyramid

    metadata = run_pyramid(input_dir=args.input, output_dir=args.output,
                           grids=parse_grids(args.grids) if args.grids else (), runner=args.runner,
                           beam_args=list(args.beam_args), num_shards=args.num_shards,
                           scale_factor=args.scale_factor, min_side=args.min_side)
    print(json.dumps(metadata, indent=2))
    return 0


def cmd_train(args) -> int:
    from trainers.train import train

    cfg = _config(args)
    if cfg.train.warm_start == "latest_blessed":
        raise UsageError("train.warm_start=latest_blessed names the model served by a pipeline "
                         "(mgebm run); for mgebm train give an export folder: --set train.warm_start=PATH")
    result = train(cfg, args.pyramid, args.workdir, resume=args.resume)
    print(json.dumps({"steps": int(result.steps), "stopped_by": result.stopped_by,
                      "export": result.export_dir, "logs": result.log_dir,
                      "checkpoints": result.checkpoint_dir}, indent=2))
    return 0


def cmd_sample(args) -> int:
    from evaluators.model_client import ExportedModel
    from trainers.sample_grid import save_chain_gif, save_sample_grid

    if args.num < 1:
        raise UsageError(f"--num={args.num} must be >= 1")
    model = ExportedModel(args.model)
    if model.config.get("single_image"):
        return single_image_commands.sample(args, model)
    if args.height or args.width:
        raise UsageError(f"--height/--width: the model in {args.model} samples at its training size "
                         "only (single-image models take any size)")
    labels = None
    if getattr(args, "labels", ""):
        try:
            given = [int(v) for v in args.labels.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--labels={args.labels!r} must be comma-separated integers") from None
        if not model.conditional:
            raise UsageError(f"--labels: the model in {args.model} is not class-conditional")
        bad = sorted(set(given) - set(model.classes))
        if not given or bad:
            raise UsageError(f"--labels={args.labels!r}: each must be one of the trained classes {model.classes}")
        labels = [given[i % len(given)] for i in range(args.num)]
    outputs = model.sample(args.num, args.seed, labels=labels)
    save_sample_grid(outputs, args.output)
    print(f"wrote {args.output}")
    if args.gif:
        save_chain_gif(outputs, args.gif)
        print(f"wrote {args.gif}")
    return 0


def _image_to_image(args, name: str) -> int:
    """denoise / translate: read --input at the model's size, call the signature, write
    OUTPUT/NNNNN_input.png, OUTPUT/NNNNN_output.png and OUTPUT/grid.png (input | output pairs)."""
    import numpy as np
    import tensorflow as tf

    from components.sources import load_images
    from evaluators.model_client import ExportedModel
    from trainers.sample_grid import save_pairs_grid, save_png

    model = ExportedModel(args.model)
    if not model.has(name):
        raise UsageError(f"--model {args.model} has no {name!r} signature (exports "
                         f"{model.signature_names})")
    images, _ = load_images(input_source(args.input), model.image_size, model.channels, args.limit)
    if name == "denoise" and args.add_noise > 0:
        rng = np.random.default_rng(args.seed)
        noisy = images / 255.0 + rng.normal(0.0, args.add_noise, images.shape)
        images = np.round(np.clip(noisy, 0.0, 1.0) * 255).astype(np.uint8)
    out = getattr(model, name)(images, args.seed)
    tf.io.gfile.makedirs(args.output)
    for i, (a, b) in enumerate(zip(images, out)):
        save_png(a, os.path.join(args.output, f"{i:05d}_input.png"))
        save_png(b, os.path.join(args.output, f"{i:05d}_output.png"))
    save_pairs_grid(images, out, os.path.join(args.output, "grid.png"))
    print(f"wrote {len(out)} {name}d images and grid.png to {args.output}")
    return 0


def cmd_super_resolve(args) -> int:
    return single_image_commands.application(args)


cmd_edit = cmd_harmonize = cmd_style_transfer = cmd_super_resolve


def cmd_denoise(args) -> int:
    return _image_to_image(args, "denoise")


def cmd_translate(args) -> int:
    return _image_to_image(args, "translate")


def _feature_spaces(names: list[str], classifier_dir: str | None, images=None, labels=None,
                    workdir: str | None = None, epochs: int = 3, inception_weights: str = "",
                    inception_2015_graph: str = ""):
    """Named feature spaces; trains the `domain` classifier on labelled images when needed."""
    from evaluators.domain_classifier import train_classifier
    from evaluators.features import get_feature_space

    spaces = {}
    for name in names:
        if name == "domain" and not classifier_dir:
            if labels is None or (labels < 0).any():
                raise UsageError("--features domain needs labelled images or --classifier DIR "
                                 "(train one with `mgebm classifier --data SRC --output DIR`)")
            classifier_dir = os.path.join(workdir, "domain_classifier")
            info = train_classifier(images, labels, classifier_dir, epochs=epochs)
            _log(f"[mgebm] domain classifier: held-out accuracy {info['accuracy']:.3f}")
        spaces[name] = get_feature_space(
            name, classifier_dir=classifier_dir if name == "domain" else None,
            inception_weights=inception_weights or None,
            inception_2015_graph=inception_2015_graph or None)
    return spaces


def cmd_evaluate(args) -> int:
    from components.sources import load_images
    from evaluators.evaluate import EvalData, EvalOptions, evaluate_model
    from evaluators.model_client import ExportedModel

    model = ExportedModel(args.model)
    info = model.config
    cfg = _config(args) if args.preset else None
    ev = cfg.eval if cfg else None
    if info.get("single_image"):
        return single_image_commands.evaluate(args, model, ev)
    images, labels = load_images(args.data, info["image_size"], info["channels"])
    names = feature_names(args.features)
    spaces = _feature_spaces(names, args.classifier, images, labels, args.output,
                             epochs=ev.classifier_epochs if ev else 3)
    num_ood = ev.num_ood if ev else 500
    ood_sets = {src: load_images(src, info["image_size"], info["channels"], num_ood)[0]
                for src in _sources(args.ood_data) or (ev.ood_sources if ev else ())}
    translate_name = args.translate_data or (ev.translate_source if ev else "")
    translate_images = load_images(translate_name, info["image_size"], info["channels"],
                                   ev.num_translate if ev else 500)[0] if translate_name else None
    data = EvalData(images, labels, ood_sets=ood_sets, translate_images=translate_images,
                    translate_name=translate_name,
                    train_images=load_images(args.train_data, info["image_size"], info["channels"])[0]
                    if args.train_data else None)
    options = EvalOptions(
        num_samples=args.num_samples or (ev.num_samples if ev else 500),
        num_real=ev.num_real if ev else None,
        kid_subsets=ev.kid_subsets if ev else 10,
        label_counts=tuple(ev.svm_label_counts) if ev else (1000,),
        masks=tuple(ev.inpaint_masks) if ev else ("square", "doodle", "pepper"),
        num_inpaint=ev.num_inpaint if ev else 64,
        num_diversity=ev.num_diversity if ev else 16,
        num_ood=num_ood, num_denoise=ev.num_denoise if ev else 100,
        denoise_levels=tuple(ev.denoise_levels) if ev else (0.1, 0.2),
        num_memorization=ev.num_memorization if ev else 500,
        memorization_spaces=tuple(ev.memorization_spaces) if ev else ("domain",),
        thresholds=tuple(ev.thresholds) if ev else (),
        log_dir=args.logs, random_model_dir=args.random_model, served_model_dir=args.served_model)
    metrics = evaluate_model(args.model, data, args.output, spaces, options)
    print(json.dumps(metrics.get("blessing", {}), indent=2))
    print(f"report:  {os.path.join(args.output, 'report.html')}")
    print(f"metrics: {os.path.join(args.output, 'metrics.json')}")
    return 0


def _sources(text: str) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def cmd_fid(args) -> int:
    from components.sources import load_images
    from evaluators.fid import compare_image_sets

    names = feature_names(args.features)
    if len(names) != 1:
        raise UsageError("--features takes exactly one feature space for `mgebm fid`")
    real, real_labels = load_images(args.real, args.image_size, args.channels, args.limit)
    fake, _ = load_images(args.fake, args.image_size, args.channels, args.limit)
    space = _feature_spaces(names, args.classifier, real, real_labels, "runs/fid")[names[0]]
    result = compare_image_sets(real, fake, space, kid_subsets=args.kid_subsets)
    print(json.dumps(result, indent=2, allow_nan=False))
    return 0


def cmd_classifier(args) -> int:
    from components.sources import load_images
    from evaluators.domain_classifier import train_classifier

    images, labels = load_images(args.data, args.image_size, args.channels, args.limit)
    if (labels < 0).any():
        raise UsageError(f"--data {args.data} has unlabelled images; the domain classifier needs "
                         "labels (class subfolders, idx labels or a labelled TFDS split)")
    info = train_classifier(images, labels, args.output, epochs=args.epochs)
    print(json.dumps(info, indent=2))
    return 0
