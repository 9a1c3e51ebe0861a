"""Fixtures of the bus tests: mood messages and private ``redis-server`` processes."""

from __future__ import annotations

import shutil
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


def _cluster_ports(n: int) -> list[int]:
    """``n`` free ports whose cluster bus ports (+10000) are free too (so below 55536)."""
    import random

    out: list[int] = []
    rng = random.Random()
    while len(out) < n:
        port = rng.randrange(20_000, 45_000)
        if port in out:
            continue
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        out.append(port)
    return out


class RedisClusterProcs:
    """A real Redis Cluster of three masters on loopback (``redis-server --cluster-enabled yes``
    on three ports, joined by ``redis-cli --cluster create``), each with an append-only file;
    a master can be SIGKILLed and started again (it rejoins from its nodes.conf)."""

    BINARY = "/usr/bin/redis-server"  # Redis 7: sharded pub/sub

    def __init__(self, workdir: Path) -> None:
        self.ports = _cluster_ports(3)
        self.workdir = workdir
        self.procs: dict[int, subprocess.Popen] = {}
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"

    def start_node(self, port: int) -> None:
        d = self.workdir / str(port)
        d.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [self.BINARY, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(d)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                redis.Redis(port=port, socket_connect_timeout=0.2).ping()
                return
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                time.sleep(0.02)
        raise RuntimeError(f"cluster node on port {port} did not start")

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        self.wait_ok()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node says ``cluster_state:ok``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok"
                       for p in self.ports):
                    return
            except redis.exceptions.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def port_of(self, key: str) -> int:
        """Port of the master that serves ``key``'s slot."""
        slot = redis.Redis(port=self.ports[0]).cluster("keyslot", key)
        for start, end, master, *_ in redis.Redis(port=self.ports[0]).execute_command(
            "CLUSTER", "SLOTS"
        ):
            if start <= slot <= end:
                return int(master[1])
        raise RuntimeError(f"no master for slot {slot}")

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait()

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)


@pytest.fixture()
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterProcs]:
    """A private three-master Redis Cluster on loopback."""
    if not Path(RedisClusterProcs.BINARY).is_file() or shutil.which("redis-cli") is None:
        pytest.skip("Redis 7 (redis-server, redis-cli) not installed")
    cluster = RedisClusterProcs(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
