"""The one bounded queue of the project, and the reconnecting writer built on it.

:class:`BoundedQueue` is a FIFO with a bound: when full it drops the **oldest** item and counts it
(live audio and publishers must never wait), or, in lossless mode, blocks the producer until there
is room (a file read as fast as possible must lose nothing). ``listen`` hands steps from its
feature thread to its inference thread through one; every publisher's :class:`Outbox` buffers its
items in one.

:class:`Outbox` (the base of :class:`~streammood.bus.moods.MoodPublisher` and
:class:`~streammood.bus.frames.FramePublisher`) never blocks the caller and survives Redis
outages: one background thread drains the queue in batches (one pipeline round trip each), in
order. When Redis fails it keeps the items, retries with exponential backoff (``backoff_start``
doubling up to ``backoff_max`` seconds) and, once Redis answers again, delivers the buffered items
in their original order. When the queue is full the oldest items are dropped and counted.
Delivery is at least once: a batch interrupted mid-write may be written again after the reconnect.
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

from streammood.bus.connection import OUTAGES, connect, describe_client, pipeline
from streammood.bus.keys import DEFAULT_PREFIX, Keys, validate_source

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BUFFER = 1_000
"""Items a publisher keeps while Redis is away (1 000 steps = 8 min of one source)."""
METRICS_INTERVAL = 1.0
"""Seconds between metrics-hash updates."""


class QueueClosedError(RuntimeError):
    """:meth:`BoundedQueue.put` on a closed queue."""


class BoundedQueue(Generic[T]):
    """Bounded FIFO between producer and consumer threads.

    Parameters
    ----------
    maxlen : int
        Most items held (waiting, plus taken and not yet settled).
    lossless : bool
        When full, block the producer; otherwise drop the **oldest** waiting item and count it.

    Notes
    -----
    A consumer either takes one item at a time (:meth:`get`), or a batch (:meth:`take`) that
    stays *held*, counted against the bound, until it is done with (:meth:`settle`) or put back
    at the front (:meth:`restore`, e.g. after a failed write). :meth:`close` means no more items:
    producers blocked in :meth:`put` and consumers waiting for items wake up, and the consumer
    drains what is left.
    """

    def __init__(self, maxlen: int, *, lossless: bool = False) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        self.lossless = lossless
        self._items: deque[T] = deque()
        self._held = 0
        self._dropped = 0
        self._closed = False
        self._cond = threading.Condition()

    # -- producer side -----------------------------------------------------------------------
    def put(self, item: T) -> None:
        """Append ``item``; when full drop the oldest waiting item (or, lossless, wait for room).

        Raises
        ------
        QueueClosedError
            The queue is closed (also when it closes while this call waits for room).
        """
        with self._cond:
            while self.lossless and self._size() >= self.maxlen and not self._closed:
                self._cond.wait()
            if self._closed:
                raise QueueClosedError("the queue is closed")
            self._items.append(item)
            self._trim()
            self._cond.notify_all()

    def close(self) -> None:
        """No more items: wake every waiter; :meth:`get` returns ``None`` (and :meth:`take`
        ``[]``) once the queue is drained."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- consumer side -----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> T | None:
        """The next item; ``None`` when closed and drained, or after ``timeout`` seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def take(self, n: int, timeout: float | None = None) -> list[T]:
        """Up to ``n`` items, oldest first, held until :meth:`settle` or :meth:`restore`;
        ``[]`` when closed and drained, or after ``timeout`` seconds without an item."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return []
            items = [self._items.popleft() for _ in range(min(n, len(self._items)))]
            self._held += len(items)
            return items

    def settle(self, n: int, *, dropped: bool = False) -> None:
        """``n`` held items are done with; ``dropped``: they were discarded (count them)."""
        with self._cond:
            n = min(n, self._held)
            self._held -= n
            if dropped:
                self._dropped += n
            self._cond.notify_all()

    def restore(self, items: Sequence[T]) -> None:
        """Put held ``items`` back at the front, in order; the oldest beyond the bound are
        dropped and counted."""
        with self._cond:
            self._held -= min(len(items), self._held)
            self._items.extendleft(reversed(items))
            self._trim()
            self._cond.notify_all()

    def clear(self) -> int:
        """Discard every waiting item, counted as dropped; returns how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._dropped += n
            self._cond.notify_all()
            return n

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no item is waiting or held; ``False`` if ``timeout`` (s) ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._held, timeout)

    # -- state -------------------------------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Items dropped so far (the oldest, when full; plus those discarded on purpose)."""
        return self._dropped

    @property
    def closed(self) -> bool:
        return self._closed

    def counts(self) -> tuple[int, int, int]:
        """``(waiting, held, dropped)``, one consistent snapshot."""
        with self._cond:
            return len(self._items), self._held, self._dropped

    def __len__(self) -> int:
        """Items waiting (held ones not included)."""
        return len(self._items)

    def _size(self) -> int:
        return len(self._items) + self._held

    def _trim(self) -> None:
        """Drop the oldest waiting items beyond the bound (lock held)."""
        while self._size() > self.maxlen and self._items:
            self._items.popleft()
            self._dropped += 1


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
        Items discarded because the buffer was full (oldest first), rejected by Redis, or still
        undelivered at close.
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
        self.keys = Keys.for_client(self._client, prefix)
        self.where = describe_client(self._client)
        self.metrics_id = validate_source(metrics_id) if metrics_id is not None else None
        self._buffer = buffer
        self._batch = batch
        self._backoff = (backoff_start, backoff_max)
        self._queue: BoundedQueue[T] = BoundedQueue(buffer)
        self._stats = PublisherStats()  # published, reconnects, failures, connected
        self._extra: dict[str, Any] = {}
        self._source_metrics: dict[str, tuple[str, dict[str, Any]]] = {}
        self._published_by: dict[str, int] = {}  # per source: _count_published
        self.fenced: set[str] = set()
        """Sources whose writes were refused (session taken over, or lease lost): the subclasses'
        :meth:`_written` fill it; their metrics hashes are the new producer's."""
        self._metrics_due = 0.0
        self._lock = threading.Lock()  # the stats above; taken before the queue's own lock
        self._stop = threading.Event()
        self._deadline = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"streammood-{self.kind}", daemon=True
        )
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------
    def _submit(self, item: T) -> None:
        try:
            self._queue.put(item)
        except QueueClosedError:
            raise QueueClosedError(f"{type(self).__name__} is closed") from None

    @property
    def stats(self) -> PublisherStats:
        """A snapshot of the counters."""
        with self._lock:
            snap = PublisherStats(**asdict(self._stats))
            waiting, held, dropped = self._queue.counts()
            snap.buffered = waiting + held
            snap.dropped = dropped
            return snap

    def update_metrics(self, **fields: int | float | str) -> None:
        """Extra fields for the metrics hash (e.g. ``steps_dropped=3``), written with the next
        update."""
        with self._lock:
            self._extra.update(fields)
            self._metrics_due = 0.0

    def update_source_metrics(
        self, source: str, name: str | None = None, **fields: int | float | str
    ) -> None:
        """Fields for the metrics hash of one of the sources this publisher writes,
        ``{prefix}:metrics:{name}`` (``name`` defaults to ``source``; many sources in one
        process), written with every update from now on beside ``{kind}_published`` of that
        source and the publisher's own ``{kind}_buffered``, ``_dropped`` and ``_reconnects``.
        Not written for a source whose writes were fenced (its hash is the new producer's)."""
        name = validate_source(name or source)
        with self._lock:
            held = self._source_metrics.setdefault(source, (name, {}))[1]
            held.update(fields)
            self._metrics_due = 0.0

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued item is written; ``False`` if ``timeout`` (s) ran out."""
        return self._queue.join(timeout)

    def close(self, timeout: float = 5.0) -> PublisherStats:
        """Deliver what is queued (for up to ``timeout`` s), stop the thread, return the final
        stats. Items still undelivered at the deadline are counted as dropped."""
        with self._lock:
            if not self._queue.closed:
                self._deadline = time.monotonic() + timeout
                self._stop.set()
                self._queue.close()
        self._thread.join(timeout + 1.0)
        lost = self._queue.clear()
        if lost:
            log.warning("%s: %d %s undelivered at close", self.where, lost, self.kind)
        if self._own_client:
            self._client.close()
        return self.stats

    def __enter__(self) -> Outbox[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- background side ---------------------------------------------------------------------
    def _write(self, pipe: redis.client.Pipeline, items: Sequence[T]) -> None:
        raise NotImplementedError

    def _weight(self, items: Sequence[T]) -> int:
        """How many of ``items`` count as published (control items, e.g. a session start, do
        not)."""
        return len(items)

    def _written(self, items: Sequence[T], results: list[Any]) -> int:
        """After a batch went through: look at the pipeline's ``results`` (in the order
        :meth:`_write` queued the commands) and return how many items were published (fenced or
        duplicate ones are not)."""
        return self._weight(items)

    def _run(self) -> None:
        delay = self._backoff[0]
        down_since: float | None = None
        while True:
            queue = self._queue
            if queue.closed and (not len(queue) or time.monotonic() >= self._deadline):
                break
            wait = None
            if self._metrics_on():
                with self._lock:
                    wait = max(0.0, self._metrics_due - time.monotonic())
            items = queue.take(self._batch, wait)
            with self._lock:
                write_metrics = self._metrics_on() and time.monotonic() >= self._metrics_due
                extra = dict(self._extra)
            if not items and not write_metrics:
                continue
            try:
                pipe = pipeline(self._client)
                if items:
                    self._write(pipe, items)
                if write_metrics:
                    self._add_metrics(pipe, extra, self._weight(items))
                results = pipe.execute()
                published = self._written(items, results) if items else 0
            except OUTAGES as exc:
                with self._lock:
                    self._stats.failures += 1
                    self._stats.connected = False
                    queue.restore(items)
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
                queue.settle(len(items), dropped=True)
                continue
            with self._lock:
                self._stats.published += published
                queue.settle(len(items))
                if down_since is not None:
                    self._stats.reconnects += 1
                    self._stats.connected = True
                    log.warning(
                        "Redis at %s is back after %.1f s; %d %s dropped so far",
                        self.where,
                        time.monotonic() - down_since,
                        queue.dropped,
                        self.kind,
                    )
                    down_since = None
                    delay = self._backoff[0]
                    self._metrics_due = 0.0
                elif write_metrics:
                    self._metrics_due = time.monotonic() + METRICS_INTERVAL
        if self._metrics_on():
            try:
                pipe = pipeline(self._client)
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
        if self.metrics_id is not None:
            pipe.hset(self.keys.metrics(self.metrics_id), mapping=fields)
        with self._lock:
            per = {src: (name, dict(f)) for src, (name, f) in self._source_metrics.items()}
        skip = set(self.fenced)
        shared = {
            "updated_at",
            *(f"{self.kind}_{c}" for c in ("buffered", "dropped", "reconnects")),
        }
        for src, (name, own) in per.items():
            if src in skip:
                continue
            own = {
                f"{self.kind}_published": self._published_by.get(src, 0),
                **{k: v for k, v in fields.items() if k in shared},
                **own,
            }
            pipe.hset(self.keys.metrics(name), mapping=own)

    def _count_published(self, source: str) -> None:
        """One more item of ``source`` published (its metrics hash's ``{kind}_published``)."""
        self._published_by[source] = self._published_by.get(source, 0) + 1

    def _metrics_on(self) -> bool:
        return self.metrics_id is not None or bool(self._source_metrics)
