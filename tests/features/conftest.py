"""Fixtures of the feature tests: real clips decoded once, and the parity criterion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def decoded_clips(fourq_clips: list[Path]) -> list[tuple[Path, np.ndarray, int]]:
    """``(path, y, sr)`` of one real 4Q clip per quadrant (the Q1 one peaks at 1.47)."""
    from streammood.audio.decode import load_audio

    return [(p, *load_audio(p)) for p in fourq_clips]


@pytest.fixture(scope="session")
def clip_steps(decoded_clips):
    """Steps of the first clip (the one peaking above 1.0), framed offline."""
    from streammood.audio.framer import frame_signal

    _, y, sr = decoded_clips[0]
    return frame_signal(y, sr)
