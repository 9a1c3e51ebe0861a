"""Mood labels: Russell quadrants and the valence–arousal plane (pure numpy).

Class order everywhere (model outputs, metrics, confusion matrices, bus messages) is
:data:`QUADRANTS` = ``("AP", "AN", "PP", "PN")``:

- AP, active-positive: valence > 0, arousal > 0 (4Q's Q1)
- AN, active-negative: valence <= 0, arousal > 0 (4Q's Q2)
- PP, passive-positive: valence > 0, arousal <= 0 (4Q's Q4)
- PN, passive-negative: valence <= 0, arousal <= 0 (4Q's Q3)

Valence and arousal live on ``[-1, 1]``; the threshold is 0 and a value exactly on it counts as
negative / passive (DEAM's static 1–9 scale maps to it with ``(x - 5) / 4``, so 5 is the threshold).
"""

from __future__ import annotations

import numpy as np

QUADRANTS: tuple[str, ...] = ("AP", "AN", "PP", "PN")
"""Class order of every quadrant output."""

# sign of (valence, arousal) of each class, in QUADRANTS order
_VALENCE_SIGN = np.array([1.0, -1.0, 1.0, -1.0], np.float32)
_AROUSAL_SIGN = np.array([1.0, 1.0, -1.0, -1.0], np.float32)


def quadrant_index(valence: np.ndarray | float, arousal: np.ndarray | float) -> np.ndarray:
    """Class index (into :data:`QUADRANTS`) of points on the valence–arousal plane.

    Parameters
    ----------
    valence, arousal : np.ndarray or float
        Coordinates in ``[-1, 1]`` (any broadcastable shapes); 0 counts as negative / passive.

    Returns
    -------
    np.ndarray
        int64 indices, the broadcast shape of the inputs.
    """
    positive = np.asarray(valence) > 0
    active = np.asarray(arousal) > 0
    # AP=0, AN=1, PP=2, PN=3: index = 2 * passive + negative
    return (2 * (~active).astype(np.int64) + (~positive).astype(np.int64)).astype(np.int64)


def quadrant_of(valence: float, arousal: float) -> str:
    """Quadrant name (``"AP"``, ``"AN"``, ``"PP"`` or ``"PN"``) of one point in ``[-1, 1]^2``."""
    return QUADRANTS[int(quadrant_index(valence, arousal))]


def va_from_probs(probs: np.ndarray) -> np.ndarray:
    """Valence and arousal implied by quadrant probabilities.

    ``valence = P(AP) + P(PP) - P(AN) - P(PN)``, ``arousal = P(AP) + P(AN) - P(PP) - P(PN)``.

    Parameters
    ----------
    probs : np.ndarray
        ``(..., 4)`` probabilities in :data:`QUADRANTS` order.

    Returns
    -------
    np.ndarray
        ``(..., 2)`` float32 ``(valence, arousal)``, each in ``[-1, 1]`` when the probabilities sum
        to 1.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.shape[-1] != len(QUADRANTS):
        raise ValueError(f"probs must end in an axis of {len(QUADRANTS)}, got shape {probs.shape}")
    return np.stack([probs @ _VALENCE_SIGN, probs @ _AROUSAL_SIGN], axis=-1)
