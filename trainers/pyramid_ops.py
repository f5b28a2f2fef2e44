"""Multi-grid pyramid ops in pure TensorFlow: exact box-average down, nearest-neighbour up, and the
Laplacian pyramid (coarsest image plus residuals) built from them.

The multi-grid model sees every training image at several square resolutions ("grids"), e.g.
1, 4, 16, 32: the image of grid S is the exact average of each (H/S)x(W/S) block of the full
image, and a coarse image goes back up by repeating each pixel (nearest neighbour). Both ops are
used by the Beam pyramid stage (`components/pyramid_beam.py`) and by the trainer, so the data the
model trains on and the pyramids it builds itself at run time are the same numbers.

For one image (PatchGenCN), `scale_sizes` / `resize_image` / `scale_pyramid` give a pyramid of
non-square scales with a constant non-integer factor between them (antialiased bicubic, each
scale resized from the full image).

All images are NHWC float tensors (float32 unless the input is another float type); the ops do not
clip or rescale, so pixels in [0, 1] stay in [0, 1].
"""

from __future__ import annotations

from typing import Iterable

import tensorflow as tf


def _static_hw(images: tf.Tensor, name: str) -> tuple[int, int, int]:
    """Return (H, W, C) of a rank-4 NHWC tensor with static spatial and channel sizes."""
    if images.shape.rank != 4:
        raise ValueError(f"{name}: images must be rank 4 [N, H, W, C], got shape {images.shape}")
    _, height, width, channels = images.shape
    if height is None or width is None or channels is None:
        raise ValueError(f"{name}: images need static H, W and C, got shape {images.shape}; "
                         "set the shape (e.g. tf.ensure_shape) before calling")
    return int(height), int(width), int(channels)


def _as_float(images) -> tf.Tensor:
    images = tf.convert_to_tensor(images)
    if not images.dtype.is_floating:
        images = tf.cast(images, tf.float32)
    return images


def box_downsample(images, size: int) -> tf.Tensor:
    """Exact box average of every (H/size)x(W/size) block.

    Args:
      images: [N, H, W, C] float tensor (integer inputs are cast to float32), H and W static.
      size: output side; must divide H and W.

    Returns:
      [N, size, size, C] tensor of the input's float dtype; pixel (i, j) is the mean of the input
      block rows [i*H/size, (i+1)*H/size) x columns [j*W/size, (j+1)*W/size).

    Raises:
      ValueError: images not rank 4 with static H, W, C, or size does not divide H and W.
    """
    images = _as_float(images)
    height, width, channels = _static_hw(images, "box_downsample")
    size = int(size)
    if size < 1 or height % size or width % size:
        raise ValueError(f"box_downsample: size {size} must be >= 1 and divide the image size "
                         f"{height}x{width}; choose grids where each size divides the next")
    if size == height and size == width:
        return images
    fh, fw = height // size, width // size
    blocks = tf.reshape(images, [-1, size, fh, size, fw, channels])
    # Mean over block columns, then rows: two short float32 reductions are ~10x more accurate
    # than one reduction over fh*fw values (about 2e-7 vs 5e-6 for a 256x256 block).
    return tf.reduce_mean(tf.reduce_mean(blocks, axis=4), axis=2)


def nearest_upsample(images, size: int) -> tf.Tensor:
    """Nearest-neighbour upsampling: every pixel becomes a (size/s)x(size/s) block.

    Args:
      images: [N, s, s, C] float tensor (integer inputs are cast to float32), s static.
      size: output side; must be a multiple of s.

    Returns:
      [N, size, size, C] tensor of the input's float dtype.

    Raises:
      ValueError: images not rank 4 / not square, or size is not a multiple of s.
    """
    images = _as_float(images)
    height, width, channels = _static_hw(images, "nearest_upsample")
    size = int(size)
    if height != width:
        raise ValueError(f"nearest_upsample: images must be square, got {height}x{width}")
    if size < height or size % height:
        raise ValueError(f"nearest_upsample: size {size} must be a multiple of the input size "
                         f"{height}; choose grids where each size divides the next")
    if size == height:
        return images
    factor = size // height
    tiled = tf.reshape(images, [-1, height, 1, width, 1, channels])
    tiled = tf.tile(tiled, [1, 1, factor, 1, factor, 1])
    return tf.reshape(tiled, [-1, size, size, channels])


