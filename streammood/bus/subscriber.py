"""Reading the bus: mood messages (history + live) and feature frames (shared among workers).

Scaling out ``infer``
---------------------
A source's steps must be processed in order by the one worker that holds its model state, so
frames are *not* read through a consumer group (which would deal one source's entries out to
several workers). Instead each :class:`FrameReader` claims whole sources with an expiring lease
``{prefix}:lease:{source}`` (``SET NX PX``, renewed while the worker lives) and reads the streams
it owns with ``XREAD``. Workers announce themselves in ``{prefix}:workers``; each claims at most
its fair share ``ceil(sources / workers)`` and releases sources above that share, so adding a
worker rebalances within a few seconds. A worker records the entry id of the last frame it
processed in ``{prefix}:cursor:{source}``. The worker that takes a source over (after a
rebalance or a crash, once the lease expired) resumes after that cursor and first receives the
``warmup`` frames up to it again, flagged ``replay=True``: the model's output at a step depends
only on the last 60 steps, so replaying 59 steps rebuilds the state exactly and the messages it
publishes afterwards equal those the old owner would have published.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from streammood.bus.codec import FrameError, decode_frame
from streammood.bus.keys import DEFAULT_PREFIX, Keys, SourceIdError, validate_source
from streammood.bus.schema import MessageError, MoodMessage

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Frame:
    """One decoded feature frame.

    Attributes
    ----------
    source : str
        Source id.
    seq : int
        Step number.
    t_start, t_end : float
        Stream time of the step, seconds.
    arrays : dict[str, np.ndarray]
        The float32 feature arrays, by name.
    header : dict
        The full frame header (extra producer fields included).
    entry_id : str
        Redis stream entry id.
    replay : bool
        A warm-up frame that a previous owner of the source already processed: feed it to the
        model state but do not publish its output.
    """

    source: str
    seq: int
    t_start: float
    t_end: float
    arrays: dict[str, np.ndarray] = field(repr=False)
    header: dict[str, Any] = field(repr=False)
    entry_id: str
    replay: bool = False


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class FrameReader:
    """Read feature frames of the sources this worker owns, in order per source.

    Parameters
    ----------
    client : redis.Redis
        Connection; its socket timeout must exceed ``block_ms``.
    prefix : str
        Key prefix.
    sources : sequence of str or None
        Only ever claim these sources; ``None``: any source in ``{prefix}:sources:frames``.
    worker_id : str or None
        Unique id of this worker (default: host, pid and a random suffix).
    lease_ms : int
        Lease lifetime, ms; renewed every third of it while :meth:`read` is called.
    warmup : int
        Frames replayed (``replay=True``) before the cursor when taking over a source
        (59 rebuilds a 60-step rolling window exactly).
    block_ms : int
        Longest wait in :meth:`read` for new frames, ms.
    balance : bool
        Claim at most a fair share of the sources and release the excess.

    Notes
    -----
    Call :meth:`ack` with each frame once its output is published, then the cursor is written
    at the next :meth:`read`. :meth:`released` tells which sources were lost (drop their state).
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        sources: Sequence[str] | None = None,
        worker_id: str | None = None,
        lease_ms: int = 5_000,
        warmup: int = 59,
        block_ms: int = 200,
        balance: bool = True,
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.only = None if sources is None else {validate_source(s) for s in sources}
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_ms = lease_ms
        self.warmup = warmup
        self.block_ms = block_ms
        self.balance = balance
        self.rejected = 0
        """Malformed frames skipped so far."""
        self._last: dict[str, str] = {}  # owned source -> last entry id read
        self._pending_ack: dict[str, str] = {}
        self._released: set[str] = set()
        self._replay: list[Frame] = []
        self._next_renew = 0.0
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def owned(self) -> frozenset[str]:
        """Sources this worker holds the lease of."""
        return frozenset(self._last)

    def released(self) -> set[str]:
        """Sources lost (lease expired or given away) since the last call."""
        out, self._released = self._released, set()
        return out

    def ack(self, frame: Frame) -> None:
        """Mark ``frame`` as processed (its cursor is written with the next :meth:`read`)."""
        if frame.source in self._last and not frame.replay:
            self._pending_ack[frame.source] = frame.entry_id

    def read(self, count: int = 64) -> list[Frame]:
        """Up to ``count`` frames per owned source, waiting up to ``block_ms`` for new ones.

        Frames come in stream order per source; malformed frames are logged with the reason,
        counted in :attr:`rejected` and skipped. Redis errors propagate (the caller retries).
        """
        now = time.monotonic()
        if now >= self._next_renew:
            self._maintain()
            self._next_renew = now + self.lease_ms / 3000.0
        self._write_acks()
        out, self._replay = self._replay, []
        if not self._last:
            if not out:
                time.sleep(self.block_ms / 1000.0)
            return out
        streams = {self.keys.frames_stream(s): last for s, last in self._last.items()}
        reply = self.client.xread(streams, count=count, block=None if out else self.block_ms)
        for stream, entries in reply or []:
            src = _text(stream).rsplit(":", 1)[1]
            if src not in self._last:
                continue
            for entry_id, fields in entries:
                eid = _text(entry_id)
                self._last[src] = eid
                frame = self._decode(src, eid, fields)
                if frame is not None:
                    out.append(frame)
        return out

    def close(self) -> None:
        """Write pending cursors and give every lease back."""
        try:
            self._write_acks()
            for src in list(self._last):
                self._release(keys=[self.keys.lease(src)], args=[self.worker_id])
            self.client.zrem(self.keys.workers, self.worker_id)
        except redis.exceptions.RedisError as exc:
            log.warning("could not release sources cleanly: %s", exc)
        self._last.clear()

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _decode(self, src: str, eid: str, fields: dict, replay: bool = False) -> Frame | None:
        try:
            raw = fields.get(b"frame")
            if raw is None:
                raise FrameError("stream entry has no 'frame' field")
            header, arrays = decode_frame(raw)
            if header["source"] != src:
                raise FrameError(f"frame of source {header['source']!r} in the stream of {src!r}")
        except FrameError as exc:
            self.rejected += 1
            log.warning("rejected frame %s of %s: %s", eid, self.keys.frames_stream(src), exc)
            if not replay:
                self._pending_ack[src] = eid
            return None
        return Frame(
            src,
            header["seq"],
            float(header["t_start"]),
            float(header["t_end"]),
            arrays,
            header,
            eid,
            replay,
        )

    def _write_acks(self) -> None:
        if not self._pending_ack:
            return
        pipe = self.client.pipeline(transaction=False)
        for src, eid in self._pending_ack.items():
            pipe.set(self.keys.cursor(src), eid)
        pipe.execute()
        self._pending_ack.clear()

    def _maintain(self) -> None:
        """Heartbeat, renew leases, claim or release sources towards a fair share."""
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.workers, {self.worker_id: now_ms + self.lease_ms})
        pipe.zremrangebyscore(self.keys.workers, "-inf", now_ms)
        pipe.zcard(self.keys.workers)
        pipe.smembers(self.keys.frame_sources)
        _, _, n_workers, members = pipe.execute()
        for src in list(self._last):
            if not self._renew(keys=[self.keys.lease(src)], args=[self.worker_id, self.lease_ms]):
                log.warning("worker %s lost the lease of source %s", self.worker_id, src)
                self._drop(src)
        candidates = []
        for raw in members:
            src = _text(raw)
            try:
                validate_source(src)
            except SourceIdError:
                continue
            if self.only is None or src in self.only:
                candidates.append(src)
        share = len(candidates)
        if self.balance and n_workers > 1:
            share = math.ceil(len(candidates) / n_workers)
        while self.balance and len(self._last) > share:
            src = sorted(self._last)[-1]
            self._write_acks()
            self._release(keys=[self.keys.lease(src)], args=[self.worker_id])
            log.info("worker %s hands source %s over (fair share %d)", self.worker_id, src, share)
            self._drop(src)
        for src in sorted(candidates):
            if len(self._last) >= share:
                break
            if src in self._last:
                continue
            if self.client.set(self.keys.lease(src), self.worker_id, nx=True, px=self.lease_ms):
                self._claim(src)

    def _claim(self, src: str) -> None:
        stream = self.keys.frames_stream(src)
        cursor = self.client.get(self.keys.cursor(src))
        if cursor is None:
            self._last[src] = "0-0"
            log.info("worker %s took source %s from its first frame", self.worker_id, src)
            return
        cursor = _text(cursor)
        self._last[src] = cursor
        if self.warmup > 0:
            entries = self.client.xrevrange(stream, max=cursor, count=self.warmup)
            for entry_id, fields in reversed(entries):
                frame = self._decode(src, _text(entry_id), fields, replay=True)
                if frame is not None:
                    self._replay.append(frame)
        log.info("worker %s took source %s over after entry %s", self.worker_id, src, cursor)

    def _drop(self, src: str) -> None:
        self._last.pop(src, None)
        self._pending_ack.pop(src, None)
        self._replay = [f for f in self._replay if f.source != src]
        self._released.add(src)


