"""Producer sessions and per-source metrics of many sources in one process (``listen/capture
--sources``): each source holds its own session, continues its ``seq`` and stream time across
runs, is refused alone when another live producer holds it, is fenced alone when another one
takes it over, gives its lease back on a clean stop and has its own metrics hash; real music,
real Redis, and the real CLI."""

from __future__ import annotations

import threading

import pytest
import redis

from streammood.audio.mux import SourceSpec
from streammood.bus.codec import decode_frame
from streammood.bus.frames import FramePublisher
from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher
from streammood.bus.sessions import (
    ProducerBusyError,
    close_session,
    open_session,
    renew_session,
)
from streammood.workers.many import run_many
from tests.workers.conftest import WorkerThread, history, wait_until
from tests.workers.test_shutdown import _assert_clean, _left, _start


def _text(d: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in d.items()}


def _specs(clips, ids, **kw) -> list[SourceSpec]:
    return [SourceSpec(sid, "file", str(p), realtime=False, **kw)
            for sid, p in zip(ids, clips, strict=True)]


def test_renewing_a_lease_between_writes_is_fenced_like_a_write(redis_namespace):
    """What the calling thread of a ``--sources`` run does every second: renew the lease while
    it is the session's, take it again once lapsed while the session hash still names the
    session, and report fenced once another session holds the source."""
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    a = open_session(client, prefix, "r")
    client.pexpire(keys.producer("r"), 200)
    assert renew_session(client, prefix, a) is True
    assert client.pttl(keys.producer("r")) > 2_000  # renewed to the full lease
    client.delete(keys.producer("r"))  # lapsed (e.g. Redis away): taken again
    assert renew_session(client, prefix, a) is True
    assert client.get(keys.producer("r")).decode() == a.session
    b = open_session(client, prefix, "r", takeover=True)
    assert renew_session(client, prefix, a) is False
    assert client.get(keys.producer("r")).decode() == b.session  # untouched
    client.delete(keys.producer("r"))  # b's lapsed: a may not take it, b still named
    assert renew_session(client, prefix, a) is False and client.get(keys.producer("r")) is None
    client.close()


def test_each_source_continues_its_session_and_has_its_own_metrics(
    fourq_clips, shipped_model, redis_namespace
):
    """Two runs of two sources: each run opens one session per source (messages stamped with
    it), the second continues each source's seq and stream time where its last session ended
    (its window starts over there), leases are given back at the end, and each source's metrics
    hash counts its own steps."""
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    ids = ["m0", "m1"]
    runs = []
    for steps in (6, 4):
        moods = MoodPublisher(url, prefix, metrics_id="listen-many")
        try:
            stats = run_many(_specs(fourq_clips[:2], ids), shipped_model, moods=moods,
                             duration=steps * 0.5, client=client, prefix=prefix)
        finally:
            moods.close(timeout=10)
        runs.append(stats)
        for sid in ids:
            assert client.get(keys.producer(sid)) is None  # closed on the clean stop
            assert stats.sources[sid].steps == steps
            m = _text(client.hgetall(keys.metrics(sid)))
            assert m["session"] == stats.sources[sid].session and m["state"] in ("running", "ended")
            assert int(m["steps"]) == int(m["moods_published"]) == steps
            assert int(m["rejected_steps"]) == 0 and int(m["gaps"]) == 0
    first, second = ({sid: r.sources[sid].session for sid in ids} for r in runs)
    assert len(set(first.values()) | set(second.values())) == 4  # one session per source and run
    for sid in ids:
        got = history(client, prefix, sid)
        assert [m.seq for m in got] == list(range(10))  # continued, nothing doubled
        assert [m.session for m in got] == [first[sid]] * 6 + [second[sid]] * 4
        assert [m.t_start for m in got] == [i * 0.5 for i in range(10)]
        assert [m.window_steps for m in got] == [1, 2, 3, 4, 5, 6, 1, 2, 3, 4]
        hash_ = _text(client.hgetall(keys.session(sid)))
        assert (hash_["session"], hash_["previous"]) == (second[sid], first[sid])
        assert (int(hash_["next_seq"]), float(hash_["t_next"])) == (10, 5.0)
    run_hash = _text(client.hgetall(keys.metrics("listen-many")))
    assert int(run_hash["steps"]) == 8 and int(run_hash["moods_published"]) == 8  # this run
    client.close()


