"""Mood messages on Redis: publish (channel + capped history stream), read the history,
subscribe (history first, then live)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis

from streammood.bus.keys import DEFAULT_PREFIX, Keys, SourceIdError, validate_source
from streammood.bus.outbox import Outbox
from streammood.bus.schema import MessageError, MoodMessage

log = logging.getLogger(__name__)

DEFAULT_MOOD_MAXLEN = 7_200
"""Approximate cap of a mood history stream (1 hour of steps)."""


class MoodPublisher(Outbox[MoodMessage]):
    """Publish mood messages: PUBLISH on ``{prefix}:mood`` and XADD (field ``json``) to the
    capped stream ``{prefix}:mood:{source}``.

    Parameters
    ----------
    client_or_url, prefix, buffer, batch, metrics_id, backoff_start, backoff_max
        See :class:`~streammood.bus.outbox.Outbox`.
    maxlen : int
        Approximate cap of each history stream (``XADD MAXLEN ~``).
    """

    kind = "moods"

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        prefix: str = DEFAULT_PREFIX,
        *,
        maxlen: int = DEFAULT_MOOD_MAXLEN,
        **kwargs: Any,
    ) -> None:
        self.maxlen = maxlen
        super().__init__(client_or_url, prefix, **kwargs)

    def publish(self, msg: MoodMessage) -> None:
        """Queue one message (returns at once; never raises on Redis trouble)."""
        if not isinstance(msg, MoodMessage):
            raise TypeError(f"expected a MoodMessage, got {type(msg).__name__}")
        self._submit(msg)

    def _write(self, pipe: redis.client.Pipeline, items: Sequence[MoodMessage]) -> None:
        channel = self.keys.mood_channel
        for msg in items:
            text = msg.to_json()
            pipe.publish(channel, text)
            pipe.xadd(
                self.keys.mood_stream(msg.source),
                {"json": text},
                maxlen=self.maxlen,
                approximate=True,
            )
        pipe.sadd(self.keys.mood_sources, *{m.source for m in items})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


def _parse_mood(raw: Any, where: str) -> MoodMessage | None:
    try:
        return MoodMessage.from_json(raw)
    except MessageError as exc:
        log.warning("skipping malformed mood message from %s: %s", where, exc)
        return None


def read_history(
    client: redis.Redis, prefix: str = DEFAULT_PREFIX, source: str | None = None, count: int = 10
) -> list[MoodMessage]:
    """The last ``count`` mood messages of ``source`` (or of all sources, merged by stream
    time), oldest first. Malformed entries are logged and skipped."""
    keys = Keys(prefix)
    if count <= 0:
        return []
    sources = (
        [validate_source(source)]
        if source
        else sorted(_text(s) for s in client.smembers(keys.mood_sources))
    )
    entries: list[tuple[tuple[int, int], MoodMessage]] = []
    for src in sources:
        try:
            stream = keys.mood_stream(src)
        except SourceIdError:
            continue
        for entry_id, fields in client.xrevrange(stream, count=count):
            msg = _parse_mood(fields.get(b"json"), stream)
            if msg is not None:
                entries.append((_id_key(_text(entry_id)), msg))
    entries.sort(key=lambda e: e[0])
    return [m for _, m in entries[-count:]]


def subscribe_moods(
    client: redis.Redis,
    prefix: str = DEFAULT_PREFIX,
    source: str | None = None,
    history: int = 0,
    *,
    idle_timeout: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[MoodMessage]:
    """Mood messages as they arrive: first the last ``history`` from the stream(s), then live.

    Parameters
    ----------
    client : redis.Redis
        Connection (see :func:`~streammood.bus.connection.connect`).
    prefix : str
        Key prefix.
    source : str or None
        Only this source; ``None``: all.
    history : int
        Replay this many past messages first (oldest first).
    idle_timeout : float or None
        End the iteration after this many seconds without a message; ``None``: never.
    stop : threading.Event or None
        End the iteration when set (checked every 0.5 s).

    Yields
    ------
    MoodMessage
        Valid messages; malformed ones are logged with the reason and skipped. If the
        connection drops, the subscription is re-established (with backoff) and iteration
        goes on.
    """
    keys = Keys(prefix)
    if source is not None:
        validate_source(source)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(keys.mood_channel)  # before the history read: no gap between the two
        seen: set[tuple[str, int, float]] = set()
        for msg in read_history(client, prefix, source, history):
            seen.add((msg.source, msg.seq, msg.emitted_at))
            yield msg
        last = time.monotonic()
        delay = 0.1
        while stop is None or not stop.is_set():
            poll = 0.5
            if idle_timeout is not None:
                poll = min(poll, max(0.0, last + idle_timeout - time.monotonic()))
            try:
                item = pubsub.get_message(timeout=poll)
                delay = 0.1
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning(
                    "mood subscription lost (%s); retrying in %.1f s", exc.__class__.__name__, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                item = None
            if item is not None and item.get("type") == "message":
                msg = _parse_mood(item["data"], keys.mood_channel)
                if msg is None or (source is not None and msg.source != source):
                    continue
                if seen:
                    key = (msg.source, msg.seq, msg.emitted_at)
                    if key in seen:
                        seen.discard(key)
                        continue
                last = time.monotonic()
                yield msg
            elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                return
    finally:
        with contextlib.suppress(redis.exceptions.RedisError):
            pubsub.close()
