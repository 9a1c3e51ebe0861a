"""Native libraries that print to file descriptor 2 themselves (libmpg123 inside libsndfile,
TensorFlow's C++ logging, LiteRT's delegate notice): run a call with that descriptor captured,
drop the lines that are known noise and write the rest back.

Pure process plumbing with no streammood imports, so every stage can use it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["filter_native_stderr"]

T = TypeVar("T")

_STDERR_LOCK = threading.RLock()
"""Held while file descriptor 2 is redirected. The redirection is process-wide, so captures from
several threads take turns; a nested capture in the same thread captures into the outer one."""


def _new_stderr_lock() -> None:  # a fork in mid-capture must not leave the child's lock held
    global _STDERR_LOCK
    _STDERR_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_stderr_lock)


def filter_native_stderr(
    call: Callable[[], T], is_noise: Callable[[bytes], bool]
) -> tuple[T, list[bytes]]:
    """Run ``call()`` with file descriptor 2 captured, and drop the lines ``is_noise`` picks.

    For C libraries that print to stderr themselves (libmpg123, TensorFlow's C++ logging).
    Descriptor 2 points at an anonymous in-memory file for the duration of the call only, so keep
    the call short. The lines that are not noise (Python warnings, other threads' output written
    meanwhile) are written back to descriptor 2 afterwards, in their order, a little late: another
    thread's line written just after the call may come out before them. Captures from several
    threads take turns (one lock). Where descriptor 2 cannot be duplicated (closed), the call runs
    uncaptured.

    Parameters
    ----------
    call : callable
        Takes no arguments. If it raises, descriptor 2 is restored and the lines that are not
        noise are written back before the exception propagates; the noise is dropped.
    is_noise : callable
        ``is_noise(line) -> bool`` for one captured line (bytes, without its line ending).

    Returns
    -------
    result : object
        What ``call()`` returned.
    noise : list of bytes
        The dropped lines, in order, without line endings.
    """
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:
            return call(), []
        try:
            sink = _anonymous_file()
        except OSError:
            os.close(saved)
            return call(), []
        try:
            try:
                os.dup2(sink, 2)
            except OSError:
                return call(), []
            try:
                result = call()
            finally:
                os.dup2(saved, 2)
                noise = _pass_through(_read_all(sink), is_noise)
        finally:
            os.close(sink)
            os.close(saved)
    return result, noise


def _anonymous_file() -> int:
    """An in-memory file in append mode: a write another thread started on descriptor 2 just
    before it was restored lands after what is there, never over it."""
    try:
        fd = os.memfd_create("streammood-stderr", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # not Linux
        fd, name = tempfile.mkstemp(prefix="streammood-stderr-")
        os.unlink(name)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    return fd


def _read_all(fd: int) -> bytes:
    """Everything in ``fd`` from its start, read with ``pread``: the file offset, which
    descriptor 2 shared while it pointed here, is neither used nor moved."""
    chunks, pos = [], 0
    while chunk := os.pread(fd, 1 << 16, pos):
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def _pass_through(data: bytes, is_noise: Callable[[bytes], bool]) -> list[bytes]:
    noise, keep = [], []
    for line in data.splitlines(keepends=True):
        bare = line.rstrip(b"\r\n")
        if is_noise(bare):
            noise.append(bare)
        else:
            keep.append(line)
    if keep:
        out = memoryview(b"".join(keep))
        try:
            while out:
                out = out[os.write(2, out) :]
        except OSError:  # stderr gone: nothing to show it on
            pass
    return noise
