"""Pictures of samples: a PNG grid with one row per grid size, and a GIF of a Langevin chain.

Inputs are the uint8 outputs of the SavedModel's `sample` signature (`grid_S: [N,S,S,C]`,
`images: [N,H,W,C]`); coarse grids are upsampled by pixel repetition (nearest) to the image size
so every row has the same height.
"""

from __future__ import annotations

import io
import re

import numpy as np
import tensorflow as tf
from PIL import Image

_GRID_KEY = re.compile(r"^grid_(\d+)$")


def _check_uint8_batch(name: str, array) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be [N, S, S, C] with C 1 or 3, got shape {array.shape}")
    if array.shape[1] != array.shape[2]:
        raise ValueError(f"{name} must hold square images, got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 in [0, 255], got {array.dtype}")
    return array


def _upsample_nearest(images: np.ndarray, size: int) -> np.ndarray:
    s = images.shape[1]
    if size % s:
        raise ValueError(f"grid size {s} does not divide the image size {size}")
    k = size // s
    return np.repeat(np.repeat(images, k, axis=1), k, axis=2)


def sample_grid_array(outputs: dict, max_columns: int = 16, pad: int = 2) -> np.ndarray:
    """The picture that `save_sample_grid` writes, as an array.

    Args:
      outputs: `{"grid_S": uint8 [N,S,S,C]}` for each grid (other keys, e.g. `images`, are
        ignored; if there is no `grid_*` key, `images` is used as the only row).
      max_columns: show at most this many samples per row.
      pad: white pixels between tiles.

    Returns:
      uint8 [rows*(H+pad)+pad, cols*(H+pad)+pad, C], rows ordered coarse to fine, where
      H is the largest grid size.

    Raises:
      ValueError: no usable entry, non-uint8 or non-square arrays, or differing N or C.
    """
    rows = {int(m.group(1)): v for k, v in outputs.items() if (m := _GRID_KEY.match(str(k)))}
    if not rows:
        if "images" not in outputs:
            raise ValueError(f"outputs needs grid_S or images entries, got keys {sorted(outputs)}")
        img = np.asarray(outputs["images"])
        rows = {img.shape[1] if img.ndim == 4 else 0: img}
    arrays = {s: _check_uint8_batch(f"grid_{s}", v) for s, v in rows.items()}
    sizes = sorted(arrays)
    size = sizes[-1]
    n = {a.shape[0] for a in arrays.values()}
    c = {a.shape[-1] for a in arrays.values()}
    if len(n) != 1 or len(c) != 1:
        raise ValueError(f"all grids must have the same N and C, got N {sorted(n)} and C {sorted(c)}")
    cols = max(1, min(n.pop(), max_columns))
    channels = c.pop()
    height = len(sizes) * (size + pad) + pad
    width = cols * (size + pad) + pad
    canvas = np.full((height, width, channels), 255, np.uint8)
    for r, s in enumerate(sizes):
        tiles = _upsample_nearest(arrays[s][:cols], size)
        for i in range(cols):
            y, x = pad + r * (size + pad), pad + i * (size + pad)
            canvas[y:y + size, x:x + size] = tiles[i]
    return canvas


def _to_pil(array: np.ndarray) -> Image.Image:
    if array.shape[-1] == 1:
        return Image.fromarray(array[..., 0], mode="L")
    return Image.fromarray(array, mode="RGB")


def save_sample_grid(outputs: dict, path: str, max_columns: int = 16, scale: int = 1) -> np.ndarray:
    """Write a PNG with one row per grid size (coarse to fine), samples side by side.

    Args:
      outputs: `{"grid_S": uint8 [N,S,S,C]}` per grid, e.g. the `sample` signature's outputs
        (numpy arrays or tensors).
      path: destination `.png` (local or gs://, written through tf.io.gfile).
      max_columns: at most this many samples per row.
      scale: integer magnification of the whole picture (nearest), >= 1.

    Returns:
      The written picture, uint8 [height, width, C].
    """
    if scale < 1:
        raise ValueError(f"scale={scale} must be an integer >= 1")
    outputs = {k: np.asarray(v) for k, v in outputs.items()}
    canvas = sample_grid_array(outputs, max_columns=max_columns)
    if scale > 1:
        canvas = np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)
    buf = io.BytesIO()
    _to_pil(canvas).save(buf, format="PNG")
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buf.getvalue())
    return canvas


