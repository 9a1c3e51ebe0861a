"""Online detection of song (or strong mood) changes, from the features the stream computes.

Per step the detector standardises what the extractor already gave (the 260 openSMILE statistics
and the frame means of the MFCC block, with the model's own training statistics from
``norm.npz``) and compares the most recent ``after`` steps with the ``before`` steps that precede
them, never reaching back past the last change: the novelty of a candidate boundary ``b`` is the
mean over features of the squared difference of the two means, divided by the mean of the two
parts' variances, per feature (a signal-to-noise ratio, so loud or busy music does not fire
more). A change is declared at ``b`` when its novelty passes ``threshold`` and is the highest of
its neighbourhood (``peak`` steps either side), and at least ``min_segment`` steps after the last
change. The settings were chosen on streams of training songs (artist-disjoint from the test
split), hard cuts and 4 s crossfades.

Look-ahead: a boundary is known ``after + peak - 1`` steps after it began (3 s with the
defaults). Two stages act on it, each with its own detector on the same inputs (so they agree):
the feature stage embeds a patch at that step (the new segment's first 3 s, see
:class:`~streammood.features.extractor.StreamingExtractor`), and the runtime restarts the window
at the boundary, exactly (:meth:`~streammood.runtime.rolling.MoodRuntime.restart`). Cost: means
and variances over a ``(before + after, 280)`` ring buffer per step, 0.1–0.2 ms of CPU
(``evaluate --stream`` measures it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streammood.layout import N_LLD_STATS, N_MFCC


@dataclass(frozen=True)
class ChangeConfig:
    """Detector settings (steps of 500 ms)."""

    before: int = 12
    """Steps before the candidate boundary that it is compared with (at most)."""
    after: int = 6
    """Steps after the candidate boundary (look-ahead)."""
    min_before: int = 6
    """Fewest steps before a boundary (since the stream start or last change) to judge it."""
    peak: int = 1
    """A boundary must be the novelty peak of this many steps either side."""
    threshold: float = 0.8
    """Novelty (mean over features of the squared difference of the two parts' means over
    their mean variance) that declares a change."""
    min_segment: int = 24
    """Fewest steps between two changes (12 s)."""
    clip: float = 6.0
    """Standardised features are clipped to ``[-clip, clip]``."""
    var_floor: float = 0.1
    """Added to each feature's variance (standardised units): steady features do not fire."""

    @property
    def lag(self) -> int:
        """Steps from a boundary to the step at which it is detected."""
        return self.after + self.peak - 1


class ChangeDetector:
    """Streaming novelty detector: :meth:`step` one step's MFCC block and openSMILE statistics,
    get ``None`` or the lag (steps back from this step) of a change just detected.

    Parameters
    ----------
    lld_mean, lld_std : np.ndarray
        ``(260,)`` standardisation of the openSMILE statistics.
    mfcc_mean, mfcc_std : np.ndarray
        ``(20,)`` standardisation of the MFCC coefficients.
    config : ChangeConfig
        Settings.
    """

    def __init__(
        self,
        lld_mean: np.ndarray,
        lld_std: np.ndarray,
        mfcc_mean: np.ndarray,
        mfcc_std: np.ndarray,
        config: ChangeConfig | None = None,
    ) -> None:
        self.config = config or ChangeConfig()
        self._mean = np.concatenate([lld_mean, mfcc_mean]).astype(np.float64)
        self._scale = 1.0 / np.concatenate([lld_std, mfcc_std]).astype(np.float64)
        self.reset()

    @classmethod
    def from_norm(cls, path: str | Path, config: ChangeConfig | None = None) -> ChangeDetector:
        """A detector standardising with a model's training statistics (its ``norm.npz``)."""
        with np.load(path) as z:
            return cls(z["lld_mean"], z["lld_std"], z["mfcc_mean"], z["mfcc_std"], config)

    def reset(self) -> None:
        """Forget the stream."""
        cfg = self.config
        self._x: deque[np.ndarray] = deque(maxlen=cfg.before + cfg.after)
        self._scores: deque[float] = deque(maxlen=2 * cfg.peak + 1)
        self._t = 0
        self._since = 0  # steps since the stream start or the last change, this step included
        self.last_score = 0.0

    def features(self, mfcc: np.ndarray, lld: np.ndarray) -> np.ndarray:
        """``(280,)`` standardised, clipped openSMILE statistics and MFCC frame means of a step
        (``mfcc`` ``(21, 20)``, ``lld`` ``(260,)``)."""
        x = np.concatenate(
            [
                np.asarray(lld, np.float64).reshape(N_LLD_STATS),
                np.asarray(mfcc, np.float64).reshape(-1, N_MFCC).mean(axis=0),
            ]
        )
        return np.clip((x - self._mean) * self._scale, -self.config.clip, self.config.clip)

    def novelty(self, x: np.ndarray, before: int) -> float:
        """Novelty of the boundary between the last ``after`` rows of ``x`` ``(n, F)`` and the
        ``before`` rows preceding them."""
        a = self.config.after
        old, new = x[-a - before : -a], x[-a:]
        diff = old.mean(axis=0) - new.mean(axis=0)
        noise = 0.5 * (old.var(axis=0) + new.var(axis=0)) + self.config.var_floor
        return float(np.mean(diff * diff / noise))

    def step(self, mfcc: np.ndarray, lld: np.ndarray) -> int | None:
        """Add one step (``(21, 20)`` MFCC block, ``(260,)`` openSMILE statistics); the lag in
        steps (this step = 0) of a change detected now, or None."""
        cfg = self.config
        self._x.append(self.features(mfcc, lld))
        self._t += 1
        self._since += 1
        before = min(self._since - cfg.after, cfg.before)
        score = 0.0
        if before >= cfg.min_before:
            score = self.novelty(np.asarray(self._x), before)
        self.last_score = score
        self._scores.append(score)
        if len(self._scores) < self._scores.maxlen:
            return None
        scores = np.asarray(self._scores)
        mid = cfg.peak
        lag = cfg.after - 1 + cfg.peak  # of the boundary whose score sits in the middle
        since_boundary = self._since - lag  # steps from the last change to that boundary
        if (
            scores[mid] >= cfg.threshold
            and scores[mid] >= scores.max()
            and since_boundary >= cfg.min_segment
        ):
            self._since = lag + 1  # the new segment: from the boundary to this step
            keep = list(self._x)[-(lag + 1) :]
            self._x.clear()
            self._x.extend(keep)
            self._scores.clear()
            return lag
        return None
