"""A full disk, recognised whatever layer reports it (used by the export and the pusher)."""

from __future__ import annotations

import errno
import os

import tensorflow as tf


def is_disk_full(error: BaseException) -> bool:
    """True for a full disk or quota: OSError ENOSPC / EDQUOT, or TensorFlow's file-system error
    for it (`tf.io.gfile` raises `ResourceExhaustedError`, often with an empty message)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, tf.errors.ResourceExhaustedError) or \
        "No space left on device" in str(error)


def tree_bytes(folder: str) -> int:
    """Total size of the files under `folder` (0 when it cannot be read)."""
    try:
        return sum(tf.io.gfile.stat(os.path.join(root, name)).length
                   for root, _, files in tf.io.gfile.walk(folder) for name in files)
    except tf.errors.OpError:
        return 0