def test_capture_sources_frames_continue_a_session_and_a_held_source_is_refused_alone(
    fourq_clips, shipped_model, redis_namespace
):
    """Capture mode: a source another live producer holds is refused and reported while the
    other captures; its lease and metrics hash stay the other producer's. Once free, the next
    run continues its stream; ``takeover`` takes a held source; all held: refused."""
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    # another producer, alive all along (its lease outlasts a slow start-up on a loaded machine)
    held = open_session(client, prefix, "f1", lease_ms=600_000)
    client.hset(keys.metrics("capture-f1"), "frames", 99)  # ... and its metrics hash
    said: list[str] = []

    def capture(ids, steps, **kw):
        frames = FramePublisher(url, prefix)
        try:
            return run_many(_specs(fourq_clips[:len(ids)], ids), shipped_model, frames=frames,
                            duration=steps * 0.5, client=client, prefix=prefix,
                            report=said.append, **kw)
        finally:
            frames.close(timeout=10)

    stats = capture(["f0", "f1"], 4)
    assert stats.sources["f0"].steps == 4 and stats.sources["f0"].state in ("running", "ended")
    assert stats.sources["f1"].steps == 0 and stats.sources["f1"].state.startswith("refused")
    assert any("refused" in s and "'f1'" in s and "--takeover" in s for s in said), said
    assert client.xlen(keys.frames_stream("f1")) == 0
    assert client.get(keys.producer("f1")).decode() == held.session  # still the other's
    assert _text(client.hgetall(keys.metrics("capture-f1"))) == {"frames": "99"}
    m0 = _text(client.hgetall(keys.metrics("capture-f0")))
    assert int(m0["steps"]) == int(m0["frames_published"]) == 4
    assert m0["session"] == stats.sources["f0"].session

    with pytest.raises(ProducerBusyError, match="'f1' is already being produced"):
        capture(["f1"], 2)
    took = capture(["f0", "f1"], 3, takeover=True)
    assert any("taking over session " + held.session in s for s in said), said
    headers = {sid: [decode_frame(f[b"frame"])[0] for _, f in
                     client.xrange(keys.frames_stream(sid))] for sid in ("f0", "f1")}
    assert [h["seq"] for h in headers["f0"]] == list(range(7))  # 4, then 3 more: continued
    assert [h["session"] for h in headers["f0"]] == (
        [stats.sources["f0"].session] * 4 + [took.sources["f0"].session] * 3)
    assert [h["t_start"] for h in headers["f0"]] == [i * 0.5 for i in range(7)]
    assert [h["seq"] for h in headers["f1"]] == [0, 1, 2]
    assert {h["session"] for h in headers["f1"]} == {took.sources["f1"].session}
    assert client.get(keys.producer("f1")) is None  # the taker closed its session
    assert not close_session(client, prefix, held)  # the lease is no longer the first's
    client.close()


