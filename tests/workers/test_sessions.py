"""Producers fenced and sessions told apart: a second capture with the same source id is refused
in one line, --takeover fences the first out, a restarted capture continues the source's seq and
stream time under a new session id, and every frame and mood carries it; real CLI, real music,
real Redis."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from streammood.audio.sources import FileSource
from streammood.bus.codec import decode_frame
from streammood.bus.frames import FramePublisher, encode_inputs
from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher
from streammood.bus.sessions import (
    ProducerBusyError,
    close_session,
    open_session,
)
from streammood.workers.capture import run_capture
from streammood.workers.infer import run_infer
from streammood.workers.listen import run_listen
from streammood.workers.tagging import MoodStage, feature_stage
from tests.conftest import ROOT
from tests.workers.conftest import history, wait_until


def _headers(client: redis.Redis, prefix: str, source: str) -> list[dict]:
    return [decode_frame(f[b"frame"])[0]
            for _, f in client.xrange(Keys(prefix).frames_stream(source))]


def _capture_cli(url: str, prefix: str, clip, *args: str) -> list[str]:
    return [sys.executable, "-m", "streammood", "capture", "--file", str(clip), "--redis-url", url,
            "--prefix", prefix, "--source-id", "studio", *args]


@pytest.fixture(scope="module")
def long_wav(music_clip, tmp_path_factory):
    """Three minutes of the real clip, looped: a live source that outlasts a slow machine."""
    import numpy as np
    import soundfile as sf

    from streammood.audio.decode import load_audio

    y, sr = load_audio(music_clip)
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.tile(y, 6), sr)
    return path


@pytest.mark.slow
def test_a_second_capture_is_refused_and_takeover_fences_the_first(music_clip, long_wav,
                                                                   redis_namespace):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    stream = Keys(prefix).frames_stream("studio")
    first = subprocess.Popen(_capture_cli(url, prefix, long_wav, "--realtime"), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: client.xlen(stream) >= 4, 60), "the first capture never wrote"
        refused = subprocess.run(_capture_cli(url, prefix, music_clip, "--duration", "2"),
                                 cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        errors = [ln for ln in refused.stderr.splitlines() if ln.startswith("streammood: error")]
        assert len(errors) == 1, refused.stderr
        assert "already being produced by session" in errors[0] and "--takeover" in errors[0]
        before = client.xlen(stream)
        took = subprocess.run(_capture_cli(url, prefix, music_clip, "--duration", "3",
                                           "--takeover"),
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert took.returncode == 0, took.stderr[-2000:]
        assert "taking over session" in took.stderr
        _, err = first.communicate(timeout=30)  # fenced out: it stops by itself
    finally:
        first.kill()
    assert first.returncode == 2
    assert "another producer session took it over" in err
    headers = _headers(client, prefix, "studio")
    sessions = [h["session"] for h in headers]
    a, c = sessions[0], sessions[-1]
    assert a != c and set(sessions) == {a, c}
    cut = sessions.index(c)
    assert sessions[cut:] == [c] * 6 and cut >= before  # nothing of the first after the takeover
    assert [h["seq"] for h in headers] == list(range(len(headers)))  # one stream, seq continues
    assert all(h["t_start"] == pytest.approx(h["seq"] * 0.5) for h in headers)


def test_a_restarted_capture_continues_the_source_and_moods_carry_the_session(
    music_clip, shipped_model, redis_namespace
):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    sessions = []
    for _ in range(2):
        session = open_session(client, prefix, "radio")
        sessions.append(session)
        publisher = FramePublisher(url, prefix)
        source = FileSource(music_clip)
        features = feature_stage(shipped_model, source.sample_rate)
        assert run_capture(source, features, shipped_model.embedder_id, "radio", publisher,
                           duration=5.0, session=session) == 10
        assert publisher.close(timeout=10).published == 10
        assert close_session(client, prefix, session)
    assert (sessions[0].seq0, sessions[0].t0, sessions[0].previous) == (0, 0.0, None)
    assert (sessions[1].seq0, sessions[1].t0) == (10, 5.0)
    assert sessions[1].previous == sessions[0].session
    headers = _headers(client, prefix, "radio")
    assert [h["seq"] for h in headers] == list(range(20))
    assert [h["session"] for h in headers] == [sessions[0].session] * 10 + [
        sessions[1].session] * 10
    moods = MoodPublisher(client, prefix)
    got = []
    run_infer(client, shipped_model, moods, prefix=prefix, max_messages=20, idle_timeout=10,
              on_message=got.append)
    moods.close(timeout=5)
    assert [m.seq for m in got] == list(range(20))
    assert [m.session for m in got] == [h["session"] for h in headers]
    assert [m.t_start for m in got] == [i * 0.5 for i in range(20)]
    # the second session's audio does not continue the first's: its window starts over
    assert [m.window_steps for m in got] == list(range(1, 11)) * 2
    assert [m.session for m in history(client, prefix, "radio")] == [m.session for m in got]


def test_listen_holds_the_producer_lease_and_continues_seq(music_clip, shipped_model,
                                                          redis_namespace):
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    sessions = []
    for _ in range(2):
        session = open_session(client, prefix, "live")
        with pytest.raises(ProducerBusyError, match="already being produced"):
            open_session(client, prefix, "live")
        publisher = MoodPublisher(url, prefix)
        publisher.bind(session)
        source = FileSource(music_clip)
        mood = MoodStage(shipped_model, "live")
        mood.start_session(session.session, session.seq0, session.t0)
        run_listen(source, feature_stage(shipped_model, source.sample_rate), mood, publisher,
                   duration=3.0)
        assert publisher.close(timeout=10).published == 6
        close_session(client, prefix, session)
        sessions.append(session.session)
    got = history(client, prefix, "live")
    assert [m.seq for m in got] == list(range(12))
    assert [m.session for m in got] == [sessions[0]] * 6 + [sessions[1]] * 6
    assert got[6].t_start == 3.0 and got[6].window_steps == 1


def test_a_lapsed_lease_is_taken_again_unless_another_session_opened(shipped_model,
                                                                     real_inputs,
                                                                     redis_namespace):
    """After an outage the lease may have run out: the session takes it again with its next
    frame, unless another session has opened meanwhile — then its frames are refused."""
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    a = open_session(client, prefix, "s")
    pub = FramePublisher(url, prefix)
    pub.bind(a)
    ident = shipped_model.embedder_id

    def send(i):
        pub.publish(encode_inputs("s", real_inputs[i], ident, a.session), "s",
                    seq=real_inputs[i].seq, t_end=real_inputs[i].t_end)
        assert pub.flush(5)

    send(0)
    client.delete(keys.producer("s"))  # the lease ran out (Redis away longer than 3 s)
    send(1)
    assert client.get(keys.producer("s")).decode() == a.session and not pub.fenced
    client.delete(keys.producer("s"))
    b = open_session(client, prefix, "s")  # free: a new session opens without --takeover
    assert b.seq0 == 2 and b.took_over is None
    send(2)
    time.sleep(0.1)
    assert pub.fenced == {"s"} and pub.fenced_frames == 1
    assert client.xlen(keys.frames_stream("s")) == 2
    stats = pub.close(timeout=5)
    assert stats.published == 2


def test_a_new_session_revives_a_dead_lettered_source_past_its_leftovers(redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    for _ in range(3):
        client.xadd(keys.frames_stream("s"), {"frame": b"junk"})
    last = client.xrevrange(keys.frames_stream("s"), count=1)[0][0]
    client.hset(keys.dead_letter, "s", '{"reason": "junk"}')
    open_session(client, prefix, "s")
    assert not client.hexists(keys.dead_letter, "s")
    assert client.get(keys.cursor("s")) == last  # the leftovers are skipped