def save_chain_gif(frames, path: str, duration_ms: int = 120, scale: int = 1) -> int:
    """Write an animated GIF of a chain.

    Args:
      frames: sequence of uint8 arrays, each [H,W,C] or a batch [N,H,W,C] (a batch is tiled into
        one row); frames may differ in size (coarse grids): each is upsampled by nearest to the
        largest frame size. A dict such as the `sample` signature's outputs
        (`{"grid_S": uint8 [N,S,S,C]}`) gives the multi-grid chain coarse to fine, one frame
        per grid.
      path: destination `.gif` (written through tf.io.gfile).
      duration_ms: display time per frame.
      scale: integer magnification (nearest), >= 1.

    Returns:
      The number of frames written.
    """
    if isinstance(frames, dict):
        grids = sorted((int(m.group(1)), v) for k, v in frames.items() if (m := _GRID_KEY.match(str(k))))
        if grids:
            frames = [v for _, v in grids]
        else:
            frames = [frames["images"]] if "images" in frames else []
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError("frames is empty: pass at least one uint8 image or batch")
    if scale < 1:
        raise ValueError(f"scale={scale} must be an integer >= 1")
    batches = [f[None] if f.ndim == 3 else f for f in frames]
    batches = [_check_uint8_batch(f"frames[{i}]", b) for i, b in enumerate(batches)]
    size = max(b.shape[1] for b in batches)
    pictures = []
    for b in batches:
        canvas = sample_grid_array({f"grid_{size}": _upsample_nearest(b, size)}, max_columns=len(b))
        if scale > 1:
            canvas = np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)
        pictures.append(_to_pil(canvas).convert("P" if canvas.shape[-1] == 3 else "L"))
    buf = io.BytesIO()
    pictures[0].save(buf, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=duration_ms, loop=0)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buf.getvalue())
    return len(pictures)


def save_png(image, path: str) -> None:
    """Write one uint8 [S, S, C] image (C 1 or 3) as a PNG through tf.io.gfile."""
    image = _check_uint8_batch("image", np.asarray(image)[None])[0]
    buf = io.BytesIO()
    _to_pil(image).save(buf, format="PNG")
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buf.getvalue())


def save_pairs_grid(before, after, path: str, max_columns: int = 8, pad: int = 2) -> np.ndarray:
    """A PNG of image pairs side by side (before | after), up to `max_columns` pairs per row.

    Args:
      before, after: uint8 [N, S, S, C] (C 1 or 3), the same shape.
      path: destination `.png` (written through tf.io.gfile).

    Returns:
      The written uint8 [H, W, C] array.
    """
    before, after = _check_uint8_batch("before", before), _check_uint8_batch("after", after)
    if before.shape != after.shape:
        raise ValueError(f"before {before.shape} and after {after.shape} must have the same shape")
    n, s, _, c = before.shape
    cols = min(max_columns, n)
    rows = -(-n // cols)
    cell_w = 2 * s + pad
    grid = np.full((rows * (s + pad) + pad, cols * (cell_w + 2 * pad) + pad, c), 255, np.uint8)
    for i in range(n):
        y = pad + (i // cols) * (s + pad)
        x = pad + (i % cols) * (cell_w + 2 * pad)
        grid[y:y + s, x:x + s] = before[i]
        grid[y:y + s, x + s + pad:x + 2 * s + pad] = after[i]
    buf = io.BytesIO()
    _to_pil(grid).save(buf, format="PNG")
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buf.getvalue())
    return grid
