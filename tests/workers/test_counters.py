"""The counters an operator reads are right: `capture` reports exactly the frames written,
`infer` counts every rejected frame once and writes its metrics hash; real CLI, real music,
real Redis."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import redis

from streammood.audio.decode import load_audio
from streammood.audio.framer import n_steps
from streammood.bus.codec import encode_frame
from streammood.bus.keys import Keys
from tests.conftest import ROOT


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streammood", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )


def test_capture_and_infer_report_exact_counts(music_clip, shipped_model, redis_namespace):
    url, prefix = redis_namespace
    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    y, sr = load_audio(music_clip)
    steps = n_steps(len(y), sr)

    run = _cli("capture", "--file", str(music_clip), "--redis-url", url, "--prefix", prefix,
               "--source-id", "clip")
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"{steps} frames captured, {steps} written, 0 dropped" in run.stderr
    assert client.xlen(keys.frames_stream("clip")) == steps
    metrics = client.hgetall(keys.metrics("capture-clip"))
    assert int(metrics[b"frames_published"]) == steps and int(metrics[b"frames"]) == steps

    # three bad entries of three kinds: one the reader rejects, two the model checks reject
    stream = keys.frames_stream("clip")
    good = {"source": "clip", "seq": steps, "t_start": steps / 2, "t_end": steps / 2 + 0.5}
    client.xadd(stream, {"frame": b"garbage"})
    client.xadd(stream, {"frame": encode_frame({**good, "embedder": "other"}, {})})
    client.xadd(stream, {"frame": encode_frame(
        {**good, "embedder": shipped_model.embedder_id},
        {"mfcc": np.zeros((21, 20)), "lld": np.full(260, np.nan), "emb": np.zeros(656)})})
    run = _cli("infer", "--redis-url", url, "--prefix", prefix, "--idle-timeout", "3", "--quiet")
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"{steps} moods published, 3 frames rejected, 0 replayed" in run.stderr
    worker = re.search(r"metrics \S+:metrics:(\S+)\)", run.stderr).group(1)
    metrics = client.hgetall(keys.metrics(worker))
    assert int(metrics[b"steps_published"]) == steps
    assert int(metrics[b"frames_rejected"]) == 3
    assert int(metrics[b"moods_published"]) == steps
    assert metrics[b"dead_letter_sources"] == b""
    assert client.xlen(keys.mood_stream("clip")) == steps