def mood_line(msg: MoodMessage) -> str:
    """A compact one-line rendering: stream time, source, quadrant, valence, arousal, window."""
    clock = time.strftime("%H:%M:%S", time.localtime(msg.emitted_at))
    return (
        f"{clock}  {msg.source:<16} t={msg.t_end:8.1f}s  {msg.quadrant}  "
        f"v={msg.valence:+.2f}  a={msg.arousal:+.2f}  p={msg.probs[msg.quadrant]:.2f}  "
        f"[{msg.window_steps} steps]"
    )


def watch(
    redis_url: str | None = None,
    source: str | None = None,
    history: int = 0,
    count: int | None = None,
    prefix: str = DEFAULT_PREFIX,
    idle_timeout: float | None = None,
    on_endpoint: Any = None,
) -> Iterator[MoodMessage]:
    """What ``streammood subscribe`` shows: find Redis (configured URL, the default address, or
    a running embedded server), then yield mood messages (history first), at most ``count``.

    ``on_endpoint`` is called with the :class:`~streammood.bus.embedded.RedisEndpoint` found
    (e.g. to print where Redis is).
    """
    from streammood.bus.connection import connect
    from streammood.bus.embedded import ensure_redis

    endpoint = ensure_redis(redis_url, start=False)
    if on_endpoint is not None:
        on_endpoint(endpoint)
    client = connect(endpoint.url)
    try:
        for n, msg in enumerate(
            subscribe_moods(client, prefix, source, history, idle_timeout=idle_timeout), 1
        ):
            yield msg
            if count is not None and n >= count:
                return
    finally:
        client.close()
