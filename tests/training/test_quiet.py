"""TensorFlow's start-up chatter stays off stderr; streammood's and Python's warnings do not.

The ``train`` and ``evaluate`` commands themselves are checked in ``test_pipeline.py``
(:func:`assert_no_tensorflow_chatter` on their stderr)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streammood.training.quiet import is_tensorflow_chatter

ROOT = Path(__file__).resolve().parents[2]

CHATTER = ("oneDNN", "cuInit", "absl::InitializeLog", "TF_CPP", "tensorflow/core", "cudart_stub")
"""What TensorFlow 2.21 prints at start-up on a CPU machine, and older versions' file paths."""


def assert_no_tensorflow_chatter(stderr: str) -> None:
    """No TensorFlow start-up or C++ INFO/WARNING line in a command's stderr."""
    found = [line for line in stderr.splitlines() if any(word in line for word in CHATTER)]
    assert not found, "\n".join(found[:10])
    found = [line for line in stderr.splitlines() if is_tensorflow_chatter(line.encode())]
    assert not found, "\n".join(found[:10])


# Lines as TensorFlow 2.21 printed them in `streammood train` (CPU machine, no NVIDIA driver).
REAL_CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796218717.152041   15145 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors from "
    "different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796218717.153296   15145 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "I0000 00:00:1796218717.201909   15145 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other "
    "operations, rebuild TensorFlow with the appropriate compiler flags.",
    "W0000 00:00:1796218761.933526   15145 tf_tfl_flatbuffer_helpers.cc:364] Ignored "
    "output_format.",
    "I0000 00:00:1796218761.933966   15145 reader.cc:83] Reading SavedModel from: /tmp/tmphs4uyspt",
    "2024-01-02 12:00:00.123456: I tensorflow/core/platform/cpu_feature_guard.cc:182] This "
    "TensorFlow binary is optimized to use available CPU instructions.",
]

KEPT = [
    "F0000 00:00:1796218743.595928   15145 session.cc:52] Check failed: something real",
    "E0000 00:00:1796218743.595928   15145 op_kernel.cc:1830] OP_REQUIRES failed: out of memory",
    "/work/x.py:3: UserWarning: a Python warning",
    "data/Q1/MT0000040632.mp3: 4 MP3 frames had decode errors (libmpg123); audio decoded anyway",
    "Note: a line that looks like nothing TensorFlow prints",
]


@pytest.mark.parametrize("line", REAL_CHATTER)
def test_chatter_is_recognised(line):
    assert is_tensorflow_chatter(line.encode())


@pytest.mark.parametrize("line", KEPT)
def test_errors_and_warnings_are_kept(line):
    assert not is_tensorflow_chatter(line.encode())


def test_cuinit_failure_is_chatter_only_without_a_driver(monkeypatch):
    import streammood.training.quiet as quiet

    line = (
        b"E0000 00:00:1796218743.595928   15145 cuda_platform.cc:52] failed call to cuInit: "
        b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
    )
    monkeypatch.setattr(quiet, "_no_nvidia_driver", lambda: True)
    assert is_tensorflow_chatter(line)
    monkeypatch.setattr(quiet, "_no_nvidia_driver", lambda: False)  # a driver that fails: shown
    assert not is_tensorflow_chatter(line)


QUIET_IMPORT = r"""
import logging, os, sys, threading, warnings
from streammood.features.smile import load_library
from streammood.training.quiet import import_tensorflow

load_library()
done = threading.Event()
def chatter():  # another thread's output while TensorFlow's import is captured
    sys.stderr.write("another thread, during the import\n")
    sys.stderr.flush()
    done.set()
threading.Timer(0.5, chatter).start()
tf = import_tensorflow()
done.wait(5)
x = float(tf.reduce_sum(tf.constant([1.0, 2.0]) * 2))  # first op: devices, kernels
logging.getLogger("streammood.training").warning("a streammood warning")
warnings.warn("a Python warning", UserWarning)
print(x, os.environ["TF_CPP_MIN_LOG_LEVEL"], logging.getLogger("tensorflow").level)
"""


def test_import_tensorflow_drops_the_chatter_and_keeps_the_rest():
    proc = subprocess.run(
        [sys.executable, "-c", QUIET_IMPORT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["6.0", "2", str(logging.ERROR)]
    assert_no_tensorflow_chatter(proc.stderr)
    lines = proc.stderr.splitlines()
    assert "another thread, during the import" in lines
    assert "a streammood warning" in lines  # through logging's last-resort handler
    assert any(line.endswith("UserWarning: a Python warning") for line in lines)
