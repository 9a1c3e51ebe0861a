"""Analysis windows and mel filterbanks in NumPy, equal to librosa's.

librosa's ``filters.get_window("hann", n, fftbins=True)`` and ``filters.mel`` (Slaney mel scale
and area normalisation, its defaults) computed with the same operations in the same order, so
the values are the same to the last bit (``tests/features/test_filters.py`` compares them).
Importing librosa and the scipy.signal it pulls in costs a cold process ~2 s of CPU; the MFCC
and musicnn paths need only these two tables.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hann_window", "mel_filterbank"]

_F_SP = 200.0 / 3
"""Hz per mel in the Slaney scale's linear part."""
_MIN_LOG_HZ = 1000.0
"""Where the Slaney scale turns logarithmic, Hz."""
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window ``(n,)`` float64 (``scipy.signal.windows.hann(n, sym=False)``)."""
    fac = np.linspace(-np.pi, np.pi, n + 1)[:-1]
    w = np.zeros(n)
    for k, a in enumerate((0.5, 0.5)):
        w += a * np.cos(k * fac)
    return w


def _hz_to_mel(hz: float) -> float:
    """Slaney mel of a frequency in Hz."""
    if hz >= _MIN_LOG_HZ:
        return _MIN_LOG_MEL + np.log(hz / _MIN_LOG_HZ) / _LOGSTEP
    return hz / _F_SP


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Frequencies in Hz ``(n,)`` of Slaney mels ``(n,)``."""
    freqs = 0.0 + _F_SP * mels
    log_t = mels >= _MIN_LOG_MEL
    freqs[log_t] = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels[log_t] - _MIN_LOG_MEL))
    return freqs


def mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-normalised triangular mel filters from 0 Hz to ``sr / 2``.

    Parameters
    ----------
    sr : int
        Sample rate, Hz.
    n_fft : int
        FFT length, samples.
    n_mels : int
        Number of bands.

    Returns
    -------
    np.ndarray
        ``(n_mels, 1 + n_fft // 2)`` float32, ``librosa.filters.mel(sr=sr, n_fft=n_fft,
        n_mels=n_mels)``.
    """
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(float(sr) / 2), n_mels + 2)
    mel_f = _mel_to_hz(mels)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights
