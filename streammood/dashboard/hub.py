"""The hub: one Redis subscription fanned out to every browser, each through its own bounded
queue.

The hub reads the mood channel once (:class:`~streammood.bus.live.LiveMoods`) and offers each
message to every client's :class:`ClientFeed`. Offering never waits: a client whose queue is full
(a stalled tab, a slow link) is cut off instead of slowing the others; its page reconnects and
fills what it missed from the history streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from streammood.bus.live import LiveMoods, RawMood

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 512
"""Messages one client may lag behind before it is cut off (about 4 minutes of one source)."""


class FeedClosedError(Exception):
    """The feed was closed: the hub stopped, or the client fell too far behind."""


class ClientFeed:
    """The bounded queue of one client (one ``/events`` connection).

    Parameters
    ----------
    source : str or None
        Only messages of this source; ``None``: all.
    maxsize : int
        Messages it may hold; one more closes it (:attr:`overflowed`).
    """

    def __init__(self, source: str | None = None, maxsize: int = DEFAULT_QUEUE_SIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.source = source
        self.maxsize = maxsize
        self.closed = False
        self.overflowed = False
        self.delivered = 0
        self._items: deque[str] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, mood: RawMood) -> bool:
        """Queue ``mood`` if it is for this feed; never waits. Returns whether it was queued."""
        if self.closed or (self.source is not None and mood.source != self.source):
            return False
        if len(self._items) >= self.maxsize:
            self.overflowed = True
            self.close()
            return False
        self._items.append(mood.text)
        self._ready.set()
        return True

    def close(self) -> None:
        """Close the feed; a waiting :meth:`next` raises :class:`FeedClosedError`."""
        self.closed = True
        self._items.clear()
        self._ready.set()

    async def next(self, timeout: float | None = None) -> str | None:
        """The next message's JSON text, or ``None`` after ``timeout`` seconds without one.

        Raises
        ------
        FeedClosedError
            The feed is closed.
        """
        while not self._items:
            if self.closed:
                raise FeedClosedError
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        if self.closed:
            raise FeedClosedError
        self.delivered += 1
        return self._items.popleft()


@dataclass
class HubStats:
    """What the hub has done since it started."""

    received: int = 0
    clients: int = 0
    clients_cut_off: int = 0
    redis_up: bool = False
    epoch: int = 0
    """How many times the subscription was (re)established: a change means a client may have
    missed messages and should read the history."""


class Hub:
    """Fans one mood subscription out to per-client feeds.

    Parameters
    ----------
    url : str
        Redis URL.
    prefix : str
        Key prefix.
    queue_size : int
        Size of each client's queue.
    live : callable or None
        Factory ``(on_state) -> async iterable of RawMood``, for tests; default: a
        :class:`~streammood.bus.live.LiveMoods` on ``url``/``prefix``.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        live: Callable[[Callable[[bool], None]], LiveMoods] | None = None,
    ) -> None:
        self.queue_size = queue_size
        self.stats = HubStats()
        self._feeds: set[ClientFeed] = set()
        self._live = (
            live(self._on_state)
            if live is not None
            else LiveMoods(url, prefix, on_state=self._on_state)
        )
        self._task: asyncio.Task[None] | None = None

    def _on_state(self, up: bool) -> None:
        self.stats.redis_up = up
        if up:
            self.stats.epoch += 1

    async def start(self) -> None:
        """Start reading the channel (in a background task)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="streammood-dashboard-hub")

    async def stop(self) -> None:
        """Stop reading and close every feed."""
        stop = getattr(self._live, "stop", None)
        if stop is not None:
            stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.close_feeds()

    def close_feeds(self) -> None:
        """Close every client's feed now (their streams end; the server is shutting down)."""
        for feed in list(self._feeds):
            self.remove(feed)

    async def _run(self) -> None:
        try:
            async for mood in self._live:
                self.publish(mood)
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a bug; keep the log, the server stays up
            log.exception("dashboard hub stopped")

    def publish(self, mood: RawMood) -> None:
        """Offer one message to every feed (never waits); cut off feeds that are full."""
        self.stats.received += 1
        for feed in list(self._feeds):
            feed.offer(mood)
            if feed.overflowed:
                log.warning(
                    "a dashboard client fell %d messages behind; cut off (it reloads history)",
                    feed.maxsize,
                )
                self.stats.clients_cut_off += 1
                self.remove(feed)

    def add(self, source: str | None = None) -> ClientFeed:
        """A new feed for one client (all sources, or only ``source``)."""
        feed = ClientFeed(source, self.queue_size)
        self._feeds.add(feed)
        self.stats.clients = len(self._feeds)
        return feed

    def remove(self, feed: ClientFeed) -> None:
        """Forget a feed (its client went away or was cut off)."""
        feed.close()
        self._feeds.discard(feed)
        self.stats.clients = len(self._feeds)
