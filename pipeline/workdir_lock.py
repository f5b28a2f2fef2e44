"""One run per work folder: an advisory lock that an overlapping schedule cannot break.

`mgebm run` and `mgebm train` hold `WORKDIR/.mgebm.lock` (an exclusive `flock`) for as long as
they run. A second command on the same work folder stops at once with exit code 3 and one line
naming the holder (pid, host, command, start time), e.g. a nightly cron run that starts while
last night's is still training. The kernel drops the lock when the holder exits, however it
exits (a crash or `kill -9` included), so a lock never goes stale; the file's JSON is only
information for the message. Stdlib only (no TensorFlow), so the answer comes before anything
heavy is loaded.

Multi-worker training (`train.strategy=multi_worker_mirrored`): the workers of one job share
WORKDIR. `lock_name()` reads the standard `TF_CONFIG`: the chief (the `chief` task, or worker 0
when the cluster has none) holds the job lock `.mgebm.lock`, so another run still cannot start
there; every other task holds its own `.mgebm.TYPE-I.lock` (e.g. `.mgebm.worker-1.lock`), so
the job's workers do not lock each other out, while a second copy of the same worker is refused.

Scope: a local (or NFS-with-locking) work folder. A `gs://` work folder cannot be locked this
way; Kubeflow and Vertex AI give every run its own pipeline-root folder, so runs there do not
share state (see README, "Schedules").
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys

LOCK_NAME = ".mgebm.lock"
EXIT_BUSY = 3


def default_workdir(preset: str) -> str:
    """`runs/<preset>` (`:` -> `-`): where `mgebm run` works when no --workdir is given."""
    return os.path.join("runs", preset.replace(":", "-"))


def lock_name(environ=None) -> str:
    """The lock file this process takes in the work folder: LOCK_NAME, or `.mgebm.TYPE-I.lock`
    for a non-chief task named by a multi-task cluster in TF_CONFIG (see the module docstring).
    A missing or malformed TF_CONFIG gives LOCK_NAME (the trainer reports a bad one)."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    try:
        spec = json.loads(raw) if raw else {}
        cluster, task = dict(spec.get("cluster") or {}), dict(spec.get("task") or {})
        task_type, index = str(task.get("type", "")), int(task.get("index", 0))
    except (ValueError, TypeError, AttributeError):
        return LOCK_NAME
    if not task_type or sum(len(v) for v in cluster.values() if isinstance(v, list)) < 2:
        return LOCK_NAME
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and "chief" not in cluster)
    return LOCK_NAME if chief else f".mgebm.{task_type}-{index}.lock"


class WorkdirBusy(RuntimeError):
    """Another process holds the work folder; the message names it and the way out."""


def _holder(handle) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except ValueError:
        info = {}
    if not info:
        return "another process"
    return (f"pid {info.get('pid')} on {info.get('host')} (`{info.get('command')}`, "
            f"started {info.get('started')})")


@contextlib.contextmanager
def hold(workdir: str, command: str | None = None):
    """Hold `workdir`'s lock for the `with` block (the folder is created if missing).

    The lock file is `lock_name()`: `.mgebm.lock`, or a per-task one for a non-chief
    multi-worker task (TF_CONFIG).

    Args:
      workdir: the run's work folder (a local path; `gs://...` is not locked, see above).
      command: what to show a second process (default: this process's command line).

    Raises:
      WorkdirBusy: another process holds the lock.
    """
    if "://" in workdir:
        yield None
        return
    import fcntl  # pylint: disable=import-outside-toplevel  (POSIX only)

    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, lock_name())
    handle = open(path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusy(
                f"work folder {workdir} is in use by {_holder(handle)}; wait for it to finish, "
                "or give this run another --workdir") from None
        handle.seek(0)
        handle.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "command": command or " ".join(["mgebm"] + sys.argv[1:]),
                   "started": datetime.datetime.now().isoformat(timespec="seconds")}, handle)
        handle.flush()
        yield path
    finally:
        handle.close()  # closing the descriptor releases the flock
