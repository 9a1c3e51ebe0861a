"""Streaming inference on LiteRT with an exact rolling window (no TensorFlow import).

The prediction at step ``t`` is the model applied to steps ``t-59 .. t`` from a zero state. An LSTM
cannot forget its oldest input, but staggered states can: every step a new zero state starts, all
live states (at most 60) advance together in one batched call of the step model, and the state that
has now seen 60 steps is published and retired. Before 60 steps have arrived, the state started at
step 0 is published: the prediction over the prefix, with ``window_steps`` saying how long it is.
The frame encoders (MFCC-CNN, normalisation) run once per step inside the same call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from streammood.features.extractor import ModelInputs
from streammood.layout import MFCC_FRAMES, N_LLD_STATS, N_MFCC
from streammood.runtime.artifact import ModelArtifact, ModelError
from streammood.runtime.labels import QUADRANTS, va_from_probs

PATCH_STEPS = 6
"""Steps a pretrained-embedding patch spans (3 s ending at its step: that step and 5 before)."""
REGRESSION_PROB_SCALE = 0.25
"""Spread (in valence/arousal units) of the logistic that turns a regression model's point estimate
into quadrant probabilities."""


def _interpreter(path, num_threads: int):
    from ai_edge_litert.interpreter import Interpreter

    try:
        return Interpreter(model_path=str(path), num_threads=num_threads)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a valid LiteRT model ({exc})") from None


@dataclass(frozen=True)
class Prediction:
    """One step's mood.

    ``probs`` is ``(4,)`` in :data:`~streammood.runtime.labels.QUADRANTS` order; ``valence`` and
    ``arousal`` lie in ``[-1, 1]``; ``window_steps`` is how many steps (≤ 60) the prediction covers.
    """

    probs: np.ndarray
    valence: float
    arousal: float
    window_steps: int
    segment_start: int = 0
    """Stream step at which the window's segment began (0, or the last detected change)."""
    changed: bool = False
    """A change was detected at this step (``segment_start`` is where it began)."""
    embedding_ready: bool = True
    """The window holds a pretrained embedding of its segment's own audio (False from a
    segment's start until its first whole patch: at a change, the embedding held is the
    previous song's)."""
    window_start: int = 0
    """First stream step of the window (``segment_start`` or later)."""
    segment_steps: int = 1
    """Steps from ``segment_start`` to this step, this one included."""

    @property
    def quadrant(self) -> str:
        return QUADRANTS[int(np.argmax(self.probs))]


def probs_from_va(va: np.ndarray, scale: float = REGRESSION_PROB_SCALE) -> np.ndarray:
    """Quadrant probabilities ``(..., 4)`` from valence/arousal estimates ``(..., 2)``, treating
    each axis's sign as an independent logistic with the given spread."""
    p = 1.0 / (1.0 + np.exp(-np.asarray(va, np.float64) / scale))
    pv, pa = p[..., 0], p[..., 1]
    out = np.stack([pv * pa, (1 - pv) * pa, pv * (1 - pa), (1 - pv) * (1 - pa)], axis=-1)
    return out.astype(np.float32)


class StepModel:
    """An artifact's ``step.tflite`` on one LiteRT interpreter. It holds no stream state, so one
    instance serves any number of :class:`MoodRuntime` streams in the same thread (an ``infer``
    worker shares one across its sources: ~30 MiB and a cold start per source saved)."""

    def __init__(self, artifact: ModelArtifact, num_threads: int = 1) -> None:
        self.artifact = artifact
        self.runner = _interpreter(artifact.file("step"), num_threads).get_signature_runner()
        inputs = self.runner.get_input_details()
        missing = {"mfcc", "lld", "emb", "select"} - set(inputs)
        if missing:
            raise ModelError(f"{artifact.path}: step model lacks inputs {sorted(missing)}")
        self.state_shapes = {
            name: tuple(d["shape"])
            for name, d in inputs.items()
            if name not in ("mfcc", "lld", "emb", "select")
        }
        emb_shape = tuple(inputs["emb"]["shape"])
        if emb_shape != (1, artifact.emb_dim):
            raise ModelError(f"{artifact.path}: step model embedding {emb_shape} != manifest")


