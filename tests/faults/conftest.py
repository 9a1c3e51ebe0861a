"""Fixtures of the fault suite: real processes (the CLI), private redis-servers on loopback that
are SIGKILLed and restarted, and what a test measures about them (RSS, counts)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bus.conftest import RedisServer, free_port
from tests.conftest import ROOT
from tests.workers.conftest import real_inputs  # noqa: F401 - a fixture, re-exported here


def spawn(*args: str, stdout=subprocess.DEVNULL) -> subprocess.Popen:
    """``python -m streammood ARGS`` as a real process (stderr kept for the failure message)."""
    return subprocess.Popen(
        [sys.executable, "-m", "streammood", *args], cwd=ROOT, stdout=stdout,
        stderr=subprocess.PIPE, text=True,
    )


def stop_all(procs: list[subprocess.Popen], timeout: float = 20.0) -> None:
    """SIGINT (a clean stop) every process still running, then wait; kill what hangs."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MiB (``VmRSS`` in ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@pytest.fixture()
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with an append-only file (fsync always), restartable after SIGKILL
    with its data."""
    server = RedisServer(free_port(), tmp_path, persist=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server without persistence (for tests that fill it with junk)."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()
