"""Streaming sample-rate conversion (soxr HQ), equal to one-shot resampling of the whole signal."""

from __future__ import annotations

import numpy as np
import soxr

__all__ = ["StreamingResampler", "resample"]

QUALITY = "HQ"
"""soxr quality; also librosa's default (``res_type="soxr_hq"``)."""


class StreamingResampler:
    """Resample a mono stream block by block.

    The concatenated output of any sequence of :meth:`push` calls followed by :meth:`finish`
    equals :func:`resample` of the concatenated input (bit-exactly, tested), and has
    ``round(n_in * out_rate / in_rate)`` samples (±1). Output lags input by soxr's filter delay
    (about 30–80 ms) until :meth:`finish`. A :class:`~streammood.stage.Stage` over samples:
    it returns arrays, not lists.

    Parameters
    ----------
    in_rate, out_rate : int
        Sample rates, Hz. Equal rates pass blocks through unchanged.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self._stream = (
            None
            if self.in_rate == self.out_rate
            else soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=QUALITY
            )
        )
        self._finished = False

    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed ``(n,)`` samples at ``in_rate``; return the ``(m,)`` float32 samples now ready."""
        if self._finished:
            raise RuntimeError("StreamingResampler.push() after finish()")
        x = np.ascontiguousarray(block, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"expected a mono (n,) block, got shape {x.shape}")
        if self._stream is None:
            return x.copy()
        return self._stream.resample_chunk(x)

    def finish(self) -> np.ndarray:
        """End of stream: return the samples still held back by the filter delay."""
        if self._finished:
            return np.zeros(0, np.float32)
        self._finished = True
        if self._stream is None:
            return np.zeros(0, np.float32)
        return self._stream.resample_chunk(np.zeros(0, np.float32), last=True)

    def close(self) -> None:
        """Drop the stream (nothing to release: soxr holds no thread)."""
        self._finished = True


def resample(y: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """One-shot resampling of a whole mono signal, same filter as :class:`StreamingResampler`.

    Parameters
    ----------
    y : np.ndarray
        ``(n,)`` samples.
    in_rate, out_rate : int
        Hz.

    Returns
    -------
    np.ndarray
        ``(round(n * out_rate / in_rate),)`` float32.
    """
    x = np.ascontiguousarray(y, dtype=np.float32)
    if in_rate == out_rate:
        return x.copy()
    return soxr.resample(x, in_rate, out_rate, quality=QUALITY)
