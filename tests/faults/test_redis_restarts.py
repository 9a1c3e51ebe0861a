"""Redis SIGKILLed and restarted twice mid-stream (with its append-only file), while `listen`
tags one live source and `capture` + two `infer` workers another: every step is in the history
once, in order, equal to a clean run; no process dies."""

from __future__ import annotations

import time

import pytest
import redis

from streammood.audio.sources import FileSource
from streammood.bus.keys import Keys
from streammood.workers.listen import run_listen
from streammood.workers.tagging import MoodStage, feature_stage
from tests.faults.conftest import spawn, stop_all
from tests.workers.conftest import fields, history, wait_until

SECONDS = 10
STEPS = 2 * SECONDS


def _clean_run(clip, artifact) -> list:
    """The same audio through listen in-process, without Redis: the reference moods."""
    got = []
    source = FileSource(clip)
    run_listen(source, feature_stage(artifact, source.sample_rate), MoodStage(artifact, "ref"),
               None, duration=SECONDS, on_message=lambda m, _s: got.append(m))
    return got


@pytest.mark.slow
def test_redis_killed_twice_mid_stream_in_listen_and_split_mode(durable_redis, music_clip,
                                                               shipped_model):
    server = durable_redis
    url = server.url
    keys = Keys("streammood")
    workers = [spawn("infer", "--redis-url", url, "-q") for _ in range(2)]
    client = redis.Redis.from_url(url, socket_timeout=2)
    assert wait_until(lambda: client.zcard(keys.workers) == 2, 90), "infer did not start"
    producers = [
        spawn("listen", "--file", str(music_clip), "--realtime", "--duration", str(SECONDS),
              "--source-id", "lis", "--redis-url", url, "-q"),
        spawn("capture", "--file", str(music_clip), "--realtime", "--duration", str(SECONDS),
              "--source-id", "cap", "--redis-url", url),
    ]
    outages = []
    try:
        def moods(src):
            try:
                return client.xlen(keys.mood_stream(src))
            except redis.exceptions.RedisError:
                return 0

        for mark in (5, 11):
            assert wait_until(lambda m=mark: moods("lis") >= m and moods("cap") >= m - 3, 60)
            t0 = time.monotonic()
            server.stop()  # SIGKILL
            time.sleep(1.0)
            server.start()
            outages.append(time.monotonic() - t0)
            client = redis.Redis.from_url(url, socket_timeout=2)
        for p in producers:
            p.wait(timeout=90)
        assert [p.returncode for p in producers] == [0, 0], [p.stderr.read() for p in producers]
        assert wait_until(lambda: moods("cap") >= STEPS and moods("lis") >= STEPS, 60)
        alive = [w.poll() is None for w in workers]
    finally:
        stop_all(producers + workers)
    assert alive == [True, True], "an infer worker died"
    assert [w.returncode for w in workers] == [0, 0]
    reference = [fields(m) for m in _clean_run(music_clip, shipped_model)]
    assert len(reference) == STEPS
    for src in ("lis", "cap"):
        got = history(client, "streammood", src)
        assert [m.seq for m in got] == list(range(STEPS)), f"{src}: lost, doubled or reordered"
        assert [{**fields(m), "source": "ref"} for m in got] == reference, src
    print(f"outages (s): {[round(o, 2) for o in outages]}")
