"""Async mood consumption (streammood.bus.live) on real Redis: raw text kept, malformed messages
skipped, history oldest first, and a subscription that comes back after Redis restarts."""

from __future__ import annotations

import asyncio
import json

import redis

from streammood.bus.keys import Keys
from streammood.bus.live import LiveMoods, async_client, parse_mood, read_history, read_sources
from tests.dashboard.feed import RedisServer, mood, publish, subscribers, text, wait_for


def test_parse_mood_keeps_unknown_fields_and_skips_malformed(caplog):
    m = mood("radio1", 3, 0.2, -0.3, segment_start=1.5, captured_at=1.7e9)
    raw = parse_mood(text(m).encode())
    assert raw is not None and raw.text == text(m) and raw.source == "radio1"
    assert raw.data["segment_start"] == 1.5 and raw.message.seq == 3
    assert parse_mood(b"not json") is None
    assert parse_mood(text({**m, "valence": 3.0})) is None
    assert parse_mood(text({**m, "schema": "0"})) is None
    assert parse_mood(None) is None
    assert "valence" in caplog.text and "JSON" in caplog.text
    pretty = json.dumps(m, indent=1)  # a multi-line publisher: still one line for SSE
    assert "\n" not in parse_mood(pretty).text


def test_history_is_oldest_first_and_sources_are_listed(redis_namespace):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    sent = publish(client, prefix, [mood("b", i, 0.1, 0.1) for i in range(5)], live=False)
    publish(client, prefix, [mood("a", 0, 0.1, 0.1)], live=False)
    client.xadd(f"{prefix}:mood:b", {"json": "garbage"})

    async def main():
        aclient = async_client(url)
        try:
            keys = Keys(prefix)
            return (
                await read_sources(aclient, keys),
                [m.text for m in await read_history(aclient, keys, "b", 4)],
                await read_history(aclient, keys, "b", 0),
            )
        finally:
            await aclient.aclose()

    sources, history, none = asyncio.run(main())
    assert sources == ["a", "b"]
    assert history == sent[2:]  # the last 4 entries, one of them garbage (skipped)
    assert none == []


def test_live_moods_come_back_after_redis_restarts(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    states: list[bool] = []
    got: list[int] = []

    async def main():
        live = LiveMoods(server.url, "p", on_state=states.append, backoff_max=0.2, poll=0.05)

        async def consume():
            async for m in live:
                got.append(m.message.seq)
                if m.message.seq == 2:
                    live.stop()

        task = asyncio.create_task(consume())
        await asyncio.to_thread(wait_for, lambda: states == [True], 10, what="subscription")
        await asyncio.to_thread(publish, server.client(), "p", [mood("s", 0, 0.1, 0.1)])
        await asyncio.to_thread(wait_for, lambda: got == [0], 10, what="first message")
        server.stop()
        await asyncio.to_thread(wait_for, lambda: states == [True, False], 10, what="lost")
        server.start()
        await asyncio.to_thread(
            wait_for, lambda: states == [True, False, True], 10, what="resubscribed"
        )
        assert subscribers(server.client(), "p") == 1
        await asyncio.to_thread(
            publish, server.client(), "p", [mood("s", 1, 0.1, 0.1), mood("s", 2, 0.1, 0.1)]
        )
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(main())
    finally:
        server.stop()
    assert got == [0, 1, 2]
    assert states == [True, False, True, False]  # the last: stopped