class MoodRuntime:
    """Explicit-state streaming runner over an artifact's step model.

    Parameters
    ----------
    artifact : ModelArtifact
        A loaded model.
    num_threads : int
        LiteRT threads (when this runtime makes its own :class:`StepModel`).
    step_model : StepModel, optional
        A step model to share with other streams of the same thread.
    detector : ChangeDetector, optional
        Online change detector (:mod:`streammood.features.changes`); at a detected change ``c``
        the window restarts there: the prediction at step ``t`` covers steps
        ``max(t - 59, c) .. t`` (exact: the state begun at ``c`` is the one published).
    clean_embedding : bool
        After a detected change, restart the window once more at the first step whose embedding
        is of the new segment's audio alone (a patch step at least :data:`PATCH_STEPS` - 1
        steps into it; with a feature stage that runs a detector too, the detection step
        itself): until then the window covers the segment with the previous song's embedding
        held (``embedding_ready`` False).
        Patch steps are recognised by a fresh embedding (held ones repeat), so a ``seq`` that
        does not start at 0 (a continued session) or a dropped step changes nothing.

    Notes
    -----
    A :class:`~streammood.stage.Stage`: :meth:`push` takes one step's :class:`ModelInputs` and
    returns its :class:`Prediction`. One instance holds one stream's state; run one per source.
    A step costs one interpreter call (~0.4 ms per ensemble member) regardless of the window
    length.
    """

    def __init__(
        self,
        artifact: ModelArtifact,
        num_threads: int = 1,
        step_model: StepModel | None = None,
        detector=None,
        clean_embedding: bool = True,
    ) -> None:
        self.artifact = artifact
        self.detector = detector
        self.clean_embedding = clean_embedding
        self.rows = artifact.rows
        model = step_model or StepModel(artifact, num_threads)
        self._runner = model.runner
        self._state_shapes = model.state_shapes
        self._emb_dim = artifact.emb_dim
        self.reset()

    def warm_up(self) -> None:
        """One step on zeros, then :meth:`reset` (the first live step is then not slow)."""
        self._advance(
            np.zeros((MFCC_FRAMES, N_MFCC)), np.zeros(N_LLD_STATS), np.zeros(self._emb_dim)
        )
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next step is step 0."""
        self._states = {n: np.zeros(s, np.float32) for n, s in self._state_shapes.items()}
        self._select = np.zeros((self.rows, 1), np.float32)
        self._t = 0
        self._segment = 0
        self._window = 0  # the window's earliest step: the segment start, or its first clean patch
        self._awaiting: int | None = 0  # segment start still waiting for its own embedding
        self._last_patch = -1  # runtime step of the last fresh embedding (a patch step)
        self._prev_emb: np.ndarray | None = None
        self.detect_seconds = 0.0
        """CPU time spent in the change detector so far, s."""
        if self.detector is not None:
            self.detector.reset()

    @property
    def segment_start(self) -> int:
        """Step at which the current segment (the window's earliest possible step) began."""
        return self._segment

    def restart(self, at: int | None = None) -> None:
        """Restart the window at step ``at`` (default: the next step): from then on the prediction
        at step ``t`` covers steps ``max(t - 59, at) .. t``. ``at`` may lie up to 59 steps back
        (the state begun there is still live); steps already answered are not revised."""
        at = self._t if at is None else int(at)
        if not self._t - self.rows < at <= self._t:
            raise ValueError(f"restart at step {at}: outside the live window (next step {self._t})")
        if at > self._segment:
            self._segment = self._window = at
            self._awaiting = at

    def push(self, inputs: ModelInputs) -> list[Prediction]:
        """Advance by one step: ``[prediction]`` over the window ending at this step.

        ``inputs`` holds the ``(21, 20)`` MFCC block, ``(260,)`` openSMILE statistics and
        ``(D,)`` pretrained embedding of the step. With a detector, a change it reports
        (``lag`` steps back) restarts the window before this step is answered."""
        changed = False
        emb = np.asarray(inputs.emb)
        if self._prev_emb is None or not np.array_equal(emb, self._prev_emb):
            self._last_patch = self._t  # a fresh embedding (held ones repeat): a patch step
        self._prev_emb = emb.copy()
        if self.detector is not None:
            started = time.process_time()
            lag = self.detector.step(inputs.mfcc, inputs.lld)
            self.detect_seconds += time.process_time() - started
            if lag is not None and self._t - lag > self._segment:
                self.restart(self._t - lag)
                changed = True
        if self._awaiting is not None and self._last_patch >= self._awaiting + PATCH_STEPS - 1:
            if self.clean_embedding and self._segment > 0:
                self._window = max(self._window, self._last_patch)
            self._awaiting = None
        pred = self._advance(inputs.mfcc, inputs.lld, inputs.emb)
        return [replace(pred, changed=changed, embedding_ready=self._awaiting is None)]

    def finish(self) -> list[Prediction]:
        """End of stream: every step was answered as it came, nothing is left."""
        return []

    def close(self) -> None:
        """Nothing to release (the interpreter belongs to the :class:`StepModel`)."""

    def _advance(self, mfcc: np.ndarray, lld: np.ndarray, emb: np.ndarray) -> Prediction:
        slot = self._t % self.rows
        for state in self._states.values():
            state[slot] = 0.0  # the state started at t-60 was published last step: reuse its row
        self._select[:] = 0.0
        start = max(self._t - self.rows + 1, self._window)  # the window's first step
        self._select[start % self.rows] = 1.0  # the oldest live state not older than the segment
        out = self._runner(
            mfcc=np.asarray(mfcc, np.float32).reshape(1, MFCC_FRAMES, N_MFCC),
            lld=np.asarray(lld, np.float32).reshape(1, N_LLD_STATS),
            emb=np.asarray(emb, np.float32).reshape(1, -1),
            select=self._select,
            **self._states,
        )
        for name in self._states:
            self._states[name] = out[f"out_{name}"]
        window = self._t - start + 1
        self._t += 1
        pred = self._prediction(np.asarray(out["y"][0], np.float32), window, self._segment)
        return replace(pred, window_start=start, segment_steps=self._t - self._segment)

    def _prediction(self, y: np.ndarray, window_steps: int, segment: int = 0) -> Prediction:
        if self.artifact.task == "classification":
            probs = y
            valence, arousal = va_from_probs(probs)
        else:
            valence, arousal = np.clip(y, -1.0, 1.0)
            probs = probs_from_va(np.array([valence, arousal]))
        return Prediction(
            probs.astype(np.float32), float(valence), float(arousal), window_steps, segment
        )
