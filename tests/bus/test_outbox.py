import threading
import time

import pytest
import redis

from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher
from streammood.bus.outbox import BoundedQueue, QueueClosedError
from streammood.bus.schema import MoodMessage
from tests.bus.conftest import make_message


def _history(client: redis.Redis, key: str) -> list[MoodMessage]:
    return [MoodMessage.from_json(f[b"json"]) for _, f in client.xrange(key)]


def _started(target, *args) -> tuple[threading.Thread, list]:
    """Run ``target(*args)`` in a thread; the list gets its result or exception."""
    out: list = []

    def run():
        try:
            out.append(target(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the test
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# -- the queue ------------------------------------------------------------------------------

def test_full_queue_drops_the_oldest_and_counts_them():
    q: BoundedQueue[int] = BoundedQueue(3)
    for i in range(5):
        q.put(i)
    assert q.dropped == 2 and len(q) == 3
    assert [q.get(0), q.get(0), q.get(0)] == [2, 3, 4]
    assert q.get(0) is None
    q.put(5)
    assert q.get(0) == 5 and q.dropped == 2


def test_lossless_queue_blocks_the_producer_and_loses_nothing():
    q: BoundedQueue[int] = BoundedQueue(2, lossless=True)
    q.put(0)
    q.put(1)
    producer, out = _started(q.put, 2)
    producer.join(0.2)
    assert producer.is_alive() and len(q) == 2  # waiting for room, nothing dropped
    assert q.get() == 0
    producer.join(5)
    assert not producer.is_alive() and out == [None]
    assert [q.get(0), q.get(0)] == [1, 2] and q.dropped == 0


def test_lossless_queue_hands_over_a_long_run_in_order():
    q: BoundedQueue[int] = BoundedQueue(2, lossless=True)
    got: list[int] = []
    consumer = threading.Thread(target=lambda: got.extend(iter(lambda: q.get(2), None)))
    consumer.start()
    for i in range(200):
        q.put(i)
    q.close()
    consumer.join(5)
    assert got == list(range(200)) and q.dropped == 0


def test_close_wakes_every_waiter_and_the_rest_is_drained():
    q: BoundedQueue[int] = BoundedQueue(1, lossless=True)
    getter, got = _started(q.get)  # no timeout: only an item or close ends it
    taker, taken = _started(q.take, 5)
    getter.join(0.1)
    taker.join(0.1)
    assert getter.is_alive() and taker.is_alive()
    q.close()
    getter.join(5)
    taker.join(5)
    assert got == [None] and taken == [[]]

    full: BoundedQueue[int] = BoundedQueue(1, lossless=True)
    full.put(7)
    producer, out = _started(full.put, 8)
    producer.join(0.1)
    assert producer.is_alive()
    full.close()
    producer.join(5)
    assert len(out) == 1 and isinstance(out[0], QueueClosedError)
    with pytest.raises(QueueClosedError):
        full.put(9)
    assert full.get() == 7 and full.get() is None  # what was in it still comes out
    assert full.dropped == 0


def test_held_items_count_against_the_bound_and_come_back_in_order():
    q: BoundedQueue[int] = BoundedQueue(4)
    for i in range(3):
        q.put(i)
    batch = q.take(2)
    assert batch == [0, 1] and len(q) == 1 and q.counts() == (1, 2, 0)
    q.put(3)
    q.put(4)  # 2 held + 3 waiting > 4: the oldest waiting one goes
    assert q.counts() == (2, 2, 1) and q.get(0) == 3
    q.restore(batch)  # a failed write: back at the front, in order
    assert q.counts() == (3, 0, 1)
    assert q.take(10) == [0, 1, 4]
    q.settle(3)
    assert q.counts() == (0, 0, 1)


def test_restore_beyond_the_bound_drops_the_oldest():
    q: BoundedQueue[int] = BoundedQueue(3)
    for i in range(3):
        q.put(i)
    batch = q.take(3)
    q.put(3)  # everything waiting is newer than what is held: it is the one dropped
    q.put(4)
    assert q.counts() == (0, 3, 2)
    q.restore(batch)
    q.put(5)
    assert q.counts() == (3, 0, 3) and q.take(5) == [1, 2, 5]


def test_join_waits_for_held_items_and_settle_can_count_them_dropped():
    q: BoundedQueue[str] = BoundedQueue(10)
    q.put("a")
    q.put("b")
    batch = q.take(10)
    assert not q.join(0)
    waiter, out = _started(q.join)
    q.settle(len(batch), dropped=True)
    waiter.join(5)
    assert out == [True] and q.dropped == 2
    q.put("c")
    assert q.clear() == 1 and q.dropped == 3 and q.join(0)


# -- the outbox, through a publisher --------------------------------------------------------

def test_update_metrics_adds_fields(redis_namespace):
    url, prefix = redis_namespace
    pub = MoodPublisher(url, prefix, metrics_id="w1")
    pub.update_metrics(steps_dropped=3, sources=2)
    pub.publish(make_message())
    pub.close()
    metrics = redis.Redis.from_url(url).hgetall(Keys(prefix).metrics("w1"))
    assert metrics[b"steps_dropped"] == b"3" and metrics[b"sources"] == b"2"


def test_a_closed_publisher_refuses_new_items(redis_namespace):
    url, prefix = redis_namespace
    pub = MoodPublisher(url, prefix)
    pub.publish(make_message(seq=0))
    assert pub.close().published == 1
    with pytest.raises(RuntimeError, match="MoodPublisher is closed"):
        pub.publish(make_message(seq=1))


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
