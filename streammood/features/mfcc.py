"""MFCC blocks, one ``(21, 20)`` block per 500 ms step, equal to librosa's.

The recipe (DESIGN.md): librosa ``mfcc(n_mfcc=20, n_fft=2048, hop_length=525, center=False)`` at
22 050 Hz on the previous 1 575 samples plus the step's 11 025 new ones (zeros before the first
step) gives exactly 21 frames per step. Computed here with a cached mel basis and window
(:mod:`~streammood.features.filters`: librosa's to the bit, without importing librosa), scipy's
DCT and one real FFT per frame: librosa's result to float32 precision, several times faster.
The mel projection is a sparse product (no BLAS call: OpenBLAS threads spin against openSMILE's
thread and cost far more than they save on blocks this small). As in ``librosa.feature.mfcc``
the dB conversion clips at 80 dB below the maximum of the block it is given, here one step: so
the whole-signal path applies that clip per step too.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import scipy.fft
import scipy.sparse

from streammood.features.filters import hann_window, mel_filterbank
from streammood.layout import (
    MFCC_FRAMES,
    MFCC_HISTORY,
    MFCC_HOP,
    MFCC_N_FFT,
    MFCC_RATE,
    MFCC_STEP_SAMPLES,
    N_MFCC,
)

__all__ = ["mfcc_block", "mfcc_offline", "MFCC_N_MELS", "TOP_DB"]

MFCC_N_MELS = 128
"""Mel bands before the DCT (librosa's default)."""
TOP_DB = 80.0
"""Dynamic range kept by the dB conversion, per step (librosa's ``power_to_db`` default)."""
_AMIN = 1e-10


@cache
def _tables() -> tuple[np.ndarray, scipy.sparse.csr_array]:
    """Hann window ``(2048,)`` float32 and librosa's mel basis ``(128, 1025)`` as a sparse
    float32 matrix (2 018 non-zeros)."""
    window = hann_window(MFCC_N_FFT).astype(np.float32)
    mel = mel_filterbank(MFCC_RATE, MFCC_N_FFT, MFCC_N_MELS)
    return window, scipy.sparse.csr_array(mel)


def _frames(y: np.ndarray, n_frames: int) -> np.ndarray:
    """``(n_frames, 2048)`` view of ``y`` framed with hop 525 (no copy)."""
    return np.lib.stride_tricks.as_strided(
        y,
        shape=(n_frames, MFCC_N_FFT),
        strides=(y.strides[0] * MFCC_HOP, y.strides[0]),
        writeable=False,
    )


def _log_mel(frames: np.ndarray) -> np.ndarray:
    """Power mel spectrogram in dB (before the per-step clip), ``(frames, 128)`` float32."""
    window, mel_basis = _tables()
    spec = scipy.fft.rfft(frames * window, axis=-1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32, copy=False)
    mel = (mel_basis @ power.T).T
    return 10.0 * np.log10(np.maximum(mel, _AMIN))


def _clip_dct(log_mel: np.ndarray) -> np.ndarray:
    """Clip ``(..., 21, 128)`` dB values to ``TOP_DB`` below each step's maximum, then DCT."""
    floor = log_mel.max(axis=(-2, -1), keepdims=True) - TOP_DB
    clipped = np.maximum(log_mel, floor)
    return scipy.fft.dct(clipped, type=2, norm="ortho", axis=-1)[..., :N_MFCC].astype(
        np.float32, copy=False
    )


def mfcc_block(history: np.ndarray, new: np.ndarray) -> np.ndarray:
    """MFCC block of one step.

    Parameters
    ----------
    history : np.ndarray
        ``(1575,)`` the previous step's last samples at 22 050 Hz (zeros before the first step).
    new : np.ndarray
        ``(11025,)`` the step's samples at 22 050 Hz.

    Returns
    -------
    np.ndarray
        ``(21, 20)`` float32: frames x coefficients, equal (to float32 precision) to
        ``librosa.feature.mfcc(y=concat(history, new), sr=22050, n_mfcc=20, n_fft=2048,
        hop_length=525, center=False).T``.
    """
    if history.shape != (MFCC_HISTORY,) or new.shape != (MFCC_STEP_SAMPLES,):
        raise ValueError(
            f"mfcc_block needs ({MFCC_HISTORY},) + ({MFCC_STEP_SAMPLES},) samples, "
            f"got {history.shape} + {new.shape}"
        )
    y = np.concatenate((history, new)).astype(np.float32, copy=False)
    return _clip_dct(_log_mel(_frames(y, MFCC_FRAMES)))


def mfcc_offline(y22: np.ndarray) -> np.ndarray:
    """MFCC blocks of a whole signal, equal to :func:`mfcc_block` step by step.

    Parameters
    ----------
    y22 : np.ndarray
        ``(samples,)`` mono audio at 22 050 Hz; ``floor(samples / 11025)`` whole steps are used,
        with 1 575 zeros prepended (the first step's history).

    Returns
    -------
    np.ndarray
        ``(steps, 21, 20)`` float32.
    """
    n_steps = len(y22) // MFCC_STEP_SAMPLES
    if n_steps == 0:
        return np.zeros((0, MFCC_FRAMES, N_MFCC), np.float32)
    y = np.concatenate(
        (np.zeros(MFCC_HISTORY, np.float32), np.asarray(y22[: n_steps * MFCC_STEP_SAMPLES]))
    ).astype(np.float32, copy=False)
    out = np.empty((n_steps, MFCC_FRAMES, N_MFCC), np.float32)
    chunk = 256  # steps per batch: bounded memory on long files
    for s0 in range(0, n_steps, chunk):
        s1 = min(n_steps, s0 + chunk)
        seg = y[s0 * MFCC_STEP_SAMPLES : s1 * MFCC_STEP_SAMPLES + MFCC_HISTORY]
        log_mel = _log_mel(_frames(seg, (s1 - s0) * MFCC_FRAMES))
        out[s0:s1] = _clip_dct(log_mel.reshape(s1 - s0, MFCC_FRAMES, MFCC_N_MELS))
    return out
