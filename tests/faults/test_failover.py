"""Fast, exact failover: the `infer` worker that owns a live source is SIGKILLed twice; another
takes the source over within 2 s each time, rebuilds the exact window from the frame stream,
and the mood history holds every step once, in order, equal to an uninterrupted run; real
processes, real music, real Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

from streammood.bus.frames import FramePublisher, encode_inputs
from streammood.bus.keys import Keys
from streammood.bus.sessions import close_session, open_session
from streammood.workers.tagging import MoodStage
from tests.conftest import ROOT
from tests.workers.conftest import fields, history, wait_until

STEP_INTERVAL = 0.125
"""Seconds between frames: four times real time, so the test stays short."""


def _worker(url: str, prefix: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streammood", "infer", "--redis-url", url, "--prefix", prefix,
         "--quiet"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.slow
def test_a_killed_owner_is_replaced_within_2_s_with_no_step_lost_or_doubled(
    real_inputs, shipped_model, redis_namespace
):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    inputs = real_inputs
    workers = [_worker(url, prefix) for _ in range(3)]
    by_pid = {w.pid: w for w in workers}
    takeovers: list[float] = []
    try:
        assert wait_until(lambda: client.zcard(keys.workers) == 3, 90), "workers did not start"
        session = open_session(client, prefix, "live")
        frames = FramePublisher(url, prefix)
        frames.bind(session)

        def produce():
            for item in inputs:  # a live source: one frame per step, paced
                frames.publish(encode_inputs("live", item, shipped_model.embedder_id,
                                             session.session), "live",
                               seq=item.seq, t_end=item.t_end)
                time.sleep(STEP_INTERVAL)

        producer = threading.Thread(target=produce)
        producer.start()
        for mark in (12, 32):
            assert wait_until(lambda m=mark: client.xlen(keys.mood_stream("live")) >= m, 30)
            owner = client.get(keys.lease("live")).decode()
            victim = by_pid[int(owner.rsplit("-", 2)[1])]
            before = client.xlen(keys.mood_stream("live"))
            killed = time.monotonic()
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            assert wait_until(
                lambda b=before: client.xlen(keys.mood_stream("live")) > b, 10, step=0.005
            )
            takeovers.append(time.monotonic() - killed)
            new_owner = client.get(keys.lease("live")).decode()
            assert new_owner != owner
        producer.join(30)
        frames.close(timeout=10)
        close_session(client, prefix, session)
        assert wait_until(lambda: client.xlen(keys.mood_stream("live")) >= len(inputs), 30)
    finally:
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGINT)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                w.kill()
    got = history(client, prefix, "live")
    assert [m.seq for m in got] == list(range(len(inputs))), "a step is missing or doubled"
    # the same moods as one worker that never stopped
    stage = MoodStage(shipped_model, "live")
    stage.start_session(session.session)
    reference = [stage.push(item)[0] for item in inputs]
    assert [fields(m) for m in got] == [fields(m) for m in reference]
    assert all(m.session == session.session for m in got)
    assert len(takeovers) == 2 and max(takeovers) < 2.0, f"takeover took {takeovers} s"
    print(f"takeover seconds: {[round(t, 3) for t in takeovers]}")
    survivors = [w for w in workers if w.returncode != -signal.SIGKILL]
    assert len(survivors) == 1 and survivors[0].returncode == 0
