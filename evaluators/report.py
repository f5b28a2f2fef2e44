"""The evaluation report: `report.html` (self-contained, readable offline) and `metrics.json`.

`metrics.json` schema (version 1); every number is a plain JSON number or null, never NaN/Inf
(a non-finite value is written as null and its path listed in `notes`):

    {
      "schema_version": 1,
      "model": {"dir", "family", "grids", "trained_grids", "image_size", "channels"},
      "signatures": [the exported signature names],
      "skipped": {EXPERIMENT: reason}  (experiments not run, e.g. a signature the model lacks),
      "data": {"num_real", "num_test", ...},
      "feature_spaces": {NAME: {"fid", "kid", "kid_std", "inception_score",
                                "inception_score_std", "precision", "recall", "num_real",
                                "num_fake", "info": {...space info, e.g. held-out accuracy...},
                                "reference": {same metrics for real vs real (two halves)} | null}},
      "collapse": {"collapsed": bool, "reasons": [str], "pixel_std_ratio", "fine_detail_ratio",
                   "coarse_diversity_ratio", "bounds": {RATIO: bound}, "coarse_size": [h, w],
                   "samples" | "real": {"pixel_std", "fine_detail", "coarse_diversity",
                   "num_images", "coarse_size"}} | null  (`evaluators.collapse`),
      "downstream": {"columns": [label counts], "rows": {METHOD: {"N": error rate}},
                     "label_counts_used": {"N": n}, "num_test", "methods": {METHOD: text},
                     "notes": [...]} | null,
      "inpainting": {"masks": {MASK: {METHOD: {"error", "error_std", "psnr", "psnr_std",
                     "num_images", "num_exact"}}}, "methods", "psnr_cap_db",
                     "observed_changed"} | null,
      "diversity": {"within_start_mean", "between_starts_mean", "data_mean", "ratio",
                    "fraction_pairs_differ", ...} | null,
      "ood": {"auroc": {SET: value}, "auroc_by_grid", "num_ood", "mean_energy", "grid",
              "num_test"} | null,
      "denoising": {"levels": {SIGMA: {METHOD: {"psnr", "psnr_std", "ssim", "ssim_std",
                    "num_images"}}}, "methods", "psnr_cap_db"} | null,
      "translation": {"spaces": {NAME: {"translated" | "source": {"fid", "kid", "kid_std",
                      "num_real", "num_fake"}}}, "change", "change_std", "num_source",
                      "source"} | null,
      "memorization": {"spaces": {"pixels" | NAME: {"ratio", "median_nearest_generated",
                       "median_nearest_real", "fraction_closer_than_real_q05", "num_generated",
                       "num_real", "num_train"}}, "ratio"} | null,
      "conditional": {"classes", "num_samples_per_class", "fid": {NAME: {"per_class": {CLASS:
                      value}, "mean"}}, "label_accuracy", "label_accuracy_per_class",
                      "label_accuracy_real", "label_accuracy_from_real_coarse"} | null,
      "baseline_model": {"dir", "version", "family", "feature_spaces": {NAME: as above},
                         "error" (when not comparable)}  (only when a model is being served:
                         its figures recomputed on the same real images and seeds),
      "blessing": {"blessed": bool, "checks": [{"rule", "metric", "op", "threshold", "value",
                   "baseline", "passed", "reason"}], "baseline_version"},
      "notes": [strings]
    }

Flat metric names (used by blessing thresholds) are derived from it by
`evaluators.blessing.flatten_metrics`: `fid/NAME`, `kid/NAME`, ..., `downstream/METHOD/N`,
`inpainting/MASK/METHOD/error`, `diversity/within_start_mean`, `ood/auroc/SET`,
`denoising/SIGMA/METHOD/psnr`, `translation/NAME/translated/fid`, `memorization/pixels/ratio`, ...

`report.html` sections: SECTION_TITLES in order. Images (PNG) are embedded as base64 data URIs.
Image keys choose the section: `samples/...` -> Samples, `inpainting/...` -> Inpainting examples,
`diversity...` -> Diversity, `ood/`, `denoising/`, `translation/`, `memorization/...` -> beside
their tables,
anything else -> Other figures.
"""

from __future__ import annotations

import html
import io
import json
import math
import os

import numpy as np

from evaluators.report_parts import (collapse_section, conditional_section, data_uri, denoising_section, fmt, img,
                                     memorization_section, none, png_bytes, table, tile_images,
                                     translation_section)

