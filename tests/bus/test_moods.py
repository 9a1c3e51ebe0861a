import logging
import threading
import time

import pytest
import redis

from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher, read_history, subscribe_moods
from streammood.bus.schema import MoodMessage
from tests.bus.conftest import make_message


def _history(client: redis.Redis, key: str) -> list[MoodMessage]:
    return [MoodMessage.from_json(f[b"json"]) for _, f in client.xrange(key)]


def _publish(url, prefix, messages):
    with MoodPublisher(url, prefix) as pub:
        for m in messages:
            pub.publish(m)


def _wait_subscribed(client, prefix, timeout=30.0):
    """Until someone subscribes to the mood channel of ``prefix`` (or ``timeout`` s pass)."""
    channel = Keys(prefix).mood_channel
    end = time.monotonic() + timeout
    while client.pubsub_numsub(channel)[0][1] == 0 and time.monotonic() < end:
        time.sleep(0.05)


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


# -- publishing -----------------------------------------------------------------------------

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


def test_publish_rejects_what_is_not_a_message(redis_namespace):
    url, prefix = redis_namespace
    with MoodPublisher(url, prefix) as pub, pytest.raises(TypeError):
        pub.publish({"valence": 0})


# -- history and subscription ---------------------------------------------------------------

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
    with caplog.at_level(logging.WARNING, logger="streammood.bus.moods"):
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


def test_subscription_survives_a_redis_restart(redis_server):
    from streammood.bus.connection import connect

    client = connect(redis_server.url, timeout=1.0)
    out, t = _collect(client, "restart", 2)
    _wait_subscribed(client, "restart")  # message 1 comes live (the restart loses the history)
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


def test_a_subscriber_started_while_redis_is_down_waits_for_it(redis_server):
    """Redis away when the subscription starts (a restart, a slow boot): the subscriber retries
    with backoff instead of raising, then replays the history and goes on live."""
    from streammood.bus.connection import connect

    redis_server.stop()
    client = connect(redis_server.url, timeout=1.0, check=False)
    out, t = _collect(client, "late", 2, history=5)
    time.sleep(1.0)
    assert t.is_alive(), "the subscriber gave up while Redis was down"
    redis_server.start()
    _publish(redis_server.url, "late", [make_message("a", 1), make_message("a", 2)])
    t.join(10)
    assert [m.seq for m in out] == [1, 2]


def test_subscribe_command_survives_poison_on_the_public_channel(redis_namespace):
    """A deeply nested, an oversized and a garbage message on the channel: `streammood
    subscribe` logs and skips them and prints the valid ones (it used to die on the first)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammood", "subscribe", "--redis-url", url, "--prefix", prefix,
         "--count", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_subscribed(client, prefix)
        client.publish(keys.mood_channel, "[" * 30_000 + "]" * 30_000)  # RecursionError
        client.publish(keys.mood_channel, '{"schema":"1","x":' + "[" * 40 + "]" * 40 + "}")
        client.publish(keys.mood_channel, b"x" * (1 << 20))
        client.publish(keys.mood_channel, b"\xff\x00")
        for seq in (1, 2):
            client.publish(keys.mood_channel, make_message("a", seq).to_json())
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert len(out.splitlines()) == 2 and all(" a " in line for line in out.splitlines())
    assert err.count("skipping malformed mood message") == 4
    assert "Traceback" not in err


def test_detected_changes_go_to_the_capped_changes_stream(redis_namespace):
    """Only messages that detected a change are appended to {prefix}:changes:{source}, with
    where the segment began and how late it was known; the mood history has every message."""
    import json

    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    msgs = [make_message("radio1", i) for i in range(30)]
    msgs[20] = make_message(
        "radio1", 20, segment_start=7.0, segment_steps=4, window_steps=4, changed=True
    )
    with MoodPublisher(url, prefix, changes_maxlen=50) as pub:
        for m in msgs:
            pub.publish(m)
    assert len(_history(client, keys.mood_stream("radio1"))) == 30
    entries = client.xrange(keys.changes_stream("radio1"))
    assert len(entries) == 1
    event = json.loads(entries[0][1][b"json"])
    assert event["source"] == "radio1" and event["seq"] == 20 and event["schema"] == "2"
    assert (event["segment_start"], event["detected_at"], event["lookahead_s"]) == (7.0, 10.5, 3.5)
    assert keys.changes_stream("radio1") == f"{prefix}:changes:radio1"


@pytest.mark.slow
def test_subscribe_sees_every_step_exactly_once_across_redis_restarts(persistent_redis):
    """Redis SIGKILLed and restarted twice while a real publisher publishes 240 steps:
    `streammood subscribe` catches up from the history stream after each reconnect and prints
    every step exactly once, in order (it lost ~22 per outage before)."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    server, prefix, n = persistent_redis, "outage", 240
    client = redis.Redis.from_url(server.url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streammood", "subscribe", "--redis-url", server.url, "--prefix",
         prefix, "--json", "--count", str(n)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_subscribed(client, prefix)
    client.close()
    publisher = MoodPublisher(server.url, prefix, backoff_max=0.5)

    def produce():
        for i in range(n):
            publisher.publish(make_message("a", i, emitted_at=time.time()))
            time.sleep(0.025)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        for _ in range(2):
            time.sleep(1.5)
            server.stop()  # SIGKILL
            time.sleep(1.0)
            server.start()
        producer.join(30)
        publisher.close(timeout=20)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    seqs = [json.loads(line)["seq"] for line in out.splitlines()]
    assert seqs == list(range(n)), f"missing {sorted(set(range(n)) - set(seqs))[:20]}"
    assert "caught up" in err
