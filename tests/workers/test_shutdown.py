"""However a run ends (``--duration``, end of file, SIGINT), the process is left with no
streammood thread and no openSMILE engine: every stage is closed by whoever ran it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from streammood.audio.decode import load_audio
from streammood.audio.framer import n_steps
from streammood.bus.keys import Keys

# Runs the real CLI in this process, then reports what is left once it has returned.
RUN_CLI = r"""
import json, sys, threading
from streammood.cli import app
from streammood.features.smile import live_engines
try:
    app(sys.argv[1:], prog_name="streammood")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
left = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
print("LEFT " + json.dumps({"code": code, "threads": left, "engines": live_engines()}))
"""


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def _left(proc: subprocess.Popen, timeout: float = 120) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("LEFT ")]
    assert lines, f"no report; stderr:\n{err[-2000:]}"
    return json.loads(lines[-1][5:]) | {"stderr": err}


def _assert_clean(left: dict) -> None:
    assert left["code"] in (0, None), left["stderr"][-2000:]
    ours = [name for name in left["threads"] if "streammood" in name]
    assert ours == [], f"threads left running: {left['threads']}"
    assert left["engines"] == 0, "openSMILE engine not freed"


@pytest.mark.parametrize("how", [["--duration", "3"], []], ids=["duration", "end-of-file"])
def test_listen_leaves_nothing_running(how, music_clip, redis_namespace):
    url, prefix = redis_namespace
    args = ["listen", "--file", str(music_clip), "--source-id", "shut", "--redis-url", url]
    args += ["--prefix", prefix, "-q"]
    left = _left(_start(args + how))
    _assert_clean(left)
    client = redis.Redis.from_url(url)
    steps = client.xlen(Keys(prefix).mood_stream("shut"))
    client.close()
    y, sr = load_audio(music_clip)
    assert steps == (6 if how else n_steps(len(y), sr))


def test_listen_interrupted_leaves_nothing_running(music_clip, redis_namespace):
    """SIGINT once three live lines are out (the run is tagging): every step that was tagged is
    published, the run stops early, nothing is left running."""
    url, prefix = redis_namespace
    proc = _start(
        ["listen", "--file", str(music_clip), "--realtime", "--source-id", "shut"]
        + ["--redis-url", url, "--prefix", prefix]
    )
    lines = []
    while len(lines) < 3 and (line := proc.stdout.readline()):
        lines.append(line)
    assert len(lines) == 3, f"listen printed {lines}; stderr:\n{proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGINT)
    sent_at = time.monotonic()
    left = _left(proc)
    client = redis.Redis.from_url(url)
    published = client.xlen(Keys(prefix).mood_stream("shut"))
    client.close()
    _assert_clean(left)
    y, sr = load_audio(music_clip)
    assert 3 <= published < n_steps(len(y), sr), (published, time.monotonic() - sent_at)


def test_capture_leaves_nothing_running(music_clip, redis_namespace):
    url, prefix = redis_namespace
    args = ["capture", "--file", str(music_clip), "--source-id", "shut", "--redis-url", url]
    args += ["--prefix", prefix]
    left = _left(_start(args + ["--duration", "2"]))
    _assert_clean(left)
    client = redis.Redis.from_url(url)
    frames = client.xlen(Keys(prefix).frames_stream("shut"))
    client.close()
    assert frames == 4