__all__ = ["SCHEMA_VERSION", "png_bytes", "sanitize_for_json", "tile_images", "write_metrics_json",
           "write_report"]

SCHEMA_VERSION = 1
SECTION_TITLES = ("Samples", "Inpainting examples", "Diversity", "Feature-space metrics",
                  "Collapse rule", "Downstream classification", "Inpainting metrics", "Diversity metrics",
                  "Out-of-distribution detection", "Denoising", "Translation", "Memorization",
                  "Class-conditional samples", "Blessing",
                  "Training curves", "Configuration")
_SPACE_COLUMNS = ("fid", "kid", "kid_std", "inception_score", "inception_score_std", "precision",
                  "recall", "num_real", "num_fake")


def _tf():
    """TensorFlow, imported on first use (tile_images and png_bytes do not need it)."""
    import tensorflow as tf

    return tf


def sanitize_for_json(obj, path: str = "", notes: list | None = None):
    """A copy of `obj` with numpy types made plain and non-finite floats made None.

    Returns (clean, notes): notes lists `"PATH: VALUE replaced by null"` for each such float.
    """
    notes = [] if notes is None else notes
    if isinstance(obj, dict):
        return {str(k): sanitize_for_json(v, f"{path}/{k}" if path else str(k), notes)[0]
                for k, v in obj.items()}, notes
    if isinstance(obj, (list, tuple)):
        return [sanitize_for_json(v, f"{path}[{i}]", notes)[0] for i, v in enumerate(obj)], notes
    if isinstance(obj, np.ndarray):
        return sanitize_for_json(obj.tolist(), path, notes)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj), notes
    if isinstance(obj, (int, np.integer)):
        return int(obj), notes
    if isinstance(obj, (float, np.floating)):
        if not math.isfinite(float(obj)):
            notes.append(f"{path}: {float(obj)} replaced by null")
            return None, notes
        return float(obj), notes
    if obj is None or isinstance(obj, str):
        return obj, notes
    return str(obj), notes


def write_metrics_json(path: str, metrics: dict) -> dict:
    """Write `metrics` as plain JSON (no NaN; see the module docstring); returns what was written."""
    tf = _tf()
    clean, notes = sanitize_for_json(metrics)
    clean.setdefault("schema_version", SCHEMA_VERSION)
    if notes:
        clean["notes"] = list(clean.get("notes") or []) + notes
    text = json.dumps(clean, indent=2, sort_keys=True, allow_nan=False)
    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)
    return clean