def build_pyramid(images, grids: Iterable[int]) -> dict[int, tf.Tensor]:
    """Box-average pyramid of a batch at every grid size.

    Every level is averaged directly from the full-resolution images (not from the next finer
    level), so each value is one mean over its block.

    Args:
      images: [N, H, H, C] float tensor in [0, 1] (integer inputs are cast to float32).
      grids: sizes S, each dividing H; the largest must equal H.

    Returns:
      dict S -> [N, S, S, C] tensor for every S in `grids` (the largest is `images` itself).

    Raises:
      ValueError: empty grids, a size that does not divide H, or max(grids) != H.
    """
    images = _as_float(images)
    height, width, _ = _static_hw(images, "build_pyramid")
    grids = [int(g) for g in grids]
    if not grids:
        raise ValueError("build_pyramid: grids is empty; give sizes such as 1,4,16,"
                         f"{height}")
    if height != width:
        raise ValueError(f"build_pyramid: images must be square, got {height}x{width}")
    if max(grids) != height:
        raise ValueError(f"build_pyramid: the largest grid {max(grids)} must equal the image "
                         f"size {height}; set grids to end at {height}")
    return {size: box_downsample(images, size) for size in grids}


# ---------------------------------------------------------------------------------------------
# Laplacian pyramid (LAPGAN, Denton et al. 2015): every level is the nearest-upsampled coarser
# level plus a residual, so an image is exactly its coarsest level plus the sum of the upsampled
# residuals (exact in real arithmetic; float32 rounding of one add/subtract per level).

def _sizes(sizes: Iterable[int], name: str) -> list[int]:
    sizes = [int(s) for s in sizes]
    if not sizes:
        raise ValueError(f"{name}: sizes is empty; give increasing sizes such as 8,16,32")
    for small, big in zip(sizes, sizes[1:]):
        if big <= small or big % small:
            raise ValueError(f"{name}: sizes {sizes}: {big} must be larger than and a multiple "
                             f"of {small}")
    return sizes


def laplacian_pyramid(pyramid: dict, sizes: Iterable[int]) -> tuple[tf.Tensor, dict[int, tf.Tensor]]:
    """Laplacian levels of a box pyramid: the coarsest image and the residual of every finer size.

    Args:
      pyramid: {S: [N, S, S, C] float tensor} holding at least every size in `sizes` (e.g. the
        output of `build_pyramid`, or a pyramid batch's grids keyed by size).
      sizes: increasing sizes s_0 < s_1 < ..., each a multiple of the previous.

    Returns:
      (coarse [N, s_0, s_0, C], {s_k: residual [N, s_k, s_k, C]} for k >= 1) with
      residual_{s_k} = pyramid[s_k] - nearest_upsample(pyramid[s_{k-1}], s_k); residuals lie in
      [-1, 1] for pixels in [0, 1].

    Raises:
      ValueError: bad sizes, or a size missing from the pyramid.
    """
    sizes = _sizes(sizes, "laplacian_pyramid")
    missing = [s for s in sizes if s not in pyramid]
    if missing:
        raise ValueError(f"laplacian_pyramid: the pyramid lacks sizes {missing} (has {sorted(pyramid)})")
    levels = {s: _as_float(pyramid[s]) for s in sizes}
    residuals = {big: levels[big] - nearest_upsample(levels[small], big)
                 for small, big in zip(sizes, sizes[1:])}
    return levels[sizes[0]], residuals


def laplacian_from_images(images, sizes: Iterable[int]) -> tuple[tf.Tensor, dict[int, tf.Tensor]]:
    """`laplacian_pyramid` of full-size images: the box pyramid at `sizes`, then the residuals.

    Args:
      images: [N, H, H, C] float tensor (integers are cast to float32); max(sizes) must be H.
      sizes: increasing sizes, each a multiple of the previous, the last equal to H.
    """
    sizes = _sizes(sizes, "laplacian_from_images")
    return laplacian_pyramid(build_pyramid(images, sizes), sizes)


