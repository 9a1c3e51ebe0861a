"""musicnn's input: log-compressed 96-band mel patches of ~3 s at 16 kHz.

musicnn computed ``librosa.feature.melspectrogram(y, sr=16000, hop_length=256, n_fft=512,
n_mels=96)`` then ``log10(10000 x + 1)``. Here the frames are cut with ``center=False`` from the
start of the stream (frame ``j`` covers samples ``256 j .. 256 j + 511``) so that a stream and a
whole file give the same frames, and everything stays float32 (musicnn's float16 cast overflows
under NumPy 2). :class:`MelPatcher` keeps the last 187 frames and updates them with each step's
new audio; :func:`mel_patches_offline` gives the same patches from a whole signal.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import scipy.fft
import scipy.sparse

from streammood.features.filters import hann_window, mel_filterbank
from streammood.layout import (
    EARLY_PATCH_STEP,
    EMBED_EVERY,
    MEL_BANDS,
    MEL_HOP,
    MEL_N_FFT,
    MEL_PATCH_FRAMES,
    MEL_RATE,
    SMILE_STEP_SAMPLES,
)

__all__ = [
    "MelPatcher",
    "is_patch_step",
    "log_mel_frames",
    "mel_patches_offline",
    "patch_steps",
    "patches_at",
]

STEP_SAMPLES = SMILE_STEP_SAMPLES
"""Samples per 500 ms step at :data:`MEL_RATE` (16 kHz, the openSMILE path's rate too)."""


@cache
def _tables() -> tuple[np.ndarray, scipy.sparse.csr_array]:
    """Hann window ``(512,)`` float32 and the mel basis ``(96, 257)`` as a sparse float32 matrix
    (a sparse product: no BLAS threads spinning against openSMILE's thread)."""
    window = hann_window(MEL_N_FFT).astype(np.float32)
    mel = mel_filterbank(MEL_RATE, MEL_N_FFT, MEL_BANDS)
    return window, scipy.sparse.csr_array(mel)


def log_mel_frames(y16: np.ndarray) -> np.ndarray:
    """Log-compressed mel frames of a signal, framed from its first sample.

    Parameters
    ----------
    y16 : np.ndarray
        ``(samples,)`` mono audio at 16 kHz.

    Returns
    -------
    np.ndarray
        ``(frames, 96)`` float32, ``frames = (samples - 512) // 256 + 1`` (0 if shorter than
        512 samples), values ``log10(10000 * power_mel + 1)``.
    """
    y = np.asarray(y16, dtype=np.float32)
    if len(y) < MEL_N_FFT:
        return np.zeros((0, MEL_BANDS), np.float32)
    n = (len(y) - MEL_N_FFT) // MEL_HOP + 1
    frames = np.lib.stride_tricks.as_strided(
        y, shape=(n, MEL_N_FFT), strides=(y.strides[0] * MEL_HOP, y.strides[0]), writeable=False
    )
    window, mel_basis = _tables()
    spec = scipy.fft.rfft(frames * window, axis=-1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32, copy=False)
    mel = np.ascontiguousarray((mel_basis @ power.T).T)
    return np.log10(np.float32(10000.0) * mel + np.float32(1.0))


def _frames_available(n_samples: int) -> int:
    """Frames fully inside the first ``n_samples`` samples."""
    return 0 if n_samples < MEL_N_FFT else (n_samples - MEL_N_FFT) // MEL_HOP + 1


def _patch(frames: np.ndarray, end: int) -> np.ndarray:
    """The :data:`MEL_PATCH_FRAMES` frames ending before ``end``, zeros before frame 0."""
    out = np.zeros((MEL_PATCH_FRAMES, MEL_BANDS), np.float32)
    start = end - MEL_PATCH_FRAMES
    part = frames[max(start, 0) : end]
    out[MEL_PATCH_FRAMES - len(part) :] = part
    return out


def is_patch_step(seq: int) -> bool:
    """Whether step ``seq`` carries a scheduled mel patch: ``seq % EMBED_EVERY == 0`` or
    ``seq == EARLY_PATCH_STEP`` (a change detector may add more)."""
    return seq % EMBED_EVERY == 0 or seq == EARLY_PATCH_STEP


def patch_steps(n_steps: int) -> np.ndarray:
    """The scheduled patch steps of ``n_steps`` steps (0, 5, 10, 20, …), ``(k,)`` int64."""
    grid = np.arange(0, n_steps, EMBED_EVERY, dtype=np.int64)
    if n_steps > EARLY_PATCH_STEP:
        grid = np.insert(grid, 1, EARLY_PATCH_STEP)
    return grid


class MelPatcher:
    """Rolling musicnn input over a 16 kHz stream: the patch ending at each patch step's end
    (:func:`is_patch_step`), or at every step's end (``every_step``), a
    :class:`~streammood.stage.Stage`.

    Keeps the last 187 mel frames. :meth:`push` takes audio of any length and returns
    ``(seq, patch)`` for each patch step whose end it reached; the patch is the same however the
    audio was split into blocks.

    Examples
    --------
    >>> mp = MelPatcher()
    >>> mp.push(step0.y16)         # 8000 samples: step 0 ends -> [(0, (187, 96) patch)]
    >>> mp.push(step1.y16)         # step 1 carries no patch -> []
    """

    def __init__(self, every_step: bool = False) -> None:
        self.every_step = every_step
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample is sample 0 of step 0."""
        self._tail = np.zeros(0, np.float32)  # samples from the next frame's start on
        self._frames = np.zeros((MEL_PATCH_FRAMES, MEL_BANDS), np.float32)
        self._samples = 0
        self.n_frames = 0
        """Frames computed since the stream start."""

    def push(self, y16: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add ``(n,)`` samples at 16 kHz; return ``(seq, (187, 96) patch)`` of each patch step
        completed, oldest first."""
        y = np.asarray(y16, dtype=np.float32)
        out = []
        while y.size:
            boundary = (self._samples // STEP_SAMPLES + 1) * STEP_SAMPLES
            piece, y = y[: boundary - self._samples], y[boundary - self._samples :]
            self._add(piece)
            if self._samples == boundary:
                seq = boundary // STEP_SAMPLES - 1
                if self.every_step or is_patch_step(seq):
                    out.append((seq, self._frames.copy()))
        return out

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """End of stream: a partial step carries no patch, so nothing is left."""
        return []

    def close(self) -> None:
        """Nothing to release."""

    def _add(self, y16: np.ndarray) -> None:
        """Compute the frames that ``y16`` (the next samples) completes."""
        self._samples += y16.size
        y = np.concatenate((self._tail, y16))
        new = log_mel_frames(y)
        if len(new):
            self._tail = y[len(new) * MEL_HOP :]
            self.n_frames += len(new)
            keep = np.concatenate((self._frames, new))
            self._frames = keep[-MEL_PATCH_FRAMES:]
        else:
            self._tail = y


def patches_at(y16: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The patches :class:`MelPatcher` (``every_step``) gives at ``steps``, from a whole signal.

    Parameters
    ----------
    y16 : np.ndarray
        ``(samples,)`` mono audio at 16 kHz; ``floor(samples / 8000)`` whole steps are used.
    steps : np.ndarray
        ``(k,)`` step numbers, each below that number of steps.

    Returns
    -------
    np.ndarray
        ``(k, 187, 96)`` float32, the patch ending at each step's end.
    """
    n_steps = len(y16) // STEP_SAMPLES
    frames = log_mel_frames(np.asarray(y16[: n_steps * STEP_SAMPLES]))
    patches = np.zeros((len(steps), MEL_PATCH_FRAMES, MEL_BANDS), np.float32)
    for i, seq in enumerate(steps):
        patches[i] = _patch(frames, _frames_available((int(seq) + 1) * STEP_SAMPLES))
    return patches


def mel_patches_offline(y16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The patches :class:`MelPatcher` gives at its patch steps (:func:`patch_steps`), from a
    whole signal.

    Parameters
    ----------
    y16 : np.ndarray
        ``(samples,)`` mono audio at 16 kHz; ``floor(samples / 8000)`` whole steps are used.

    Returns
    -------
    steps : np.ndarray
        ``(k,)`` int64 step numbers (0, 5, 10, 20, ...).
    patches : np.ndarray
        ``(k, 187, 96)`` float32, the patch ending at each of those steps' end.
    """
    steps = patch_steps(len(y16) // STEP_SAMPLES)
    return steps, patches_at(y16, steps)
