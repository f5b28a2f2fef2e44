"""The stderr filter: known-harmless lines go, real errors stay, nothing is lost at exit."""

import os
import select
import subprocess
import sys
import textwrap
import threading

import pytest

from pipeline import logfilter
from pipeline.logfilter import LineFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One real example per NOISE entry, in the order of logfilter.NOISE.
NOISE_EXAMPLES = [
    "2026-12-01 05:15:24.026165: E external/local_xla/xla/stream_executor/cuda/cuda_dnn.cc:10575] "
    "Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when one "
    "has already been registered",
    "E0000 00:00:1733000000.123456   12345 meta_optimizer.cc:966] remapper failed: "
    "INVALID_ARGUMENT: Mutation::Apply error: fanout 'gradient_tape/energy_16_1/act1/LeakyRelu/"
    "LeakyReluGrad' exist for missing node 'energy_16_1/conv1/BiasAdd'.",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "2026-12-01 05:16:45.214119: W tensorflow/compiler/tf2tensorrt/utils/py_utils.cc:38] "
    "TF-TRT Warning: Could not find TensorRT",
    "WARNING:absl:ArtifactQuery.property_predicate is not supported.",
    "WARNING:absl:TF_USE_LEGACY_KERAS is set to 0, which will not use Keras 2. Tensorflow "
    "Transform is only compatible with Keras 2. Please set TF_USE_LEGACY_KERAS=1.",
]
MORE_NOISE = [  # the other plugins and the TF >= 2.17 prefix of the same message
    "2026-12-01 05:15:23.998888: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] "
    "Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT when one "
    "has already been registered",
    "E0000 00:00:1733000000.123456   12345 cuda_blas.cc:1418] Unable to register cuBLAS factory: "
    "Attempting to register factory for plugin cuBLAS when one has already been registered",
    "2026-12-01 05:20:01.000001: E tensorflow/core/grappler/optimizers/meta_optimizer.cc:961] "
    "remapper failed: INVALID_ARGUMENT: Mutation::Apply error: fanout 'gradient_tape/energy_32/"
    "act3/LeakyRelu/LeakyReluGrad' exist for missing node 'energy_32/conv3_1/BiasAdd'.",
]
REAL_E = ("2026-12-01 05:15:24.100000: E tensorflow/core/framework/op_kernel.cc:1816] "
          "OP_REQUIRES failed at conv_ops.cc:1068 : RESOURCE_EXHAUSTED: OOM when allocating tensor")
REAL_F = ("2026-12-01 05:15:24.100000: F tensorflow/core/framework/tensor_shape.cc:45] Check "
          "failed: NDIMS == dims() (2 vs. 3)")
DEPRECATION = [
    "WARNING:tensorflow:From /venv/lib/python3.10/site-packages/tensorflow_gan/python/eval/"
    "classifier_metrics.py:1157: calling map_fn_v2 (from tensorflow.python.ops.map_fn) with "
    "back_prop=False is deprecated and will be removed in a future version.",
    "Instructions for updating:",
    "back_prop=False is deprecated. Consider using tf.stop_gradient instead.",
    "Instead of:",
    "results = tf.map_fn(fn, elems, back_prop=False)",
    "Use:",
    "results = tf.nest.map_structure(tf.stop_gradient, tf.map_fn(fn, elems))",
]

DEPRECATED_RECORD = ("From /x/summary_iterator.py:27: tf_record_iterator (from tensorflow.python."
                     "lib.io.tf_record) is deprecated and will be removed in a future version.\n"
                     "Instructions for updating:\nUse eager execution and: \n"
                     "`tf.data.TFRecordDataset(path)`")


def test_every_noise_pattern_has_an_example_and_a_reason():
    assert len(NOISE_EXAMPLES) == len(logfilter.NOISE)
    for (pattern, reason), line in zip(logfilter.NOISE, NOISE_EXAMPLES):
        assert len(reason) > 30, pattern
        assert not LineFilter().keep(line), line


@pytest.mark.parametrize("line", MORE_NOISE)
def test_other_forms_of_known_noise_are_dropped(line):
    assert not LineFilter().keep(line)


@pytest.mark.parametrize("line", [
    REAL_E, REAL_F, "[train] step 3/3 (stops at the max_steps limit), 2 s elapsed",
    "Traceback (most recent call last):", "ValueError: bad image", "ERROR:absl:something broke",
    "WARNING:absl:ArtifactQuery.property_predicate is not supported. But this is new.",
    "E0000 00:00:1733000000.1 1 cuda_dnn.cc:1] Unable to register cuDNN factory: driver missing",
    # not from TensorFlow's C++ logging (no prefix):
    "remapper failed: INVALID_ARGUMENT: fanout 'x/LeakyReluGrad' exist for missing node",
])
def test_real_errors_and_ordinary_lines_are_kept(line):
    assert LineFilter().keep(line)


