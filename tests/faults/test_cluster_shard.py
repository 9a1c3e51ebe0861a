"""A Redis Cluster shard restart: the master that holds a live source's slot is SIGKILLed
mid-stream and started again (append-only file, fsync always); `infer` and `subscribe` ride it
out and every step is in the history, and printed, exactly once."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from streammood.bus.connection import connect
from streammood.bus.frames import FramePublisher, encode_inputs
from streammood.bus.keys import Keys
from streammood.bus.schema import MoodMessage
from streammood.bus.sessions import close_session, open_session
from tests.bus.conftest import redis_cluster  # noqa: F401 - a fixture, re-exported here
from tests.faults.conftest import spawn, stop_all
from tests.workers.conftest import wait_until


@pytest.mark.slow
def test_a_shard_restart_loses_and_doubles_nothing(redis_cluster, real_inputs,  # noqa: F811
                                                   shipped_model):
    url = redis_cluster.url
    client = connect(url)
    keys = Keys.for_client(client)
    shard = redis_cluster.port_of(keys.mood_stream("live"))
    n = len(real_inputs)
    worker = spawn("infer", "--redis-url", url, "-q")
    subscriber = None
    try:
        assert wait_until(lambda: client.zcard(keys.workers) == 1, 90)
        session = open_session(client, "streammood", "live")
        frames = FramePublisher(url)
        frames.bind(session)

        def produce():
            for item in real_inputs:
                frames.publish(encode_inputs("live", item, shipped_model.embedder_id,
                                             session.session), "live",
                               seq=item.seq, t_end=item.t_end)
                time.sleep(0.125)

        def moods() -> int:
            try:
                return client.xlen(keys.mood_stream("live"))
            except Exception:  # noqa: BLE001 - the shard is away
                return 0

        producer = threading.Thread(target=produce)
        producer.start()
        assert wait_until(lambda: moods() >= 4, 60)
        subscriber = spawn("subscribe", "--redis-url", url, "--source", "live", "--json",
                           "--history", "100", "--count", str(n), stdout=subprocess.PIPE)
        first = subscriber.stdout.readline()  # it is up (history read) before the shard goes
        assert first, "subscribe printed nothing"
        assert wait_until(lambda: moods() >= 16, 60)
        redis_cluster.kill(shard)  # SIGKILL the master of the source's slot
        time.sleep(1.0)
        redis_cluster.start_node(shard)
        redis_cluster.wait_ok()
        producer.join(60)
        frames.close(timeout=20)
        close_session(client, "streammood", session)
        assert wait_until(lambda: moods() >= n, 60)
        out = subscriber.stdout.read()  # the rest of its lines, to its exit (--count n); not
        subscriber.wait(60)  # communicate(): that reads the pipe past what readline buffered
        err = subscriber.stderr.read()
        alive = worker.poll() is None
    finally:
        stop_all([p for p in (worker, subscriber) if p is not None])
    assert alive and worker.returncode == 0
    entries = client.xrange(keys.mood_stream("live"))
    history = [MoodMessage.from_json(f[b"json"]) for _, f in entries]
    assert [m.seq for m in history] == list(range(n)), "lost, doubled or reordered"
    assert subscriber.returncode == 0, err[-2000:]
    lines = (first + out).splitlines()
    assert sorted(json.loads(line)["seq"] for line in lines) == list(range(n))
