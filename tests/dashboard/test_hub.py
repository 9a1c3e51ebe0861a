"""The hub: bounded per-client feeds fed by one subscription (no browser; real Redis where a
subscription is involved)."""

from __future__ import annotations

import asyncio

import pytest

from streammood.bus.live import parse_mood
from streammood.dashboard.hub import ClientFeed, FeedClosedError, Hub
from tests.dashboard.feed import mood, text


def _raw(source: str, seq: int):
    return parse_mood(text(mood(source, seq, 0.5, 0.5)))


class _NoLive:
    """A live source that never yields (the tests call ``Hub.publish`` themselves)."""

    def __init__(self, on_state):
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self.stopped:
            await asyncio.sleep(0.01)
        raise StopAsyncIteration


def test_a_full_feed_cuts_off_its_client_and_the_others_get_everything():
    async def main():
        hub = Hub("redis://unused", "p", queue_size=8, live=_NoLive)
        fast, slow = hub.add(), hub.add()
        got = []
        for seq in range(50):
            hub.publish(_raw("radio1", seq))  # never waits, whatever the slow feed does
            got.append(await fast.next(timeout=1))
        assert [m.split('"seq":')[1].split(",")[0] for m in got] == [str(s) for s in range(50)]
        assert slow.overflowed and slow.closed
        assert hub.stats.clients_cut_off == 1 and hub.stats.clients == 1
        with pytest.raises(FeedClosedError):
            await slow.next(timeout=1)
        await hub.stop()
        assert fast.closed

    asyncio.run(main())


def test_a_feed_keeps_order_filters_by_source_and_times_out_when_idle():
    async def main():
        feed = ClientFeed("radio2", maxsize=4)
        other, first, second = _raw("radio1", 0), _raw("radio2", 0), _raw("radio2", 1)
        assert feed.offer(other) is False
        assert feed.offer(first) and feed.offer(second)
        assert [await feed.next(), await feed.next()] == [first.text, second.text]
        assert await feed.next(timeout=0.05) is None
        assert feed.delivered == 2

    asyncio.run(main())


def test_a_waiting_feed_wakes_on_a_message_and_on_close():
    async def main():
        feed = ClientFeed(None, maxsize=4)
        waiter = asyncio.create_task(feed.next(timeout=5))
        await asyncio.sleep(0)
        raw = _raw("radio1", 7)
        feed.offer(raw)
        assert await waiter == raw.text
        waiter = asyncio.create_task(feed.next(timeout=5))
        await asyncio.sleep(0)
        feed.close()
        with pytest.raises(FeedClosedError):
            await waiter

    asyncio.run(main())