def test_deprecation_block_is_dropped_whole_and_the_next_record_kept():
    lf = LineFilter()
    kept = [line for line in DEPRECATION + [REAL_E, "ingest: done"] if lf.keep(line)]
    assert kept == [REAL_E, "ingest: done"]
    assert lf.dropped == len(DEPRECATION)


def test_a_notice_without_advice_ends_at_once():
    lf = LineFilter()
    assert not lf.keep(DEPRECATION[0])
    assert lf.keep("pyramid: done in 1.7s")


def test_a_pause_ends_a_block():
    lf = LineFilter()
    assert not any(lf.keep(line) for line in DEPRECATION)
    lf.end_burst()
    assert lf.keep("pyramid: done in 1.7s")  # a plain line after the notice was complete


def test_filter_text_keeps_line_endings():
    text = "\n".join(MORE_NOISE + ["kept line", REAL_F]) + "\n"
    assert LineFilter().filter_text(text) == f"kept line\n{REAL_F}\n"


def _run(script: str, env_extra=None, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop(logfilter.VERBOSE_ENV, None)
    env.pop(logfilter.STDERR_TTY_ENV, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                          env=env, timeout=timeout, cwd=ROOT)


NOISY_SCRIPT = f"""
    import os, subprocess, sys, time
    from pipeline import logfilter
    print("installed", logfilter.install(verbose=os.environ.get("TEST_FLAG") == "--verbose"))
    sys.stdout.flush()
    noise = {NOISE_EXAMPLES + MORE_NOISE!r}
    for line in noise[:3]:
        os.write(2, (line + "\\n").encode())  # fd level, as C++ does
    os.write(2, ({REAL_E!r} + "\\n").encode())
    sys.stderr.write("\\n".join({DEPRECATION!r}) + "\\n")  # one piece, as Python logging writes it
    sys.stderr.flush()
    time.sleep(0.3)  # then a pause, as between log records of different processes
    import logging  # a deprecation record in this process: dropped whole, as a record
    logging.getLogger("tensorflow").warning({DEPRECATED_RECORD!r})
    code = "import os; os.write(2, " + repr((noise[3] + "\\nchild real line\\n").encode()) + ")"
    subprocess.run([sys.executable, "-c", code], check=True)  # inherits the filtered fd 2
    for line in noise[3:]:
        os.write(2, (line + "\\n").encode())
    sys.stderr.write("last line without newline")
"""


def test_end_to_end_fd_level_filter_in_a_fresh_process():
    result = _run(NOISY_SCRIPT)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert result.stdout.decode().strip() == "installed True"
    assert err == f"{REAL_E}\nchild real line\nlast line without newline", err


def test_verbose_and_env_var_show_everything():
    for env_extra in ({"TEST_FLAG": "--verbose"}, {logfilter.VERBOSE_ENV: "1"}):
        result = _run(NOISY_SCRIPT, env_extra)
        err = result.stderr.decode()
        assert result.returncode == 0, err
        assert result.stdout.decode().strip() == "installed False"
        for line in NOISE_EXAMPLES + MORE_NOISE + DEPRECATION + [REAL_E, "child real line"]:
            assert line in err
        assert DEPRECATED_RECORD in err


def test_fatal_line_survives_abort():
    result = _run(f"""
        import os
        from pipeline import logfilter
        logfilter.install()
        os.write(2, ({NOISE_EXAMPLES[0]!r} + "\\n" + {REAL_F!r} + "\\n").encode())
        os.abort()  # as LOG(FATAL) does: no atexit, no flush
    """)
    assert result.returncode != 0
    assert result.stderr.decode() == REAL_F + "\n"


def test_uncaught_exception_traceback_is_shown():
    result = _run(f"""
        import os
        from pipeline import logfilter
        logfilter.install()
        os.write(2, ({NOISE_EXAMPLES[0]!r} + "\\n").encode())
        raise RuntimeError("real failure")
    """)
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in err and "RuntimeError: real failure" in err
    assert "cuDNN" not in err


def test_pump_forwards_progress_bar_redraws_before_the_newline():
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()
    pumping = threading.Thread(target=logfilter.pump, args=(read_end, out_write))
    pumping.start()
    bar = b"\r[evaluate] sampling  10%|#  \r[evaluate] sampling  20%|##"
    os.write(write_end, bar)
    shown = b""
    while len(shown) < len(bar) and select.select([out_read], [], [], 5.0)[0]:
        shown += os.read(out_read, 65536)
    assert shown == bar  # on screen although its line is not finished
    os.write(write_end, b"\n" + NOISE_EXAMPLES[4].encode() + b"\nok\n")
    os.close(write_end)
    pumping.join(timeout=5)
    os.close(out_write)
    rest = os.read(out_read, 65536)
    for fd in (read_end, out_read):
        os.close(fd)
    assert rest == b"\nok\n"


def test_install_leaves_a_captured_stderr_alone(capsys):
    assert logfilter.install() is False  # pytest's capture replaced sys.stderr
