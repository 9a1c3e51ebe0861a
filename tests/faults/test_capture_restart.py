"""`capture` SIGKILLed mid-stream and restarted: while the dead session's lease still runs a new
session is refused; once it has run out (≤ 3 s) the restarted capture continues the source's
seq and stream time, `infer` starts a new window there, and no step is doubled."""

from __future__ import annotations

import signal
import time

import pytest
import redis

from streammood.bus.codec import decode_frame
from streammood.bus.keys import Keys
from streammood.bus.sessions import ProducerBusyError, open_session
from tests.faults.conftest import spawn, stop_all
from tests.workers.conftest import history, wait_until


@pytest.mark.slow
def test_capture_killed_and_restarted_continues_the_source(music_clip, redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    args = ["--file", str(music_clip), "--source-id", "cap", "--redis-url", url,
            "--prefix", prefix]
    worker = spawn("infer", "--redis-url", url, "--prefix", prefix, "-q")
    first = spawn("capture", *args, "--realtime")
    try:
        assert wait_until(lambda: client.xlen(keys.frames_stream("cap")) >= 8, 60)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        # a restart now is refused: the dead session's lease has not run out
        with pytest.raises(ProducerBusyError, match="lease runs out in"):
            open_session(client, prefix, "cap")
        assert wait_until(lambda: client.get(keys.producer("cap")) is None, 5)
        lapsed = time.monotonic() - killed
        second = spawn("capture", *args, "--duration", "4")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err[-2000:]
        assert "after session" in err
        n = client.xlen(keys.frames_stream("cap"))
        assert wait_until(lambda: client.xlen(keys.mood_stream("cap")) >= n, 30)
        alive = worker.poll() is None
    finally:
        stop_all([first, worker])
    assert alive and lapsed <= 3.2
    headers = [decode_frame(f[b"frame"])[0] for _, f in client.xrange(keys.frames_stream("cap"))]
    seqs = [h["seq"] for h in headers]
    sessions = [h["session"] for h in headers]
    assert seqs == list(range(len(seqs)))  # one stream: continued, nothing doubled
    assert len(set(sessions)) == 2 and sessions[-8:] == [sessions[-1]] * 8
    cut = len(seqs) - 8
    assert headers[cut]["t_start"] == pytest.approx(cut * 0.5)
    moods = history(client, prefix, "cap")
    assert [m.seq for m in moods] == seqs
    assert moods[cut].window_steps == 1 and moods[cut].session == sessions[-1]
    assert moods[cut - 1].window_steps == cut  # the first session's window ran to its end