def test_a_taken_over_source_stops_alone(fourq_clips, shipped_model, redis_namespace):
    """Two live (real-time, looped) sources; another producer takes one over: that one is
    fenced and stops, nothing of it follows the takeover, and the other goes on tagging."""
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    specs = [SourceSpec(sid, "file", str(p), realtime=True, loop=True)
             for sid, p in zip(["t0", "t1"], fourq_clips[:2], strict=True)]
    moods = MoodPublisher(url, prefix, metrics_id="listen-t")
    stop = threading.Event()
    run = WorkerThread(lambda: run_many(specs, shipped_model, moods=moods, stop=stop,
                                        client=client, prefix=prefix))
    run.start()
    try:
        assert wait_until(lambda: min(client.xlen(keys.mood_stream(s)) for s in ("t0", "t1"))
                          >= 4, 60), "the sources never published"
        mine = client.get(keys.producer("t1")).decode()
        taker = open_session(client, prefix, "t1", takeover=True)
        assert taker.took_over == mine
        assert wait_until(lambda: "t1" in moods.fenced, 10)
        at_takeover = client.xlen(keys.mood_stream("t0"))
        assert wait_until(lambda: client.xlen(keys.mood_stream("t0")) >= at_takeover + 4, 30)
        assert run.is_alive()  # t0 still runs
        assert client.get(keys.producer("t1")).decode() == taker.session
    finally:
        stop.set()
        run.join(60)
        moods.close(timeout=10)
    assert run.error is None, run.error
    st = run.result.sources
    assert st["t1"].state.startswith("fenced") and st["t0"].state == "running"
    t1 = history(client, prefix, "t1")
    assert {m.session for m in t1} == {mine} and [m.seq for m in t1] == list(range(len(t1)))
    assert client.get(keys.producer("t0")) is None  # closed on the stop
    assert client.get(keys.producer("t1")).decode() == taker.session  # not closed: not ours
    m0 = _text(client.hgetall(keys.metrics("t0")))
    assert int(m0["steps"]) == int(m0["moods_published"]) == len(history(client, prefix, "t0"))
    close_session(client, prefix, taker)
    client.close()


def _sources_file(tmp_path, clips, ids, name="sources.toml"):
    path = tmp_path / name
    path.write_text("".join(f'[[source]]\nid = "{sid}"\nfile = "{p}"\nloop = true\n'
                            for sid, p in zip(ids, clips, strict=True)))
    return path


@pytest.mark.slow
def test_listen_sources_cli_refuses_a_second_run_and_gives_the_leases_back(
    fourq_clips, redis_namespace, tmp_path
):
    """The real CLI: while one ``listen --sources`` runs, a second one on the same ids is
    refused in one line (exit 2) and writes nothing; Ctrl-C stops the first cleanly: leases
    given back, each source's metrics hash counts exactly its history."""
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    ids = ["c0", "c1"]
    sources = _sources_file(tmp_path, fourq_clips[:2], ids)
    cli = ["listen", "--sources", str(sources), "--redis-url", url, "--prefix", prefix, "-q"]
    first = _start(cli)
    try:
        assert wait_until(lambda: min(client.xlen(keys.mood_stream(s)) for s in ids) >= 4, 90), \
            "the first listen --sources never published"
        leases = {s: client.get(keys.producer(s)).decode() for s in ids}
        assert len(set(leases.values())) == 2  # one session per source
        second = _start(cli + ["--duration", "2"])
        refused = _left(second, timeout=120)
        assert refused["code"] == 2, refused["stderr"][-2000:]
        said = " ".join(refused["stderr"].split())  # the console wraps long lines
        errors = [ln for ln in refused["stderr"].splitlines() if "streammood: error" in ln]
        assert len(errors) == 1 and "already being produced" in said and "--takeover" in said
        assert {s: client.get(keys.producer(s)).decode() for s in ids} == leases
        assert wait_until(lambda: min(client.xlen(keys.mood_stream(s)) for s in ids) >= 8, 60)
        first.send_signal(2)  # Ctrl-C: a clean stop
        left = _left(first)
    finally:
        first.kill()
    _assert_clean(left)
    for sid in ids:
        got = history(client, prefix, sid)
        assert {m.session for m in got} == {leases[sid]}  # nothing of the refused run
        assert [m.seq for m in got] == list(range(len(got)))
        assert client.get(keys.producer(sid)) is None  # given back
        m = _text(client.hgetall(keys.metrics(sid)))
        assert int(m["steps"]) == int(m["moods_published"]) == len(got)
        assert m["session"] == leases[sid]
    client.close()
