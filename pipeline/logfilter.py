"""Quiet logs: drop TensorFlow's known-harmless start-up noise from stderr, keep everything else.

`install(verbose=False)` (called once by `mgebm` right after argument parsing, before TensorFlow
is imported) routes file descriptor 2 through a filter, so that lines written by native code
(TensorFlow's C++ logging writes straight to fd 2, where no Python logging filter can see it),
by Python and by child processes (Beam workers inherit fd 2) all pass one list of patterns:

- a line matching one of `NOISE` (each entry says which harmless message it is and why it is
  harmless) is dropped;
- a TensorFlow deprecation notice (`... is deprecated and will be removed ...` followed by
  `Instructions for updating:` and free-form advice lines) is dropped as a whole block: the block
  ends at the first line that starts a new log record (`RECORD_START`), at a pause in the stream
  (the notice is written in one piece), or after `MAX_BLOCK_LINES` lines. In this process such
  notices are dropped whole, exactly, as log records (a `logging.Filter` on the `tensorflow`
  logger); the line rule is for child processes, where a line written by another process right
  after a notice, with no pause between, could be taken for advice;
- every other line (a Python traceback, an `E` or `F` line not on the list, ordinary output)
  passes unchanged.

`TF_CPP_MIN_LOG_LEVEL=3` would also hide real errors, hence patterns. `mgebm --verbose COMMAND`
or `MGEBM_VERBOSE=1` installs nothing: every line shows. (C++ INFO and WARNING lines stay
governed by `TF_CPP_MIN_LOG_LEVEL`, which the CLI sets to 2 unless it is set already.)

How: fd 2 becomes the write end of a pipe whose reader is a small child process running this
file (`python logfilter.py`, standard library only), writing to the original stderr. A child
process rather than a thread, so that a fatal `F` line followed by `abort()`, or a crash, is
still forwarded: the child drains the pipe until every writer is gone. At normal exit an `atexit`
hook puts the original stderr back on fd 2, closes the pipe and waits (a few seconds at most)
for the child to forward the last lines. An incomplete line that stays incomplete for
`IDLE_FLUSH_S`, or that holds a carriage return (a progress bar redrawing itself), is forwarded
as it is. The original stderr's terminal-ness is handed to progress bars through the
environment variable `MGEBM_STDERR_TTY` (`1` or `0`), since fd 2 itself is now a pipe.

The filter is not installed when `sys.stderr` is not the process's own stderr (e.g. under
pytest's output capture), so a host that redirects stderr keeps control of it.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import select
import signal
import subprocess
import sys

VERBOSE_ENV = "MGEBM_VERBOSE"
STDERR_TTY_ENV = "MGEBM_STDERR_TTY"
IDLE_FLUSH_S = 0.1
EXIT_WAIT_S = 5.0
MAX_BLOCK_LINES = 12

# The prefix of a C++ log line: TF <= 2.16 (TSL: `2026-12-01 05:15:23.998888: E file.cc:479] `)
# or absl C++ logging in TF >= 2.17 (`E0000 00:00:1733000000.123456   12345 file.cc:479] `).
_CPP = (r"(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]"
        r"|[IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+:\d+\]) ")

# (pattern, which harmless message it is and why it is harmless). Matched with re.search on one
# line without its newline. Add an entry only with a reason; never match a bare severity.
NOISE: tuple[tuple[str, str], ...] = (
    (_CPP + r"Unable to register cu(?:FFT|DNN|BLAS) factory: Attempting to register factory "
     r"for plugin cu(?:FFT|DNN|BLAS) when one has already been registered",
     "TensorFlow and its bundled XLA each register the CUDA FFT/DNN/BLAS plugins at import; the "
     "second registration is refused and the first one is used. Printed on every import, also "
     "on machines without a GPU; it does not affect results."),
    (_CPP + r"remapper failed: INVALID_ARGUMENT: Mutation::Apply error: fanout '[^']*LeakyReluGrad'"
     r" exist for missing node",
     "Grappler's remapper tries to fuse Conv2D+BiasAdd+LeakyRelu, but the Langevin input "
     "gradient needs the unfused pre-activation; the optimizer skips that fusion and the graph "
     "runs unfused and correct (docs/BENCHMARKS.md, section 1)."),
    (r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
     "absl C++ logging (TF >= 2.17) announcing where early log lines go; no event."),
    (_CPP + r"TF-TRT Warning: Could not find TensorRT$",
     "TensorRT is an optional GPU inference accelerator this project never uses."),
    (r"^WARNING:absl:ArtifactQuery\.property_predicate is not supported\.$",
     "TFX 1.16's input resolver with the local SQLite ML Metadata store: the query falls back to "
     "filtering artifacts in Python, with the same result."),
    (r"^WARNING:absl:TF_USE_LEGACY_KERAS is set to 0, which will not use Keras 2\. Tensorflow "
     r"Transform is only compatible with Keras 2\.",
     "tensorflow-transform (imported by TFX) warns about Keras 3; the pipeline does not use TF "
     "Transform (README, Troubleshooting)."),
)

# The first line of a TensorFlow deprecation notice, via Python logging (`WARNING:tensorflow:`)
# or absl's formatter (`W1201 05:15:23.998888 140 deprecation.py:50] `). The advice lines after
# it are dropped with it. Advice for developers of the calling code, not a run-time problem.
DEPRECATION_START = (r"^(?:WARNING:tensorflow:|W\d{4} [\d:.]+\s+\d+ deprecation\.py:\d+\] )"
                     r"From \S+: .* is deprecated and will be removed")

# A line that starts a new log record or program message: it ends a dropped block.
RECORD_START = (r"^(?:" + _CPP + r"|(?:DEBUG|INFO|WARNING|ERROR|CRITICAL|FATAL)[:\s]"
                r"|[IWEF]\d{4} |Traceback |\[\w|mgebm )")

_NOISE_RE = [re.compile(p) for p, _ in NOISE]
_BLOCK_RE = re.compile(DEPRECATION_START)
_RECORD_RE = re.compile(RECORD_START)


class LineFilter:
    """Decides line by line what reaches the user (the pattern logic, free of any I/O).

    Args:
      noise: compiled single-line patterns to drop (default: `NOISE`).
      block_start: compiled pattern of a block's first line (default: `DEPRECATION_START`).
      max_block_lines: advice lines at most dropped after a block's first line.
    """

    def __init__(self, noise=None, block_start=None, max_block_lines: int = MAX_BLOCK_LINES):
        self._noise = _NOISE_RE if noise is None else list(noise)
        self._block_start = _BLOCK_RE if block_start is None else block_start
        self._max_block_lines = max_block_lines
        self._in_block = 0  # advice lines dropped so far in the open block, plus one; 0 = none
        self.dropped = 0

    def keep(self, line: str) -> bool:
        """True when `line` (without its newline) should be shown."""
        if self._in_block == 1 and line.strip() != "Instructions for updating:":
            self._in_block = 0  # a one-line notice: no advice block follows
        if self._in_block:
            if _RECORD_RE.search(line) or self._in_block > self._max_block_lines:
                self._in_block = 0
            else:
                self._in_block += 1
                self.dropped += 1
                return False
        if self._block_start.search(line):
            self._in_block = 1
            self.dropped += 1
            return False
        if any(p.search(line) for p in self._noise):
            self.dropped += 1
            return False
        return True

    def end_burst(self) -> None:
        """The stream paused: a block written in one piece is over."""
        self._in_block = 0

    def filter_text(self, text: str) -> str:
        """The kept lines of `text` (a whole stream, as in tests); a pause is not modelled."""
        lines = text.splitlines(keepends=True)
        return "".join(line for line in lines if self.keep(line.rstrip("\r\n")))


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything; False when fd is gone (the caller then discards, never blocks writers)."""
    try:
        while data:
            data = data[os.write(fd, data):]
        return True
    except OSError:
        return False


