"""Audio → model inputs, the one feature stage: streaming (step by step) and offline (whole
signal), equal.

Per 500 ms step (:class:`ModelInputs`): an MFCC block ``(21, 20)``
(:mod:`~streammood.features.mfcc`), 260 openSMILE LLD statistics
(:mod:`~streammood.features.smile`) and the pretrained embedding ``(D,)``
(:mod:`~streammood.features.embedding`) of the musicnn mel patch (:mod:`~streammood.features.mel`)
taken at the patch steps (every :data:`EMBED_EVERY` steps, at :data:`EARLY_PATCH_STEP`, and with a
:class:`~streammood.features.changes.ChangeDetector` at each step a change is detected) and held
in between. :class:`StreamingExtractor` takes audio
blocks as they arrive (it frames them itself and writes audio to openSMILE ahead of the steps, so
a step comes out ~150-200 ms after its end); :func:`extract_offline` takes a whole signal, frames
it with the same framer (same resampler), gives openSMILE the same input and computes every step
at once; :func:`extract_stream` runs the live path over an iterable of blocks. Nothing else in
streammood puts model inputs together.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from streammood.audio.framer import Framer, Step
from streammood.features.changes import ChangeDetector
from streammood.features.embedding import MusicnnEmbedder, hold_embeddings
from streammood.features.mel import MelPatcher, is_patch_step, log_mel_frames, patch_steps
from streammood.features.mfcc import mfcc_block, mfcc_offline
from streammood.features.service import EmbeddingService
from streammood.features.smile import StreamingSmile, lld_names, lld_offline
from streammood.layout import (
    MEL_BANDS,
    MEL_HOP,
    MEL_N_FFT,
    MEL_PATCH_FRAMES,
    MFCC_FRAMES,
    MFCC_HISTORY,
    MFCC_STEP_SAMPLES,
    N_LLD_STATS,
    N_MFCC,
    SMILE_STEP_SAMPLES,
    STEP_SECONDS,
)

__all__ = ["ModelInputs", "StreamingExtractor", "FeatureSet", "extract_offline", "extract_stream"]


@dataclass(frozen=True)
class ModelInputs:
    """Everything the model needs for one 500 ms step (what a feature frame on the bus carries).

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
    emb : np.ndarray
        ``(D,)`` float32 pretrained embedding, held between patches (``D == 0`` without an
        embedder).
    mel_patch : np.ndarray or None
        ``(187, 96)`` float32 musicnn input ending at ``t_end`` at a patch step (scheduled, or
        a detected change), else None (kept for the ``features`` archive; frames do not carry
        it).
    captured_at : float or None
        Wall clock (Unix s) at which the step's last sample was captured (see
        :attr:`~streammood.audio.sources.AudioSource.captured_at`); None offline.
    """

    seq: int
    t_start: float
    t_end: float
    mfcc: np.ndarray
    lld: np.ndarray
    emb: np.ndarray
    mel_patch: np.ndarray | None = None
    captured_at: float | None = None


class StreamingExtractor:
    """Audio blocks in, :class:`ModelInputs` out, keeping only the history each feature needs.

    A :class:`~streammood.stage.Stage` that owns everything it runs: a
    :class:`~streammood.audio.framer.Framer`, an openSMILE engine (its own thread) and, with an
    embedder, one ``streammood-musicnn`` thread. Each :meth:`push` frames the block, computes
    the MFCC block and mel patch of the steps it completes, hands a patch to the musicnn thread
    at once (LiteRT releases the GIL, so the embedding is computed while the step's LLD
    statistics still wait for openSMILE's look-ahead) and writes to openSMILE every 16 kHz sample
    resampled so far, including the start of the next step. A step's LLD statistics are final
    once ~150 ms of the following audio has reached openSMILE
    (:data:`~streammood.features.smile.SETTLE_SAMPLES`), so with small blocks (≤ 100 ms) a step
    comes out about 150–200 ms after its end, not a whole step later. :meth:`finish` returns the
    rest and stops both threads; :meth:`close` stops them without collecting. One instance per
    stream.

    Parameters
    ----------
    input_rate : int
        Sample rate of the blocks pushed, Hz.
    embedder : MusicnnEmbedder, optional
        The pretrained embedding; this stage then calls it from its own thread only (a private
        :class:`~streammood.features.service.EmbeddingService`). Without one (and no
        ``service``), ``emb`` is ``(0,)``.
    service : EmbeddingService, optional
        A shared embedding thread instead (``listen --sources``): not closed by this stage.
    wait : bool
        :meth:`push` waits for a step's embedding and briefly for openSMILE's thread (True),
        or leaves the step pending until a later :meth:`push` or :meth:`poll` finds it
        complete (False: one thread driving many sources never blocks on another thread).
    on_ready : callable, optional
        Called (on the embedding or openSMILE thread, no arguments) when an embedding this
        stage waits for is done or openSMILE has a new step out: the cue to :meth:`poll`.
    smile : StreamingSmile, optional
        An openSMILE engine built beforehand (setting one up costs ~0.1 s of CPU), unused so
        far; this stage owns it from now on. Built here when not given.
    detector : ChangeDetector, optional
        Judges each step once its statistics are in; at a step where it detects a change (3 s
        after the boundary) the patch ending there, all of the new segment's audio, is
        embedded too: the new song's first embedding comes with the change, not at the next
        scheduled patch (up to 5 s later). The runtime's own detector, on the same inputs,
        restarts the window there.

    Examples
    --------
    >>> with StreamingExtractor(44_100, MusicnnEmbedder(path)) as ex:
    ...     for block in source:
    ...         for inputs in ex.push(block):
    ...             publish(inputs)
    ...     rest = ex.finish()
    """

    def __init__(
        self,
        input_rate: int,
        embedder: MusicnnEmbedder | None = None,
        *,
        service: EmbeddingService | None = None,
        wait: bool = True,
        on_ready: Callable[[], None] | None = None,
        smile: StreamingSmile | None = None,
        detector: ChangeDetector | None = None,
    ) -> None:
        if embedder is not None and service is not None:
            raise ValueError("give an embedder or an embedding service, not both")
        self.framer = Framer(input_rate)
        self._history = np.zeros(MFCC_HISTORY, np.float32)
        self._detector = detector
        self._mel = MelPatcher(every_step=detector is not None)
        self._spare: dict[int, np.ndarray] = {}  # pending steps' patches, cut for the detector
        self._judged = -1  # last step the detector has seen
        self._wait = wait
        self._on_ready = None if on_ready is None else (lambda _fut: on_ready())
        dim = service.dim if service is not None else embedder.dim if embedder is not None else 0
        self._held = np.zeros(dim, np.float32)
        self._ahead: dict[int, Future[np.ndarray]] = {}
        self._pending: deque[ModelInputs] = deque()
        self._lld: dict[int, np.ndarray] = {}
        self._written = 0
        self._finished = False
        self._clock: deque[tuple[int, float]] = deque(maxlen=64)  # (samples_in, captured_at)
        # warm up before audio flows: the first MFCC block builds its tables (and the first
        # musicnn call sets its interpreter up, ~0.1 s); neither may delay step 0
        mfcc_block(np.zeros(MFCC_HISTORY, np.float32), np.zeros(MFCC_STEP_SAMPLES, np.float32))
        self._own_service = service is None and embedder is not None
        self._service = EmbeddingService(embedder, max_batch=1) if self._own_service else service
        try:
            # driving many sources from one thread: never wait for openSMILE, be woken instead
            if smile is not None:
                self._smile = smile
            elif wait:
                self._smile = StreamingSmile()
            else:
                self._smile = StreamingSmile(catch_up=0.0, on_step=on_ready)
        except BaseException:
            if self._own_service:
                self._service.close()
            raise

    @property
    def input_rate(self) -> int:
        """Sample rate of the blocks pushed, Hz."""
        return self.framer.input_rate

    @property
    def emb_dim(self) -> int:
        """Embedding size ``D`` of the steps (0 without an embedder)."""
        return int(self._held.size)

    @property
    def samples_in(self) -> int:
        """Input samples pushed so far (at :attr:`input_rate`)."""
        return self.framer.samples_in

    @property
    def samples_written(self) -> int:
        """16 kHz samples written to openSMILE so far."""
        return self._written

    def push(self, block: np.ndarray, captured_at: float | None = None) -> list[ModelInputs]:
        """Add ``(n,)`` float32 mono samples at :attr:`input_rate` (any length); return the steps
        whose inputs are now complete, in ``seq`` order.

        ``captured_at`` (Unix s) is when the block's last sample was captured; a step gets the
        time of its own last sample, counted back from the block that held it."""
        if self._finished:
            raise RuntimeError("StreamingExtractor.push after finish() or close()")
        steps = self.framer.push(block)
        if captured_at is not None:
            self._clock.append((self.framer.samples_in, float(captured_at)))
        self._take(self._smile.push(self._add(steps)))
        return self._release(self._wait)

    def poll(self) -> list[ModelInputs]:
        """The pending steps that became complete since the last call, without waiting."""
        if self._finished:
            return []
        self._take(self._smile.poll())
        return self._release(False)

    def _captured(self, seq: int) -> float | None:
        """Wall clock of the last sample of step ``seq`` (None without stamped blocks)."""
        if not self._clock:
            return None
        end = (seq + 1) * STEP_SECONDS * self.framer.input_rate
        for n, t in self._clock:
            if n >= end:
                return t - (n - end) / self.framer.input_rate
        return self._clock[-1][1]

    def finish(self) -> list[ModelInputs]:
        """End of stream: the remaining whole steps; then both threads are stopped.

        openSMILE also gets the audio after the last whole step (as :func:`extract_offline`
        does), so the last step's frames are the same in both paths; that tail is no step."""
        if self._finished:
            return []
        try:
            steps = self.framer.finish()
            y16 = self._add(steps)
            done = self._smile.push(y16) if y16.size else []
            self._take(done + self._smile.finish())
            n = self.framer.steps_out
            self._lld = {seq: v for seq, v in self._lld.items() if seq < n}
            out = self._release(True)
            if self._pending:  # pragma: no cover - openSMILE returns every whole step at EOI
                raise RuntimeError(f"openSMILE gave no statistics for step {self._pending[0].seq}")
            return out
        finally:
            self.close()

    def close(self) -> None:
        """Stop openSMILE and the musicnn thread (a shared service: only this stage's patches)
        without collecting (idempotent)."""
        self._finished = True
        self._smile.close()
        if self._own_service:
            self._service.close()
        for fut in self._ahead.values():
            fut.cancel()
        self._ahead.clear()

    def __enter__(self) -> StreamingExtractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _add(self, steps: list[Step]) -> np.ndarray:
        """Compute MFCC and mel patch of new steps, queue them (a patch also goes to the musicnn
        thread); return the 16 kHz audio not yet written to openSMILE (the unwritten part of the
        steps, then the framer's pending samples)."""
        parts = []
        for step in steps:
            y22 = np.asarray(step.y22, np.float32)
            mfcc = mfcc_block(self._history, y22)
            self._history = y22[-MFCC_HISTORY:].copy()
            patch = None
            for _, cut in self._mel.push(step.y16):
                if not is_patch_step(step.seq):
                    self._spare[step.seq] = cut  # embedded only if a change is detected here
                    continue
                patch = cut
                if self._service is not None:
                    self._ahead[step.seq] = self._service.submit(patch, self._on_ready)
            feats = ModelInputs(
                step.seq,
                step.t_start,
                step.t_end,
                mfcc,
                _NO_LLD,
                self._held,
                patch,
                self._captured(step.seq),
            )
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

    def _release(self, wait: bool) -> list[ModelInputs]:
        """Pending steps, oldest first, as long as their LLD statistics have arrived; each takes
        the embedding of its patch (waiting for the musicnn thread, or, without ``wait``,
        stopping at a step whose embedding is not done) or the one held before."""
        out = []
        while self._pending and self._pending[0].seq in self._lld:
            seq = self._pending[0].seq
            if self._detector is not None and seq > self._judged:
                self._judge(seq)
            if (ahead := self._ahead.get(seq)) is not None:
                if not wait and not ahead.done():
                    break
                self._held = ahead.result()
                del self._ahead[seq]
            head = self._pending.popleft()
            out.append(replace(head, lld=self._lld.pop(seq), emb=self._held))
        return out

    def _judge(self, seq: int) -> None:
        """Show the detector step ``seq`` (the head of the pending steps, statistics in); at a
        detected change its spare patch becomes the step's patch and is embedded."""
        self._judged = seq
        head = self._pending[0]
        spare = self._spare.pop(seq, None)
        for old in [s for s in self._spare if s < seq]:
            del self._spare[old]
        lag = self._detector.step(head.mfcc, self._lld[seq])
        if lag is None or spare is None:  # a scheduled patch step has its patch already
            return
        self._pending[0] = replace(head, mel_patch=spare)
        if self._service is not None:
            self._ahead[seq] = self._service.submit(spare, self._on_ready)


_NO_LLD = np.zeros(0, np.float32)
"""Placeholder of a step whose LLD statistics openSMILE has not returned yet."""


@dataclass
class FeatureSet:
    """Every step's model inputs of one clip or stream, as arrays.

    Attributes
    ----------
    mfcc : np.ndarray
        ``(n, 21, 20)`` float32.
    lld : np.ndarray
        ``(n, 260)`` float32.
    emb : np.ndarray
        ``(n, D)`` float32 pretrained embeddings, held between patches (``D == 0`` without an
        embedder).
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
    emb: np.ndarray
    t_start: np.ndarray
    seq: np.ndarray
    patch_steps: np.ndarray
    mel_patches: np.ndarray
    lld_names: list[str] = field(default_factory=lld_names)

    @property
    def n_steps(self) -> int:
        return int(self.mfcc.shape[0])

    def steps(self) -> Iterator[ModelInputs]:
        """The steps one by one, as the streaming extractor gives them (without mel patches)."""
        for i in range(self.n_steps):
            t = float(self.t_start[i])
            yield ModelInputs(
                int(self.seq[i]), t, t + STEP_SECONDS, self.mfcc[i], self.lld[i], self.emb[i]
            )

    @classmethod
    def from_steps(cls, steps: Sequence[ModelInputs], emb_dim: int = 0) -> FeatureSet:
        """Stack :class:`ModelInputs` (in order) into arrays (``emb_dim`` sizes an empty set)."""
        if not steps:
            return cls.empty(emb_dim)
        with_patch = [s for s in steps if s.mel_patch is not None]
        patches = [s.mel_patch for s in with_patch]
        return cls(
            mfcc=np.stack([s.mfcc for s in steps]).astype(np.float32, copy=False),
            lld=np.stack([s.lld for s in steps]).astype(np.float32, copy=False),
            emb=np.stack([s.emb for s in steps]).astype(np.float32, copy=False),
            t_start=np.array([s.t_start for s in steps], np.float64),
            seq=np.array([s.seq for s in steps], np.int64),
            patch_steps=np.array([s.seq for s in with_patch], np.int64),
            mel_patches=np.stack(patches).astype(np.float32, copy=False)
            if patches
            else np.zeros((0, MEL_PATCH_FRAMES, MEL_BANDS), np.float32),
        )

    @classmethod
    def empty(cls, emb_dim: int = 0) -> FeatureSet:
        """No steps (a signal shorter than one step)."""
        return cls(
            mfcc=np.zeros((0, MFCC_FRAMES, N_MFCC), np.float32),
            lld=np.zeros((0, N_LLD_STATS), np.float32),
            emb=np.zeros((0, emb_dim), np.float32),
            t_start=np.zeros(0, np.float64),
            seq=np.zeros(0, np.int64),
            patch_steps=np.zeros(0, np.int64),
            mel_patches=np.zeros((0, MEL_PATCH_FRAMES, MEL_BANDS), np.float32),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name, as written to ``.npz`` (``lld_names`` as a ``(260,)`` str array;
        ``emb`` only when there is an embedding)."""
        out = {
            "mfcc": self.mfcc,
            "lld": self.lld,
            "lld_names": np.array(self.lld_names),
            "seq": self.seq,
            "t_start": self.t_start,
            "patch_steps": self.patch_steps,
            "mel_patches": self.mel_patches,
        }
        if self.emb.shape[-1]:
            out["emb"] = self.emb
        return out


EMBED_BATCH = 8
"""Patches per embedder call offline: memory stays bounded on long files (one batch's input is
0.6 MiB) and two threads can share the patches of one file."""


def extract_offline(
    y: np.ndarray,
    sr: int,
    embedder: MusicnnEmbedder | None = None,
    *,
    threads: int = 1,
    detector: ChangeDetector | None = None,
) -> FeatureSet:
    """Model inputs of a whole signal, equal to streaming it through :class:`StreamingExtractor`.

    Frames the signal with the same :class:`~streammood.audio.framer.Framer` (same resampler)
    and gives openSMILE the same input as the live path: every 16 kHz sample, including the
    leftover after the last whole step, then end of input. The patches are embedded in batches
    of :data:`EMBED_BATCH` and held between patch steps
    (:func:`~streammood.features.embedding.hold_embeddings`).

    With ``threads=2`` one worker thread runs openSMILE (its engine releases the GIL) while this
    thread computes the mel patches and embeds them (LiteRT releases the GIL too); once openSMILE
    is done the worker embeds the remaining batches on a second 1-thread interpreter of the same
    model, and the MFCC blocks come last. The values do not depend on ``threads``.

    Parameters
    ----------
    y : np.ndarray
        ``(samples,)`` mono audio, any rate (resampled by the framer's resampler).
    sr : int
        Sample rate, Hz.
    embedder : MusicnnEmbedder, optional
        The pretrained embedding (without one, ``emb`` is ``(n, 0)``). Called from this thread
        only; the worker thread uses its own interpreter.
    threads : int
        1 (default: callers that run one process per core, e.g. the training cache): every part
        in this thread, one after the other; 2: openSMILE and half the embedding in one worker
        thread, stopped before returning (``analyze`` of one long file).
    detector : ChangeDetector, optional
        As :class:`StreamingExtractor`'s: a patch is also taken (and embedded) at each step
        where it detects a change. A fresh (or reset) detector: it is run over every step.

    Returns
    -------
    FeatureSet
        ``n = floor(samples / (sr * 0.5))`` steps.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"extract_offline needs mono (samples,) audio, got shape {y.shape}")
    if threads not in (1, 2):
        raise ValueError(f"threads must be 1 or 2, got {threads}")
    emb_dim = embedder.dim if embedder is not None else 0
    framer = Framer(sr)
    steps = framer.push(y) + framer.finish()
    n = len(steps)
    if n == 0:
        return FeatureSet.empty(emb_dim)
    y22 = np.concatenate([s.y22 for s in steps])
    y16 = np.concatenate([s.y16 for s in steps])
    del steps
    smile_in = np.concatenate([y16, framer.pending16()])
    work = _PatchWork(y16, patch_steps(n), n, emb_dim)
    if threads == 1:
        lld = lld_offline(smile_in, n)
        if embedder is not None:
            work.embed_with(embedder)
        else:
            work.fill()
    else:
        with ThreadPoolExecutor(1, thread_name_prefix="streammood-offline") as pool:
            helper = pool.submit(_smile_then_embed, smile_in, n, work, embedder)
            try:
                if embedder is not None:
                    work.embed_with(embedder)
                else:
                    work.fill()
            finally:
                work.stop_on_error = True  # the worker takes no batch after a failure here
            lld = helper.result()
    mfcc = mfcc_offline(y22)
    if detector is not None:
        changed = [t for t in range(n) if detector.step(mfcc[t], lld[t]) is not None]
        extra = _PatchWork(y16, [t for t in changed if not is_patch_step(t)], n, emb_dim)
        if embedder is not None:
            extra.embed_with(embedder)
        else:
            extra.fill()
        work.absorb(extra)
    seq = np.arange(n, dtype=np.int64)
    return FeatureSet(
        mfcc=mfcc,
        lld=lld,
        emb=hold_embeddings(work.steps, work.emb, n) if embedder is not None else work.emb,
        t_start=seq * STEP_SECONDS,
        seq=seq,
        patch_steps=work.steps,
        mel_patches=work.patches,
    )


class _PatchWork:
    """The mel patches of a whole signal and their embeddings, computed batch by batch by one
    or two threads (each takes the next batch not taken yet; a patch is 187 mel frames cut from
    just the audio it covers, so no whole-signal spectrogram is ever held).

    ``steps`` ``(k,)`` int64 patch steps, ``patches`` ``(k, 187, 96)`` float32, ``emb``
    ``(k, D)`` float32 (``(n, 0)`` without an embedder, once :meth:`fill` ran).
    """

    def __init__(
        self, y16: np.ndarray, steps: Sequence[int], n_steps: int, emb_dim: int
    ) -> None:
        self.y16 = y16
        self.steps = np.asarray(steps, np.int64).reshape(-1)
        k = len(self.steps)
        self.patches = np.zeros((k, MEL_PATCH_FRAMES, MEL_BANDS), np.float32)
        self.emb = np.zeros((k, emb_dim) if emb_dim else (n_steps, 0), np.float32)
        self._taken = 0  # patches handed out so far
        self._lock = threading.Lock()
        self.stop_on_error = False

    @property
    def left(self) -> bool:
        """Some batch is not taken yet."""
        return not self.stop_on_error and self._taken < len(self.steps)

    def _next(self) -> int | None:
        """First patch of the next batch not taken, or None."""
        with self._lock:
            if not self.left:
                return None
            b0, self._taken = self._taken, self._taken + EMBED_BATCH
            return b0

    def _cut(self, b0: int, b1: int) -> None:
        """Patches ``b0 .. b1 - 1``: each the 187 frames ending at its step's end, equal to
        :func:`~streammood.features.mel.mel_patches_offline` (zeros before frame 0)."""
        for i in range(b0, b1):
            end = ((int(self.steps[i]) + 1) * SMILE_STEP_SAMPLES - MEL_N_FFT) // MEL_HOP + 1
            first = max(0, end - MEL_PATCH_FRAMES)
            seg = self.y16[first * MEL_HOP : (end - 1) * MEL_HOP + MEL_N_FFT]
            frames = log_mel_frames(seg)
            self.patches[i, MEL_PATCH_FRAMES - len(frames) :] = frames

    def absorb(self, other: _PatchWork) -> None:
        """Take ``other``'s patches (and embeddings) in, at other steps: all in step order."""
        if not len(other.steps):
            return
        order = np.argsort(np.concatenate([self.steps, other.steps]), kind="stable")
        self.steps = np.concatenate([self.steps, other.steps])[order]
        self.patches = np.concatenate([self.patches, other.patches])[order]
        if self.emb.shape[1]:  # (k, D) per patch; without an embedder (n, 0) stays as it is
            self.emb = np.concatenate([self.emb, other.emb])[order]

    def fill(self) -> None:
        """Cut the patches not taken yet (no embedder)."""
        while (b0 := self._next()) is not None:
            self._cut(b0, min(b0 + EMBED_BATCH, len(self.steps)))

    def embed_with(self, embedder: MusicnnEmbedder) -> None:
        """Cut and embed the batches not taken yet, with ``embedder`` (this thread's own)."""
        while (b0 := self._next()) is not None:
            b1 = min(b0 + EMBED_BATCH, len(self.steps))
            self._cut(b0, b1)
            self.emb[b0:b1] = embedder.embed(self.patches[b0:b1])


def _smile_then_embed(
    y16: np.ndarray, n_steps: int, work: _PatchWork, embedder: MusicnnEmbedder | None
) -> np.ndarray:
    """The worker thread of :func:`extract_offline`: openSMILE's statistics ``(n, 260)``, then
    a share of the patches on a second interpreter of the same model."""
    lld = lld_offline(y16, n_steps)
    if embedder is None:
        work.fill()
    elif work.left:  # a second interpreter only when batches are left (~20 ms to set up)
        work.embed_with(MusicnnEmbedder(embedder.path, num_threads=1))
    return lld


def extract_stream(
    blocks: Iterable[np.ndarray], sr: int, embedder: MusicnnEmbedder | None = None
) -> FeatureSet:
    """Run audio blocks through one :class:`StreamingExtractor` (the live path) and stack the
    result.

    Parameters
    ----------
    blocks : iterable of np.ndarray
        ``(n,)`` mono float32 blocks at ``sr`` Hz, any lengths (e.g. an ``AudioSource``).
    sr : int
        Sample rate, Hz.
    embedder : MusicnnEmbedder, optional
        The pretrained embedding.

    Returns
    -------
    FeatureSet
        Equal to :func:`extract_offline` of the concatenated blocks (to float tolerance).
    """
    out: list[ModelInputs] = []
    with StreamingExtractor(sr, embedder) as ex:
        for block in blocks:
            out += ex.push(block)
        out += ex.finish()
    return FeatureSet.from_steps(out, ex.emb_dim)
