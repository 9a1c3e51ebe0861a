"""Helpers of the dashboard and OSC tests: known mood messages put on a real Redis exactly as the
contract says (channel + history stream + sources set), a restartable private ``redis-server``,
a dashboard served by uvicorn in a thread, and a plain SSE client."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from streammood.bus.embedded import redis_server_binary

QUADRANT_SIGNS = {"AP": (1, 1), "AN": (-1, 1), "PP": (1, -1), "PN": (-1, -1)}


def mood(
    source: str,
    seq: int,
    valence: float,
    arousal: float,
    quadrant: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A valid mood message (as decoded JSON) for step ``seq``; ``extra`` adds fields (e.g.
    ``segment_start``, ``captured_at``) after the known ones."""
    if quadrant is None:
        quadrant = {(True, True): "AP", (False, True): "AN", (True, False): "PP"}.get(
            (valence > 0, arousal > 0), "PN"
        )
    probs = {q: 0.1 for q in ("AP", "AN", "PP", "PN")}
    probs[quadrant] = 0.7
    return {
        "schema": "1",
        "source": source,
        "seq": seq,
        "t_start": seq * 0.5,
        "t_end": seq * 0.5 + 0.5,
        "valence": valence,
        "arousal": arousal,
        "quadrant": quadrant,
        "probs": probs,
        "window_steps": min(seq + 1, 60),
        "model": {"name": "cnn-lstm", "version": "1"},
        "emitted_at": time.time(),
        **extra,
    }


def text(m: dict[str, Any]) -> str:
    """Compact JSON, as a publisher writes it."""
    return json.dumps(m, separators=(",", ":"))


def publish(
    client: redis.Redis,
    prefix: str,
    moods: Iterable[dict[str, Any]],
    *,
    live: bool = True,
    history: bool = True,
) -> list[str]:
    """Put moods on Redis like ``MoodPublisher``: PUBLISH (``live``), XADD to the source's
    history stream and SADD to the sources set (``history``). Returns the texts."""
    texts = []
    pipe = client.pipeline(transaction=False)
    for m in moods:
        t = text(m)
        texts.append(t)
        if live:
            pipe.publish(f"{prefix}:mood", t)
        if history:
            pipe.xadd(f"{prefix}:mood:{m['source']}", {"json": t}, maxlen=7200, approximate=True)
            pipe.sadd(f"{prefix}:sources:mood", m["source"])
    pipe.execute()
    return texts


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned), else fail."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def subscribers(client: redis.Redis, prefix: str) -> int:
    """How many clients are subscribed to the mood channel."""
    return int(dict(client.pubsub_numsub(f"{prefix}:mood"))[f"{prefix}:mood".encode()])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private ``redis-server`` on a fixed port, to stop and start again."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_for(up, 10, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


@dataclass
class Dashboard:
    """A dashboard served in this process (uvicorn in a thread)."""

    url: str
    port: int
    app: Any
    server: Any = field(repr=False)
    thread: threading.Thread = field(repr=False)

    @property
    def hub(self):
        return self.app.state.hub

    def get(self, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse()

    def json(self, path: str) -> Any:
        resp = self.get(path)
        assert resp.status == 200, (path, resp.status, resp.read())
        return json.loads(resp.read())


@contextlib.contextmanager
def run_dashboard(redis_url: str, prefix: str, token: str | None = None, **kwargs: Any):
    """Serve ``create_app(redis_url, prefix, token, **kwargs)`` on a free loopback port."""
    from streammood.dashboard.app import create_app
    from streammood.dashboard.server import bind, uvicorn_server

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(redis_url, prefix, token, **kwargs)
    server = uvicorn_server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, what="the dashboard to start")
    try:
        yield Dashboard(f"http://127.0.0.1:{port}/", port, app, server, thread)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class SSEClient:
    """Reads ``GET /events`` over a plain HTTP connection: :meth:`next` is the next ``data:``."""

    def __init__(self, port: int, path: str = "/events", headers: dict | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("content-type", "")
        self.comments: list[str] = []

    def next(self) -> str:
        """The payload of the next ``data:`` line (skips comments, ``retry:`` and blanks)."""
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("the event stream ended")
            line = line.decode().rstrip("\n")
            if line.startswith("data: "):
                return line[6:]
            if line.startswith(":"):
                self.comments.append(line)

    def take(self, n: int) -> list[str]:
        return [self.next() for _ in range(n)]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        self.conn.close()


def moods_line(n: int, source: str, start: int, quadrant: str, **extra: Any) -> list[dict]:
    """``n`` steps of ``source`` from ``seq = start`` deep inside ``quadrant``, moving slightly."""
    sv, sa = QUADRANT_SIGNS[quadrant]
    return [
        mood(source, start + i, sv * (0.55 + 0.01 * (i % 10)), sa * (0.6 - 0.01 * (i % 10)),
             quadrant, **extra)
        for i in range(n)
    ]

