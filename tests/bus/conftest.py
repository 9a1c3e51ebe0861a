"""Fixtures of the bus tests: mood messages and private ``redis-server`` processes."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from streammood.bus.embedded import redis_server_binary
from streammood.bus.schema import ModelRef, MoodMessage


def make_message(source: str = "src1", seq: int = 0, **overrides: object) -> MoodMessage:
    """A valid mood message for step ``seq``."""
    fields: dict = dict(
        source=source, seq=seq, t_start=seq * 0.5, t_end=seq * 0.5 + 0.5,
        valence=0.25, arousal=-0.5, quadrant="PP",
        probs={"AP": 0.1, "AN": 0.05, "PP": 0.7, "PN": 0.15},
        window_steps=min(seq + 1, 60), model=ModelRef("cnn-lstm", "1"), emitted_at=1.7e9 + seq,
    )
    fields.update(overrides)
    return MoodMessage(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real ``redis-server`` on a fixed port that a test can stop (SIGKILL) and start again.

    ``persist``: append-only file, fsync on every write, so a restart finds everything an
    acknowledged write put there. ``extra``: more ``redis-server`` arguments.
    """

    def __init__(
        self, port: int, workdir: Path, *, persist: bool = False, binary: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.workdir = workdir
        self.persist = persist
        self.binary = binary or redis_server_binary()
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.persist
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", *persistence, "--dir", str(self.workdir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode} on start")
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.2, **self.client_kwargs).ping()
                return
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.02)
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    client_kwargs: dict = {}
    """Extra redis-py arguments needed to PING it (e.g. TLS files)."""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture()
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, restartable Redis server on its own port."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, restartable Redis server that keeps its data across SIGKILL (AOF, fsync
    always)."""
    server = RedisServer(free_port(), tmp_path, persist=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def message_factory() -> Callable[..., MoodMessage]:
    return make_message
