"""listen, capture + infer and analyze on real music, real Redis and the shipped model."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import redis

from streammood.audio.decode import load_audio
from streammood.audio.framer import n_steps
from streammood.audio.sources import FileSource
from streammood.bus.codec import encode_frame
from streammood.bus.frames import FramePublisher, encode_inputs
from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher
from streammood.bus.schema import MoodMessage
from streammood.features.extractor import ModelInputs, extract_stream
from streammood.workers.analyze import timeline_of_signal
from streammood.workers.capture import run_capture
from streammood.workers.infer import run_infer
from streammood.workers.listen import run_listen
from streammood.workers.tagging import MoodStage, feature_stage


def _listen(source, artifact, source_id, publisher, **kwargs):
    """``run_listen`` with the stages the CLI builds."""
    features = feature_stage(artifact, source.sample_rate)
    return run_listen(source, features, MoodStage(artifact, source_id), publisher, **kwargs)


def _inputs(artifact, y, sr) -> list[ModelInputs]:
    """Every step of a signal through the live feature stage."""
    return list(extract_stream([y], sr, artifact.embedder()).steps())


def _fields(msg: MoodMessage) -> dict:
    d = msg.to_dict()
    d.pop("emitted_at")
    d.pop("captured_at", None)  # a file read faster than real time: when its block was read
    return d


def _history(url: str, prefix: str, source: str) -> list[MoodMessage]:
    client = redis.Redis.from_url(url)
    entries = client.xrange(Keys(prefix).mood_stream(source))
    client.close()
    return [MoodMessage.from_json(fields[b"json"]) for _, fields in entries]


@pytest.fixture(scope="module")
def clip(music_clip):
    y, sr = load_audio(music_clip)
    return music_clip, y, sr


@pytest.fixture(scope="module")
def listened(clip, shipped_model, tmp_path_factory):
    """``listen`` over a whole real clip, into a private prefix of the real Redis."""
    from tests.conftest import REDIS_URL

    path, y, sr = clip
    prefix = f"smtest-listen-{time.time_ns()}"
    live: list[MoodMessage] = []
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(Keys(prefix).mood_channel)
    pubsub.get_message(timeout=1.0)  # subscription confirmation
    publisher = MoodPublisher(REDIS_URL, prefix)
    stats = _listen(FileSource(path), shipped_model, "clip", publisher)
    publisher.close(timeout=10)
    deadline = time.monotonic() + 5
    while len(live) < stats.steps and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg and msg["type"] == "message":
            live.append(MoodMessage.from_json(msg["data"]))
    history = _history(REDIS_URL, prefix, "clip")
    yield stats, live, history, prefix
    pubsub.close()
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def test_listen_publishes_every_step_on_channel_and_stream(listened, clip):
    stats, live, history, _ = listened
    _, y, sr = clip
    expected = n_steps(len(y), sr)
    assert stats.steps == expected and stats.dropped_steps == 0
    assert [m.seq for m in live] == list(range(expected))
    assert [_fields(m) for m in history] == [_fields(m) for m in live]
    assert [m.window_steps for m in live] == [min(i + 1, 60) for i in range(expected)]
    for m in live:
        assert m.t_end == pytest.approx(m.t_start + 0.5)
        assert m.quadrant == max(m.probs, key=m.probs.get)


def test_listen_matches_the_offline_timeline(listened, clip, shipped_model):
    """Streamed features through the live path give the same moods as the whole-file path."""
    _, live, _, _ = listened
    path, y, sr = clip
    offline = timeline_of_signal(y, sr, shipped_model, str(path))
    streamed = np.array([[m.probs[q] for q in ("AP", "AN", "PP", "PN")] for m in live])
    assert streamed.shape == offline.probs.shape
    assert np.abs(streamed - offline.probs).max() < 1e-3
    assert [m.quadrant for m in live] == offline.quadrants


def test_capture_and_infer_give_the_messages_of_listen(listened, clip, shipped_model):
    from tests.conftest import REDIS_URL

    _, live, _, _ = listened
    path, _, _ = clip
    prefix = f"smtest-split-{time.time_ns()}"
    frames = FramePublisher(REDIS_URL, prefix)
    source = FileSource(path)
    features = feature_stage(shipped_model, source.sample_rate)
    sent = run_capture(source, features, shipped_model.embedder_id, "clip", frames)
    frames.close(timeout=10)
    assert sent == len(live)
    client = redis.Redis.from_url(REDIS_URL)
    moods = MoodPublisher(client, prefix)
    got: list[MoodMessage] = []
    stats = run_infer(
        client,
        shipped_model,
        moods,
        prefix=prefix,
        max_messages=sent,
        idle_timeout=20,
        on_message=got.append,
    )
    moods.close(timeout=10)
    try:
        assert stats.published == sent and stats.rejected == 0
        assert [_fields(m) for m in got] == [_fields(m) for m in live]
        assert [_fields(m) for m in _history(REDIS_URL, prefix, "clip")] == [
            _fields(m) for m in live
        ]
    finally:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()


def test_infer_rejects_malformed_frames_and_keeps_going(clip, shipped_model, redis_namespace):
    url, prefix = redis_namespace
    path, y, sr = clip
    inputs = _inputs(shipped_model, y[: sr * 3], sr)
    ident = shipped_model.embedder_id
    frames = FramePublisher(url, prefix)
    frames.begin("bad")
    frames.publish(encode_inputs("bad", inputs[0], ident), "bad")
    client = redis.Redis.from_url(url)
    key = Keys(prefix).frames_stream("bad")
    frames.flush(timeout=5)
    client.xadd(key, {"frame": b"not a frame at all"})  # garbage
    client.xadd(
        key,
        {
            "frame": encode_frame(  # wrong shapes
                {"source": "bad", "seq": 1, "t_start": 0.5, "t_end": 1.0, "embedder": ident},
                {"mfcc": np.zeros((3, 3)), "lld": np.zeros(260), "emb": inputs[1].emb},
            )
        },
    )
    client.xadd(
        key,
        {
            "frame": encode_frame(  # another embedder
                {
                    "source": "bad",
                    "seq": 1,
                    "t_start": 0.5,
                    "t_end": 1.0,
                    "embedder": "someone-else",
                },
                {"mfcc": inputs[1].mfcc, "lld": inputs[1].lld, "emb": inputs[1].emb},
            )
        },
    )
    for item in inputs[1:]:
        frames.publish(encode_inputs("bad", item, ident), "bad")
    frames.close(timeout=5)
    moods = MoodPublisher(client, prefix)
    got: list[MoodMessage] = []
    stats = run_infer(
        client,
        shipped_model,
        moods,
        prefix=prefix,
        max_messages=len(inputs),
        idle_timeout=10,
        on_message=got.append,
    )
    moods.close(timeout=5)
    client.close()
    assert stats.rejected == 3
    assert [m.seq for m in got] == [i.seq for i in inputs]


def test_stop_publishes_every_completed_step(clip, shipped_model, redis_namespace):
    url, prefix = redis_namespace
    path, _, _ = clip
    stop = threading.Event()
    publisher = MoodPublisher(url, prefix)

    def on_message(msg, stats):
        if msg.seq == 9:
            stop.set()

    stats = _listen(
        FileSource(path), shipped_model, "stopped", publisher, on_message=on_message, stop=stop
    )
    pub = publisher.close(timeout=10)
    history = _history(url, prefix, "stopped")
    assert stats.steps >= 10
    assert pub.published == stats.steps == len(history)
    assert [m.seq for m in history] == list(range(stats.steps))


@pytest.mark.slow
def test_inference_behind_drops_oldest_steps_and_counts_them(clip, shipped_model, redis_namespace):
    """A real-time source with a consumer slower than real time: steps are dropped, oldest
    first, counted, and never block the capture side."""
    url, prefix = redis_namespace
    path, _, _ = clip
    publisher = MoodPublisher(url, prefix)
    seen: list[int] = []

    def slow(msg, stats):
        seen.append(msg.seq)
        time.sleep(1.0)

    source = FileSource(path, realtime=True)
    stats = _listen(
        source, shipped_model, "slow", publisher, duration=6.0, on_message=slow, queue_steps=2
    )
    publisher.close(timeout=10)
    assert stats.dropped_steps > 0
    assert stats.steps + stats.dropped_steps == 12
    assert seen == sorted(seen) and len(seen) == stats.steps
    assert source.stats.dropped_blocks == 0  # capture never waited on the slow consumer
