"""Non-learned baselines for single-image generation: patch shuffling and image quilting.

A single-image model (PatchGenCN) should beat what copying patches of the training image already
achieves; these two baselines make that copying explicit, at any output size:

* :func:`patch_shuffle` tiles the output with p x p patches taken at uniformly random positions of
  the image (with replacement), no blending: perfect patch statistics inside blocks, hard seams.
* :func:`image_quilting` is Efros & Freeman's texture synthesis (SIGGRAPH 2001): blocks placed in
  raster order, each drawn at random among the image blocks whose SSD over the already-synthesised
  left/top overlap is within ``(1 + tolerance)`` of the best, then joined along a minimum-error
  boundary cut (:func:`min_cut_path`, dynamic programming) through the overlap.

The overlap error of every candidate position is found at once:
``SSD(pos) = sum(M * I^2)(pos) - 2 sum(M * T * I)(pos) + sum(M * T^2)``, with ``M`` the overlap
mask, ``T`` the canvas under the new block and ``I`` the image; both sums over windows are
correlations (scipy FFT correlation, float64), the first cached per mask. A 96x128 output from a
128x96 image takes well under a second per sample on one core (see the tests).

All images are numpy float in [0, 1]: the training image [H, W, C] and outputs float32
[num, h, w, C], C in {1, 3}. Randomness comes only from ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

__all__ = ["check_image", "check_positive_int", "check_patch_size", "patch_shuffle", "image_quilting",
           "min_cut_path"]


def check_image(name, array, rank):
    """Validates a float image (rank 3, [H, W, C]) or batch (rank 4, [N, H, W, C]) in [0, 1].

    Returns:
        float32 copy-free view when possible, C in {1, 3}.

    Raises:
        ValueError: one line naming ``name``: wrong rank, channels, dtype, or values outside [0, 1].
    """
    arr = np.asarray(array)
    layout = "[H, W, C]" if rank == 3 else "[N, H, W, C]"
    if arr.ndim != rank:
        raise ValueError(f"{name} must be a {rank}-D array {layout}; got shape {arr.shape}.")
    if arr.shape[-1] not in (1, 3) or min(arr.shape) < 1:
        raise ValueError(f"{name} must be {layout} with C in (1, 3) and no empty axis; got {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be float in [0, 1]; got dtype {arr.dtype} (divide uint8 by 255).")
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1]; got range [{np.nanmin(arr)}, {np.nanmax(arr)}].")
    return arr.astype(np.float32, copy=False)


def check_positive_int(name, value):
    """A positive int (bools and fractions rejected), else a ValueError naming ``name``."""
    ok = isinstance(value, (int, np.integer, float, np.floating)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def _out_hw(out_hw):
    if len(tuple(out_hw)) != 2:
        raise ValueError(f"out_hw must be (height, width); got {out_hw!r}.")
    return check_positive_int("out_hw height", out_hw[0]), check_positive_int("out_hw width", out_hw[1])


def check_patch_size(name, value, image, what="the image"):
    """A positive int that fits in ``image`` ([H, W, C]); else a ValueError naming ``name`` and ``what``."""
    size = check_positive_int(name, value)
    if size > min(image.shape[0], image.shape[1]):
        raise ValueError(f"{name}={size} is larger than {what} ({image.shape[0]}x{image.shape[1]}).")
    return size


def patch_shuffle(image, out_hw, patch_size, num, seed=0):
    """Tiles outputs with p x p patches from uniformly random positions of ``image`` (no blending).

    Args:
        image: float [H, W, C] in [0, 1], C in {1, 3}.
        out_hw: (h, w) of each output, any positive size; the last row/column of blocks is cropped.
        patch_size: p, 1 <= p <= min(H, W).
        num: number of outputs.
        seed: int seed; the same seed gives the same outputs.

    Returns:
        float32 [num, h, w, C]; block (i, j) of each output is an exact copy of some image block.
    """
    image = check_image("image", image, 3)
    h, w = _out_hw(out_hw)
    p = check_patch_size("patch_size", patch_size, image)
    num = check_positive_int("num", num)
    rows, cols = -(-h // p), -(-w // p)
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, image.shape[0] - p + 1, size=(num, rows, cols))
    xs = rng.integers(0, image.shape[1] - p + 1, size=(num, rows, cols))
    offsets = np.arange(p)
    # [num, rows, cols, p, p, C] -> [num, rows, p, cols, p, C] -> [num, rows*p, cols*p, C]
    blocks = image[ys[..., None, None] + offsets[:, None], xs[..., None, None] + offsets[None, :]]
    tiled = blocks.transpose(0, 1, 3, 2, 4, 5).reshape(num, rows * p, cols * p, image.shape[-1])
    return np.ascontiguousarray(tiled[:, :h, :w])


def min_cut_path(errors):
    """Minimum-cost top-to-bottom 8-connected path through an error surface (dynamic programming).

    Args:
        errors: float [rows, cols], cols >= 1.

    Returns:
        int64 [rows]: the column of the path in each row; consecutive columns differ by at most 1,
        and the sum of ``errors`` along the path is minimal over all such paths.
    """
    e = np.asarray(errors, np.float64)
    if e.ndim != 2 or min(e.shape) < 1:
        raise ValueError(f"errors must be a non-empty 2-D array [rows, cols]; got shape {e.shape}.")
    cost = e.copy()
    for r in range(1, e.shape[0]):
        prev = cost[r - 1]
        left = np.concatenate([[np.inf], prev[:-1]])
        right = np.concatenate([prev[1:], [np.inf]])
        cost[r] += np.minimum(np.minimum(left, prev), right)
    path = np.empty(e.shape[0], np.int64)
    path[-1] = int(np.argmin(cost[-1]))
    for r in range(e.shape[0] - 2, -1, -1):
        lo = max(path[r + 1] - 1, 0)
        path[r] = lo + int(np.argmin(cost[r, lo:path[r + 1] + 2]))
    return path


def _cut_mask(block, target, left, top, overlap):
    """bool [p, p]: True where the new block shows after the boundary cuts through the overlaps."""
    p = block.shape[0]
    mask = np.ones((p, p), bool)
    cols, rows = np.arange(p), np.arange(p)
    if left:
        path = min_cut_path(((block[:, :overlap] - target[:, :overlap]) ** 2).sum(axis=-1))
        mask &= cols[None, :] >= path[:, None]
    if top:
        path = min_cut_path(((block[:overlap] - target[:overlap]) ** 2).sum(axis=-1).T)
        mask &= rows[:, None] >= path[None, :]
    return mask


class _OverlapSearch:
    """SSD between a masked target and every p x p block of the image, all positions at once."""

    def __init__(self, image, p):
        self.image = image.astype(np.float64)
        self.p = p
        self._energy = {}

    def errors(self, target, mask):
        """float64 [H-p+1, W-p+1]: sum over mask of (block - target)^2 for each block position."""
        key = mask.tobytes()
        if key not in self._energy:
            kernel = np.repeat(mask[..., None], self.image.shape[-1], axis=-1).astype(np.float64)
            self._energy[key] = signal.correlate(self.image ** 2, kernel, mode="valid", method="fft")[..., 0]
        masked = target * mask[..., None]
        cross = signal.correlate(self.image, masked, mode="valid", method="fft")[..., 0]
        return np.maximum(self._energy[key] - 2.0 * cross + float(np.sum(masked * target)), 0.0)


def image_quilting(image, out_hw, patch_size, overlap, num, seed=0, tolerance=0.1):
    """Efros & Freeman (2001) image quilting: outputs of any size from one image.

    Blocks of ``patch_size`` are placed in raster order with ``overlap`` pixels shared with the
    left and upper neighbours. The first block (and every block when ``overlap`` is 0) is a
    uniformly random image block; each later one is drawn uniformly among the image blocks whose
    overlap SSD is <= (1 + tolerance) * the smallest (plus 1e-9 per overlap value for round-off),
    then a minimum-error boundary cut decides, per pixel of the overlap, old or new.

    Args:
        image: float [H, W, C] in [0, 1], C in {1, 3}.
        out_hw: (h, w) of each output; the canvas is a whole number of blocks, then cropped.
        patch_size: block size p, 1 <= p <= min(H, W).
        overlap: 0 <= overlap < p.
        num: number of outputs.
        seed: int seed; the same seed gives the same outputs.
        tolerance: >= 0, relative slack over the best overlap error.

    Returns:
        float32 [num, h, w, C] in [0, 1].
    """
    image = check_image("image", image, 3)
    h, w = _out_hw(out_hw)
    p = check_patch_size("patch_size", patch_size, image)
    num = check_positive_int("num", num)
    if isinstance(overlap, bool) or int(overlap) != overlap or not 0 <= overlap < p:
        raise ValueError(f"overlap must be an integer in [0, patch_size={p}); got {overlap!r}.")
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0; got {tolerance!r}.")
    overlap, step = int(overlap), p - int(overlap)
    rows, cols = max(1, -(-(h - overlap) // step)), max(1, -(-(w - overlap) // step))
    search = _OverlapSearch(image, p)
    positions = (image.shape[0] - p + 1) * (image.shape[1] - p + 1)
    width = image.shape[1] - p + 1
    rng = np.random.default_rng(seed)
    out = np.empty((num, h, w, image.shape[-1]), np.float32)
    for n in range(num):
        canvas = np.zeros((rows * step + overlap, cols * step + overlap, image.shape[-1]), np.float64)
        for i in range(rows):
            for j in range(cols):
                y, x = i * step, j * step
                left, top = j > 0 and overlap > 0, i > 0 and overlap > 0
                target = canvas[y:y + p, x:x + p]
                if not (left or top):
                    index = int(rng.integers(positions))
                else:
                    mask = np.zeros((p, p), bool)
                    mask[:, :overlap] |= left
                    mask[:overlap, :] |= top
                    err = search.errors(target, mask).ravel()
                    slack = 1e-9 * mask.sum() * image.shape[-1]
                    candidates = np.flatnonzero(err <= err.min() * (1.0 + tolerance) + slack)
                    index = int(candidates[rng.integers(len(candidates))])
                by, bx = divmod(index, width)
                block = search.image[by:by + p, bx:bx + p]
                if left or top:
                    block = np.where(_cut_mask(block, target, left, top, overlap)[..., None], block, target)
                canvas[y:y + p, x:x + p] = block
        out[n] = canvas[:h, :w]
    return out
