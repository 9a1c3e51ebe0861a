"""``captured_at``: the wall clock of a step's last sample, from the source through the feature
stage, the frames of split mode and the mood message, on real music and the real Redis."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from streammood.audio.decode import load_audio
from streammood.audio.sources import FileSource
from streammood.bus.codec import decode_frame
from streammood.bus.frames import decode_inputs, encode_inputs
from streammood.bus.keys import Keys
from streammood.bus.moods import MoodPublisher
from streammood.bus.schema import MessageError, ModelRef, MoodMessage
from streammood.console import mood_line
from streammood.features.extractor import StreamingExtractor
from streammood.workers.listen import run_listen
from streammood.workers.tagging import MoodStage, feature_stage


def _message(**kw) -> MoodMessage:
    base = dict(
        source="s", seq=3, t_start=1.5, t_end=2.0, valence=0.1, arousal=-0.2, quadrant="PP",
        probs={"AP": 0.2, "AN": 0.1, "PP": 0.6, "PN": 0.1}, window_steps=4,
        model=ModelRef("m", "1"), emitted_at=1.7e9 + 0.2,
    )  # fmt: skip
    return MoodMessage(**(base | kw))


def test_message_carries_captured_at_only_when_known():
    msg = _message(captured_at=1.7e9)
    text = msg.to_json()
    assert text.endswith(',"emitted_at":1700000000.2,"captured_at":1700000000.0}')
    assert MoodMessage.from_json(text) == msg
    assert "captured_at" not in _message().to_json()
    assert MoodMessage.from_json(_message().to_json()).captured_at is None
    with pytest.raises(MessageError, match="captured_at"):
        MoodMessage.from_json(text.replace("1700000000.0}", '"x"}'))
    assert mood_line(msg, now=1.7e9 + 0.25).endswith("delay 0.25s")
    assert "delay" not in mood_line(msg)


def test_extractor_stamps_each_step_with_its_last_sample(music_clip):
    """Blocks stamped with a device-like clock: a step's ``captured_at`` is the clock at its
    own last sample (not at the later block that releases it)."""
    y, sr = load_audio(music_clip)
    y = y[: 6 * sr]
    t0, block = 1.7e9, 441
    out = []
    with StreamingExtractor(sr) as ex:
        for i in range(0, len(y), block):
            piece = y[i : i + block]
            out += ex.push(piece, captured_at=t0 + (i + len(piece)) / sr)
        out += ex.finish()
    assert [s.seq for s in out] == list(range(12))
    got = np.array([s.captured_at for s in out])
    np.testing.assert_allclose(got, t0 + np.arange(1, 13) * 0.5, atol=1e-6, rtol=0)


def test_frames_carry_captured_at(music_clip):
    y, sr = load_audio(music_clip)
    with StreamingExtractor(sr) as ex:
        steps = ex.push(y[: 2 * sr], captured_at=1.7e9) + ex.finish()
    frame = encode_inputs("s", steps[0], "e")
    back = decode_inputs(*decode_frame(frame), "e", 0)
    assert back.captured_at == pytest.approx(steps[0].captured_at)
    unstamped = encode_inputs(
        "s", steps[0].__class__(**{**steps[0].__dict__, "captured_at": None}), "e"
    )
    assert "captured_at" not in decode_frame(unstamped)[0]


def test_listen_realtime_file_messages_carry_the_pacing_clock(
    music_clip, shipped_model, redis_namespace
):
    """A file paced in real time: ``captured_at`` is the pacing clock at the step's end, and a
    subscriber in this process sees each message within a second of it."""
    url, prefix = redis_namespace
    client = redis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(Keys(prefix).mood_channel)
    pubsub.get_message(timeout=1.0)
    source = FileSource(music_clip, realtime=True)
    features = feature_stage(shipped_model, source.sample_rate)
    publisher = MoodPublisher(url, prefix)
    wall0 = time.time()
    stats = run_listen(source, features, MoodStage(shipped_model, "rt"), publisher, duration=3.0)
    publisher.close(timeout=10)
    got = []
    deadline = time.monotonic() + 5
    while len(got) < stats.steps and time.monotonic() < deadline:
        m = pubsub.get_message(timeout=0.5)
        if m and m["type"] == "message":
            got.append((time.time(), MoodMessage.from_json(m["data"])))
    pubsub.close()
    client.close()
    assert stats.steps == 6 and len(got) == 6
    for _, msg in got:
        # the pacing clock starts at the first block, a little after wall0
        assert 0 <= msg.captured_at - (wall0 + msg.t_end) < 1.0
        assert 0 < msg.emitted_at - msg.captured_at < 1.0
    starts = [msg.captured_at - msg.t_end for _, msg in got]
    assert max(starts) - min(starts) < 1e-3  # one clock: exactly 0.5 s per step
