"""``listen --sources`` / ``capture --sources`` SIGKILLed mid-stream and restarted: while the dead
sessions' leases run a new session of any of its sources is refused; once they have run out
(≤ 3 s) the restarted process continues every source's seq and stream time under a new session
per source — no step number lost or repeated — and its window starts over there."""

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

IDS = ("k0", "k1")


def _steps(client: redis.Redis, prefix: str, command: str, sid: str) -> list[dict]:
    """What the source's stream holds, oldest first: ``seq``, ``session``, ``t_start`` (and
    ``window_steps`` for moods)."""
    keys = Keys(prefix)
    if command == "capture":
        return [decode_frame(f[b"frame"])[0] for _, f in client.xrange(keys.frames_stream(sid))]
    return [m.to_dict() for m in history(client, prefix, sid)]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["listen", "capture"])
def test_sources_killed_and_restarted_continue_every_source(
    command, fourq_clips, redis_namespace, tmp_path
):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    sources = tmp_path / "sources.toml"
    sources.write_text("".join(f'[[source]]\nid = "{sid}"\nfile = "{p}"\nloop = true\n'
                               for sid, p in zip(IDS, fourq_clips[:2], strict=True)))
    args = [command, "--sources", str(sources), "--redis-url", url, "--prefix", prefix]
    args += ["-q"] if command == "listen" else []
    stream = keys.mood_stream if command == "listen" else keys.frames_stream
    first = spawn(*args)
    try:
        assert wait_until(lambda: min(client.xlen(stream(s)) for s in IDS) >= 6, 90), \
            first.stderr.read() if first.poll() is not None else "nothing published"
        dead = {s: client.get(keys.producer(s)).decode() for s in IDS}
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        for sid in IDS:  # a restart now is refused: the dead sessions' leases still run
            with pytest.raises(ProducerBusyError, match="lease runs out in"):
                open_session(client, prefix, sid)
        assert wait_until(lambda: all(client.get(keys.producer(s)) is None for s in IDS), 5)
        lapsed = time.monotonic() - killed
        before = {s: len(_steps(client, prefix, command, s)) for s in IDS}
        # the session hash knows exactly what reached Redis: the restart starts there
        for sid in IDS:
            h = client.hgetall(keys.session(sid))
            assert h[b"session"].decode() == dead[sid]
            assert int(h[b"next_seq"]) == before[sid]
        second = spawn(*args, "--duration", "3")
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err[-2000:]
    finally:
        stop_all([first])
    assert lapsed <= 3.2
    said = " ".join(err.split())  # the console wraps long lines
    for sid in IDS:
        assert f"of '{sid}' starts at step {before[sid]}" in said and f"after session {dead[sid]}" \
            in said, said[-2000:]
        got = _steps(client, prefix, command, sid)
        n = before[sid]
        assert [h["seq"] for h in got] == list(range(n + 6))  # continued: none lost or doubled
        assert [h["t_start"] for h in got] == pytest.approx([i * 0.5 for i in range(n + 6)])
        sessions = [h["session"] for h in got]
        assert sessions[:n] == [dead[sid]] * n and len(set(sessions[n:])) == 1
        assert sessions[n] != dead[sid]
        if command == "listen":
            assert got[n]["window_steps"] == 1 and got[n - 1]["window_steps"] == n
        assert client.get(keys.producer(sid)) is None  # the clean stop gave it back
        name = sid if command == "listen" else f"capture-{sid}"
        m = {k.decode(): v.decode() for k, v in client.hgetall(keys.metrics(name)).items()}
        published = f"{'moods' if command == 'listen' else 'frames'}_published"
        assert int(m["steps"]) == int(m[published]) == 6 and m["session"] == sessions[n]
    assert len(set(dead.values())) == 2  # one session a source
    client.close()
