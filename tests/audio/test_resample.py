"""The streaming resampler equals one-shot resampling of the whole signal, for any block split."""

from __future__ import annotations

import numpy as np
import pytest

from streammood.audio.decode import load_audio
from streammood.audio.resample import StreamingResampler, resample


def stream_in_blocks(
    y: np.ndarray, in_rate: int, out_rate: int, rng: np.random.Generator
) -> np.ndarray:
    rs = StreamingResampler(in_rate, out_rate)
    parts, i = [], 0
    while i < y.size:
        n = int(rng.integers(1, 4000))
        parts.append(rs.push(y[i : i + n]))
        i += n
    parts.append(rs.finish())
    return np.concatenate(parts)


@pytest.mark.parametrize("out_rate", [22_050, 16_000])
@pytest.mark.parametrize("in_rate", [22_050, 44_100, 48_000, 96_000])
def test_blockwise_equals_one_shot_on_real_music(music_clip, in_rate, out_rate):
    y, sr = load_audio(music_clip)
    x = resample(y[: 10 * sr], sr, in_rate)  # 10 s of real music at in_rate
    rng = np.random.default_rng(in_rate + out_rate)
    whole = resample(x, in_rate, out_rate)
    streamed = stream_in_blocks(x, in_rate, out_rate, rng)
    assert streamed.dtype == np.float32
    np.testing.assert_array_equal(streamed, whole)  # no clicks, no drift: bit-identical
    assert abs(streamed.size - x.size * out_rate / in_rate) <= 1


@pytest.mark.parametrize("in_rate", [8_000, 11_025, 44_100, 48_000, 96_000, 192_000])
@pytest.mark.parametrize("n", [1, 2, 999, 12_345, 100_003])
def test_total_length_after_flush(in_rate, n):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    for out_rate in (22_050, 16_000):
        out = stream_in_blocks(x, in_rate, out_rate, np.random.default_rng(0))
        assert abs(out.size - n * out_rate / in_rate) <= 1


def test_identity_when_rates_equal():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    rs = StreamingResampler(16_000, 16_000)
    np.testing.assert_array_equal(np.concatenate([rs.push(x[:300]), rs.push(x[300:])]), x)
    assert rs.finish().size == 0


def test_block_boundaries_leave_no_discontinuity():
    """A pure tone resampled in tiny blocks stays a pure tone (no clicks at block edges)."""
    sr_in, sr_out, f = 44_100, 16_000, 440.0
    t = np.arange(sr_in * 2) / sr_in
    x = (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)
    y = stream_in_blocks(x, sr_in, sr_out, np.random.default_rng(1))
    ty = np.arange(y.size) / sr_out
    ref = 0.5 * np.sin(2 * np.pi * f * ty)
    inner = slice(sr_out // 10, y.size - sr_out // 10)  # away from the signal's own edges
    assert np.max(np.abs(y[inner] - ref[inner])) < 1e-3


def test_process_after_flush_is_an_error():
    rs = StreamingResampler(44_100, 16_000)
    rs.finish()
    with pytest.raises(RuntimeError):
        rs.push(np.zeros(10, np.float32))
