"""Redis Cluster: against a real three-master cluster on loopback, every key of a source shares
one hash slot, moods of sources on two shards go out by sharded pub/sub, and capture, infer and
subscribe (the real CLI) work as on one server: every step once, on the shard of its source."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from streammood.bus.connection import connect, is_cluster
from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher, subscribe_moods
from streammood.bus.schema import MoodMessage
from tests.bus.conftest import make_message
from tests.conftest import ROOT


def _sources_on_two_shards(cluster, keys: Keys) -> list[str]:
    found: dict[int, str] = {}
    for i in range(50):
        src = f"radio{i}"
        found.setdefault(cluster.port_of(keys.mood_stream(src)), src)
        if len(found) == 2:
            return sorted(found.values())
    raise AssertionError("no two sources on different shards")


def test_cluster_layout_and_sharded_moods(redis_cluster):
    client = connect(redis_cluster.url)
    assert is_cluster(client)
    keys = Keys.for_client(client)
    assert keys.cluster and keys.mood_stream("radio1") == "streammood:mood:{radio1}"
    per_source = [keys.mood_stream, keys.frames_stream, keys.cursor, keys.lease, keys.producer,
                  keys.session, keys.published, keys.changes_stream, keys.mood_channel_for]
    assert len({client.keyslot(k("radio1")) for k in per_source}) == 1
    a, b = _sources_on_two_shards(redis_cluster, keys)
    got: list[MoodMessage] = []
    publisher = MoodPublisher(redis_cluster.url)
    # the subscriber finds the sources in the sources set: publish once before
    publisher.publish(make_message(a, 0, session="s1"))
    publisher.publish(make_message(b, 0, session="s1"))
    assert publisher.flush(5)
    stream = subscribe_moods(client, history=2, idle_timeout=5.0)
    try:
        got += [next(stream), next(stream)]  # the history; subscribed from here on
        for seq in range(1, 6):
            publisher.publish(make_message(a, seq, session="s1"))
            publisher.publish(make_message(b, seq, session="s1"))
            publisher.publish(make_message(a, seq, session="s1"))  # a redelivery: not doubled
        for msg in stream:
            got.append(msg)
            if len(got) >= 12:
                break
    finally:
        stream.close()
    stats = publisher.close(timeout=5)
    assert stats.published == 12 and publisher.duplicates == 5
    assert sorted((m.source, m.seq) for m in got) == sorted(
        (s, i) for s in (a, b) for i in range(6))
    for src in (a, b):
        assert [MoodMessage.from_json(f[b"json"]).seq
                for _, f in client.xrange(keys.mood_stream(src))] == list(range(6))


@pytest.mark.slow
def test_capture_infer_and_subscribe_on_a_cluster(redis_cluster, music_clip):
    url = redis_cluster.url
    client = connect(url)
    keys = Keys.for_client(client)
    a = _sources_on_two_shards(redis_cluster, keys)[0]

    def cli(*args):
        return subprocess.Popen([sys.executable, "-m", "streammood", *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    worker = cli("infer", "--redis-url", url, "-q")
    subscriber = cli("subscribe", "--redis-url", url, "--count", "10", "--json", "--source", a)
    captures = [cli("capture", "--file", str(music_clip), "--duration", "5", "--source-id", a,
                    "--redis-url", url)]
    try:
        for c in captures:
            _, err = c.communicate(timeout=180)
            assert c.returncode == 0, err[-2000:]
            assert "10 frames captured, 10 written" in err
        out, err = subscriber.communicate(timeout=120)
        assert subscriber.returncode == 0, err[-2000:]
    finally:
        for p in (worker, subscriber, *captures):
            p.kill()
            p.wait()
    lines = [MoodMessage.from_json(line) for line in out.splitlines()]
    assert sorted((m.source, m.seq) for m in lines) == [(a, i) for i in range(10)]
    for src in (a,):
        history = [MoodMessage.from_json(f[b"json"]) for _, f in
                   client.xrange(keys.mood_stream(src))]
        assert [m.seq for m in history] == list(range(10))
        assert len({m.session for m in history}) == 1
        # the source's keys all live on the shard of its slot
        port = redis_cluster.port_of(keys.mood_stream(src))
        assert {redis_cluster.port_of(k(src)) for k in (keys.frames_stream, keys.cursor,
                                                        keys.session)} == {port}


def test_a_subscriber_started_while_its_shard_is_away_waits_for_it(redis_cluster):
    """The master of the source's slot is down when `subscribe` starts (the history read fails
    on it): the subscriber retries until the shard is back, then replays the history."""
    client = connect(redis_cluster.url)
    keys = Keys.for_client(client)
    src = next(s for s in (f"radio{i}" for i in range(50))
               if redis_cluster.port_of(keys.mood_stream(s)) != redis_cluster.ports[0])
    publisher = MoodPublisher(redis_cluster.url)
    for seq in range(3):
        publisher.publish(make_message(src, seq, session="s1"))
    assert publisher.flush(5)
    publisher.close(timeout=5)
    shard = redis_cluster.port_of(keys.mood_stream(src))
    redis_cluster.kill(shard)
    got: list[MoodMessage] = []

    def run() -> None:
        for msg in subscribe_moods(connect(redis_cluster.url), source=src, history=3,
                                   idle_timeout=30.0):
            got.append(msg)
            if len(got) == 3:
                break

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.5)
    assert t.is_alive(), "the subscriber gave up while the shard was away"
    redis_cluster.start_node(shard)
    redis_cluster.wait_ok()
    t.join(30)
    assert [m.seq for m in got] == [0, 1, 2]