def reconstruct_laplacian(coarse, residuals: dict) -> tf.Tensor:
    """The finest image from the coarsest one and the residuals (inverse of `laplacian_pyramid`).

    Args:
      coarse: [N, s_0, s_0, C] float tensor.
      residuals: {S: [N, S, S, C]} for the finer sizes (any order; applied in increasing S).

    Returns:
      [N, S_max, S_max, C]: x_{s_k} = nearest_upsample(x_{s_{k-1}}, s_k) + residual_{s_k}, no clipping.
    """
    x = _as_float(coarse)
    for size in sorted(int(s) for s in residuals):
        x = nearest_upsample(x, size) + tf.cast(residuals[size], x.dtype)
    return x


# ---------------------------------------------------------------------------------------------
# Scale pyramid of one image (PatchGenCN, Zheng et al. 2021): non-square scales with a constant
# non-integer factor between them, every one resized directly from the finest image.

def scale_sizes(height: int, width: int, factor: float, min_side: int) -> list[tuple[int, int]]:
    """(h, w) of every scale, coarsest first; the finest is (height, width).

    Scale k from the finest is (round(height * factor**k), round(width * factor**k)), for k = 0,
    1, ... as long as the shorter side is still >= min_side (Python's round: halves to even).

    Args:
      height, width: the finest image's size in pixels.
      factor: the ratio between neighbouring scales, in (0, 1), e.g. 0.75.
      min_side: the smallest allowed shorter side of the coarsest scale (>= 1).

    Returns:
      [(h_0, w_0), ..., (height, width)] with h_0, w_0 the coarsest; at least one scale.

    Raises:
      ValueError: factor not in (0, 1), min_side < 1, or min(height, width) < min_side.
    """
    height, width, min_side, factor = int(height), int(width), int(min_side), float(factor)
    if not 0.0 < factor < 1.0:
        raise ValueError(f"scale_sizes: factor={factor} must be in (0, 1), e.g. 0.75")
    if min_side < 1:
        raise ValueError(f"scale_sizes: min_side={min_side} must be >= 1")
    if min(height, width) < min_side:
        raise ValueError(f"scale_sizes: the image is {height}x{width} (HxW), its shorter side is below "
                         f"min_side={min_side}; lower pyramid.min_side or give a bigger image")
    sizes = [(height, width)]
    while True:
        k = len(sizes)
        size = (round(height * factor**k), round(width * factor**k))
        if min(size) < min_side or size == sizes[-1]:
            break
        sizes.append(size)
    return sizes[::-1]


def resize_image(images, size) -> tf.Tensor:
    """Resize images to (h, w) with antialiased bicubic, clipped to [0, 1].

    Downscaling with `antialias=True` widens the bicubic kernel by the scale factor (a low-pass
    filter, no aliasing); bicubic can overshoot at edges, hence the clip. A size equal to the
    input's returns the input unchanged (as float32).

    Args:
      images: float [N, H, W, C] in [0, 1] (integers are cast to float32), H, W, C static.
      size: (h, w) output size, each >= 1.

    Returns:
      float32 [N, h, w, C] in [0, 1].
    """
    images = tf.cast(_as_float(images), tf.float32)
    height, width, _ = _static_hw(images, "resize_image")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ValueError(f"resize_image: size {(h, w)} must be >= 1 on both sides")
    if (h, w) == (height, width):
        return images
    out = tf.image.resize(images, [h, w], method="bicubic", antialias=True)
    return tf.clip_by_value(out, 0.0, 1.0)


def scale_pyramid(images, sizes) -> list[tf.Tensor]:
    """Every scale of a batch, each resized directly from the finest images (not chained).

    Args:
      images: float [N, H, W, C] in [0, 1] (integers are cast to float32).
      sizes: [(h, w), ...] coarsest first (e.g. `scale_sizes(H, W, ...)`); the last must be (H, W).

    Returns:
      [float32 [N, h_k, w_k, C]] in the order of `sizes`; the last is the input itself.

    Raises:
      ValueError: empty sizes, or the last size is not the images' (H, W).
    """
    images = tf.cast(_as_float(images), tf.float32)
    height, width, _ = _static_hw(images, "scale_pyramid")
    sizes = [(int(h), int(w)) for h, w in sizes]
    if not sizes or sizes[-1] != (height, width):
        raise ValueError(f"scale_pyramid: the last (finest) size of {sizes} must be the image size "
                         f"({height}, {width})")
    return [resize_image(images, size) for size in sizes]
