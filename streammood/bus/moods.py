"""Mood messages on Redis: publish (channel + capped history stream), read the history,
subscribe (history first, then live)."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from streammood.bus.connection import OUTAGES
from streammood.bus.keys import DEFAULT_PREFIX, Keys, SourceIdError, validate_source
from streammood.bus.outbox import Outbox
from streammood.bus.schema import MessageError, MoodMessage
from streammood.bus.sessions import FENCE_LUA, ProducerSession

log = logging.getLogger(__name__)

DEFAULT_MOOD_MAXLEN = 7_200
"""Approximate cap of a mood history stream (1 hour of steps)."""

_MOOD_WRITE = (
    FENCE_LUA
    + """
-- One mood: fenced, idempotent by (source, session, seq). KEYS: [1] mood stream, [2] lease
-- (producer lease, or the infer worker's source lease), [3] session hash (producer) or cursor
-- (worker), [4] last-published hash. ARGV: [1] json, [2] fence value (session or worker id),
-- [3] lease ms, [4] mode none|producer|worker, [5] channel, [6] maxlen, [7] message session
-- ('' none), [8] seq, [9] next seq (producer) or frame entry id (worker), [10] t_end, [11] now,
-- [12] 'S': SPUBLISH to the source's sharded channel (cluster), else PUBLISH.
-- Returns 1 written, -1 already published (not written again), 0 fenced.
local function newer(a, b)
  local am, an = string.match(a, '^(%d+)-(%d+)$')
  local bm, bn = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) > tonumber(bm) end
  return tonumber(an) > tonumber(bn)
end
local mode = ARGV[4]
if mode == 'producer' then
  if not producer_fence() then return 0 end
elseif mode == 'worker' then
  if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
end
local dup = false
if ARGV[7] ~= '' then
  local last = redis.call('HMGET', KEYS[4], 'session', 'seq')
  if last[1] == ARGV[7] and last[2] and tonumber(last[2]) >= tonumber(ARGV[8]) then
    dup = true
  end
end
if mode == 'worker' and ARGV[9] ~= '' then
  local cur = redis.call('GET', KEYS[3])
  if not cur or newer(ARGV[9], cur) then redis.call('SET', KEYS[3], ARGV[9]) end
end
if dup then return -1 end
redis.call(ARGV[12] == 'S' and 'SPUBLISH' or 'PUBLISH', ARGV[5], ARGV[1])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*', 'json', ARGV[1])
if ARGV[7] ~= '' then redis.call('HSET', KEYS[4], 'session', ARGV[7], 'seq', ARGV[8]) end
if mode == 'producer' then
  redis.call('HSET', KEYS[3], 'next_seq', ARGV[9], 't_next', ARGV[10], 'updated_at', ARGV[11])
