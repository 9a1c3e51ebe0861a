"""Publishers that never block the caller and survive Redis outages.

Both :class:`MoodPublisher` and :class:`FramePublisher` hand items to an :class:`Outbox`: a
bounded in-memory queue drained by one background thread. The thread writes items in batches
(one pipeline round trip each), in order. When Redis fails it keeps the items, retries with
exponential backoff (``backoff_start`` doubling up to ``backoff_max`` seconds) and, once Redis
answers again, delivers the buffered items in their original order. When the queue is full the
oldest items are dropped and counted. Delivery is at least once: a batch interrupted mid-write
may be written again after the reconnect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

import redis

from streammood.bus.codec import FrameError, decode_frame
from streammood.bus.connection import connect, describe_client
from streammood.bus.keys import DEFAULT_PREFIX, Keys, validate_source
from streammood.bus.schema import MoodMessage

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BUFFER = 1_000
"""Items kept while Redis is away (1 000 steps = 8 min of one source)."""
DEFAULT_MOOD_MAXLEN = 7_200
"""Approximate cap of a mood history stream (1 hour of steps)."""
DEFAULT_FRAME_MAXLEN = 1_200
"""Approximate cap of a feature-frame stream (10 minutes of steps)."""
METRICS_INTERVAL = 1.0
"""Seconds between metrics-hash updates."""


@dataclass
class PublisherStats:
    """Counters of one publisher.

    Attributes
    ----------
    published : int
        Items written to Redis.
    buffered : int
        Items waiting (queued or in flight) right now.
    dropped : int
        Items discarded because the buffer was full (oldest first).
    reconnects : int
        Times Redis came back after a failure.
    failures : int
        Failed write attempts.
    connected : bool
        Whether the last write attempt succeeded.
    """

    published: int = 0
    buffered: int = 0
    dropped: int = 0
    reconnects: int = 0
    failures: int = 0
    connected: bool = True


class Outbox(Generic[T]):
    """Bounded, ordered, reconnecting writer (the mechanism shared by the publishers).

    Subclasses implement :meth:`_write` to queue the Redis commands for a batch on a pipeline.

    Parameters
    ----------
    client_or_url : redis.Redis or str
        A client, or a URL to connect to (lazily: an unreachable server at start is buffered
        for like any outage).
    prefix : str
        Key prefix.
    buffer : int
        Most items kept while Redis is away.
    batch : int
        Most items per pipeline round trip.
    metrics_id : str or None
        Write :attr:`stats` (and :meth:`update_metrics` fields) to ``{prefix}:metrics:{id}``
        about once a second; ``None``: no metrics hash.
    backoff_start, backoff_max : float
        Reconnect backoff, seconds.
    """

    kind = "items"

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        prefix: str = DEFAULT_PREFIX,
        *,
        buffer: int = DEFAULT_BUFFER,
        batch: int = 64,
        metrics_id: str | None = None,
        backoff_start: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        if buffer < 1 or batch < 1:
            raise ValueError("buffer and batch must be >= 1")
        if isinstance(client_or_url, str):
            self._client = connect(client_or_url, timeout=1.0, check=False)
            self._own_client = True
        else:
            self._client = client_or_url
            self._own_client = False
        self.keys = Keys(prefix)
        self.where = describe_client(self._client)
        self.metrics_id = validate_source(metrics_id) if metrics_id is not None else None
        self._buffer = buffer
        self._batch = batch
        self._backoff = (backoff_start, backoff_max)
        self._queue: deque[T] = deque()
        self._inflight = 0
        self._stats = PublisherStats()
        self._extra: dict[str, Any] = {}
        self._metrics_due = 0.0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._closing = False
        self._stop = threading.Event()
        self._deadline = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"streammood-{self.kind}", daemon=True
        )
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------
    def _submit(self, item: T) -> None:
        with self._lock:
            if self._closing:
                raise RuntimeError(f"{type(self).__name__} is closed")
            self._queue.append(item)
            self._trim()
            self._wake.notify()

    @property
    def stats(self) -> PublisherStats:
        """A snapshot of the counters."""
        with self._lock:
            snap = PublisherStats(**asdict(self._stats))
            snap.buffered = len(self._queue) + self._inflight
            return snap

    def update_metrics(self, **fields: int | float | str) -> None:
        """Extra fields for the metrics hash (e.g. ``steps_dropped=3``), written with the next
        update."""
        with self._lock:
            self._extra.update(fields)
            self._metrics_due = 0.0

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued item is written; ``False`` if ``timeout`` (s) ran out."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._queue or self._inflight:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
            return True

    def close(self, timeout: float = 5.0) -> PublisherStats:
        """Deliver what is queued (for up to ``timeout`` s), stop the thread, return the final
        stats. Items still undelivered at the deadline are counted as dropped."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout
                self._stop.set()
                self._wake.notify()
        self._thread.join(timeout + 1.0)
        with self._lock:
            lost = len(self._queue)
            if lost:
                self._stats.dropped += lost
                self._queue.clear()
                log.warning("%s: %d %s undelivered at close", self.where, lost, self.kind)
        if self._own_client:
            self._client.close()
        return self.stats

    def __enter__(self) -> Outbox[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- background side ---------------------------------------------------------------------
    def _trim(self) -> None:
        """Drop the oldest queued items beyond the bound (lock held)."""
        while len(self._queue) + self._inflight > self._buffer and self._queue:
            self._queue.popleft()
            self._stats.dropped += 1

    def _write(self, pipe: redis.client.Pipeline, items: Sequence[T]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        delay = self._backoff[0]
        down_since: float | None = None
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    if self.metrics_id is None:
                        self._wake.wait()
                    elif (left := self._metrics_due - time.monotonic()) > 0:
                        self._wake.wait(left)
                    else:
                        break
                if self._closing and (not self._queue or time.monotonic() >= self._deadline):
                    break
                items = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
                self._inflight = len(items)
                write_metrics = bool(self.metrics_id) and time.monotonic() >= self._metrics_due
                extra = dict(self._extra)
            if not items and not write_metrics:
                continue
            try:
                pipe = self._client.pipeline(transaction=False)
                if items:
                    self._write(pipe, items)
                if write_metrics:
                    self._add_metrics(pipe, extra, len(items))
                pipe.execute()
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                redis.exceptions.BusyLoadingError,
                redis.exceptions.ReadOnlyError,
            ) as exc:
                with self._lock:
                    self._stats.failures += 1
                    self._stats.connected = False
                    self._queue.extendleft(reversed(items))
                    self._inflight = 0
                    self._trim()
                    self._metrics_due = 0.0
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning(
                        "Redis at %s unavailable (%s); buffering up to %d %s",
                        self.where,
                        exc.__class__.__name__,
                        self._buffer,
                        self.kind,
                    )
                if not self._stop.is_set():
                    self._stop.wait(delay)
                else:
                    time.sleep(max(0.0, min(delay, self._deadline - time.monotonic())))
                delay = min(delay * 2, self._backoff[1])
                continue
            except Exception as exc:  # a rejected command or a bug: not an outage, never fatal
                log.error("Redis at %s rejected %d %s: %s", self.where, len(items), self.kind, exc)
                with self._lock:
                    self._stats.dropped += len(items)
                    self._inflight = 0
                    self._idle.notify_all()
                continue
            with self._lock:
                self._stats.published += len(items)
                self._inflight = 0
                if down_since is not None:
                    self._stats.reconnects += 1
                    self._stats.connected = True
                    log.warning(
                        "Redis at %s is back after %.1f s; %d %s dropped so far",
                        self.where,
                        time.monotonic() - down_since,
                        self._stats.dropped,
                        self.kind,
                    )
                    down_since = None
                    delay = self._backoff[0]
                    self._metrics_due = 0.0
                elif write_metrics:
                    self._metrics_due = time.monotonic() + METRICS_INTERVAL
                if not self._queue:
                    self._idle.notify_all()
        with self._lock:
            self._idle.notify_all()
        if self.metrics_id:
            try:
                pipe = self._client.pipeline(transaction=False)
                self._add_metrics(pipe, dict(self._extra), 0)
                pipe.execute()
            except redis.exceptions.RedisError:
                pass

    def _add_metrics(
        self, pipe: redis.client.Pipeline, extra: dict[str, Any], sending: int
    ) -> None:
        s = self.stats
        fields: dict[str, Any] = {
            f"{self.kind}_published": s.published + sending,
            f"{self.kind}_buffered": max(0, s.buffered - sending),
            f"{self.kind}_dropped": s.dropped,
            f"{self.kind}_reconnects": s.reconnects,
            "updated_at": time.time(),
            **extra,
        }
        pipe.hset(self.keys.metrics(self.metrics_id), mapping=fields)


class MoodPublisher(Outbox[MoodMessage]):
    """Publish mood messages: PUBLISH on ``{prefix}:mood`` and XADD (field ``json``) to the
    capped stream ``{prefix}:mood:{source}``.

    Parameters
    ----------
    client_or_url, prefix, buffer, batch, metrics_id, backoff_start, backoff_max
        See :class:`Outbox`.
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


class FramePublisher(Outbox[tuple[str, bytes]]):
    """Publish encoded feature frames: XADD (field ``frame``) to the capped stream
    ``{prefix}:frames:{source}``.

    Parameters
    ----------
    client_or_url, prefix, buffer, batch, metrics_id, backoff_start, backoff_max
        See :class:`Outbox`.
    maxlen : int
        Approximate cap of each frame stream.
    """

    kind = "frames"
    _RESET = b""

    def __init__(
        self,
        client_or_url: redis.Redis | str,
        prefix: str = DEFAULT_PREFIX,
        *,
        maxlen: int = DEFAULT_FRAME_MAXLEN,
        **kwargs: Any,
    ) -> None:
        self.maxlen = maxlen
        super().__init__(client_or_url, prefix, **kwargs)

    def begin(self, source: str) -> None:
        """Start a new session of ``source``: queue the deletion of its old frames and cursor,
        so that ``infer`` workers start it from its first new frame."""
        self._submit((validate_source(source), self._RESET))

    def publish(self, frame: bytes, source: str | None = None) -> None:
        """Queue one frame made by :func:`~streammood.bus.codec.encode_frame` (returns at
        once; never raises on Redis trouble). ``source`` defaults to the frame header's."""
        if not isinstance(frame, bytes) or not frame:
            raise TypeError("expected the bytes of an encoded frame")
        if source is None:
            try:
                source = decode_frame(frame)[0]["source"]
            except FrameError as exc:
                raise FrameError(f"refusing to publish a malformed frame: {exc}") from None
        self._submit((validate_source(source), frame))

    def _write(self, pipe: redis.client.Pipeline, items: Sequence[tuple[str, bytes]]) -> None:
        for source, frame in items:
            if frame is self._RESET or not frame:
                pipe.delete(self.keys.frames_stream(source), self.keys.cursor(source))
                continue
            pipe.xadd(
                self.keys.frames_stream(source),
                {"frame": frame},
                maxlen=self.maxlen,
                approximate=True,
            )
        pipe.sadd(self.keys.frame_sources, *{s for s, _ in items})
