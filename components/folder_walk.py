"""List the files of a `folder:` source safely: symbolic links, loops and duplicates.

Local folders are walked with `os.scandir`, remote ones (`gs://...`, no symbolic links) with
`tf.io.gfile.walk` (TensorFlow is imported only then). Names starting with "." are skipped.

Symbolic links (local folders):
  * The real folders are read first; then links to folders, nearest first (fewest links on the
    way, then by path), so a file is keyed by its real path when it has one.
  * A link to a folder is followed unless it points back up (to the folder holding it, one above
    it, the source root or one above the root: a loop) or to a folder already read; such a link is
    not followed and is listed in `skipped` with the reason. It adds no files, so its name never
    becomes a class label.
  * Every real file is listed once (by `os.path.realpath`): a second path to the same file (a link
    to a file, or a path through a followed link) is listed in `skipped`.
  * A link that leads nowhere (dangling, or a loop of links) is listed as a file, so that reading
    it gives an "unreadable" reject.
A folder that cannot be listed (e.g. no permission) is listed in `unreadable`.
"""

from __future__ import annotations

import os
import posixpath
from typing import NamedTuple

from components.source_spec import SourceError, is_remote


class FolderListing(NamedTuple):
    """files: sorted relative keys ("/"-joined); skipped / unreadable: sorted (key, reason)."""

    files: list[str]
    skipped: list[tuple[str, str]]
    unreadable: list[tuple[str, str]]


def _within(path: str, folder: str) -> bool:
    """True when `path` is `folder` or inside it (both real, absolute)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link
    except OSError:  # e.g. a loop of links (ELOOP): listed as a file, read as "unreadable"
        return False


def _list_local(root: str) -> FolderListing:
    root_real = os.path.realpath(root)
    visited = {root_real}
    found: list[tuple[int, str, str]] = []  # (links on the way, key, real path)
    links: list[tuple[int, str, str, str]] = []  # (links on the way, key, path, real parent)
    skipped, unreadable = [], []

    def scan(path: str, key: str, real: str, hops: int) -> None:
        stack = [(path, key, real)]
        while stack:
            folder, folder_key, folder_real = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as err:
                unreadable.append((folder_key or ".", f"unreadable: folder: {err.strerror or err}"))
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                entry_key = f"{folder_key}/{entry.name}" if folder_key else entry.name
                if entry.is_symlink():
                    if _is_dir(entry):
                        links.append((hops + 1, entry_key, entry.path, folder_real))
                    else:
                        found.append((hops + 1, entry_key, os.path.realpath(entry.path)))
                elif entry.is_dir(follow_symlinks=False):
                    entry_real = os.path.join(folder_real, entry.name)
                    if entry_real in visited:  # inside a followed link, read before
                        skipped.append((entry_key, f"{entry_real} was already read through "
                                                   "another path; not read twice"))
                    else:
                        visited.add(entry_real)
                        stack.append((entry.path, entry_key, entry_real))
                else:
                    found.append((hops, entry_key, os.path.join(folder_real, entry.name)))

    scan(root, "", root_real, 0)
    while links:
        batch, links = sorted(links), []
        for hops, key, path, parent_real in batch:
            target = os.path.realpath(path)
            if _within(parent_real, target) or _within(root_real, target):
                skipped.append((key, f"link to {target} points back up to a folder that holds it "
                                     "(a loop); not followed"))
            elif target in visited:
                skipped.append((key, f"link to {target}, a folder already read; not followed"))
            else:
                visited.add(target)
                scan(path, key, target, hops)

    first: dict[str, str] = {}
    files = []
    for _, key, real in sorted(found):
        if real in first:
            skipped.append((key, f"same file as {first[real]} ({real}); read once"))
        else:
            first[real] = key
            files.append(key)
    return FolderListing(sorted(files), sorted(skipped), sorted(unreadable))


def _list_remote(root: str) -> FolderListing:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if not tf.io.gfile.isdir(root):
        raise SourceError(f"folder:{root} does not exist or is not a folder; give a folder of images")
    root = root.rstrip("/")
    files = []
    for dirpath, _, filenames in tf.io.gfile.walk(root):
        sub = dirpath[len(root):].strip("/")
        if any(part.startswith(".") for part in sub.split("/") if part):
            continue
        files.extend(posixpath.join(sub, name) if sub else name
                     for name in filenames if not name.startswith("."))
    return FolderListing(sorted(files), [], [])


def list_folder(root: str) -> FolderListing:
    """List a folder source's files recursively (see the module docstring).

    Args:
      root: a local path or a remote URI (gs://...).

    Returns:
      FolderListing(files, skipped, unreadable); keys are relative to `root`, "/"-joined.

    Raises:
      SourceError: `root` is not a folder.
    """
    if is_remote(root):
        return _list_remote(root)
    if not os.path.isdir(root):
        raise SourceError(f"folder:{root} does not exist or is not a folder; give a folder of "
                          "images (PNG, JPEG, BMP, GIF, WebP or TIFF)")
    return _list_local(root)
