"""HTML building blocks of `report.html` and the sections of the image-to-image experiments.

Pictures: `tile_images` (a batch -> one grid), `png_bytes`, `data_uri`. Cells and blocks: `fmt`
(a number or text for a table cell), `table`, `img` (an embedded PNG with its caption), `none`
(a "not computed" line). Sections: `denoising_section`, `translation_section`,
`memorization_section`, `conditional_section` (each renders its metrics.json entry and the figures whose keys start
with its prefix), `collapse_section` (the collapse rule's verdict and figures).
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np


def tile_images(images, ncols: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """uint8 [N,H,W,C] -> one uint8 [rows*(H+pad)+pad, ncols*(W+pad)+pad, C] grid, row-major."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[0] < 1:
        raise ValueError(f"tile_images needs uint8 [N>=1, H, W, C], got {images.dtype} {images.shape}")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    n, h, w, c = images.shape
    ncols = min(ncols, n)
    rows = -(-n // ncols)
    grid = np.full((rows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[top:top + h, left:left + w] = images[i]
    return grid


def png_bytes(image) -> bytes:
    """uint8 [H,W,C] (C 1 or 3) or [H,W] -> PNG bytes."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"png_bytes needs uint8 [H, W] or [H, W, C], got {image.dtype} {image.shape}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "n/a" if not math.isfinite(float(value)) else f"{float(value):.4g}"
    return html.escape(str(value))


def table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def img(title: str, image: np.ndarray) -> str:
    image = np.asarray(image)
    width = max(256, min(1024, image.shape[1] * 4))
    return (f"<figure><img alt='{html.escape(title)}' src='{data_uri(png_bytes(image))}' "
            f"style='width:{width}px;image-rendering:pixelated'/><figcaption>"
            f"{html.escape(title)}</figcaption></figure>")


def none(text: str) -> str:
    return f"<p class='none'>{html.escape(text)}</p>"


def _figures(images: dict, prefix: str) -> str:
    return "".join(img(k, v) for k, v in images.items() if k.startswith(prefix))


def denoising_section(metrics: dict, images: dict) -> str:
    den = metrics.get("denoising")
    if not (den and den.get("levels")):
        return none("not computed")
    rows = [[level, method, r.get("psnr"), r.get("ssim"), r.get("num_images")]
            for level, by in den["levels"].items() for method, r in by.items()]
    return ("<p>Held-out images with Gaussian noise of standard deviation sigma (pixels in [0, 1]); "
            "PSNR and SSIM against the clean images (higher is better).</p>"
            + table(["sigma", "method", "PSNR (dB)", "SSIM", "images"], rows)
            + table(["method", "what"], list(den.get("methods", {}).items())) + _figures(images, "denoising/"))


def translation_section(metrics: dict, images: dict) -> str:
    tr = metrics.get("translation")
    if not tr:
        return none("not computed")
    rows = [[space, kind, r.get("fid"), r.get("kid"), r.get("num_fake")]
            for space, by in tr.get("spaces", {}).items() for kind, r in by.items()]
    return (f"<p>{tr.get('num_source')} images of {html.escape(str(tr.get('source') or 'the source'))} "
            "translated into the model's domain; FID / KID to real images of that domain, for the "
            "translated and for the untouched source images (lower is better). Mean absolute change "
            f"of a pixel: {fmt(tr.get('change'))} (0 = the source came back unchanged).</p>"
            + table(["feature space", "images", "FID", "KID", "count"], rows) + _figures(images, "translation/"))


def memorization_section(metrics: dict, images: dict) -> str:
    mem = metrics.get("memorization")
    if not (mem and mem.get("spaces")):
        return none("not computed")
    rows = [[space, r.get("ratio"), r.get("median_nearest_generated"), r.get("median_nearest_real"),
             r.get("fraction_closer_than_real_q05"), r.get("num_generated"), r.get("num_train")]
            for space, r in mem["spaces"].items()]
    return ("<p>Distance from each generated image to its nearest training image, against the same "
            "for held-out real images. A ratio near or above 1: samples are no closer to the training "
            "set than new real images; well below 1: samples copy training images.</p>"
            + table(["space", "ratio (median gen / median real)", "median gen", "median real",
                     "gen closer than 95% of real", "generated", "train"], rows)
            + _figures(images, "memorization/"))


def conditional_section(metrics: dict, images: dict) -> str:
    cond = metrics.get("conditional")
    if not cond:
        return none("not computed (an unconditional model, or unlabelled real images)")
    rows = [[space, c, v] for space, by in cond.get("fid", {}).items() for c, v in by.get("per_class", {}).items()]
    rows += [[space, "mean", by.get("mean")] for space, by in cond.get("fid", {}).items()]
    acc = cond.get("label_accuracy_per_class") or {}
    return (f"<p>{cond.get('num_samples_per_class')} samples per requested class. Label accuracy of the "
            f"<code>domain</code> classifier on them against the requested labels: "
            f"{fmt(cond.get('label_accuracy'))} (the same classifier on held-out real images of these classes: "
            f"{fmt(cond.get('label_accuracy_real'))}).</p>"
            + (f"<p>Refined from the held-out images' own coarsest level (the generated coarsest level "
               f"left out): {fmt(cond['label_accuracy_from_real_coarse'])}.</p>"
               if cond.get("label_accuracy_from_real_coarse") is not None else "")
            + table(["feature space", "class", "FID to that class's real images"], rows)
            + (table(["class", "label accuracy"], list(acc.items())) if acc else "")
            + _figures(images, "conditional/"))


def collapse_section(metrics: dict) -> str:
    """The collapse rule's verdict, its ratios against their bounds and the figures behind them."""
    col = metrics.get("collapse")
    if not col:
        return none("not computed (no samples)")
    verdict = "COLLAPSED" if col.get("collapsed") else "not collapsed"
    bounds = col.get("bounds") or {}
    mine, real = col.get("samples") or {}, col.get("real") or {}
    rows = [[ratio, col.get(ratio), bound, mine.get(ratio[:-len("_ratio")]), real.get(ratio[:-len("_ratio")])]
            for ratio, bound in bounds.items()]
    reasons = "".join(f"<li>{html.escape(str(r))}</li>" for r in col.get("reasons") or [])
    return (f"<p><b>{verdict}</b>. Samples against real images: per-image pixel standard deviation, "
            f"detail between the coarse level ({html.escape(str(col.get('coarse_size')))} px, 4 x 4 "
            "blocks) and half size, and the mean distance between images at the coarse level; a "
            "ratio below its bound means collapse.</p>"
            + (f"<ul>{reasons}</ul>" if reasons else "")
            + table(["ratio (samples / real)", "value", "collapsed below", "samples", "real"], rows))
