import logging
import threading
import time

import numpy as np
import redis

from streammood.bus.codec import encode_frame
from streammood.bus.keys import Keys
from streammood.bus.publisher import FramePublisher, MoodPublisher
from streammood.bus.subscriber import FrameReader, mood_line, read_history, subscribe_moods
from tests.bus.conftest import make_message


def _publish(url, prefix, messages):
    with MoodPublisher(url, prefix) as pub:
        for m in messages:
            pub.publish(m)


def _collect(client, prefix, n, **kwargs):
    """Subscribe in a thread; return (result list, thread)."""
    out: list = []

    def run():
        it = subscribe_moods(client, prefix, idle_timeout=3.0, **kwargs)
        for msg in it:
            out.append(msg)
            if len(out) >= n:
                break

    t = threading.Thread(target=run)
    t.start()
    return out, t


def test_history_replay_then_live_with_source_filter(redis_namespace):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    old = [make_message("a", i) for i in range(5)] + [make_message("b", i) for i in range(3)]
    _publish(url, prefix, old)
    assert [m.seq for m in read_history(client, prefix, "a", 3)] == [2, 3, 4]
    assert len(read_history(client, prefix, None, 100)) == 8

    out, t = _collect(client, prefix, 5, source="a", history=2)
    time.sleep(0.3)  # subscribed
    _publish(url, prefix, [make_message("b", 3), make_message("a", 5), make_message("a", 6),
                           make_message("a", 7)])
    t.join(10)
    assert [(m.source, m.seq) for m in out] == [("a", 3), ("a", 4), ("a", 5), ("a", 6), ("a", 7)]


def test_malformed_messages_are_logged_and_skipped(redis_namespace, caplog):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    client.xadd(keys.mood_stream("a"), {"json": b'{"schema":"1"}'})
    client.sadd(keys.mood_sources, "a", "bad source")
    _publish(url, prefix, [make_message("a", 1)])
    with caplog.at_level(logging.WARNING, logger="streammood.bus.subscriber"):
        assert [m.seq for m in read_history(client, prefix, None, 10)] == [1]
        out, t = _collect(client, prefix, 1)
        time.sleep(0.3)
        client.publish(keys.mood_channel, b"\xff not json")
        client.publish(keys.mood_channel, b'{"schema":"1","source":"a"}')
        _publish(url, prefix, [make_message("a", 2)])
        t.join(10)
    assert [m.seq for m in out] == [2]
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert "lacks field" in reasons and "not valid JSON" in reasons


def test_idle_timeout_ends_iteration(redis_namespace):
    url, prefix = redis_namespace
    t0 = time.monotonic()
    assert list(subscribe_moods(redis.Redis.from_url(url), prefix, idle_timeout=0.3)) == []
    assert time.monotonic() - t0 < 2.0


def test_mood_line_is_compact():
    line = mood_line(make_message("radio", 9, valence=0.3, arousal=-0.25))
    assert "radio" in line and "PP" in line and "v=+0.30" in line and "a=-0.25" in line
    assert "\n" not in line


# -- feature frames -------------------------------------------------------------------------

def _frame(source: str, seq: int) -> bytes:
    return encode_frame({"source": source, "seq": seq, "t_start": seq / 2, "t_end": seq / 2 + .5},
                        {"x": np.full(3, seq, np.float32)})


def _publish_frames(url, prefix, source, seqs, begin=False):
    with FramePublisher(url, prefix) as pub:
        if begin:
            pub.begin(source)
        for s in seqs:
            pub.publish(_frame(source, s), source)


def _drain(reader, until, timeout=5.0):
    got = []
    end = time.monotonic() + timeout
    while time.monotonic() < end and not until(got):
        frames = reader.read()
        for f in frames:
            got.append(f)
            reader.ack(f)
    return got


