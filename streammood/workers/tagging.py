"""The two stages every job chains: audio blocks → model inputs, and model inputs → moods.

:func:`feature_stage` (capture side: the artifact's
:class:`~streammood.features.extractor.StreamingExtractor`) and :class:`MoodStage` (inference
side) are plain objects with no I/O; ``listen`` runs them in one process, ``capture``/``infer``
put a Redis stream of feature frames between them (:mod:`streammood.bus.frames`). Same code
every way, so the messages are identical.
"""

from __future__ import annotations

import time
from dataclasses import replace

from streammood.bus.schema import ModelRef, MoodMessage
from streammood.features.changes import ChangeDetector
from streammood.features.extractor import ModelInputs, StreamingExtractor
from streammood.layout import STEP_SECONDS
from streammood.runtime.artifact import ModelArtifact
from streammood.runtime.checks import OutputError, check_embedder, check_prediction, warm_up
from streammood.runtime.labels import QUADRANTS
from streammood.runtime.rolling import MoodRuntime, StepModel


def feature_stage(
    artifact: ModelArtifact, sample_rate: int, num_threads: int = 1
) -> StreamingExtractor:
    """The feature stage for ``artifact``: audio blocks at ``sample_rate`` Hz → :class:`ModelInputs`
    with the artifact's embedder (its output checked on a known patch; close it when done).

    Raises
    ------
    ModelError
        The embedder does not compute (non-finite output on the known patch).
    """
    return StreamingExtractor(
        sample_rate,
        check_embedder(artifact.embedder(num_threads)),
        detector=change_detector(artifact),
    )


def change_detector(artifact: ModelArtifact) -> ChangeDetector:
    """A fresh change detector standardising with ``artifact``'s training statistics (the
    feature stage and the runtime each run one on the same inputs, so they agree)."""
    return ChangeDetector.from_norm(artifact.file("norm"))


class MoodStage:
    """:class:`ModelInputs` of one source → :class:`MoodMessage` (exact rolling window), a
    :class:`~streammood.stage.Stage`.

    A step whose ``seq`` is lower than expected means the source restarted (a new capture
    session): the window starts over. A higher one means steps were dropped upstream: they are
    counted in :attr:`gaps` and the window runs on over them.

    The model is warmed up on a known input and its outputs checked
    (:func:`~streammood.runtime.checks.warm_up`: ``ModelError`` if it does not compute). A step
    whose output is not a valid prediction raises
    :class:`~streammood.runtime.checks.OutputError` and is never a message; the window starts
    over after it (a state that produced NaN cannot be trusted).

    With ``changes`` (the default) a :class:`~streammood.features.changes.ChangeDetector` watches
    the stream and the window restarts at each song (or strong mood) change it detects; every
    message says where its segment began (``segment_start``, ``segment_steps``) and whether the
    segment's own embedding is in yet (``embedding_ready``).
    """

    def __init__(
        self,
        artifact: ModelArtifact,
        source: str,
        step_model: StepModel | None = None,
        changes: bool = True,
    ) -> None:
        self.source = source
        step_model = step_model or StepModel(artifact)
        warm_up(artifact, step_model)
        detector = change_detector(artifact) if changes else None
        self.runtime = MoodRuntime(artifact, step_model=step_model, detector=detector)
        self.model = ModelRef(artifact.name, artifact.version)
        self.expected_seq: int | None = None
        self.gaps = 0
        """Steps missing from the input (dropped upstream); the window runs on over them."""
        self.session: str | None = None
        """Producer session stamped on every message (see :meth:`start_session`)."""
        self._offset: tuple[int, float] = (0, 0.0)

    def reset(self) -> None:
        """Forget the stream: the next step starts a new window."""
        self.runtime.reset()
        self.expected_seq = None

    def start_session(self, session: str | None, seq0: int = 0, t0: float = 0.0) -> None:
        """Steps from now on belong to producer session ``session``: its id goes in every
        message, and ``seq0`` / ``t0`` (s) are added to the steps' ``seq`` and stream times
        (``listen``: where the source's last session ended; ``infer``: frames carry both
        already). A different session than the current one starts a new window (its audio does
        not continue the last session's)."""
        if session != self.session:
            self.reset()
        self.session, self._offset = session, (int(seq0), float(t0))

    def finish(self) -> list[MoodMessage]:
        """End of stream: every step was answered as it came."""
        return []

    def close(self) -> None:
        """Nothing to release (a shared :class:`StepModel` belongs to whoever built it)."""

    def push(self, inputs: ModelInputs) -> list[MoodMessage]:
        """The mood over the window ending at this step: ``[message]``."""
        if self._offset != (0, 0.0):
            seq0, t0 = self._offset
            inputs = replace(
                inputs, seq=inputs.seq + seq0, t_start=inputs.t_start + t0, t_end=inputs.t_end + t0
            )
        if self.expected_seq is not None and inputs.seq < self.expected_seq:
            self.runtime.reset()  # the source restarted (a new capture session)
        elif self.expected_seq is not None and inputs.seq > self.expected_seq:
            self.gaps += inputs.seq - self.expected_seq
        self.expected_seq = inputs.seq + 1
        (pred,) = self.runtime.push(inputs)
        try:
            check_prediction(pred, f"source {self.source} step {inputs.seq}")
        except OutputError:
            self.runtime.reset()
            raise
        msg = MoodMessage(
            source=self.source,
            seq=inputs.seq,
            t_start=inputs.t_start,
            t_end=inputs.t_end,
            valence=pred.valence,
            arousal=pred.arousal,
            quadrant=pred.quadrant,
            probs={q: float(p) for q, p in zip(QUADRANTS, pred.probs, strict=True)},
            window_steps=pred.window_steps,
            model=self.model,
            emitted_at=time.time(),
            captured_at=inputs.captured_at,
            segment_start=max(0.0, inputs.t_end - pred.segment_steps * STEP_SECONDS),
            segment_steps=pred.segment_steps,
            embedding_ready=pred.embedding_ready,
            changed=pred.changed,
            session=self.session,
        )
        return [msg]
