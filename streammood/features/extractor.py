"""The per-step feature extractor: streaming (step by step) and offline (whole signal), equal.

Per 500 ms step: an MFCC block ``(21, 20)`` (:mod:`~streammood.features.mfcc`), 260 openSMILE LLD
statistics (:mod:`~streammood.features.smile`) and, every :data:`EMBED_EVERY` steps, a musicnn mel
patch ``(187, 96)`` (:mod:`~streammood.features.mel`). :class:`StreamingExtractor` takes
:class:`~streammood.audio.framer.Step` objects as they are framed; :func:`extract_offline` takes
a whole signal, frames it with the same framer (same resampler) and computes every step at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from streammood.audio.framer import Step, frame_signal
from streammood.features.layout import (
    EMBED_EVERY,
    MEL_BANDS,
    MEL_PATCH_FRAMES,
    MFCC_FRAMES,
    MFCC_HISTORY,
    N_LLD_STATS,
    N_MFCC,
    STEP_SECONDS,
)
from streammood.features.mel import MelPatcher, mel_patches_offline
from streammood.features.mfcc import mfcc_block, mfcc_offline
from streammood.features.smile import StreamingSmile, lld_names, lld_offline

__all__ = ["StepFeatures", "StreamingExtractor", "FeatureSet", "extract_offline", "extract_steps"]


@dataclass(frozen=True)
class StepFeatures:
    """Features of one 500 ms step.

    Attributes
    ----------
    seq : int
        Step number from the stream start.
    t_start, t_end : float
        Stream time, seconds.
    mfcc : np.ndarray
        ``(21, 20)`` float32, frames x coefficients.
    lld : np.ndarray
        ``(260,)`` float32 openSMILE statistics, named by :func:`lld_names`.
    mel_patch : np.ndarray or None
        ``(187, 96)`` float32 musicnn input ending at ``t_end`` when ``seq % EMBED_EVERY == 0``,
        else None.
    """

    seq: int
    t_start: float
    t_end: float
    mfcc: np.ndarray
    lld: np.ndarray | None
    mel_patch: np.ndarray | None = None


class StreamingExtractor:
    """Step in, features out, keeping only the history each feature needs.

    The LLD statistics of a step are final once 250 ms of the next step's audio has reached
    openSMILE, so :meth:`push` of step ``k`` returns step ``k - 1`` (output lags by one step);
    :meth:`finish` returns the last one. One instance per stream; instances are independent.

    Examples
    --------
    >>> ex = StreamingExtractor()
    >>> for step in framer.push(block):
    ...     for feats in ex.push(step):
    ...         publish(feats)
    >>> rest = ex.finish()
    """

    def __init__(self) -> None:
        self._history = np.zeros(MFCC_HISTORY, np.float32)
        self._mel = MelPatcher()
        self._smile = StreamingSmile()
        self._pending: deque[StepFeatures] = deque()
        self._next_seq = 0
        self._finished = False

    def push(self, step: Step) -> list[StepFeatures]:
        """Add one step (``seq`` must follow the previous one); return the steps now complete,
        in ``seq`` order."""
        if self._finished:
            raise RuntimeError("StreamingExtractor.push after finish()")
        if step.seq != self._next_seq:
            raise ValueError(f"expected step seq {self._next_seq}, got {step.seq}")
        self._next_seq += 1
        y22 = np.asarray(step.y22, np.float32)
        mfcc = mfcc_block(self._history, y22)
        self._history = y22[-MFCC_HISTORY:].copy()
        self._mel.push(step.y16)
        patch = self._mel.patch() if step.seq % EMBED_EVERY == 0 else None
        self._pending.append(StepFeatures(step.seq, step.t_start, step.t_end, mfcc, None, patch))
        return self._release(self._smile.push(step.y16))

    def finish(self) -> list[StepFeatures]:
        """End of stream: the remaining steps."""
        if self._finished:
            return []
        self._finished = True
        return self._release(self._smile.finish())

    def close(self) -> None:
        """Stop openSMILE without collecting (an abandoned stream)."""
        self._finished = True
        self._smile.close()

    def __enter__(self) -> StreamingExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _release(self, done: list[tuple[int, np.ndarray]]) -> list[StepFeatures]:
        out = []
        for seq, lld in done:
            head = self._pending.popleft()
            if head.seq != seq:  # pragma: no cover - StreamingSmile returns steps in order
                raise RuntimeError(f"LLD step {seq} arrived for pending step {head.seq}")
            out.append(replace(head, lld=lld))
        return out


@dataclass
class FeatureSet:
    """Every step's features of one clip or stream.

    Attributes
    ----------
    mfcc : np.ndarray
        ``(n, 21, 20)`` float32.
    lld : np.ndarray
        ``(n, 260)`` float32.
    t_start : np.ndarray
        ``(n,)`` float64 step start times, seconds.
    seq : np.ndarray
        ``(n,)`` int64 step numbers.
    patch_steps : np.ndarray
        ``(k,)`` int64: the steps with a mel patch (``seq % EMBED_EVERY == 0``).
    mel_patches : np.ndarray
        ``(k, 187, 96)`` float32.
    lld_names : list of str
        The 260 LLD column names.
    """

    mfcc: np.ndarray
    lld: np.ndarray
    t_start: np.ndarray
    seq: np.ndarray
    patch_steps: np.ndarray
    mel_patches: np.ndarray
    lld_names: list[str] = field(default_factory=lld_names)

    @property
    def n_steps(self) -> int:
        return int(self.mfcc.shape[0])

    @classmethod
    def from_steps(cls, steps: Sequence[StepFeatures]) -> FeatureSet:
        """Stack :class:`StepFeatures` (in order) into arrays."""
        n = len(steps)
        with_patch = [s for s in steps if s.mel_patch is not None]
        return cls(
            mfcc=np.stack([s.mfcc for s in steps]).astype(np.float32, copy=False)
            if n
            else np.zeros((0, MFCC_FRAMES, N_MFCC), np.float32),
            lld=np.stack([s.lld for s in steps]).astype(np.float32, copy=False)
            if n
            else np.zeros((0, N_LLD_STATS), np.float32),
            t_start=np.array([s.t_start for s in steps], np.float64),
            seq=np.array([s.seq for s in steps], np.int64),
            patch_steps=np.array([s.seq for s in with_patch], np.int64),
            mel_patches=np.stack([s.mel_patch for s in with_patch]).astype(np.float32, copy=False)
            if with_patch
            else np.zeros((0, MEL_PATCH_FRAMES, MEL_BANDS), np.float32),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name, as written to ``.npz`` (``lld_names`` as a ``(260,)`` str array)."""
        return {
            "mfcc": self.mfcc,
            "lld": self.lld,
            "lld_names": np.array(self.lld_names),
            "seq": self.seq,
            "t_start": self.t_start,
            "patch_steps": self.patch_steps,
            "mel_patches": self.mel_patches,
        }


