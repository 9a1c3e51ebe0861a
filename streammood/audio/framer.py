"""Cut any audio source into 500 ms steps (placeholder: the Step contract; the Framer follows)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Step:
    """500 ms of audio, resampled for each feature path.

    Attributes
    ----------
    seq : int
        Step number from the start of the stream (0, 1, ...).
    t_start, t_end : float
        Stream time of the step, seconds (``seq * 0.5``, ``(seq + 1) * 0.5``).
    y22 : np.ndarray
        ``(11025,)`` float32 mono samples at 22 050 Hz (MFCC path).
    y16 : np.ndarray
        ``(8000,)`` float32 mono samples at 16 000 Hz (openSMILE and mel paths).
    """

    seq: int
    t_start: float
    t_end: float
    y22: np.ndarray
    y16: np.ndarray
