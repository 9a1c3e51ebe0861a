"""Cut any audio stream into 500 ms steps: sequence numbers, stream time, and the samples of each
step resampled (streaming, soxr) to 22 050 Hz for the MFCC path and 16 000 Hz for openSMILE.

The live path (:class:`Framer` fed block by block) and the offline path (:func:`frame_signal` on a
whole signal) are the same code, and the resampler's output does not depend on how the input was
split into blocks, so both give bit-identical steps. A stream of ``n`` samples at rate ``sr`` gives
``floor(n / (sr * 0.5))`` steps; a trailing partial step is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from streammood.audio.resample import StreamingResampler
from streammood.layout import (
    MFCC_RATE,
    MFCC_STEP_SAMPLES,
    SMILE_RATE,
    SMILE_STEP_SAMPLES,
    STEP_SECONDS,
)

__all__ = ["Framer", "Step", "frame_blocks", "frame_signal", "n_steps"]


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


_STEP = Fraction(STEP_SECONDS)


def n_steps(n_samples: int, sample_rate: int) -> int:
    """Number of whole steps in ``n_samples`` at ``sample_rate`` Hz: ``floor(n / (sr * 0.5))``."""
    return int(Fraction(int(n_samples)) // (_STEP * int(sample_rate)))


class Framer:
    """Stream audio in, whole 500 ms :class:`Step` objects out.

    Parameters
    ----------
    input_rate : int
        Sample rate of the blocks pushed, Hz (any: 8 kHz ... 192 kHz).

    Notes
    -----
    Steps come out as soon as both resampled streams hold a whole step, i.e. about 30–80 ms of
    resampler delay after the input that completes it (none at 22 050 Hz for the MFCC path).
    :meth:`finish` releases the rest; a trailing partial step is not a step, but its resampled
    16 kHz samples stay readable with :meth:`pending16` (audio-driven consumers such as openSMILE
    are fed ahead of the steps).
    """

    def __init__(self, input_rate: int) -> None:
        if int(input_rate) <= 0:
            raise ValueError(f"input_rate must be positive, got {input_rate}")
        self.input_rate = int(input_rate)
        self._rs22 = StreamingResampler(self.input_rate, MFCC_RATE)
        self._rs16 = StreamingResampler(self.input_rate, SMILE_RATE)
        self._buf22 = np.zeros(0, np.float32)
        self._buf16 = np.zeros(0, np.float32)
        self._n_in = 0
        self._seq = 0
        self._finished = False

    @property
    def samples_in(self) -> int:
        """Input samples pushed so far."""
        return self._n_in

    @property
    def steps_out(self) -> int:
        """Steps emitted so far (the next step's ``seq``)."""
        return self._seq

    def pending16(self) -> np.ndarray:
        """The 16 kHz samples already resampled after the last emitted step.

        Before :meth:`finish`: the start of the next step(s), not yet emitted. After it: the
        leftover after the last whole step (the trailing partial step plus the resampler's
        rounding). A view: copy it to keep it.

        Returns
        -------
        np.ndarray
            ``(samples,)`` float32 at 16 kHz; sample 0 is at ``steps_out * 8000``.
        """
        return self._buf16

    def push(self, block: np.ndarray) -> list[Step]:
        """Feed ``(n,)`` float32 samples at ``input_rate``; return the steps completed (or none)."""
        if self._finished:
            raise RuntimeError("Framer.push() after finish()")
        x = np.ascontiguousarray(block, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"expected a mono (n,) block, got shape {x.shape}")
        if x.size == 0:
            return []
        self._n_in += x.size
        self._buf22 = _append(self._buf22, self._rs22.push(x))
        self._buf16 = _append(self._buf16, self._rs16.push(x))
        return self._emit(n_steps(self._n_in, self.input_rate), pad=False)

    def finish(self) -> list[Step]:
        """End of stream: return the remaining whole steps; further pushes are an error.

        The leftover after the last whole step stays readable with :meth:`pending16`."""
        if self._finished:
            return []
        self._finished = True
        self._buf22 = _append(self._buf22, self._rs22.finish())
        self._buf16 = _append(self._buf16, self._rs16.finish())
        return self._emit(n_steps(self._n_in, self.input_rate), pad=True)

    def close(self) -> None:
        """Abandon the stream (further pushes are an error; nothing to release)."""
        self._finished = True

    def _emit(self, complete: int, pad: bool) -> list[Step]:
        steps: list[Step] = []
        while self._seq < complete:
            if not pad and (
                self._buf22.size < MFCC_STEP_SAMPLES or self._buf16.size < SMILE_STEP_SAMPLES
            ):
                break
            y22, self._buf22 = _take(self._buf22, MFCC_STEP_SAMPLES)
            y16, self._buf16 = _take(self._buf16, SMILE_STEP_SAMPLES)
            seq = self._seq
            steps.append(
                Step(
                    seq=seq,
                    t_start=float(seq * _STEP),
                    t_end=float((seq + 1) * _STEP),
                    y22=y22,
                    y16=y16,
                )
            )
            self._seq += 1
        return steps


def frame_blocks(blocks: Iterable[np.ndarray], sample_rate: int) -> Iterator[Step]:
    """Run a :class:`Framer` over an iterable of mono blocks (e.g. an ``AudioSource``), finishing
    at the end.

    Parameters
    ----------
    blocks : iterable of np.ndarray
        ``(n,)`` float32 blocks at ``sample_rate`` Hz.
    sample_rate : int
        Hz.

    Yields
    ------
    Step
        In order, ``seq`` = 0, 1, ...
    """
    framer = Framer(sample_rate)
    for block in blocks:
        yield from framer.push(block)
    yield from framer.finish()


def frame_signal(y: np.ndarray, sr: int) -> list[Step]:
    """All whole steps of a signal (the offline path; identical to streaming it block by block).

    Parameters
    ----------
    y : np.ndarray
        ``(n,)`` mono samples.
    sr : int
        Sample rate, Hz.

    Returns
    -------
    list of Step
        ``floor(n / (sr * 0.5))`` steps.
    """
    framer = Framer(sr)
    return framer.push(y) + framer.finish()


def _append(buf: np.ndarray, new: np.ndarray) -> np.ndarray:
    if new.size == 0:
        return buf
    if buf.size == 0:
        return new
    return np.concatenate([buf, new])


def _take(buf: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` samples (zero-padded if short: a sample of resampler rounding) and the rest."""
    if buf.size >= n:
        return buf[:n].copy(), buf[n:]
    out = np.zeros(n, np.float32)
    out[: buf.size] = buf
    return out, buf[:0]
