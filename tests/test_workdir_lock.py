"""One run per work folder: a second `mgebm run/train` on a busy folder exits 3 at once, naming the
holder; a crashed holder never leaves a stale lock."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import workdir_lock

_HOLDER = """
import sys, time
from pipeline import workdir_lock
with workdir_lock.hold(sys.argv[1], command="mgebm run --preset nightly"):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A separate process holding tmp_path/work's lock until killed."""
    workdir = str(tmp_path / "work")
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, workdir], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())
    assert proc.stdout.readline().strip() == "held"
    yield workdir, proc
    proc.kill()
    proc.wait()


def test_a_second_holder_is_refused_naming_the_first_and_a_killed_holder_frees_it(holder):
    workdir, proc = holder
    with pytest.raises(workdir_lock.WorkdirBusy) as err:
        with workdir_lock.hold(workdir):
            pass
    message = str(err.value)
    assert f"pid {proc.pid}" in message and "mgebm run --preset nightly" in message
    assert "another --workdir" in message and "\n" not in message
    proc.send_signal(signal.SIGKILL)  # a crash: no clean-up code runs
    proc.wait()
    with workdir_lock.hold(workdir, command="mgebm train") as path:
        info = json.loads(open(path).read())
        assert info["pid"] == os.getpid() and info["command"] == "mgebm train"


def test_the_lock_is_released_after_the_block_and_remote_folders_are_not_locked(tmp_path):
    workdir = str(tmp_path / "new" / "work")
    with workdir_lock.hold(workdir) as path:
        assert os.path.exists(path)
    with workdir_lock.hold(workdir):  # free again
        pass
    with workdir_lock.hold("gs://bucket/run") as path:
        assert path is None
    assert workdir_lock.default_workdir("mnist5k-multigrid:smoke") == os.path.join("runs", "mnist5k-multigrid-smoke")


@pytest.mark.parametrize("command", ["run", "train"])
def test_cli_exits_3_with_one_line_before_loading_tensorflow(holder, tmp_path, command):
    workdir, proc = holder
    pyramid = tmp_path / "pyramid"
    pyramid.mkdir()
    (pyramid / "metadata.json").write_text("{}")
    args = {"run": ["run", "--preset", "mnist5k-multigrid:smoke", "--workdir", workdir],
            "train": ["train", "--preset", "mnist5k-multigrid:smoke", "--pyramid", str(pyramid),
                      "--workdir", workdir]}[command]
    code = ("import sys; from pipeline.cli import main; rc = main(sys.argv[1:]); "
            "print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_ABSENT'); sys.exit(rc)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code] + args, capture_output=True, text=True,
                            cwd=os.getcwd(), timeout=120)
    assert result.returncode == workdir_lock.EXIT_BUSY, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"mgebm {command}: busy: work folder {workdir} is in use")
    assert f"pid {proc.pid}" in lines[0] and "TF_ABSENT" in result.stdout
    assert time.perf_counter() - start < 60
