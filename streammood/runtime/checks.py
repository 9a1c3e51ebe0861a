"""A model that loads must also compute: output checks at warm-up and on every step.

A checksum proves a file is the one the manifest names, not that it computes anything sensible
(a model exported with NaN weights has a matching checksum). :func:`warm_up` runs the step model
on a known input, and the embedder on a known patch, and raises :class:`~streammood.runtime.
artifact.ModelError` unless every output is finite and the probabilities form a distribution;
:func:`check_prediction` is the same check on one live step (:class:`OutputError`).
"""

from __future__ import annotations

import numpy as np

from streammood.features.embedding import MusicnnEmbedder
from streammood.features.extractor import ModelInputs
from streammood.layout import MEL_BANDS, MEL_PATCH_FRAMES, MFCC_FRAMES, N_LLD_STATS, N_MFCC
from streammood.runtime.artifact import ModelArtifact, ModelError
from streammood.runtime.rolling import MoodRuntime, Prediction, StepModel

PROBS_TOLERANCE = 1e-3
"""How far a step's quadrant probabilities may sum from 1."""
WARM_UP_STEPS = 4
"""Steps of the known input run at warm-up (zeros, then a fixed pseudo-random sequence)."""


class OutputError(ModelError):
    """One step's model output is not a valid prediction (NaN or infinite values, or
    probabilities outside [0, 1] or not summing to 1): an error for that step only."""


def check_prediction(pred: Prediction, where: str) -> Prediction:
    """Return ``pred`` if it is a valid prediction, else raise :class:`OutputError` naming
    ``where``: probabilities finite, in [0, 1] and summing to 1 (±:data:`PROBS_TOLERANCE`),
    valence and arousal finite and in [-1, 1]."""
    probs = np.asarray(pred.probs, np.float64)
    va = np.array([pred.valence, pred.arousal], np.float64)
    if not (np.all(np.isfinite(probs)) and np.all(np.isfinite(va))):
        raise OutputError(
            f"{where}: the model output is not finite (probs {np.array2string(probs)}, "
            f"valence {pred.valence!r}, arousal {pred.arousal!r})"
        )
    if (
        probs.min() < -PROBS_TOLERANCE
        or probs.max() > 1 + PROBS_TOLERANCE
        or abs(probs.sum() - 1.0) > PROBS_TOLERANCE
    ):
        raise OutputError(
            f"{where}: the model's probabilities {np.array2string(probs, precision=4)} are not "
            "a distribution"
        )
    if np.abs(va).max() > 1.0 + 1e-6:
        raise OutputError(f"{where}: valence/arousal {va.tolist()} outside [-1, 1]")
    return pred


def known_inputs(emb_dim: int, steps: int = WARM_UP_STEPS) -> list[ModelInputs]:
    """The warm-up input: a step of zeros, then pseudo-random steps (seed 0) of roughly the
    magnitudes of real features."""
    rng = np.random.default_rng(0)
    out = [
        ModelInputs(
            0,
            0.0,
            0.5,
            np.zeros((MFCC_FRAMES, N_MFCC), np.float32),
            np.zeros(N_LLD_STATS, np.float32),
            np.zeros(emb_dim, np.float32),
        )
    ]
    for i in range(1, steps):
        out.append(
            ModelInputs(
                i,
                i * 0.5,
                i * 0.5 + 0.5,
                (rng.standard_normal((MFCC_FRAMES, N_MFCC)) * 50).astype(np.float32),
                (rng.standard_normal(N_LLD_STATS) * 10).astype(np.float32),
                np.abs(rng.standard_normal(emb_dim)).astype(np.float32),
            )
        )
    return out


def warm_up(artifact: ModelArtifact, step_model: StepModel | None = None) -> None:
    """Run the artifact's step model on :func:`known_inputs` and check every output.

    Raises
    ------
    ModelError
        An output is NaN or infinite, or the probabilities are not a distribution (the file
        loads but does not compute: e.g. corrupt weights with a matching checksum).
    """
    runtime = MoodRuntime(artifact, step_model=step_model)
    try:
        for inputs in known_inputs(artifact.emb_dim):
            (pred,) = runtime.push(inputs)
            check_prediction(pred, f"{artifact.path}: warm-up step {inputs.seq}")
    except OutputError as exc:
        raise ModelError(f"{exc}; the step model does not compute, re-export it") from None


def check_embedder(embedder: MusicnnEmbedder) -> MusicnnEmbedder:
    """Return ``embedder`` if its output on a silent and a fixed pseudo-random patch is finite.

    Raises
    ------
    ModelError
        It is not (the file loads but does not compute).
    """
    rng = np.random.default_rng(0)
    patches = np.stack(
        [
            np.zeros((MEL_PATCH_FRAMES, MEL_BANDS), np.float32),
            rng.uniform(0, 3, (MEL_PATCH_FRAMES, MEL_BANDS)).astype(np.float32),
        ]
    )
    if not np.all(np.isfinite(embedder.embed(patches))):
        raise ModelError(
            f"{embedder.path}: the embedder's output on a known patch is not finite; the file "
            "does not compute, re-export it"
        )
    return embedder
