"""Running the dashboard: the listening socket, the warning for non-loopback addresses, the URL
to open, and uvicorn."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streammood.bus.keys import validate_prefix
from streammood.bus.live import find_redis
from streammood.errors import StreammoodError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
ENV_TOKEN = "STREAMMOOD_DASHBOARD_TOKEN"


class DashboardError(StreammoodError):
    """The dashboard cannot start (address in use, bad host)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    """The warning to print when the dashboard listens beyond loopback, else ``None``."""
    if is_loopback(host):
        return None
    where = "every network interface" if host in ("0.0.0.0", "::", "") else host
    if token:
        return (
            f"warning: the dashboard listens on {where}: anyone on the network who has the "
            "token can see it (the feed is not encrypted; put it behind TLS for untrusted "
            "networks)"
        )
    return (
        f"warning: the dashboard listens on {where} without a token: anyone on the network "
        "can see the moods; pass --token SECRET (or set $STREAMMOOD_DASHBOARD_TOKEN)"
    )


def dashboard_url(host: str, port: int, token: str | None = None) -> str:
    """The URL to open in a browser (with ``?token=`` when there is one)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    url = f"http://{shown}:{port}/"
    return f"{url}?token={token}" if token else url


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free one).

    Raises
    ------
    DashboardError
        The address is in use or cannot be bound.
    """
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise DashboardError(f"cannot listen on {host!r}: {exc.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = " (another dashboard running? pick one with --port)" if exc.errno == 98 else ""
        raise DashboardError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.set_inheritable(True)
    return sock


@dataclass
class DashboardPlan:
    """What :func:`serve` is about to run (for the CLI to print)."""

    redis_url: str
    redis_note: str
    url: str
    warning: str | None


def serve(
    redis_url: str | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
    prefix: str = "streammood",
    *,
    on_ready: Callable[[DashboardPlan], None] | None = None,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C, SIGTERM).

    Parameters
    ----------
    redis_url : str or None
        ``--redis-url`` (``None``: see :func:`find_redis`).
    host, port : str, int
        Where to listen (loopback by default; ``port`` 0 picks a free one).
    token : str or None
        Secret that protects the page and the feed.
    prefix : str
        Key prefix of the moods.
    on_ready : callable or None
        Called with the :class:`DashboardPlan` once the socket listens (before serving).
    """
    from streammood.dashboard.app import create_app

    validate_prefix(prefix)
    url, note = find_redis(redis_url)
    sock = bind(host, port)
    actual_port = sock.getsockname()[1]
    app = create_app(url, prefix, token or None)
    plan = DashboardPlan(
        url, note, dashboard_url(host, actual_port, token), exposure_warning(host, token)
    )
    if on_ready is not None:
        on_ready(plan)
    server = uvicorn_server(app)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


def uvicorn_server(app: Any) -> Any:
    """A ``uvicorn.Server`` for the dashboard ``app`` that ends every SSE stream first when it
    shuts down (open streams would otherwise hold the shutdown until its timeout)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            app.state.hub.close_feeds()
            await super().shutdown(sockets=sockets)

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=2, lifespan="on"
    )
    return Server(config)
