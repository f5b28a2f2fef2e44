"""Decode one image file's bytes into uint8 pixels, safely: formats, modes, 16 bit, orientation, size.

Formats (by content, not by extension): PNG (incl. 16 bit and APNG), JPEG, BMP, GIF, WebP and TIFF
(incl. 16 bit, multi-page). Animated or multi-page files give their FIRST frame, with a note.

Why Pillow decodes everything: one decoder gives one behaviour for every format (TensorFlow
cannot read WebP or TIFF), the size is read from the header by the same library before any pixel
is decoded, and the EXIF orientation is read from the same object. The one exception is 16-bit
PNG with colour or alpha: Pillow keeps only the high byte of each channel (floor(v / 256)), so it
is decoded by `tf.io.decode_png(dtype=uint16)` to get round(v / 257) exactly (TensorFlow is
imported only then). 16-bit colour TIFF is Pillow's (high byte: at most one level from
round(v / 257)); 16-bit gray TIFF and PNG are exact.

Modes -> channels: 1 (bilevel) and L -> 1; LA -> 2; P (palette) -> RGB, or RGBA when the palette
has transparency; RGB, CMYK, YCbCr -> 3; RGBA -> 4. I;16* (16-bit gray) and I (32-bit integer,
which Pillow uses for some 16-bit sources; values clipped to 0..65535) -> 1 channel scaled by
round(v / 257). F (float) is refused: its value range is unknown.

Orientation: the EXIF orientation tag (values 2..8) is applied (the same transposes as
`PIL.ImageOps.exif_transpose`), so a photo taken sideways comes out upright.

Decompression bombs: a small file can claim a huge size (a 30000x30000 PNG needs 900 MB decoded).
An image whose header says width * height > max_pixels is refused with "too large: ..." before its
pixels are decoded.

Reduced-size JPEG decoding (`max_side`, for `file:` sources): a JPEG whose longer side is above
max_side is decoded directly at 1/2, 1/4 or 1/8 of its size through Pillow's `Image.draft` (the
DCT scaling of libjpeg), the smallest such size whose sides are still >= the target
`fit_longer_side(H, W, max_side)`; the caller then area-resizes to the target. A 4000x3000 photo
with max_side=100 is decoded at 500x375, never at full size.
"""

from __future__ import annotations

import contextlib
import io
import threading
import warnings
from typing import NamedTuple

import numpy as np
from PIL import (BmpImagePlugin, GifImagePlugin, Image, JpegImagePlugin, PngImagePlugin,
                 TiffImagePlugin, WebPImagePlugin)

# 100 megapixels is above the photos of nearly every camera (24-61 MP typical) and scanned pages,
# and an image that size still fits a worker's memory while it is decoded and resized (RGBA 8-bit:
# 400 MB; the float32 working copy of the crop: up to 1.2 GB). Larger files should be downscaled
# first, or data.max_pixels raised on a machine with the memory.
DEFAULT_MAX_PIXELS = 100_000_000

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")
# The plugin classes are opened directly (not through Image.open) so that only the sniffed format
# is tried and Pillow's own size check after the header (whose message has no WxH) does not run
# before ours.
_OPENERS = {"PNG": PngImagePlugin.PngImageFile, "JPEG": JpegImagePlugin.JpegImageFile,
            "BMP": BmpImagePlugin.BmpImageFile, "GIF": GifImagePlugin.GifImageFile,
            "WEBP": WebPImagePlugin.WebPImageFile, "TIFF": TiffImagePlugin.TiffImageFile}
_TO_RGB = ("RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_PILLOW_LOCK = threading.Lock()


class Decoded(NamedTuple):
    """`image` uint8 [H, W, C] (C in 1..4) and an optional `note`, or image None and a `reason`."""

    image: np.ndarray | None
    reason: str | None = None
    note: str | None = None


def sniff(data: bytes) -> str | None:
    """The format named by the first bytes (one of FORMATS), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"BM"):
        return "BMP"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    return None


@contextlib.contextmanager
def _pillow_limit(max_pixels: int):
    """Pillow's decompression-bomb limit = `max_pixels` for one decode, restored afterwards.

    Pillow has no per-call limit: it reads the module global `Image.MAX_IMAGE_PIXELS` at checks
    inside decoding (GIF frames, TIFF tiles). The global is set under a lock and restored in
    `finally`, and Pillow's warning (between 1x and 2x the limit) is raised as an error, so those
    checks agree with ours and nothing oversized is decoded with only a warning.
    """
    with _PILLOW_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = int(max_pixels)
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def too_large(width: int, height: int, max_pixels: int) -> str | None:
    """The "too large: ..." reason when width * height > max_pixels, else None."""
    if width * height <= max_pixels:
        return None
    return (f"too large: {width}x{height} = {width * height:,} pixels > data.max_pixels="
            f"{max_pixels:,}; downscale it or raise data.max_pixels")


def fit_longer_side(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(h, w) with the longer side = max_side and the aspect ratio kept (the shorter side rounded,
    >= 1); the input size when max_side is 0 or not smaller than the longer side (no upscaling)."""
    height, width, max_side = int(height), int(width), int(max_side)
    longer = max(height, width)
    if max_side <= 0 or longer <= max_side:
        return height, width
    scale = max_side / longer
    return (max_side if height == longer else max(1, round(height * scale)),
            max_side if width == longer else max(1, round(width * scale)))


def jpeg_draft(im: Image.Image, max_side: int):
    """Ask Pillow to decode a JPEG at a reduced size for `max_side` (see the module docstring).

    Returns:
      Pillow's `draft` answer (mode, box) when a reduced decode was configured, else None (not a
      JPEG, max_side 0, or the image is no larger than max_side).
    """
    if im.format != "JPEG" or max_side <= 0 or max(im.size) <= max_side:
        return None
    height, width = fit_longer_side(im.height, im.width, max_side)
    return im.draft(None, (width, height))


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to [H, W, C]: the transposes of ImageOps.exif_transpose."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](array)) if orientation in ops else array


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable); never decodes pixels for it."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1  # a late eXIf chunk would need a full decode; the PNG path loads before this
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError):
        return 1


