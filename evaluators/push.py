"""Push a blessed SavedModel into a TF Serving model base path, atomically.

Layout: `SERVING_ROOT/MODEL_NAME/VERSION/` (saved_model.pb, variables/, assets/), VERSION an
integer one larger than the largest existing integer version (1 for the first). The copy goes
to a hidden `SERVING_ROOT/MODEL_NAME/.tmp-VERSION-UUID/` first (TF Serving only loads folders
whose names are integers, so it never sees it) and is then renamed into place, so a half-copied
version is never visible. On a local or POSIX file system the rename is atomic; on object stores
(gs://) tf.io.gfile renames object by object, so the hidden copy keeps the window short but not
zero. A failed copy removes its temporary folder and leaves no version behind.

The caller decides whether to push (only when the blessing says so).
"""

from __future__ import annotations

import hashlib
import os
import uuid

import tensorflow as tf

from trainers.disk_full import is_disk_full, tree_bytes


class PushError(ValueError):
    """The export is not a SavedModel, or the serving folder cannot take a new version."""


def _is_version(name: str) -> bool:
    return name.isdigit() and not name.startswith("0")


def existing_versions(model_root: str) -> list[int]:
    """Sorted integer versions under `model_root` (hidden temporary folders are ignored)."""
    if not tf.io.gfile.isdir(model_root):
        return []
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(model_root)]
    return sorted(int(n) for n in names if _is_version(n))


def served_model_dir(serving_root: str, model_name: str) -> str | None:
    """The folder of the version TF Serving serves by default (the largest), or None."""
    model_root = os.path.join(serving_root, model_name)
    versions = existing_versions(model_root)
    return os.path.join(model_root, str(versions[-1])) if versions else None


def copy_tree(src: str, dst: str) -> None:
    """Recursively copy folder `src` to `dst` (created) with tf.io.gfile; raises on any failure."""
    src = src.rstrip("/")
    for folder, subdirs, files in tf.io.gfile.walk(src):
        rel = folder[len(src):].lstrip("/")
        target = os.path.join(dst, rel) if rel else dst
        tf.io.gfile.makedirs(target)
        for sub in subdirs:
            tf.io.gfile.makedirs(os.path.join(target, sub.rstrip("/")))
        for name in sorted(files):
            tf.io.gfile.copy(os.path.join(folder, name), os.path.join(target, name), overwrite=False)


def _tree_digest(folder: str) -> str:
    """sha256 over the relative names and bytes of every file under `folder`."""
    folder = folder.rstrip("/")
    digest = hashlib.sha256()
    for root, _, files in sorted(tf.io.gfile.walk(folder)):
        rel = root[len(folder):].lstrip("/")
        for name in sorted(files):
            digest.update(f"{rel}/{name}\0".encode())
            with tf.io.gfile.GFile(os.path.join(root, name), "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def push_once(export_dir: str, serving_root: str, model_name: str) -> dict:
    """`push_model`, except when the largest served version already holds exactly this export.

    A pusher killed after its rename but before the orchestrator recorded the push is rerun
    with the same export; without this check the rerun would serve the same model again as a
    second version. Returns push_model's dict, with `"already_served": True` (and nothing
    copied) in that case.
    """
    latest = served_model_dir(serving_root, model_name)
    if latest is not None and tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")) \
            and _tree_digest(latest) == _tree_digest(export_dir):
        return {"pushed_dir": latest, "version": int(os.path.basename(latest)),
                "model_name": model_name, "already_served": True}
    return push_model(export_dir, serving_root, model_name)


def push_model(export_dir: str, serving_root: str, model_name: str, max_attempts: int = 5) -> dict:
    """Copy a SavedModel to `serving_root/model_name/<next version>/` atomically.

    Args:
      export_dir: folder holding `saved_model.pb` (any tf.io.gfile path).
      serving_root: TF Serving base folder (created if needed).
      model_name: letters, digits, `_` or `-`.
      max_attempts: retries with the next version when another pusher took the same version.

    Returns:
      {"pushed_dir": path of the new version folder, "version": int, "model_name": str}.

    Raises:
      PushError: no SavedModel in export_dir, a bad model name, no free version after
        max_attempts, or a full disk (one line naming the folder and the size needed; the
        served versions are untouched and the half-written copy is removed); other errors of
        the copy itself (tf.errors.OpError) propagate after cleanup.
    """
    if not model_name or not model_name.replace("_", "").replace("-", "").isalnum():
        raise PushError(f"model_name={model_name!r} must be letters, digits, '_' or '-'")
    if not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
        raise PushError(f"{export_dir!r} holds no saved_model.pb; pass the SavedModel export folder")
    model_root = os.path.join(serving_root, model_name)
    tf.io.gfile.makedirs(model_root)
    for _ in range(max_attempts):
        version = (existing_versions(model_root) or [0])[-1] + 1
        tmp = os.path.join(model_root, f".tmp-{version}-{uuid.uuid4().hex}")
        final = os.path.join(model_root, str(version))
        try:
            try:
                copy_tree(export_dir, tmp)
            except (OSError, tf.errors.OpError) as error:
                if not is_disk_full(error):
                    raise
                served = (existing_versions(model_root) or [None])[-1]
                raise PushError(
                    f"no space left on the device of {model_root} while copying the model there "
                    f"(it needs {tree_bytes(export_dir) / 1e6:.1f} MB): free space there and rerun; "
                    f"the served version ({served or 'none'}) is unchanged") from None
            if tf.io.gfile.exists(final):
                continue  # another pusher won this version; the finally clause cleans up
            tf.io.gfile.rename(tmp, final, overwrite=False)
            return {"pushed_dir": final, "version": version, "model_name": model_name}
        finally:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.rmtree(tmp)
    raise PushError(f"could not claim a new version under {model_root!r} after {max_attempts} tries")
