from __future__ import annotations

import librosa
import numpy as np
import pytest

from streammood.features.mfcc import mfcc_block, mfcc_offline
from streammood.layout import MFCC_HISTORY, MFCC_STEP_SAMPLES


def _librosa_block(y: np.ndarray) -> np.ndarray:
    return librosa.feature.mfcc(
        y=y, sr=22050, n_mfcc=20, n_fft=2048, hop_length=525, center=False
    ).T


def test_block_equals_librosa_on_music(clip_steps):
    y22 = np.concatenate([s.y22 for s in clip_steps])
    padded = np.concatenate([np.zeros(MFCC_HISTORY, np.float32), y22])
    for k in (0, 1, 17, len(clip_steps) - 1):
        block = padded[k * MFCC_STEP_SAMPLES : (k + 1) * MFCC_STEP_SAMPLES + MFCC_HISTORY]
        ref = _librosa_block(block)
        got = mfcc_block(block[:MFCC_HISTORY], block[MFCC_HISTORY:])
        assert got.shape == (21, 20) and got.dtype == np.float32
        # float32 arithmetic on values of magnitude ~10..500
        np.testing.assert_allclose(got, ref, rtol=0, atol=5e-3 + 1e-5 * np.abs(ref).max())


def test_offline_equals_blocks(clip_steps):
    y22 = np.concatenate([s.y22 for s in clip_steps])
    off = mfcc_offline(y22)
    assert off.shape == (len(clip_steps), 21, 20)
    history = np.zeros(MFCC_HISTORY, np.float32)
    for k, step in enumerate(clip_steps):
        np.testing.assert_allclose(mfcc_block(history, step.y22), off[k], rtol=1e-6, atol=1e-4)
        history = step.y22[-MFCC_HISTORY:]


def test_offline_step_count_and_partial_step():
    y = np.random.default_rng(0).standard_normal(MFCC_STEP_SAMPLES * 3 + 5000).astype(np.float32)
    assert mfcc_offline(y).shape == (3, 21, 20)
    assert mfcc_offline(y[:100]).shape == (0, 21, 20)


def test_silence_is_finite():
    out = mfcc_block(np.zeros(MFCC_HISTORY, np.float32), np.zeros(MFCC_STEP_SAMPLES, np.float32))
    assert np.isfinite(out).all()


def test_block_rejects_wrong_lengths():
    with pytest.raises(ValueError, match="11025"):
        mfcc_block(np.zeros(MFCC_HISTORY), np.zeros(100))