def to_uint8_16bit(values: np.ndarray) -> np.ndarray:
    """16-bit values (any integer dtype; clipped to 0..65535) -> uint8 round(v / 257), exactly."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide + 128) // 257).astype(np.uint8)  # no ties: 257 is odd


def _pixels(im: Image.Image) -> tuple[np.ndarray | None, str | None]:
    """A loaded Pillow image -> (uint8 [H, W, C], None) or (None, reason)."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        return to_uint8_16bit(np.asarray(im))[..., None], None
    if mode == "F":
        return None, "bad image: 32-bit float pixels (mode F) have no known range; save as 8 or 16 bit"
    if mode == "1":
        im = im.convert("L")
    elif mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "RGBa"):
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in _TO_RGB:
        im = im.convert("RGB")
    elif mode not in ("L", "LA", "RGBA"):
        return None, f"bad image: pixel mode {mode} is not supported; save it as RGB or grayscale"
    array = np.asarray(im)
    return (array[..., None] if array.ndim == 2 else array), None


def _is_png16_color(data: bytes) -> bool:
    """PNG header: bit depth 16 with colour type 2 (RGB), 4 (gray+alpha) or 6 (RGBA)."""
    return len(data) > 25 and data[24] == 16 and data[25] in (2, 4, 6)


def _decode_png16(data: bytes) -> np.ndarray:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return to_uint8_16bit(tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy())


def short_error(err: BaseException) -> str:
    """The first line of an error's message, without TensorFlow's op decorations (<= 160 chars)."""
    text = getattr(err, "message", None) or str(err)
    text = text.split("}}", 1)[-1].split(" [Op:", 1)[0].strip()
    return text.splitlines()[0][:160] if text else type(err).__name__


def decode_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = 0) -> Decoded:
    """Decode one file's bytes (any of FORMATS; see the module docstring).

    Args:
      data: the file's content.
      max_pixels: refuse an image whose header says width * height > this (>= 1).
      max_side: > 0: a JPEG larger than this may come back reduced by 2, 4 or 8 (`jpeg_draft`),
        never below `fit_longer_side(H, W, max_side)`; the caller resizes. 0: full size.

    Returns:
      Decoded(uint8 [H, W, C] with C in 1..4, None, note or None), or Decoded(None, reason) with a
      reason starting "empty file", "not an image", "too large", "corrupt or truncated" or
      "bad image".
    """
    if not data:
        return Decoded(None, "empty file (0 bytes)")
    fmt = sniff(data)
    if fmt is None:
        return Decoded(None, "not an image: content is not PNG, JPEG, BMP, GIF, WebP or TIFF")
    note, size = None, "size unknown"
    with _pillow_limit(max_pixels):
        try:
            im = _OPENERS[fmt](io.BytesIO(data))
            size = f"{im.width}x{im.height}"
            reason = too_large(im.width, im.height, max_pixels)
            if reason:
                return Decoded(None, reason)
            frames = int(getattr(im, "n_frames", 1) or 1)
            if frames > 1:
                note = f"first frame only: the {fmt} file has {frames} frames; only the first is used"
            if fmt == "PNG" and _is_png16_color(data):
                array, reason = _decode_png16(data), None
            else:
                jpeg_draft(im, int(max_side))
                im.load()
                array, reason = _pixels(im)
            orientation = _orientation(im)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            return Decoded(None, f"too large: a {fmt} frame or tile is over data.max_pixels="
                                 f"{max_pixels:,} ({short_error(err)}); downscale it or raise "
                                 "data.max_pixels")
        except MemoryError:
            return Decoded(None, f"too large: out of memory while decoding this {fmt} ({size}); "
                                 "downscale it or lower data.max_pixels")
        except Exception as err:  # pylint: disable=broad-except  # any failure of an untrusted file
            return Decoded(None, f"corrupt or truncated {fmt}: {short_error(err)}")
    if reason:
        return Decoded(None, reason)
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4) or 0 in array.shape:
        return Decoded(None, f"bad image: decoded shape {array.shape}")
    return Decoded(_orient(array, orientation), None, note)
