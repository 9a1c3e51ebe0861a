"""Consuming moods with ``redis.asyncio``: the raw JSON exactly as published (fields this version
does not know, such as ``segment_start`` or ``captured_at``, are kept), validated against the
schema; the history of a source; one live subscription that survives Redis restarts.

Used by the consumers of the bus that serve people (the dashboard, the OSC bridge).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from streammood.bus.connection import is_reachable, redact_url, resolve_redis_url
from streammood.bus.embedded import ensure_redis
from streammood.bus.keys import Keys, SourceIdError, validate_source
from streammood.bus.schema import MessageError, MoodMessage

log = logging.getLogger(__name__)

MAX_HISTORY = 7_200
"""Most history entries one request reads (the stream's cap: 1 hour of steps)."""


@dataclass(frozen=True)
class RawMood:
    """One valid mood message with its text as published.

    Attributes
    ----------
    text : str
        The JSON as published (one line).
    data : dict
        The decoded JSON, unknown fields included.
    message : MoodMessage
        The validated message (known fields only).
    """

    text: str
    data: dict[str, Any]
    message: MoodMessage

    @property
    def source(self) -> str:
        """Source id of the message."""
        return self.message.source


def parse_mood(raw: str | bytes | bytearray | None, where: str = "Redis") -> RawMood | None:
    """Decode and validate one published mood message; ``None`` (logged) if it is malformed.

    Parameters
    ----------
    raw : str or bytes or None
        The JSON text from the channel or a stream entry.
    where : str
        Key it came from, for the log line.
    """
    if raw is None:
        log.warning("skipping a mood entry without JSON from %s", where)
        return None
    try:
        message = MoodMessage.from_json(raw)  # the contract's checks, limits included
        text = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)
        data = json.loads(text)
    except MessageError as exc:
        log.warning("skipping malformed mood message from %s: %s", where, exc)
        return None
    except Exception as exc:  # noqa: BLE001 - foreign data must never stop a consumer
        log.warning("skipping unreadable mood message from %s: %s", where, type(exc).__name__)
        return None
    if "\n" in text or "\r" in text:  # one line per message (an SSE data line)
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return RawMood(text, data, message)


def async_client(url: str, *, timeout: float = 2.0) -> aioredis.Redis:
    """An asyncio client for ``url`` that fails fast (no retries: callers handle outages)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def read_sources(client: aioredis.Redis, keys: Keys) -> list[str]:
    """Sorted ids of the sources that have published moods (invalid ids skipped)."""
    out = []
    for raw in await client.smembers(keys.mood_sources):
        try:
            out.append(validate_source(_text(raw)))
        except SourceIdError:
            log.warning("skipping invalid source id %r in %s", raw, keys.mood_sources)
    return sorted(out)


async def read_history(
    client: aioredis.Redis, keys: Keys, source: str, count: int
) -> list[RawMood]:
    """The last ``count`` (at most :data:`MAX_HISTORY`) valid messages of ``source``, oldest
    first, as published."""
    count = max(0, min(int(count), MAX_HISTORY))
    if count == 0:
        return []
    stream = keys.mood_stream(source)
    entries = await client.xrevrange(stream, count=count)
    out = []
    for _entry_id, fields in reversed(entries):
        mood = parse_mood(fields.get(b"json"), stream)
        if mood is not None:
            out.append(mood)
    return out


async def read_metrics(client: aioredis.Redis, keys: Keys, name: str) -> dict[str, float | str]:
    """The metrics hash of a publisher or worker, numbers decoded (empty when absent)."""
    out: dict[str, float | str] = {}
    for k, v in (await client.hgetall(keys.metrics(name))).items():
        text = _text(v)
        try:
            out[_text(k)] = float(text)
        except ValueError:
            out[_text(k)] = text
    return out


def find_redis(cli_url: str | None) -> tuple[str, str]:
    """The Redis URL to watch and a line saying where it is (password redacted).

    A configured URL (``--redis-url``, ``$STREAMMOOD_REDIS_URL``) is used even when it does not
    answer yet: a consumer shows "Redis away" and keeps trying. With nothing configured the
    default address or a running embedded server is used (see
    :func:`~streammood.bus.embedded.ensure_redis`).
    """
    url = resolve_redis_url(cli_url)
    if url is None:
        endpoint = ensure_redis(None, start=False)
        return endpoint.url, endpoint.describe()
    if not is_reachable(url):
        return url, f"Redis at {redact_url(url)} does not answer yet; will keep trying"
    return url, f"using Redis at {redact_url(url)}"


class LiveMoods:
    """One subscription to the mood channel, kept up across Redis outages.

    Iterate it (``async for mood in LiveMoods(url, prefix)``) for every valid message published
    while it is subscribed; malformed messages are logged and skipped. When Redis goes away the
    iteration waits, reconnecting with backoff, and goes on once it is back (what was published
    meanwhile is only in the history streams).

    Parameters
    ----------
    url : str
        Redis URL.
    prefix : str
        Key prefix.
    on_state : callable or None
        Called with ``True`` each time the subscription is (re)established and ``False`` when
        it is lost.
    backoff_start, backoff_max : float
        Reconnection delays, seconds (doubling from the first to the second).
    poll : float
        Seconds between checks of :attr:`stopped` while no message arrives.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        on_state: Callable[[bool], None] | None = None,
        backoff_start: float = 0.2,
        backoff_max: float = 2.0,
        poll: float = 0.5,
    ) -> None:
        self.url = url
        self.keys = Keys(prefix)
        self.on_state = on_state
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.poll = poll
        self.connected = False
        self.stopped = False

    def stop(self) -> None:
        """End the iteration (within :attr:`poll` seconds)."""
        self.stopped = True

    def _set_state(self, up: bool) -> None:
        if up != self.connected:
            self.connected = up
            if self.on_state is not None:
                self.on_state(up)

    async def __aiter__(self) -> AsyncIterator[RawMood]:
        channel = self.keys.mood_channel
        delay = self.backoff_start
        while not self.stopped:
            client = async_client(self.url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                self._set_state(True)
                delay = self.backoff_start
                while not self.stopped:
                    item = await pubsub.get_message(timeout=self.poll)
                    if item is None or item.get("type") != "message":
                        continue
                    mood = parse_mood(item["data"], channel)
                    if mood is not None:
                        yield mood
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning(
                        "mood subscription to %s lost (%s); reconnecting",
                        redact_url(self.url),
                        exc.__class__.__name__,
                    )
                self._set_state(False)
            finally:
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await pubsub.aclose()
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await client.aclose()
            if not self.stopped:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        self._set_state(False)
