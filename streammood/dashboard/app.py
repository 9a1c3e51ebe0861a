"""The dashboard's web app (Starlette): the page, its assets, a small JSON API and the
Server-Sent Events feed. Pure wiring: :func:`create_app` builds everything from its arguments.

Endpoints
---------
``GET /``
    The page (``static/index.html``); assets under ``/static/``, all shipped in the package.
``GET /api/sources``
    ``{"sources": [{"source": ID, "metrics": {...}}, ...]}``: the sources that have published
    moods, with their metrics hash (``{prefix}:metrics:{source}``).
``GET /api/history/{source}?n=N``
    The last ``N`` (default 1200 = 10 min, at most 7200) mood messages of a source, oldest
    first, each exactly as published (a JSON array of objects).
``GET /api/status``
    ``{"redis": "up"|"away", "epoch": N, "clients": N, "clients_cut_off": N, "prefix": P}``;
    ``epoch`` counts (re)subscriptions to Redis: when it changes a client reads the history again.
``GET /events[?source=ID]``
    Server-Sent Events: each ``data:`` line is one mood message's JSON as published (all sources
    or one); comment lines keep the connection alive.

With a token, every endpoint wants it: ``?token=``, a ``Authorization: Bearer`` header, or the
cookie that opening ``/?token=...`` sets (then the page redirects to ``/``, token out of sight).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from streammood.bus.keys import Keys, SourceIdError, validate_source
from streammood.bus.live import MAX_HISTORY, async_client, read_history, read_metrics, read_sources
from streammood.dashboard.hub import DEFAULT_QUEUE_SIZE, FeedClosedError, Hub

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().with_name("static")
"""The page and its assets (package data)."""

DEFAULT_HISTORY = 1_200
"""Messages ``/api/history`` returns by default: 10 minutes of one source."""

KEEPALIVE_S = 15.0
"""Seconds between SSE comment lines when no message flows."""

RETRY_MS = 1_000
"""Reconnection delay an ``EventSource`` is told to use."""

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    # everything comes from this server: no CDN, no inline script, no framing
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _cookie_name(request: Request) -> str:
    return f"streammood_token_{request.url.port or 0}"


def token_ok(request: Request, token: str) -> bool:
    """Whether ``request`` carries ``token`` (query, bearer header or cookie)."""
    header = request.headers.get("authorization", "")
    offered = [
        request.query_params.get("token"),
        header[7:] if header.lower().startswith("bearer ") else None,
        request.cookies.get(_cookie_name(request)),
    ]
    return any(o is not None and hmac.compare_digest(o.encode(), token.encode()) for o in offered)


class TokenGate:
    """ASGI middleware: HTTP requests without the token get 401."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token and scope["type"] == "http" and not token_ok(Request(scope), self.token):
            response = PlainTextResponse(
                "streammood dashboard: this page needs its token; open the URL that "
                "'streammood dashboard' printed (it ends in ?token=...)\n",
                status_code=401,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(
    redis_url: str,
    prefix: str = "streammood",
    token: str | None = None,
    *,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    keepalive: float = KEEPALIVE_S,
) -> Starlette:
    """The dashboard app for the moods under ``prefix`` on ``redis_url``.

    Parameters
    ----------
    redis_url : str
        Redis URL (may hold a password; it is never shown).
    prefix : str
        Key prefix.
    token : str or None
        Secret every request must carry; ``None``: open (fine on loopback).
    queue_size : int
        Messages one client may lag behind before it is cut off.
    keepalive : float
        Seconds between SSE keep-alive comments.

    Returns
    -------
    Starlette
        ``app.state.hub`` is its :class:`~streammood.dashboard.hub.Hub` (started with the app).
    """
    keys = Keys(prefix)
    hub = Hub(redis_url, prefix, queue_size=queue_size)
    index_html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    shared: dict[str, aioredis.Redis] = {}  # the API's Redis client, made with the app's loop

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        shared["redis"] = async_client(redis_url)
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            with contextlib.suppress(RedisError, OSError):
                await shared["redis"].aclose()

    def redis() -> aioredis.Redis:
        return shared["redis"]

    async def index(request: Request) -> Response:
        if token and request.query_params.get("token"):
            response: Response = RedirectResponse("./", status_code=303)
            response.set_cookie(
                _cookie_name(request), token, httponly=True, samesite="strict", path="/"
            )
            return response
        return HTMLResponse(index_html, headers=PAGE_HEADERS)

    async def sources(request: Request) -> Response:
        try:
            ids = await read_sources(redis(), keys)
            out = [{"source": s, "metrics": await read_metrics(redis(), keys, s)} for s in ids]
        except (RedisError, OSError):
            return _redis_away()
        return JSONResponse({"sources": out})

    async def history(request: Request) -> Response:
        try:
            source = validate_source(request.path_params["source"])
        except SourceIdError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        try:
            n = int(request.query_params.get("n", DEFAULT_HISTORY))
        except ValueError:
            return JSONResponse({"error": "n must be an integer"}, status_code=400)
        if not 0 <= n <= MAX_HISTORY:
            return JSONResponse({"error": f"n must lie in 0..{MAX_HISTORY}"}, status_code=400)
        try:
            moods = await read_history(redis(), keys, source, n)
        except (RedisError, OSError):
            return _redis_away()
        body = "[" + ",".join(m.text for m in moods) + "]"
        return Response(body, media_type="application/json")

    async def status(request: Request) -> Response:
        s = hub.stats
        return JSONResponse(
            {
                "redis": "up" if s.redis_up else "away",
                "epoch": s.epoch,
                "clients": s.clients,
                "clients_cut_off": s.clients_cut_off,
                "received": s.received,
                "prefix": prefix,
            }
        )

    async def events(request: Request) -> Response:
        source = request.query_params.get("source")
        if source is not None:
            try:
                validate_source(source)
            except SourceIdError as exc:
                return PlainTextResponse(f"{exc}\n", status_code=400)
        feed = hub.add(source)  # before the response starts: nothing falls between

        async def stream() -> AsyncIterator[str]:
            try:
                yield f"retry: {RETRY_MS}\n: streammood moods\n\n"
                while True:
                    text = await feed.next(timeout=keepalive)
                    yield ": keepalive\n\n" if text is None else f"data: {text}\n\n"
            except FeedClosedError:
                return
            finally:
                hub.remove(feed)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/sources", sources),
            Route("/api/history/{source}", history),
            Route("/api/status", status),
            Route("/events", events),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.hub = hub
    if token:
        app.add_middleware(TokenGate, token=token)
    return app


def _redis_away() -> Response:
    return JSONResponse({"error": "Redis is away"}, status_code=503)
