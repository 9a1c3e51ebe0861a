"""Framer: 500 ms steps at 22 050 / 16 000 Hz, identical whether streamed or framed offline."""

from __future__ import annotations

import numpy as np
import pytest

from streammood.audio.decode import load_audio
from streammood.audio.framer import Framer, Step, frame_blocks, frame_signal, n_steps
from streammood.audio.resample import resample
from streammood.layout import MFCC_STEP_SAMPLES, SMILE_STEP_SAMPLES, STEP_SECONDS


def push_random_blocks(y: np.ndarray, sr: int, seed: int) -> list[Step]:
    rng = np.random.default_rng(seed)
    framer = Framer(sr)
    steps, i = [], 0
    while i < y.size:
        n = int(rng.integers(1, 6000))
        steps += framer.push(y[i : i + n])
        i += n
    return steps + framer.finish()


def assert_same_steps(a: list[Step], b: list[Step]) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert (p.seq, p.t_start, p.t_end) == (q.seq, q.t_start, q.t_end)
        np.testing.assert_array_equal(p.y22, q.y22)
        np.testing.assert_array_equal(p.y16, q.y16)


def test_real_clip_steps(music_clip):
    y, sr = load_audio(music_clip)
    steps = frame_signal(y, sr)
    assert len(steps) == int(y.size // (sr * STEP_SECONDS))  # 30.06 s -> 60
    for k, s in enumerate(steps):
        assert s.seq == k
        assert s.t_start == pytest.approx(k * 0.5) and s.t_end == pytest.approx((k + 1) * 0.5)
        assert s.y22.shape == (MFCC_STEP_SAMPLES,) and s.y22.dtype == np.float32
        assert s.y16.shape == (SMILE_STEP_SAMPLES,) and s.y16.dtype == np.float32
    # at the clip's native 22 050 Hz the MFCC path is the signal itself, cut in steps
    np.testing.assert_array_equal(np.concatenate([s.y22 for s in steps]), y[: len(steps) * 11025])
    # the 16 kHz path is the one-shot resampled signal, cut in steps
    np.testing.assert_array_equal(
        np.concatenate([s.y16 for s in steps]), resample(y, sr, 16_000)[: len(steps) * 8000]
    )


@pytest.mark.parametrize("rate", [22_050, 44_100, 48_000, 96_000])
def test_streamed_equals_offline_on_real_music(music_clip, rate):
    y, sr = load_audio(music_clip)
    x = resample(y[: 8 * sr], sr, rate)
    assert_same_steps(push_random_blocks(x, rate, seed=rate), frame_signal(x, rate))


@pytest.mark.parametrize("rate", [8_000, 11_025, 22_050, 44_100, 48_000, 96_000])
@pytest.mark.parametrize("seconds", [0.1, 0.4999, 0.5, 0.5001, 1.2345, 2.9999, 3.0, 3.0001])
def test_step_count_is_floor_of_duration(rate, seconds):
    n = round(seconds * rate)
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    expected = int(n // (rate * 0.5))
    assert n_steps(n, rate) == expected
    streamed = push_random_blocks(x, rate, seed=n)
    assert len(streamed) == expected
    assert_same_steps(streamed, frame_signal(x, rate))


def test_steps_come_out_while_streaming_not_only_at_finish():
    rate = 48_000
    framer = Framer(rate)
    block = np.zeros(rate // 20, np.float32)  # 50 ms
    emitted = [len(framer.push(block)) for _ in range(40)]  # 2 s
    assert sum(emitted) >= 3  # steps 0..2 complete before the resampler delay is flushed
    assert len(framer.finish()) == 4 - sum(emitted)


def test_frame_blocks_and_errors():
    x = np.zeros(44_100, np.float32)
    assert len(list(frame_blocks([x[:1000], x[1000:]], 44_100))) == 2
    framer = Framer(44_100)
    with pytest.raises(ValueError):
        framer.push(np.zeros((10, 2), np.float32))
    framer.finish()
    with pytest.raises(RuntimeError):
        framer.push(x)
    assert framer.finish() == []


@pytest.mark.parametrize("rate", [22_050, 44_100])
def test_pending16_is_the_resampled_audio_after_the_last_step(music_clip, rate):
    """Emitted steps + pending16() is always a prefix of the one-shot 16 kHz resampling; after
    flush it is all of it (the leftover after the last whole step stays readable)."""
    y, sr = load_audio(music_clip)
    x = resample(y[: round(5.3 * sr)], sr, rate)
    whole = resample(x, rate, 16_000)
    framer = Framer(rate)
    emitted: list[np.ndarray] = []
    for i in range(0, x.size, rate // 20):
        emitted += [s.y16 for s in framer.push(x[i : i + rate // 20])]
        seen = np.concatenate([*emitted, framer.pending16()])
        assert len(emitted) == framer.steps_out
        np.testing.assert_array_equal(seen, whole[: seen.size])
    emitted += [s.y16 for s in framer.finish()]
    assert len(emitted) == 10
    np.testing.assert_array_equal(np.concatenate([*emitted, framer.pending16()]), whole)
    assert 0 < framer.pending16().size < SMILE_STEP_SAMPLES
