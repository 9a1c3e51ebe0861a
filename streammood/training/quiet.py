"""Keep TensorFlow's start-up chatter off the terminal of ``streammood train`` and ``evaluate``.

TensorFlow 2.21 prints C++ log lines that tell a user of those commands nothing:

- on import, twice (two of its libraries carry their own absl):
  ``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR``,
  then ``I... port.cc] oneDNN custom operations are on...`` and ``I... cudart_stub.cc] Could not
  find cuda drivers...``. They are printed before absl's logging is initialised, so
  ``TF_CPP_MIN_LOG_LEVEL`` does not reach them;
- at the first device query, on a machine without an NVIDIA driver:
  ``E... cuda_platform.cc] failed call to cuInit: ...`` (an error line; ``CUDA_VISIBLE_DEVICES``
  set to ``""`` or ``-1`` does not stop TensorFlow from calling ``cuInit``);
- later, INFO and WARNING lines (``cpu_feature_guard``, the LiteRT converter's ``Reading
  SavedModel from...``), which ``TF_CPP_MIN_LOG_LEVEL=2`` does hide when set before the import.

:func:`quiet_tensorflow` sets the levels; :func:`import_tensorflow` imports TensorFlow and queries
its devices with file descriptor 2 captured (:func:`streammood.native.filter_native_stderr`),
drops exactly those lines and writes everything else back (Python warnings, other threads' output,
TensorFlow's fatal and unexpected error lines). GPUs stay visible: where a driver is installed,
training can use them. ``TF_CPP_MIN_LOG_LEVEL=0`` in the environment turns all of this off, for
debugging TensorFlow itself.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from types import ModuleType

from streammood.native import filter_native_stderr

log = logging.getLogger(__name__)

__all__ = ["import_tensorflow", "is_tensorflow_chatter", "quiet_tensorflow"]

LOG_LEVEL = "2"
"""``TF_CPP_MIN_LOG_LEVEL`` set unless the environment has one: C++ INFO and WARNING lines off,
ERROR and FATAL kept."""

_ABSL_PREAMBLE = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
)
_CPP_LINE = re.compile(
    rb"^(?:(?P<sev>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ "  # I0000 00:00:1796.2 15145 port.cc:153]
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<old_sev>[IWEF]) )"  # TF < 2.16: 2024-01-02 ..: I
    rb"(?P<file>[^\s:\]]+):\d+\] (?P<message>.*)$"
)
"""A line of TensorFlow's C++ logging (absl's format, or the one before TensorFlow 2.16)."""
_CPU_GUARD_TAIL = re.compile(
    rb"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler"
)
_BENIGN_ERRORS = re.compile(rb"^Unable to register cu(?:DNN|FFT|BLAS) factory")
"""Error lines of GPU builds that every import prints (plugins registered twice)."""
_CUINIT_FAILED = re.compile(rb"^failed call to cuInit")


def _verbose() -> bool:
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"


def _no_nvidia_driver() -> bool:
    return not os.path.exists("/proc/driver/nvidia/version")


def is_tensorflow_chatter(line: bytes) -> bool:
    """Whether one line TensorFlow prints at start-up is chatter (dropped by
    :func:`import_tensorflow`).

    Parameters
    ----------
    line : bytes
        One line of file descriptor 2, without its line ending.

    Returns
    -------
    bool
        True for absl's pre-initialisation notice, C++ INFO and WARNING lines, the CPU-feature
        notice's second line, the cuDNN/cuFFT/cuBLAS double-registration errors, and the
        ``cuInit`` failure on a machine without an NVIDIA driver. Fatal lines and other error
        lines are kept.
    """
    if line == _ABSL_PREAMBLE or _CPU_GUARD_TAIL.match(line):
        return True
    m = _CPP_LINE.match(line)
    if m is None:
        return False
    severity, message = m["sev"] or m["old_sev"], m["message"]
    if severity in (b"I", b"W"):
        return True
    if severity == b"E":
        return bool(_BENIGN_ERRORS.match(message)) or (
            bool(_CUINIT_FAILED.match(message)) and _no_nvidia_driver()
        )
    return False


def quiet_tensorflow() -> None:
    """Lower TensorFlow's log levels for this process and the processes it starts.

    Sets ``TF_CPP_MIN_LOG_LEVEL`` to :data:`LOG_LEVEL` unless the environment has it, and the
    Python loggers of TensorFlow (``tensorflow``: retracing hints...) and absl to ERROR. Call it
    before TensorFlow is imported (C++ reads the variable once); calling it again does nothing
    new. With ``TF_CPP_MIN_LOG_LEVEL=0`` only the variable is left as it is.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", LOG_LEVEL)
    if _verbose():
        return
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging
    except ImportError:  # pragma: no cover - absl comes with TensorFlow
        return
    absl_logging.set_verbosity(absl_logging.ERROR)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with its start-up chatter dropped (see the module docstring).

    Calls :func:`quiet_tensorflow`, then imports TensorFlow and lists its physical devices (the
    ``cuInit`` call) with file descriptor 2 captured, which takes a few seconds on the first call.
    openSMILE's library must be loaded before
    (:func:`streammood.features.smile.load_library`).

    Returns
    -------
    module
        ``tensorflow``; as it is when it was already imported (its start-up lines are out then).
    """
    quiet_tensorflow()
    if "tensorflow" in sys.modules or _verbose():
        import tensorflow as tf

        return tf

    def load() -> ModuleType:
        import tensorflow as tf

        tf.config.list_physical_devices()  # TensorFlow's cuInit, inside the capture
        return tf

    tf, dropped = filter_native_stderr(load, is_tensorflow_chatter)
    log.debug("TensorFlow %s imported; %d start-up log lines dropped", tf.__version__, len(dropped))
    return tf
