import time

import numpy as np
import pytest
import redis

from streammood.bus.codec import decode_frame, encode_frame
from streammood.bus.keys import Keys
from streammood.bus.publisher import FramePublisher, MoodPublisher
from streammood.bus.schema import MoodMessage
from tests.bus.conftest import make_message


def _history(client: redis.Redis, key: str) -> list[MoodMessage]:
    return [MoodMessage.from_json(f[b"json"]) for _, f in client.xrange(key)]


def test_messages_reach_channel_stream_sources_and_metrics(redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.mood_channel)
    pub = MoodPublisher(url, prefix, metrics_id="src1")
    sent = [make_message("src1", i) for i in range(20)] + [make_message("src2", 0)]
    for msg in sent:
        pub.publish(msg)
    assert pub.flush(5.0)
    stats = pub.close()
    assert (stats.published, stats.dropped, stats.buffered) == (21, 0, 0)
    live = []
    deadline = time.monotonic() + 5
    while len(live) < len(sent) and time.monotonic() < deadline:
        if (item := pubsub.get_message(timeout=0.5)) is not None:
            live.append(MoodMessage.from_json(item["data"]))
    assert live == sent
    assert _history(client, keys.mood_stream("src1")) == sent[:20]
    assert _history(client, keys.mood_stream("src2")) == sent[20:]
    assert client.smembers(keys.mood_sources) == {b"src1", b"src2"}
    metrics = client.hgetall(keys.metrics("src1"))
    assert int(metrics[b"moods_published"]) == 21 and int(metrics[b"moods_dropped"]) == 0
    pubsub.close()


def test_history_stream_is_capped(redis_namespace):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    with MoodPublisher(client, prefix, maxlen=100) as pub:
        for i in range(1000):
            pub.publish(make_message("capped", i))
    length = client.xlen(Keys(prefix).mood_stream("capped"))
    assert 100 <= length < 300  # MAXLEN ~ trims whole macro nodes


def test_update_metrics_adds_fields(redis_namespace):
    url, prefix = redis_namespace
    pub = MoodPublisher(url, prefix, metrics_id="w1")
    pub.update_metrics(steps_dropped=3, sources=2)
    pub.publish(make_message())
    pub.close()
    metrics = redis.Redis.from_url(url).hgetall(Keys(prefix).metrics("w1"))
    assert metrics[b"steps_dropped"] == b"3" and metrics[b"sources"] == b"2"


def test_frames_round_trip_and_begin_resets_the_source(redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    arrays = {"mfcc": np.arange(420, dtype=np.float32).reshape(21, 20)}
    frames = [encode_frame({"source": "cap", "seq": i, "t_start": i / 2, "t_end": i / 2 + .5},
                           arrays) for i in range(5)]
    pub = FramePublisher(url, prefix, maxlen=50)
    for f in frames:
        pub.publish(f)
    assert pub.flush(5.0)
    client.set(keys.cursor("cap"), "1-0")
    pub.begin("cap")
    pub.publish(frames[0], "cap")
    pub.close()
    entries = client.xrange(keys.frames_stream("cap"))
    assert [e[1][b"frame"] for e in entries] == frames[:1]
    assert client.get(keys.cursor("cap")) is None
    header, back = decode_frame(entries[0][1][b"frame"])
    assert header["seq"] == 0 and np.array_equal(back["mfcc"], arrays["mfcc"])
    assert client.smembers(keys.frame_sources) == {b"cap"}


def test_publishing_to_a_dead_server_never_blocks_or_raises():
    pub = MoodPublisher("redis://127.0.0.1:1/0", "x", buffer=10, backoff_max=0.05)
    t0 = time.perf_counter()
    for i in range(50):
        pub.publish(make_message(seq=i))
    assert time.perf_counter() - t0 < 0.05
    time.sleep(0.2)
    stats = pub.close(timeout=0.2)
    assert stats.published == 0
    assert stats.dropped == 50  # 40 overflowed, 10 undelivered at close
    assert stats.failures >= 1 and not stats.connected


def test_outage_buffers_then_delivers_in_order_and_counts_drops(redis_server):
    """Kill a real Redis mid-stream, keep publishing, restart it on the same port."""
    prefix = "outage"
    keys = Keys(prefix)
    pub = MoodPublisher(redis_server.url, prefix, buffer=30, backoff_start=0.02,
                        backoff_max=0.2, metrics_id="src1")
    for i in range(10):
        pub.publish(make_message(seq=i))
    assert pub.flush(5.0)

    redis_server.stop()
    worst = 0.0
    for i in range(10, 50):  # 40 messages while Redis is down: 10 over the bound
        t0 = time.perf_counter()
        pub.publish(make_message(seq=i))
        worst = max(worst, time.perf_counter() - t0)
        time.sleep(0.005)
    time.sleep(0.3)  # let the writer fail and back off
    down = pub.stats
    assert not down.connected and down.failures >= 1
    assert down.buffered == 30 and down.dropped == 10
    assert worst < 0.1, f"publish blocked for {worst * 1000:.1f} ms"

    redis_server.start()
    assert pub.flush(10.0)
    stats = pub.close()
    assert stats.reconnects >= 1 and stats.connected
    assert (stats.published, stats.dropped) == (40, 10)
    client = redis.Redis.from_url(redis_server.url)
    seqs = [m.seq for m in _history(client, keys.mood_stream("src1"))]
    # the new server is empty: it holds what was buffered, in order (oldest 10 dropped)
    assert seqs == list(range(20, 50))
    metrics = client.hgetall(keys.metrics("src1"))
    assert int(metrics[b"moods_dropped"]) == 10 and int(metrics[b"moods_reconnects"]) >= 1


def test_publish_rejects_wrong_types(redis_namespace):
    url, prefix = redis_namespace
    with MoodPublisher(url, prefix) as pub, pytest.raises(TypeError):
        pub.publish({"valence": 0})
    with FramePublisher(url, prefix) as fpub, pytest.raises(TypeError):
        fpub.publish("frame")