def pump(in_fd: int = 0, out_fd: int = 1, line_filter: LineFilter | None = None,
         idle_flush_s: float = IDLE_FLUSH_S) -> None:
    """Forward in_fd to out_fd through the filter until end of file (the child's main loop)."""
    lf = line_filter or LineFilter()
    pending, partial_sent, alive = b"", False, True
    while True:
        if pending:
            ready, _, _ = select.select([in_fd], [], [], idle_flush_s)
            if not ready:  # an incomplete line stays incomplete: forward it as it is
                alive = alive and _write_all(out_fd, pending)
                pending, partial_sent = b"", True
                continue
        try:
            chunk = os.read(in_fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        out = []
        for raw in lines:
            if partial_sent or lf.keep(raw.decode("utf-8", "replace").rstrip("\r")):
                out.append(raw + b"\n")
            partial_sent = False
        if pending and b"\r" in pending:  # a progress bar redraws its line: show it now
            out.append(pending)
            pending, partial_sent = b"", True
        if not pending:
            lf.end_burst()
        if out and alive:
            alive = _write_all(out_fd, b"".join(out))
    if pending and alive and (partial_sent or lf.keep(pending.decode("utf-8", "replace"))):
        _write_all(out_fd, pending)


class _DeprecationRecordFilter(logging.Filter):
    """Drops TensorFlow deprecation records whole (exact in this process; the fd filter's block
    rule covers other processes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return not ("is deprecated and will be removed" in message
                    and "Instructions for updating" in message)


_STATE: dict = {}


def verbose_from_env() -> bool:
    """True when MGEBM_VERBOSE asks for every line (1, true, yes, on)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def install(verbose: bool = False) -> bool:
    """Filter fd 2 for the rest of this process and its children (see the module docstring).

    Args:
      verbose: show everything (also when MGEBM_VERBOSE is set): nothing is installed.

    Returns:
      True when the filter is active (also when it already was).
    """
    if "child" in _STATE:
        return True
    if verbose or verbose_from_env():
        return False
    if sys.stderr is None or sys.stderr is not sys.__stderr__:
        return False  # the host redirects stderr (e.g. pytest capture): leave fd 2 alone
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except OSError:
        return False
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__)],
                                 stdin=read_end, stdout=saved, stderr=saved,
                                 start_new_session=True)  # Ctrl-C stops us, not the filter
    except OSError:
        os.close(read_end)
        os.close(write_end)
        os.close(saved)
        return False
    os.close(read_end)
    os.environ[STDERR_TTY_ENV] = "1" if os.isatty(saved) else "0"
    os.dup2(write_end, 2)  # inheritable: child processes write through the filter too
    os.close(write_end)
    _STATE.update(child=child, saved=saved)
    logging.getLogger("tensorflow").addFilter(_DeprecationRecordFilter())
    atexit.register(_restore)
    return True


def _restore() -> None:
    """Put the original stderr back on fd 2 and let the filter forward the last lines."""
    child, saved = _STATE.get("child"), _STATE.get("saved")
    if child is None:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os.dup2(saved, 2)  # closes our last write end of the pipe: the child sees end of file
    try:
        child.wait(timeout=EXIT_WAIT_S)
    except subprocess.TimeoutExpired:  # a grandchild still holds the pipe: it drains later
        pass
    _STATE.clear()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pump()
