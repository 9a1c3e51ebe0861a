"""Many sources in one process (``listen/capture --sources``), on real music, the real Redis and
the real CLI; URL sources against a real Icecast server that is stopped and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import redis

from streammood.audio.decode import load_audio
from streammood.audio.framer import n_steps
from streammood.audio.mux import Inbox, SourcesError, SourceSpec, load_sources, parse_sources
from streammood.bus.codec import decode_frame
from streammood.bus.frames import FramePublisher
from streammood.bus.keys import Keys
from streammood.bus.schema import MoodMessage
from streammood.features.extractor import extract_offline
from streammood.workers.many import run_many
from tests import icecast
from tests.features.parity import assert_parity
from tests.workers.test_shutdown import _assert_clean, _left, _start


def _history(url: str, prefix: str, source: str) -> list[MoodMessage]:
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange(Keys(prefix).mood_stream(source))
    finally:
        client.close()
    return [MoodMessage.from_json(f[b"json"]) for _, f in entries]


def test_sources_file_is_checked(tmp_path):
    good = tmp_path / "s.toml"
    good.write_text(
        '[[source]]\nid = "a"\nfile = "x.mp3"\nloop = true\n'
        '[[source]]\nid = "b"\nurl = "http://h/s"\n[[source]]\nid = "c"\ndevice = 2\n'
    )
    a, b, c = load_sources(good)
    assert a == SourceSpec("a", "file", str(tmp_path / "x.mp3"), True, True, None, 0)
    assert (b.kind, b.target, b.retries) == ("url", "http://h/s", None)
    assert (c.kind, c.target) == ("device", 2)
    for bad, why in [
        ({}, "no \\[\\[source\\]\\]"),
        ({"source": [{"id": "a"}]}, "exactly one"),
        ({"source": [{"id": "a", "file": "f", "url": "u"}]}, "exactly one"),
        ({"source": [{"id": "a", "file": "f"}, {"id": "a", "file": "g"}]}, "twice"),
        ({"source": [{"id": "a", "url": "u", "loop": True}]}, "for files"),
        ({"source": [{"id": "a", "file": "f", "volume": 3}]}, "unknown key"),
    ]:
        with pytest.raises(SourcesError, match=why):
            parse_sources(bad)
    with pytest.raises(SourcesError, match="not found"):
        load_sources(tmp_path / "missing.toml")


def test_inbox_drops_the_oldest_audio_of_a_live_source_only():
    box = Inbox(2, max_backlog_s=1.0)
    box.set_lossless(1)
    for i in range(30):
        block = np.full(1000, i, np.float32)
        box.put(0, block, 10_000, float(i), 0)
        box.put(1, block, 10_000, float(i), 0)
    got = box.take(0)
    live, gap = got.audio[0]
    kept = [c.captured_at for c in live]
    assert gap and kept == [float(i) for i in range(30 - len(kept), 30)]  # the newest, in order
    assert len(kept) <= 10  # never more than max_backlog_s waiting
    # each overflow drops down to a quarter of the bound: 0.2 s kept, then 9 more, ...
    assert box.dropped_seconds[0] == pytest.approx(3.0 - 0.1 * len(kept))
    assert box.dropped_seconds[0] >= 2.0
    assert len(got.audio[1][0]) == 30 and not got.audio[1][1]  # lossless: all kept
    box.wake(1)
    box.end(0, "gone")
    got = box.take(0)
    assert got.woken == {1} and got.ended == {0: "gone"} and not got.audio


def test_listen_sources_tags_every_good_source_and_reports_the_bad(
    fourq_clips, redis_namespace, tmp_path
):
    """The real CLI over a sources file: three real clips, a missing file and a corrupt one.
    Every step of every good clip is published in order; the bad sources are reported and
    dropped without stopping the others; nothing is left running."""
    url, prefix = redis_namespace
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"this is not audio" * 100)
    clips = fourq_clips[:3]
    lines = [
        f'[[source]]\nid = "c{i}"\nfile = "{p}"\nrealtime = false\n' for i, p in enumerate(clips)
    ]
    lines += ['[[source]]\nid = "missing"\nfile = "nowhere.mp3"\n']
    lines += [f'[[source]]\nid = "corrupt"\nfile = "{corrupt}"\n']
    sources = tmp_path / "sources.toml"
    sources.write_text("".join(lines))
    proc = _start(
        ["listen", "--sources", str(sources), "--redis-url", url, "--prefix", prefix, "-q"]
    )
    left = _left(proc, timeout=300)
    _assert_clean(left)
    said = " ".join(left["stderr"].split())  # the console wraps long lines
    assert "missing: 0 steps" in said and "file not found" in said
    assert "corrupt: 0 steps" in said and "cannot decode" in said
    for i, clip in enumerate(clips):
        y, sr = load_audio(clip)
        msgs = _history(url, prefix, f"c{i}")
        assert [m.seq for m in msgs] == list(range(n_steps(len(y), sr)))
        assert all(m.captured_at is not None for m in msgs)


def test_capture_sources_frames_equal_the_offline_features(
    fourq_clips, shipped_model, redis_namespace
):
    """Through the shared embedding service, 100 ms chunks and the non-blocking release, each
    source's frames equal the whole-file features of its clip (the parity criterion)."""
    url, prefix = redis_namespace
    clips = fourq_clips[:2]
    specs = [SourceSpec(f"p{i}", "file", str(p), realtime=False) for i, p in enumerate(clips)]
    publisher = FramePublisher(url, prefix, metrics_id="capture-many")
    try:
        stats = run_many(specs, shipped_model, frames=publisher, duration=12.0)
    finally:
        publisher.close(timeout=10)
    assert stats.patches >= 4
    client = redis.Redis.from_url(url)
    embedder = shipped_model.embedder()
    for spec, clip in zip(specs, clips, strict=True):
        frames = [
            decode_frame(f[b"frame"]) for _, f in client.xrange(Keys(prefix).frames_stream(spec.id))
        ]
        assert [h["seq"] for h, _ in frames] == list(range(24))
        y, sr = load_audio(clip)
        offline = extract_offline(y[: 14 * sr], sr, embedder)
        for name in ("mfcc", "lld", "emb"):
            got = np.stack([a[name] for _, a in frames])
            assert_parity(got, getattr(offline, name)[:24], name)
    client.close()


