"""The per-step feature extractor: streaming (step by step) and offline (whole signal), equal.

Per 500 ms step: an MFCC block ``(21, 20)`` (:mod:`~streammood.features.mfcc`), 260 openSMILE LLD
statistics (:mod:`~streammood.features.smile`) and, every :data:`EMBED_EVERY` steps, a musicnn mel
patch ``(187, 96)`` (:mod:`~streammood.features.mel`). :class:`StreamingExtractor` takes audio
blocks as they arrive (it frames them itself and writes audio to openSMILE ahead of the steps, so
a step's features come out ~150-200 ms after its end); :func:`extract_offline` takes a whole
signal, frames it with the same framer (same resampler), gives openSMILE the same input and
computes every step at once; :func:`extract_stream` runs the live path over an iterable of blocks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from streammood.audio.framer import Framer, Step
from streammood.features.layout import (
    EMBED_EVERY,
    MEL_BANDS,
    MEL_PATCH_FRAMES,
    MFCC_FRAMES,
    MFCC_HISTORY,
    N_LLD_STATS,
    N_MFCC,
    SMILE_STEP_SAMPLES,
    STEP_SECONDS,
)
from streammood.features.mel import MelPatcher, mel_patches_offline
from streammood.features.mfcc import mfcc_block, mfcc_offline
from streammood.features.smile import StreamingSmile, lld_names, lld_offline

__all__ = ["StepFeatures", "StreamingExtractor", "FeatureSet", "extract_offline", "extract_stream"]


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
    """Audio blocks in, per-step features out, keeping only the history each feature needs.

    Owns a :class:`~streammood.audio.framer.Framer`. Each :meth:`push` frames the block,
    computes the MFCC block and mel patch of the steps it completes, and writes to openSMILE
    every 16 kHz sample resampled so far, including the start of the next step. A step's LLD
    statistics are final once ~150 ms of the following audio has reached openSMILE
    (:data:`~streammood.features.smile.SETTLE_SAMPLES`), so with small blocks (≤ 100 ms) a step
    comes out about 150–200 ms after its end, not a whole step later. :meth:`finish` returns the
    rest. One instance per stream; instances are independent.

    Parameters
    ----------
    input_rate : int
        Sample rate of the blocks pushed, Hz.
    on_patch : callable, optional
        Called with ``(seq, mel_patch)`` as soon as a step's mel patch exists — while its LLD
        statistics still wait for openSMILE's look-ahead — so a consumer can start work on it
        early (the live path runs musicnn in that time). The patch also comes with the step.

    Examples
    --------
    >>> with StreamingExtractor(44_100) as ex:
    ...     for block in source:
    ...         for feats in ex.push(block):
    ...             publish(feats)
    ...     rest = ex.finish()
    """

    def __init__(
        self, input_rate: int, on_patch: Callable[[int, np.ndarray], None] | None = None
    ) -> None:
        self.framer = Framer(input_rate)
        self._on_patch = on_patch
        self._history = np.zeros(MFCC_HISTORY, np.float32)
        self._mel = MelPatcher()
        self._smile = StreamingSmile()
        self._pending: deque[StepFeatures] = deque()
        self._lld: dict[int, np.ndarray] = {}
        self._written = 0
        self._finished = False

    @property
    def input_rate(self) -> int:
        """Sample rate of the blocks pushed, Hz."""
        return self.framer.input_rate

    @property
    def samples_in(self) -> int:
        """Input samples pushed so far (at :attr:`input_rate`)."""
        return self.framer.samples_in

    @property
    def samples_written(self) -> int:
        """16 kHz samples written to openSMILE so far."""
        return self._written

    def push(self, block: np.ndarray) -> list[StepFeatures]:
        """Add ``(n,)`` float32 mono samples at :attr:`input_rate` (any length); return the steps
        whose features are now complete, in ``seq`` order."""
        if self._finished:
            raise RuntimeError("StreamingExtractor.push after finish()")
        steps = self.framer.push(block)
        self._take(self._smile.push(self._add(steps)))
        return self._release()

    def finish(self) -> list[StepFeatures]:
        """End of stream: the remaining whole steps.

        openSMILE also gets the audio after the last whole step (as :func:`extract_offline`
        does), so the last step's frames are the same in both paths; that tail is no step."""
        if self._finished:
            return []
        self._finished = True
        steps = self.framer.flush()
        y16 = self._add(steps)
        done = self._smile.push(y16) if y16.size else []
        self._take(done + self._smile.finish())
        n = self.framer.steps_out
        self._lld = {seq: v for seq, v in self._lld.items() if seq < n}
        out = self._release()
        if self._pending:  # pragma: no cover - openSMILE returns every whole step at EOI
            raise RuntimeError(f"openSMILE gave no statistics for step {self._pending[0].seq}")
        return out

    def close(self) -> None:
        """Stop openSMILE without collecting (an abandoned stream)."""
        self._finished = True
        self._smile.close()

    def __enter__(self) -> StreamingExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _add(self, steps: list[Step]) -> np.ndarray:
        """Compute MFCC and mel patch of new steps, queue them; return the 16 kHz audio not yet
        written to openSMILE (the unwritten part of the steps, then the framer's pending
        samples)."""
        parts = []
        for step in steps:
            y22 = np.asarray(step.y22, np.float32)
            mfcc = mfcc_block(self._history, y22)
            self._history = y22[-MFCC_HISTORY:].copy()
            self._mel.push(step.y16)
            patch = self._mel.patch() if step.seq % EMBED_EVERY == 0 else None
            if patch is not None and self._on_patch is not None:
                self._on_patch(step.seq, patch)
            feats = StepFeatures(step.seq, step.t_start, step.t_end, mfcc, None, patch)
            self._pending.append(feats)
            parts.append(self._claim(step.y16, step.seq * SMILE_STEP_SAMPLES))
        ahead = self.framer.pending16()
        parts.append(self._claim(ahead, self.framer.steps_out * SMILE_STEP_SAMPLES))
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _claim(self, y16: np.ndarray, start: int) -> np.ndarray:
        """The part of ``y16`` (16 kHz, sample 0 at stream sample ``start``) that openSMILE has
        not had yet, counted as written. Written audio is contiguous from sample 0."""
        skip = self._written - start
        if skip < 0:  # pragma: no cover - the framer's 16 kHz output is contiguous
            raise RuntimeError(f"16 kHz audio gap at sample {self._written}")
        new = np.array(y16[skip:], np.float32)
        self._written += new.size
        return new

    def _take(self, done: list[tuple[int, np.ndarray]]) -> None:
        for seq, lld in done:
            self._lld[seq] = lld

    def _release(self) -> list[StepFeatures]:
        """Pending steps, oldest first, as long as their LLD statistics have arrived."""
        out = []
        while self._pending and self._pending[0].seq in self._lld:
            head = self._pending.popleft()
            out.append(replace(head, lld=self._lld.pop(head.seq)))
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

    Frames the signal with the same :class:`~streammood.audio.framer.Framer` (same resampler)
    and gives openSMILE the same input as the live path: every 16 kHz sample, including the
    leftover after the last whole step, then end of input.

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
    framer = Framer(sr)
    steps = framer.push(y) + framer.flush()
    n = len(steps)
    if n == 0:
        return FeatureSet.from_steps([])
    y22 = np.concatenate([s.y22 for s in steps])
    y16 = np.concatenate([s.y16 for s in steps])
    patch_steps, patches = mel_patches_offline(y16)
    seq = np.arange(n, dtype=np.int64)
    return FeatureSet(
        mfcc=mfcc_offline(y22),
        lld=lld_offline(np.concatenate([y16, framer.pending16()]), n),
        t_start=seq * STEP_SECONDS,
        seq=seq,
        patch_steps=patch_steps,
        mel_patches=patches,
    )


def extract_stream(blocks: Iterable[np.ndarray], sr: int) -> FeatureSet:
    """Run audio blocks through one :class:`StreamingExtractor` (the live path) and stack the
    result.

    Parameters
    ----------
    blocks : iterable of np.ndarray
        ``(n,)`` mono float32 blocks at ``sr`` Hz, any lengths (e.g. an ``AudioSource``).
    sr : int
        Sample rate, Hz.

    Returns
    -------
    FeatureSet
        Equal to :func:`extract_offline` of the concatenated blocks (to float tolerance).
    """
    out: list[StepFeatures] = []
    with StreamingExtractor(sr) as ex:
        for block in blocks:
            out += ex.push(block)
        out += ex.finish()
    return FeatureSet.from_steps(out)