def test_frame_reader_reads_sources_in_order_and_rejects_malformed(redis_namespace, caplog):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    _publish_frames(url, prefix, "s1", range(5), begin=True)
    _publish_frames(url, prefix, "s2", range(3))
    client.xadd(keys.frames_stream("s1"), {"frame": b"SMFRgarbage"})
    client.xadd(keys.frames_stream("s1"), {"other": b"x"})
    client.xadd(keys.frames_stream("s2"), {"frame": _frame("s1", 99)})  # wrong stream
    _publish_frames(url, prefix, "s1", [5])
    reader = FrameReader(client, prefix, worker_id="w1", block_ms=50)
    with caplog.at_level(logging.WARNING, logger="streammood.bus.subscriber"):
        got = _drain(reader, lambda g: len(g) >= 9)
    assert reader.owned == {"s1", "s2"}
    assert [f.seq for f in got if f.source == "s1"] == [0, 1, 2, 3, 4, 5]
    assert [f.seq for f in got if f.source == "s2"] == [0, 1, 2]
    assert all(np.array_equal(f.arrays["x"], np.full(3, f.seq, np.float32)) for f in got)
    assert not any(f.replay for f in got)
    assert reader.rejected == 3
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert "no 'frame' field" in reasons and "in the stream of 's2'" in reasons
    reader.read()  # writes the cursors
    last_s1 = client.xrevrange(keys.frames_stream("s1"), count=1)[0][0]
    assert client.get(keys.cursor("s1")) == last_s1
    reader.close()
    assert client.get(keys.lease("s1")) is None


def test_takeover_replays_warmup_frames_then_continues(redis_namespace):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    _publish_frames(url, prefix, "s1", range(10), begin=True)
    first = FrameReader(client, prefix, worker_id="w1", block_ms=50, warmup=4)
    got = _drain(first, lambda g: len(g) >= 10)
    assert [f.seq for f in got] == list(range(10))
    first.close()  # hands s1 back (cursor at seq 9)
    _publish_frames(url, prefix, "s1", range(10, 13))
    second = FrameReader(client, prefix, worker_id="w2", block_ms=50, warmup=4)
    got = _drain(second, lambda g: len(g) >= 7)
    assert [(f.seq, f.replay) for f in got] == [
        (6, True), (7, True), (8, True), (9, True), (10, False), (11, False), (12, False)]
    second.close()


def test_two_workers_split_sources_and_a_lost_lease_is_reported(redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    for s in ("s1", "s2", "s3", "s4"):
        _publish_frames(url, prefix, s, range(2), begin=True)
    a = FrameReader(client, prefix, worker_id="wa", block_ms=20, lease_ms=600)
    b = FrameReader(client, prefix, worker_id="wb", block_ms=20, lease_ms=600)
    end = time.monotonic() + 10
    while time.monotonic() < end and not (len(a.owned) == 2 and len(b.owned) == 2):
        a.read()
        b.read()
    assert len(a.owned) == 2 and len(b.owned) == 2 and not (a.owned & b.owned)
    # the first worker claimed all four, then handed the excess over when the second appeared
    assert a.released() == b.owned
    # another worker steals a lease: the owner notices at its next renewal
    stolen = sorted(a.owned)[0]
    client.set(keys.lease(stolen), "thief", px=60_000)
    end = time.monotonic() + 5
    lost: set = set()
    while time.monotonic() < end and not lost:
        a.read()
        lost |= a.released()
    assert lost == {stolen} and stolen not in a.owned
    a.close()
    b.close()


def test_subscription_survives_a_redis_restart(redis_server):
    from streammood.bus.connection import connect

    client = connect(redis_server.url, timeout=1.0)
    out, t = _collect(client, "restart", 2)
    time.sleep(0.3)
    _publish(redis_server.url, "restart", [make_message("a", 1)])
    redis_server.stop()
    time.sleep(0.5)
    redis_server.start()
    end = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < end:  # until it has re-subscribed
        _publish(redis_server.url, "restart", [make_message("a", 2)])
        time.sleep(0.2)
    t.join(5)
    assert [m.seq for m in out] == [1, 2]