def read_scalars(log_dir: str) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """Scalar series from every TensorBoard event file under `log_dir`.

    Returns:
      {run: {tag: (steps, values)}}, run = the event file's folder relative to log_dir
      ("." for log_dir itself), sorted by step. Non-scalar summaries (images, histograms) are
      skipped. A missing log_dir gives {}.
    """
    tf = _tf()
    out: dict = {}
    if not log_dir or not tf.io.gfile.exists(log_dir):
        return out
    for folder, _, files in tf.io.gfile.walk(log_dir):
        for name in sorted(files):
            if "tfevents" not in name:
                continue
            run = folder[len(log_dir):].strip("/") if folder.startswith(log_dir) else folder
            run = run or "."
            series = out.setdefault(run, {})
            # tf.data rather than the deprecated tf_record_iterator behind summary_iterator.
            for record in tf.data.TFRecordDataset(os.path.join(folder, name)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    number = _scalar(value)
                    if number is not None:
                        series.setdefault(value.tag, []).append((int(event.step), number))
    return {run: {tag: tuple(map(list, zip(*sorted(points)))) for tag, points in series.items()}
            for run, series in out.items() if series}


def _scalar(value) -> float | None:
    tf = _tf()
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        try:
            array = tf.make_ndarray(value.tensor)
        except Exception:  # noqa: BLE001 - unknown tensor encodings are not scalars
            return None
        if array.size == 1 and np.issubdtype(array.dtype, np.number):
            return float(array.reshape(()))
    return None


def plot_training_curves(scalars: dict, max_tags: int = 24) -> bytes | None:
    """One PNG with a subplot per scalar tag (one line per run), or None without scalars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tags = sorted({tag for series in scalars.values() for tag in series})[:max_tags]
    if not tags:
        return None
    cols = min(4, len(tags))
    rows = -(-len(tags) // cols)
    fig = Figure(figsize=(4 * cols, 3 * rows), dpi=80)
    FigureCanvasAgg(fig)
    for i, tag in enumerate(tags):
        ax = fig.add_subplot(rows, cols, i + 1)
        for run, series in sorted(scalars.items()):
            if tag in series:
                steps, values = series[tag]
                ax.plot(steps, values, label=run, linewidth=1)
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(scalars) > 1:
            ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _space_rows(spaces: dict, served: dict | None = None) -> list[list]:
    rows = []
    for name, m in sorted(spaces.items()):
        rows.append([f"{name} (model samples)"] + [m.get(c) for c in _SPACE_COLUMNS]
                    + [json.dumps(m.get("info") or {}, sort_keys=True, default=str)])
        other = ((served or {}).get("feature_spaces") or {}).get(name)
        if other:
            rows.append([f"{name} (served model, version {served.get('version')})"]
                        + [other.get(c) for c in _SPACE_COLUMNS] + [""])
        ref = m.get("reference")
        if ref:
            rows.append([f"{name} (baseline: real vs real)"] + [ref.get(c) for c in _SPACE_COLUMNS] + [""])
    return rows


def _sections(metrics: dict, images: dict, config: dict, log_dir: str | None) -> dict[str, str]:
    groups = {"Samples": [], "Inpainting examples": [], "Diversity": [], "Other figures": []}
    for key, image in images.items():
        if key.startswith(("ood/", "denoising/", "translation/", "memorization/", "conditional/")):
            continue  # drawn in the section of its table
        section = ("Samples" if key.startswith("samples") else "Inpainting examples"
                   if key.startswith("inpainting") else "Diversity" if key.startswith("diversity")
                   else "Other figures")
        groups[section].append(img(key, image))
    out = {k: "".join(v) or none("no images") for k, v in groups.items() if v or k != "Other figures"}

    spaces = metrics.get("feature_spaces") or {}
    out["Feature-space metrics"] = (table(["feature space"] + list(_SPACE_COLUMNS) + ["info"],
                                           _space_rows(spaces, metrics.get("baseline_model")))
                                     if spaces else none("not computed"))
    out["Collapse rule"] = collapse_section(metrics)
    down = metrics.get("downstream")
    if down and down.get("rows"):
        cols = [str(c) for c in down["columns"]]
        rows = [[m] + [vals.get(c) for c in cols] for m, vals in down["rows"].items()]
        out["Downstream classification"] = (
            "<p>Test error rate by number of labelled training images.</p>"
            + table(["method"] + [f"{c} labels" for c in cols], rows)
            + "".join(f"<p class='note'>{html.escape(n)}</p>" for n in down.get("notes", [])))
    else:
        out["Downstream classification"] = none("not computed (no labels or no features signature)")
    inp = metrics.get("inpainting")
    if inp and inp.get("masks"):
        rows = [[mask, method, r.get("error"), r.get("psnr"), r.get("num_images")]
                for mask, by in inp["masks"].items() for method, r in by.items()]
        out["Inpainting metrics"] = table(["mask", "method", "error (missing px, [0,1])",
                                            "PSNR (dB)", "images"], rows)
    else:
        out["Inpainting metrics"] = none("not computed")
    div = metrics.get("diversity")
    out["Diversity metrics"] = (table(["quantity", "value"], [[k, v] for k, v in div.items()
                                                               if not isinstance(v, (list, dict))])
                                if div else none("not computed"))
    ood = metrics.get("ood")
    if ood and ood.get("auroc"):
        grids = sorted(ood.get("auroc_by_grid") or {}, key=int)
        rows = [[name, value, ood.get("num_ood", {}).get(name), ood.get("mean_energy", {}).get(name)]
                + [ood["auroc_by_grid"][g].get(name) for g in grids] for name, value in ood["auroc"].items()]
        out["Out-of-distribution detection"] = (
            f"<p>AUROC of {ood.get('num_test')} held-out images against each set, scored by the "
            f"energy of grid {ood.get('grid')} (1 = perfectly separated, 0.5 = chance); mean energy "
            f"of the held-out images: {fmt(ood.get('mean_energy', {}).get('test'))}.</p>"
            + table(["set", "AUROC", "images", "mean energy"] + [f"AUROC grid {g}" for g in grids], rows)
            + "".join(img(k, v) for k, v in images.items() if k.startswith("ood/")))
    else:
        out["Out-of-distribution detection"] = none("not computed")
    out["Denoising"], out["Translation"] = denoising_section(metrics, images), translation_section(metrics, images)
    out["Memorization"] = memorization_section(metrics, images)
    out["Class-conditional samples"] = conditional_section(metrics, images)
    out.update(common_sections(metrics, config, log_dir))
    return out


def common_sections(metrics: dict, config: dict, log_dir: str | None) -> dict[str, str]:
    """The sections every report ends with: Blessing, Training curves, Configuration."""
    out = {}
    bless = metrics.get("blessing")
    if bless:
        verdict = "BLESSED" if bless.get("blessed") else "NOT BLESSED"
        served = metrics.get("baseline_model")
        against = (f"<p>Compared with the served model, version {served.get('version')} "
                   f"({html.escape(str(served.get('dir')))}), re-evaluated on the same images and "
                   "seeds.</p>" if served else "<p class='note'>No model is being served yet: rules "
                   "against the served model (baseline) pass, the absolute rules decide.</p>")
        out["Blessing"] = f"<p><b>{verdict}</b></p>" + against + (table(
            ["rule", "value", "served model", "bound", "passed", "reason"],
            [[c.get("rule"), c.get("value"), c.get("baseline"), c.get("threshold"), c.get("passed"),
              c.get("reason", "")] for c in bless.get("checks", [])])
            if bless.get("checks") else none("no thresholds"))
    else:
        out["Blessing"] = none("not evaluated")
    curves = plot_training_curves(read_scalars(log_dir)) if log_dir else None
    out["Training curves"] = (
        f"<img alt='training curves' src='{data_uri(curves)}'/>" if curves
        else none(f"no TensorBoard scalars found in {log_dir!r}") if log_dir
        else none("no TensorBoard log folder given (evaluate --logs DIR)"))
    clean_config, _ = sanitize_for_json(config)
    out["Configuration"] = ("<pre>" + html.escape(json.dumps(clean_config, indent=2, sort_keys=True))
                            + "</pre>")
    return out


def write_report(output_dir: str, metrics: dict, images: dict, config: dict,
                 log_dir: str | None = None) -> str:
    """Write `output_dir/report.html`; returns its path.

    Args:
      output_dir: folder (created if needed; any tf.io.gfile path).
      metrics: the metrics dict (schema in the module docstring; missing parts show "not computed").
      images: {key: uint8 [H,W,C] or [H,W] picture}, e.g. `samples/grid_16`, `inpainting/square`.
      config: shown as pretty JSON.
      log_dir: TensorBoard log folder for the training curves, or None.
    """
    for key, image in images.items():
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"images[{key!r}] must be a uint8 [H, W(, C)] picture, got "
                             f"{image.dtype} {image.shape}; tile batches with tile_images")
    sections = _sections(metrics, images, config, log_dir)
    order = list(SECTION_TITLES[:3]) + (["Other figures"] if "Other figures" in sections else []) \
        + list(SECTION_TITLES[3:])
    return write_page(output_dir, metrics, {t: sections[t] for t in order})


def write_page(output_dir: str, metrics: dict, sections: dict[str, str]) -> str:
    """Write `output_dir/report.html` from {title: HTML} sections in order (with the skipped
    experiments and notes of `metrics` on top); returns its path."""
    tf = _tf()
    order = list(sections)
    model = metrics.get("model") or {}
    title = f"multigrid-ebm evaluation: {model.get('dir', '')}"
    nav = " | ".join(f"<a href='#s{i}'>{html.escape(t)}</a>" for i, t in enumerate(order))
    body = "".join(f"<h2 id='s{i}'>{html.escape(t)}</h2>{sections[t]}" for i, t in enumerate(order))
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in metrics.get("notes") or [])
    skipped = "".join(f"<li><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</li>"
                      for k, v in (metrics.get("skipped") or {}).items())
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:3px 8px;"
        "font-size:13px}th{background:#eee}figure{display:inline-block;margin:8px}"
        ".none,.note{color:#666}pre{background:#f6f6f6;padding:1em;overflow:auto}"
        f"</style></head><body><h1>{html.escape(title)}</h1><p>{nav}</p>"
        + (f"<p>Skipped experiments:</p><ul class='skipped'>{skipped}</ul>" if skipped else "")
        + (f"<ul>{notes}</ul>" if notes else "") + body + "</body></html>")
    tf.io.gfile.makedirs(output_dir)
    path = os.path.join(output_dir, "report.html")
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(page)
    return path