def extract_offline(y: np.ndarray, sr: int) -> FeatureSet:
    """Features of a whole signal, equal to streaming it through :class:`StreamingExtractor`.

    Parameters
    ----------
    y : np.ndarray
        ``(samples,)`` mono audio, any rate (resampled by the framer's resampler).
    sr : int
        Sample rate, Hz.

    Returns
    -------
    FeatureSet
        ``n = floor(samples / (sr * 0.5))`` steps.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"extract_offline needs mono (samples,) audio, got shape {y.shape}")
    steps = frame_signal(y, sr)
    n = len(steps)
    if n == 0:
        return FeatureSet.from_steps([])
    y22 = np.concatenate([s.y22 for s in steps])
    y16 = np.concatenate([s.y16 for s in steps])
    patch_steps, patches = mel_patches_offline(y16)
    seq = np.arange(n, dtype=np.int64)
    return FeatureSet(
        mfcc=mfcc_offline(y22),
        lld=lld_offline(y16),
        t_start=seq * STEP_SECONDS,
        seq=seq,
        patch_steps=patch_steps,
        mel_patches=patches,
    )


def extract_steps(steps: Iterable[Step]) -> FeatureSet:
    """Run steps through one :class:`StreamingExtractor` (the live path) and stack the result."""
    out: list[StepFeatures] = []
    with StreamingExtractor() as ex:
        for step in steps:
            out += ex.push(step)
        out += ex.finish()
    return FeatureSet.from_steps(out)