end
return 1
"""
)
DEFAULT_CHANGES_MAXLEN = 1_000
"""Approximate cap of a changes stream (a few days of songs)."""


def change_event(msg: MoodMessage) -> dict[str, Any]:
    """The entry for a detected change, from the message that detected it: ``schema``,
    ``source``, ``seq`` and ``detected_at`` (the step that detected it, stream s),
    ``segment_start`` (stream s), ``lookahead_s`` (how late it was known, s), ``emitted_at``."""
    return {
        "schema": msg.schema,
        "source": msg.source,
        "seq": msg.seq,
        "segment_start": msg.segment_start,
        "detected_at": msg.t_end,
        "lookahead_s": round(msg.t_end - msg.segment_start, 3),
        "emitted_at": msg.emitted_at,
    }


class MoodPublisher(Outbox[MoodMessage]):
    """Publish mood messages: PUBLISH on ``{prefix}:mood`` and XADD (field ``json``) to the
    capped stream ``{prefix}:mood:{source}``.

    Parameters
    ----------
    client_or_url, prefix, buffer, batch, metrics_id, backoff_start, backoff_max
        See :class:`~streammood.bus.outbox.Outbox`.
    maxlen : int
        Approximate cap of each history stream (``XADD MAXLEN ~``).
    changes_maxlen : int
        Approximate cap of each changes stream: for a message that detected a change
        (``changed``), :func:`change_event` of it is appended to ``{prefix}:changes:{source}``.
    """

    kind = "moods"

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        prefix: str = DEFAULT_PREFIX,
        *,
        fence_worker: str | None = None,
        maxlen: int = DEFAULT_MOOD_MAXLEN,
        changes_maxlen: int = DEFAULT_CHANGES_MAXLEN,
        **kwargs: Any,
    ) -> None:
        self.fence_worker = None if fence_worker is None else validate_source(fence_worker)
        self.sessions: dict[str, ProducerSession] = {}
        self.fenced_moods = 0
        self.duplicates = 0
        """Messages not written because the same session's step was already published."""
        self._cursors: dict[tuple[str, int], str] = {}
        self._slots: list[tuple[int, int]] = []
        self.maxlen = maxlen
        self.changes_maxlen = changes_maxlen
        super().__init__(client_or_url, prefix, **kwargs)
        self._mood_write = self._client.register_script(_MOOD_WRITE)

    def bind(self, session: ProducerSession) -> None:
        """Write the moods of ``session.source`` through the producer session's fence
        (``listen``: the process is the source's producer)."""
        self.sessions[session.source] = session

    def publish(self, msg: MoodMessage, *, cursor: str | None = None) -> None:
        """Queue one message (returns at once; never raises on Redis trouble).

        ``cursor``: with ``fence_worker``, the frame entry id up to which the source's frames
        are done once this message is written; it is written in the same script."""
        if not isinstance(msg, MoodMessage):
            raise TypeError(f"expected a MoodMessage, got {type(msg).__name__}")
        if cursor is not None:
            self._cursors[(msg.source, msg.seq)] = cursor
            if len(self._cursors) > 4 * self._buffer:  # left by items dropped while Redis was away
                for key in list(self._cursors)[: len(self._cursors) - 2 * self._buffer]:
                    del self._cursors[key]
        self._submit(msg)

    def _append(self, pipe: redis.client.Pipeline, msg: MoodMessage, text: str, i: int) -> None:
        """Queue the guarded write of one message (PUBLISH + XADD, fenced, idempotent)."""
        src = msg.source
        session = self.sessions.get(src)
        if self.fence_worker is not None:
            mode, fence, lease_ms = "worker", self.fence_worker, 0
            second, cursor = self.keys.cursor(src), self._cursors.pop((src, msg.seq), "")
        elif session is not None:
            mode, fence, lease_ms = "producer", session.session, session.lease_ms
            second, cursor = self.keys.session(src), str(msg.seq + 1)
        else:
            mode, fence, lease_ms = "none", "", 0
            second, cursor = self.keys.session(src), ""
        lease = self.keys.lease(src) if mode == "worker" else self.keys.producer(src)
        self._slots.append((len(pipe.command_stack), i))
        self._mood_write(
            keys=[self.keys.mood_stream(src), lease, second, self.keys.published(src)],
            args=[
                text,
                fence,
                lease_ms,
                mode,
                self.keys.mood_channel_for(src),
                self.maxlen,
                msg.session or "",
                msg.seq,
                cursor,
                repr(msg.t_end),
                f"{time.time():.3f}",
                "S" if self.keys.cluster else "",
            ],
            client=pipe,
        )

    def _written(self, items: Sequence[MoodMessage], results: list) -> int:
        published = 0
        for slot, i in self._slots:
            outcome = results[slot]
            if outcome == 1:
                published += 1
                self._count_published(items[i].source)
            elif outcome == -1:
                self.duplicates += 1
            else:
                self.fenced_moods += 1
                if items[i].source not in self.fenced:
                    log.warning(
                        "moods of source %s refused: %s",
                        items[i].source,
                        "this worker no longer holds its lease"
                        if self.fence_worker
                        else "another producer session took the source over",
                    )
                self.fenced.add(items[i].source)
        with self._lock:
            self._extra.update(moods_fenced=self.fenced_moods, moods_duplicate=self.duplicates)
        return published

    def _write(self, pipe: redis.client.Pipeline, items: Sequence[MoodMessage]) -> None:
        self._slots = []
        for i, msg in enumerate(items):
            text = msg.to_json()
            self._append(pipe, msg, text, i)
            if msg.changed:
                pipe.xadd(
                    self.keys.changes_stream(msg.source),
                    {"json": json.dumps(change_event(msg), separators=(",", ":"))},
                    maxlen=self.changes_maxlen,
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
    keys = Keys.for_client(client, prefix)
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


CATCH_UP_MAX = DEFAULT_MOOD_MAXLEN
"""Most history entries read per source to catch up after a reconnect (the stream's cap)."""


class _Seen:
    """What a subscriber has yielded, per source: the last ``(seq, emitted_at)`` of each of the
    source's last few producer sessions."""

    SESSIONS = 4

    def __init__(self) -> None:
        self._by_source: dict[str, dict[str | None, tuple[int, float]]] = {}

    def is_new(self, msg: MoodMessage) -> bool:
        """Whether ``msg`` comes after everything yielded of its source and session (a
        producer without sessions that starts again at a lower ``seq`` is new if it was made
        later)."""
        last = self._by_source.get(msg.source, {}).get(_session(msg))
        if last is None:
            return True
        seq, emitted_at = last
        return msg.seq > seq or (_session(msg) is None and msg.emitted_at > emitted_at)

    def add(self, msg: MoodMessage) -> None:
        sessions = self._by_source.setdefault(msg.source, {})
        sessions.pop(_session(msg), None)
        sessions[_session(msg)] = (msg.seq, msg.emitted_at)
        while len(sessions) > self.SESSIONS:
            del sessions[next(iter(sessions))]

    def knows(self, source: str) -> bool:
        return source in self._by_source


def _session(msg: MoodMessage) -> str | None:
    return getattr(msg, "session", None)


def _caught_up(missed: list[MoodMessage], seen: _Seen, report: bool = True) -> list[MoodMessage]:
    """The messages read back from the history after a reconnect that were not yielded yet
    (marked as seen), logged once as a count (``report``)."""
    if missed and report:
        log.warning("caught up %d mood messages from the history", len(missed))
    fresh = []
    for msg in missed:
        if seen.is_new(msg):
            seen.add(msg)
            fresh.append(msg)
    return fresh


def missed_messages(
    client: redis.Redis,
    prefix: str,
    sources: Sequence[str],
    seen: _Seen,
    since_ms: int,
) -> list[MoodMessage]:
    """Messages of ``sources`` in their history streams that ``seen`` has not yielded, oldest
    first (merged by stream entry id). For a source ``seen`` knows, the stream is read back to
    the first message it has yielded; for another, back to ``since_ms`` (Unix ms, e.g. when the
    subscription began). At most :data:`CATCH_UP_MAX` entries per source."""
    keys = Keys.for_client(client, prefix)
    found: list[tuple[tuple[int, int], MoodMessage]] = []
    for src in sources:
        try:
            stream = keys.mood_stream(src)
        except SourceIdError:
            continue
        known, end, scanned, done = seen.knows(src), "+", 0, False
        while not done and scanned < CATCH_UP_MAX:
            entries = client.xrevrange(stream, max=end, count=min(200, CATCH_UP_MAX - scanned))
            if not entries:
                break
            for entry_id, fields in entries:
                scanned += 1
                eid = _id_key(_text(entry_id))
                if not known and eid[0] < since_ms:
                    done = True
                    break
                msg = _parse_mood(fields.get(b"json"), stream)
                if msg is None or msg.source != src:
                    continue
                if known and not seen.is_new(msg):
                    done = True
                    break
                found.append((eid, msg))
            end = f"({_text(entries[-1][0])}"
    found.sort(key=lambda e: e[0])
    return [m for _, m in found]


def _back_off(exc: Exception, delay: float) -> float:
    """Log a lost subscription, wait ``delay`` seconds; the next delay (doubling to 2 s)."""
    log.warning("mood subscription lost (%s); retrying in %.1f s", exc.__class__.__name__, delay)
    time.sleep(delay)
    return min(delay * 2, 2.0)


def subscribe_moods(
    client: redis.Redis,
    prefix: str = DEFAULT_PREFIX,
    source: str | None = None,
    history: int = 0,
    *,
    idle_timeout: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[MoodMessage]:
    """Mood messages as they arrive: first the last ``history`` from the stream(s), then live,
    each step exactly once across Redis outages.

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
        Valid messages; malformed ones are logged with the reason and skipped.

    Notes
    -----
    The channel is subscribed (and its confirmation awaited) before the history is read, so
    nothing falls between the two. When the connection drops, the subscription is
    re-established with backoff (0.1 s doubling to 2 s); once Redis confirms it, the history
    streams are read back to the last message yielded per source (by producer session and
    ``seq``), and what was published meanwhile is yielded, oldest first, before live messages
    go on; a message that arrives twice (channel and history, or an at-least-once redelivery) is
    yielded once. History survives a Redis restart only if Redis persists it (``appendonly``).
    """
    keys = Keys.for_client(client, prefix)
    if source is not None:
        validate_source(source)
    if keys.cluster:
        yield from _subscribe_cluster(client, keys, source, history, idle_timeout, stop)
        return
    pubsub = client.pubsub()
    seen = _Seen()
    since_ms = int(time.time() * 1000)
    try:
        delay = 0.1
        while True:  # Redis may be away at the start too: retried like a lost connection
            try:
                pubsub.subscribe(keys.mood_channel)  # before the history read: no gap
                end = time.monotonic() + 5.0
                while time.monotonic() < end:
                    item = pubsub.get_message(timeout=0.5)
                    if item is not None and item.get("type") == "subscribe":
                        break
                past = read_history(client, prefix, source, history)
                break
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                delay = _back_off(exc, delay)
                if stop is not None and stop.is_set():
                    return
        for msg in past:
            seen.add(msg)
            yield msg
        last = time.monotonic()
        delay = 0.1
        subscribed, catch_up = True, False
        while stop is None or not stop.is_set():
            poll = 0.5
            if idle_timeout is not None:
                poll = min(poll, max(0.0, last + idle_timeout - time.monotonic()))
            try:
                item = pubsub.get_message(timeout=poll)
                delay = 0.1
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                delay = _back_off(exc, delay)
                subscribed, catch_up, item = False, True, None
            kind = item.get("type") if item is not None else None
            if kind == "subscribe":
                subscribed = True
            elif kind == "message":
                msg = _parse_mood(item["data"], keys.mood_channel)
                wanted_msg = msg is not None and (source is None or msg.source == source)
                if wanted_msg and seen.is_new(msg):
                    seen.add(msg)
                    last = time.monotonic()
                    yield msg
            if catch_up and subscribed:
                try:
                    wanted = (
                        [source]
                        if source is not None
                        else sorted(_text(s) for s in client.smembers(keys.mood_sources))
                    )
                    missed = missed_messages(client, prefix, wanted, seen, since_ms)
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    continue  # still away: tried again after the next confirmation or read
                catch_up = False
                for msg in _caught_up(missed, seen):
                    last = time.monotonic()
                    yield msg
            elif (
                kind != "message"
                and idle_timeout is not None
                and time.monotonic() - last >= idle_timeout
            ):
                return
    finally:
        with contextlib.suppress(redis.exceptions.RedisError):
            pubsub.close()


SOURCES_EVERY = 1.0
"""Seconds between looks for new sources (cluster subscriber of all sources)."""


def _subscribe_cluster(
    client: RedisCluster,
    keys: Keys,
    source: str | None,
    history: int,
    idle_timeout: float | None,
    stop: threading.Event | None,
) -> Iterator[MoodMessage]:
    """:func:`subscribe_moods` on a Redis Cluster: each source's sharded channel
    (``SSUBSCRIBE {prefix}:mood:{{source}}``, on the shard of its keys); new sources are found in
    ``{prefix}:sources:mood`` every :data:`SOURCES_EVERY` s and caught up from their history
    from when the subscription began; after a lost connection everything is subscribed again
    and caught up, as on one server."""
    seen = _Seen()
    since_ms = int(time.time() * 1000)
    prefix = keys.prefix

    def wanted() -> list[str]:
        if source is not None:
            return [source]
        out = []
        for raw in client.smembers(keys.mood_sources):
            try:
                out.append(validate_source(_text(raw)))
            except SourceIdError:
                continue
        return sorted(out)

    pubsub = client.pubsub()
    subscribed: set[str] = set()

    def subscribe_new() -> list[str]:
        new = [s for s in wanted() if s not in subscribed]
        for src in new:
            pubsub.ssubscribe(keys.mood_channel_for(src))
            subscribed.add(src)
        return new

    try:
        last = time.monotonic()
        next_look = time.monotonic() + SOURCES_EVERY
        # the start is a catch-up too, so a shard away while the history is read is retried
        delay, catch_up, started = 0.1, True, False
        while stop is None or not stop.is_set():
            try:
                if catch_up:
                    if started:
                        with contextlib.suppress(
                            redis.exceptions.RedisError, RedisClusterException
                        ):
                            pubsub.close()
                        pubsub = client.pubsub()
                        subscribed.clear()
                    subscribe_new()
                    resumed = started
                    if not started:
                        past = read_history(client, prefix, source, history)
                        started = True
                        for msg in past:
                            seen.add(msg)
                            yield msg
                    missed = missed_messages(client, prefix, sorted(subscribed), seen, since_ms)
                    catch_up = False
                    for msg in _caught_up(missed, seen, report=resumed):
                        last = time.monotonic()
                        yield msg
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + SOURCES_EVERY
                    new = subscribe_new()
                    for msg in missed_messages(client, prefix, new, seen, since_ms):
                        if seen.is_new(msg):
                            seen.add(msg)
                            last = time.monotonic()
                            yield msg
                item = pubsub.get_sharded_message(timeout=0.2) if subscribed else None
                if not subscribed:
                    time.sleep(0.2)
                delay = 0.1
            except OUTAGES as exc:
                delay = _back_off(exc, delay)
                catch_up, item = True, None
            if item is not None and item.get("type") == "smessage":
                msg = _parse_mood(item["data"], _text(item.get("channel", "")))
                if (
                    msg is not None
                    and (source is None or msg.source == source)
                    and (seen.is_new(msg))
                ):
                    seen.add(msg)
                    last = time.monotonic()
                    yield msg
            elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                return
    finally:
        with contextlib.suppress(redis.exceptions.RedisError, RedisClusterException):
            pubsub.close()
