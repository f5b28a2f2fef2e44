"""MNIST-format idx files (plain or gzip) of unsigned bytes: finding and parsing them.

Used by the `idx:PREFIX` source of `components.sources` (which re-exports `read_idx`).
"""

from __future__ import annotations

import gzip

import numpy as np
import tensorflow as tf

from components.source_spec import SourceError, idx_file_names

_IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}


def read_idx(path: str, kind: str) -> np.ndarray:
    """Parse an idx file (plain or .gz) of unsigned bytes.

    Args:
      path: file path (gfile). kind: "images" (idx3: [N, rows, cols]) or "labels" (idx1: [N]).

    Returns:
      uint8 numpy array of the header's shape.

    Raises:
      SourceError: unreadable file, bad gzip, wrong magic number, or size not matching the header.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except tf.errors.OpError as err:
        raise SourceError(f"idx file {path} is unreadable: {err.message}") from None
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise SourceError(f"idx file {path} is not a valid gzip file ({err}); "
                              "re-download it or give the uncompressed file") from None
    expected = _IDX_MAGIC[kind]
    ndim = expected & 0xFF
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if magic != expected:
        got = "a file shorter than 4 bytes" if magic is None else f"0x{magic:08x}"
        raise SourceError(f"idx file {path}: magic number should be 0x{expected:08x} "
                          f"(unsigned-byte idx{ndim} {kind}), got {got}; is it the right file?")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise SourceError(f"idx file {path} is truncated inside its header")
    dims = [int(d) for d in np.frombuffer(data[4:header], ">u4")]
    if len(data) - header != int(np.prod(dims)):
        raise SourceError(f"idx file {path}: header says {dims} = {int(np.prod(dims))} bytes of "
                          f"data but the file has {len(data) - header}; it is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def find_idx(prefix: str, kind: str) -> str:
    """The existing file of an idx data set: PREFIX-KIND-idxN-ubyte or the same with .gz."""
    names = idx_file_names(prefix, kind)
    for candidate in names:
        if tf.io.gfile.exists(candidate):
            return candidate
    raise SourceError(f"idx:{prefix}: neither {names[0]} nor {names[1]} exists; give the prefix "
                      "before '-images-idx3-ubyte', e.g. idx:/usr/share/datasets/fashion-mnist/train")