def test_realtime_sources_carry_the_pacing_clock(fourq_clips, shipped_model):
    specs = [SourceSpec(f"r{i}", "file", str(p)) for i, p in enumerate(fourq_clips[:3])]
    got: list[tuple[float, MoodMessage]] = []
    t0 = time.time()
    stats = run_many(
        specs, shipped_model, duration=4.0, on_message=lambda m, _s: got.append((time.time(), m))
    )
    assert {s: v.steps for s, v in stats.sources.items()} == {"r0": 8, "r1": 8, "r2": 8}
    first = []
    for i in range(3):
        mine = [(seen, m) for seen, m in got if m.source == f"r{i}"]
        starts = [m.captured_at - m.t_end for _, m in mine]
        assert max(starts) - min(starts) < 1e-3  # one pacing clock, 0.5 s per step
        assert all(0 < seen - m.captured_at < 2.0 for seen, m in mine)
        first.append(starts[0])
    assert 0 < first[0] - t0 < 30  # after the models' and tables' set-up
    # sources open staggered over the 5 s between patches (source i of 3: i * 5/3 s late)
    np.testing.assert_allclose(np.array(first) - first[0], [0, 5 / 3, 10 / 3], atol=0.5)


@pytest.mark.slow
@pytest.mark.skipif(icecast.available() is not None, reason=str(icecast.available()))
def test_url_source_resumes_after_the_icecast_server_restarts(
    music_clip, redis_namespace, tmp_path
):
    """``listen --url`` on a real Icecast stream fed by ``ffmpeg -re``: moods arrive; the server
    (and its feeder) is killed and restarted mid-stream; tagging resumes after a counted gap,
    ``seq`` and stream time only go forward, and nothing is left running."""
    url, prefix = redis_namespace
    server = icecast.Icecast(tmp_path / "icecast", music_clip)
    server.start()
    try:
        proc = _start(
            ["listen", "--url", server.url, "--source-id", "radio", "--redis-url", url]
            + ["--prefix", prefix, "--duration", "120", "-q"]
        )
        client = redis.Redis.from_url(url)
        key = Keys(prefix).mood_stream("radio")

        def wait_for(n: int, timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while client.xlen(key) < n and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
            assert client.xlen(key) >= n, server.log()

        wait_for(10, 90)
        server.stop()
        time.sleep(3.0)
        before = client.xlen(key)
        server.start()
        wait_for(before + 10, 90)
        proc.send_signal(2)  # Ctrl-C: a clean stop
        left = _left(proc)
        client.close()
    finally:
        server.cleanup()
    _assert_clean(left)
    msgs = _history(url, prefix, "radio")
    seqs = [m.seq for m in msgs]
    assert seqs == sorted(set(seqs)) and seqs[0] == 0
    jumps = [b - a for a, b in zip(seqs, seqs[1:], strict=False) if b - a > 1]
    assert len(jumps) == 1 and jumps[0] >= 6  # the 3 s outage at least, and one gap only
    assert all(m.t_start == m.seq * 0.5 for m in msgs)
    assert all(m.captured_at is not None and m.captured_at <= m.emitted_at for m in msgs)
    said = " ".join(left["stderr"].split())  # the console wraps long lines
    assert "radio: " in said and " 1 gaps" in said and "1 reconnects" in said, said


DEVICE_RUN = r"""
import sys, time
from streammood.audio.mux import SourceSpec
from streammood.runtime.artifact import load_artifact
from streammood.workers.many import run_many
got = []
stats = run_many([SourceSpec("dev", "device", "system")], load_artifact(None), duration=3.0,
                 on_message=lambda m, s: got.append((time.time(), m.seq, m.captured_at)))
s = stats.sources["dev"]
print("STATS", s.steps, s.gaps, s.errors)
for row in got:
    print("MSG", *row)
"""


def test_device_source_paced_by_jack(jack_dummy_server):
    """A real PortAudio device paced in real time (JACK's dummy driver, 48 kHz stereo) as a
    ``device`` source: its callback feeds the inbox, every step is tagged, and ``captured_at``
    (PortAudio's ADC time mapped to the wall clock) advances 0.5 s per step and precedes the
    message."""
    proc = subprocess.run(
        [sys.executable, "-c", DEVICE_RUN],
        env=jack_dummy_server,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "STATS 6 0 0" in lines, proc.stdout + proc.stderr[-2000:]
    rows = [tuple(map(float, ln.split()[1:])) for ln in lines if ln.startswith("MSG")]
    assert [int(seq) for _, seq, _ in rows] == list(range(6))
    caps = np.array([cap for _, _, cap in rows])
    np.testing.assert_allclose(np.diff(caps), 0.5, atol=0.05)
    assert all(0 < seen - cap < 2.0 for seen, _, cap in rows)


DEVICE_STALL = r"""
import sys
from streammood.audio.mux import SourceSpec
from streammood.bus.moods import MoodPublisher
from streammood.runtime.artifact import load_artifact
from streammood.workers.many import run_many
url, prefix = sys.argv[1:3]
moods = MoodPublisher(url, prefix)
try:
    stats = run_many([SourceSpec("dev", "device", "system")], load_artifact(None), moods=moods,
                     duration=6.0, on_message=lambda m, s: print("MSG", m.seq, flush=True))
finally:
    moods.close(timeout=10)
s = stats.sources["dev"]
print("STATS", s.steps, s.overflows, s.underflows, flush=True)
"""


def test_device_overflows_are_counted_per_source(jack_dummy_server, redis_namespace):
    """A ``device`` source whose process stalls (SIGSTOP while JACK keeps the clock: a real
    PortAudio input overflow) counts the overflow in its stats and in its own metrics hash."""
    url, prefix = redis_namespace
    proc = subprocess.Popen(
        [sys.executable, "-c", DEVICE_STALL, url, prefix],
        env=jack_dummy_server,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # tagging has begun: the device stream is running
            if line.startswith("MSG 2"):
                break
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGCONT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    steps, overflows, underflows = map(int, rest.split("STATS ")[1].split())
    assert steps >= 10 and overflows >= 1, rest + err[-2000:]
    client = redis.Redis.from_url(url)
    try:
        m = {k.decode(): v.decode() for k, v in client.hgetall(Keys(prefix).metrics("dev")).items()}
    finally:
        client.close()
    assert int(m["audio_overflows"]) == overflows and int(m["audio_underflows"]) == underflows
    assert int(m["steps"]) == steps
