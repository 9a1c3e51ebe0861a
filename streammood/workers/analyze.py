"""``analyze``: the offline mood timeline of audio files, through the same features and model
as ``listen`` (no Redis), one process per file on all cores; with fewer files than cores a
file's features take two threads (:func:`~streammood.features.extractor.extract_offline`)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streammood.audio.decode import load_audio
from streammood.errors import StreammoodError
from streammood.features.extractor import extract_offline
from streammood.runtime.artifact import ModelArtifact, load_artifact
from streammood.runtime.checks import OutputError, check_embedder, check_prediction, warm_up
from streammood.runtime.labels import QUADRANTS
from streammood.runtime.rolling import MoodRuntime, StepModel
from streammood.workers.tagging import change_detector


@dataclass(frozen=True)
class Timeline:
    """Per-step moods of one file.

    ``t_start``, ``t_end`` ``(n,)`` seconds; ``probs`` ``(n, 4)`` in QUADRANTS order;
    ``valence``, ``arousal`` ``(n,)`` in [-1, 1]; ``window_steps`` ``(n,)``. A step whose model
    output was not a valid prediction holds NaN (its quadrant is ``None``; CSV/JSON write it as
    empty / ``null``, never ``NaN``). ``segment_start`` ``(n,)`` s, ``segment_steps`` ``(n,)``,
    ``embedding_ready`` and ``changed`` ``(n,)`` bool: where each step's segment began (the
    change-aware window, as in ``listen``'s messages).
    """

    path: str
    t_start: np.ndarray
    t_end: np.ndarray
    probs: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    window_steps: np.ndarray
    segment_start: np.ndarray | None = None
    segment_steps: np.ndarray | None = None
    embedding_ready: np.ndarray | None = None
    changed: np.ndarray | None = None

    @property
    def quadrants(self) -> list[str | None]:
        """Quadrant of each step (``None`` where the step has no valid prediction)."""
        if not len(self.probs):
            return []
        valid = np.all(np.isfinite(self.probs), axis=1)
        best = np.argmax(np.where(valid[:, None], self.probs, 0.0), axis=1)
        return [QUADRANTS[i] if ok else None for i, ok in zip(best, valid, strict=True)]

    @property
    def invalid_steps(self) -> int:
        """Steps without a valid prediction (the model's output was not finite)."""
        return int(np.sum(~np.all(np.isfinite(self.probs), axis=1))) if len(self.probs) else 0

    def rows(self) -> list[dict[str, object]]:
        """One dict per step (the CSV/JSON rows)."""
        return [
            {
                "file": self.path,
                "seq": i,
                "t_start": round(float(self.t_start[i]), 3),
                "t_end": round(float(self.t_end[i]), 3),
                "valence": _finite(self.valence[i]),
                "arousal": _finite(self.arousal[i]),
                "quadrant": q,
                **{
                    f"p_{name}": _finite(p)
                    for name, p in zip(QUADRANTS, self.probs[i], strict=True)
                },
                "window_steps": int(self.window_steps[i]),
                **self._segment_row(i),
            }
            for i, q in enumerate(self.quadrants)
        ]

    def _segment_row(self, i: int) -> dict[str, object]:
        """Step ``i``'s segment columns (a segment from the start when none were recorded)."""
        if self.segment_start is None:
            return {
                "segment_start": 0.0,
                "segment_steps": i + 1,
                "embedding_ready": True,
                "changed": False,
            }
        return {
            "segment_start": round(float(self.segment_start[i]), 3),
            "segment_steps": int(self.segment_steps[i]),
            "embedding_ready": bool(self.embedding_ready[i]),
            "changed": bool(self.changed[i]),
        }


def _finite(value: float) -> float | None:
    value = float(value)
    return round(value, 5) if np.isfinite(value) else None


def timeline_of_signal(
    y: np.ndarray, sr: int, artifact: ModelArtifact, path: str = "", *, threads: int = 1
) -> Timeline:
    """Mood timeline of a whole signal ``(n,)`` at ``sr`` Hz.

    The model is warmed up on a known input first (``ModelError`` if it does not compute); a
    step whose output is not a valid prediction is NaN in the timeline and the window starts
    over after it, as in ``listen``. ``threads`` (1 or 2) is handed to
    :func:`~streammood.features.extractor.extract_offline`; the timeline does not depend on it.
    """
    feats = extract_offline(
        y,
        sr,
        check_embedder(artifact.embedder()),
        threads=threads,
        detector=change_detector(artifact),
    )
    step_model = StepModel(artifact)
    warm_up(artifact, step_model)
    runtime = MoodRuntime(artifact, step_model=step_model, detector=change_detector(artifact))
    n = len(feats.t_start)
    probs = np.full((n, len(QUADRANTS)), np.nan, np.float32)
    va = np.full((n, 2), np.nan, np.float32)
    window = np.zeros(n, np.int64)
    seg_steps = np.arange(1, n + 1, dtype=np.int64)
    ready, changed = np.ones(n, bool), np.zeros(n, bool)
    for i, inputs in enumerate(feats.steps()):
        (pred,) = runtime.push(inputs)
        try:
            check_prediction(pred, f"{path or 'signal'} step {inputs.seq}")
        except OutputError:
            runtime.reset()
            continue
        probs[i], va[i], window[i] = pred.probs, (pred.valence, pred.arousal), pred.window_steps
        seg_steps[i], ready[i], changed[i] = pred.segment_steps, pred.embedding_ready, pred.changed
    t_start = feats.t_start.astype(np.float64)
    return Timeline(
        path=path,
        t_start=t_start,
        t_end=t_start + 0.5,
        probs=probs,
        valence=va[:, 0],
        arousal=va[:, 1],
        window_steps=window,
        segment_start=np.maximum(0.0, t_start + 0.5 - seg_steps * 0.5),
        segment_steps=seg_steps,
        embedding_ready=ready,
        changed=changed,
    )


def _analyze_one(
    path: str, model_dir: str, threads: int = 1, artifact: ModelArtifact | None = None
) -> Timeline | str:
    """Timeline of one file, or the reason it failed (``artifact``: loaded already, in-process)."""
    try:
        y, sr = load_audio(path)
        art = artifact if artifact is not None else load_artifact(model_dir, verify=False)
        return timeline_of_signal(y, sr, art, path, threads=threads)
    except StreammoodError as exc:
        return str(exc)


def analyze_files(
    paths: Sequence[str | Path],
    artifact: ModelArtifact,
    jobs: int | None = None,
    on_done: Callable[[str, Timeline | str], None] | None = None,
) -> tuple[list[Timeline], list[str]]:
    """Timelines of many files in parallel; returns ``(timelines, errors)`` (a file that fails
    is reported by name and reason, the others still go through).

    Raises
    ------
    ModelError
        The model does not compute (checked once, on a known input, before any file).
    """
    warm_up(artifact)  # a model that does not compute fails here, once, not once per file
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(paths)))
    # fewer processes than cores (one long file): each file's features use two threads
    threads = 2 if jobs < (os.cpu_count() or 1) else 1
    timelines, errors = [], []
    if jobs == 1:
        results = (_analyze_one(str(p), str(artifact.path), threads, artifact) for p in paths)
    else:
        pool = ProcessPoolExecutor(jobs)
        n = len(paths)
        results = pool.map(
            _analyze_one, [str(p) for p in paths], [str(artifact.path)] * n, [threads] * n
        )
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, Timeline):
            timelines.append(result)
        else:
            errors.append(result)
        if on_done is not None:
            on_done(str(path), result)
    if jobs > 1:
        pool.shutdown()
    return timelines, errors


def write_timelines(timelines: Sequence[Timeline], out: Path) -> Path:
    """Write every step of every timeline to ``.csv`` or ``.json`` (by the suffix)."""
    rows = [row for t in timelines for row in t.rows()]
    out = Path(out)
    if out.suffix.lower() == ".json":
        out.write_text(json.dumps(rows, indent=1, allow_nan=False) + "\n")
    elif out.suffix.lower() == ".csv":
        fields = ["file", "seq", "t_start", "t_end", "valence", "arousal", "quadrant"]
        fields += [f"p_{q}" for q in QUADRANTS] + ["window_steps"]
        fields += ["segment_start", "segment_steps", "embedding_ready", "changed"]
        with open(out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise StreammoodError(f"{out}: timeline output must end in .csv or .json")
    return out
