"""Streaming evaluation: labelled songs played back to back through the live path.

A *stream* is a seeded playlist of labelled clips joined into one signal — hard cuts or linear
crossfades, a random gain per song — whose model inputs come from
:func:`~streammood.features.extractor.extract_offline` of the joined audio (equal to the live
extractor on the same audio), then the runtime ``listen`` uses
(:class:`~streammood.runtime.rolling.MoodRuntime`, with or without a change detector). Per step
the truth is the song playing (in a crossfade: the song that is louder, so the change sits at
the crossfade's middle).

Figures (:func:`stream_report`): per-step macro-F1 over the stream; accuracy by seconds since
the song changed; the median time the quadrant takes to follow a change; change detection
precision and recall (a detection within :data:`CHANGE_TOLERANCE` of a true change) and false
changes per hour of audio.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streammood.audio.decode import load_audio
from streammood.audio.resample import resample
from streammood.features.extractor import FeatureSet, extract_offline
from streammood.layout import FEATURE_VERSION, STEP_SECONDS
from streammood.runtime.artifact import ModelArtifact
from streammood.runtime.labels import QUADRANTS
from streammood.training.metrics import classification_metrics, to_jsonable

STREAM_RATE = 22_050
"""Sample rate of a joined stream, Hz (the 4Q clips' own rate)."""
CHANGE_TOLERANCE = 3.0
"""A detected change counts as a true one within this many seconds, s."""
SINCE_BINS = tuple(range(0, 35, 5))
"""Edges of the "seconds since the song changed" bins, s (0-5, 5-10, ... 25-30)."""
GAIN_DB = (-10.0, 0.0)
"""Range of the random gain per song, dB."""
SONGS_PER_STREAM = 12
"""Songs per stream (a 6-minute stream of 30 s clips; streams extract in parallel)."""


@dataclass(frozen=True)
class Stream:
    """A playlist joined into one signal.

    Attributes
    ----------
    y : np.ndarray
        ``(samples,)`` float32 mono audio at :data:`STREAM_RATE`.
    songs : list of str
        Song ids in playing order.
    labels : np.ndarray
        ``(k,)`` int quadrant index of each song.
    starts : np.ndarray
        ``(k,)`` float64 stream time at which each song takes over, s (0 for the first; the middle
        of a crossfade for the others).
    gains_db : np.ndarray
        ``(k,)`` gain applied to each song, dB.
    xfade : float
        Crossfade length, s (0: hard cuts).
    """

    y: np.ndarray
    songs: list[str]
    labels: np.ndarray
    starts: np.ndarray
    gains_db: np.ndarray
    xfade: float

    @property
    def duration(self) -> float:
        """Length, s."""
        return len(self.y) / STREAM_RATE

    def step_labels(self, n_steps: int) -> np.ndarray:
        """``(n_steps,)`` int true quadrant of each 500 ms step (the song at the step's middle)."""
        mid = (np.arange(n_steps) + 0.5) * STEP_SECONDS
        song = np.searchsorted(self.starts, mid, side="right") - 1
        return self.labels[song]

    def since_change(self, n_steps: int) -> np.ndarray:
        """``(n_steps,)`` seconds from the last song change (or the stream start) to each step's
        end."""
        end = (np.arange(n_steps) + 1) * STEP_SECONDS
        song = np.searchsorted(self.starts, end - 0.5 * STEP_SECONDS, side="right") - 1
        return end - self.starts[song]


def join_songs(
    clips: Sequence[tuple[np.ndarray, int]],
    labels: Sequence[int],
    songs: Sequence[str],
    *,
    xfade: float = 0.0,
    seed: int = 0,
    gain_db: tuple[float, float] = GAIN_DB,
) -> Stream:
    """Join decoded clips back to back into one :class:`Stream`.

    Parameters
    ----------
    clips : sequence of (np.ndarray, int)
        ``(samples,)`` mono audio and its rate, Hz, in playing order (resampled to
        :data:`STREAM_RATE` here).
    labels : sequence of int
        Quadrant index of each clip.
    songs : sequence of str
        Song id of each clip.
    xfade : float
        Linear crossfade between consecutive clips, s (0: hard cuts).
    seed : int
        Seed of the random gains.
    gain_db : (float, float)
        Range of the uniform random gain per song, dB.
    """
    if not clips:
        raise ValueError("a stream needs at least one clip")
    rng = np.random.default_rng(seed)
    gains = rng.uniform(*gain_db, size=len(clips))
    fade = int(round(xfade * STREAM_RATE))
    parts, starts, pos = [], [], 0
    for (y, sr), g in zip(clips, gains, strict=True):
        y = np.asarray(y, np.float32)
        if sr != STREAM_RATE:
            y = resample(y, sr, STREAM_RATE)
        parts.append(y * np.float32(10 ** (g / 20)))
    total = sum(len(p) for p in parts) - fade * (len(parts) - 1)
    out = np.zeros(total, np.float32)
    for k, y in enumerate(parts):
        f = min(fade, len(y)) if k else 0
        start = pos - f
        w = np.ones(len(y), np.float32)
        if f:  # fade this song in and the previous one out over the same samples
            ramp = (np.arange(f, dtype=np.float32) + 0.5) / f
            w[:f] = ramp
            out[start : start + f] *= 1.0 - ramp
        out[start : start + len(y)] += w * y
        starts.append((start + f / 2) / STREAM_RATE if k else 0.0)
        pos = start + len(y)
    return Stream(
        y=out,
        songs=list(songs),
        labels=np.asarray(labels, np.int64),
        starts=np.array(starts, np.float64),
        gains_db=gains,
        xfade=float(xfade),
    )


def playlists(
    songs: Sequence[str], seed: int = 0, per_stream: int = SONGS_PER_STREAM
) -> list[list[str]]:
    """The songs in a seeded random order, cut into streams of ``per_stream`` songs."""
    order = [songs[i] for i in np.random.default_rng(seed).permutation(len(songs))]
    return [order[i : i + per_stream] for i in range(0, len(order), per_stream)]


# --- the figures ---------------------------------------------------------------------------------


def match_changes(detected: np.ndarray, true: np.ndarray, tol: float) -> tuple[int, np.ndarray]:
    """Greedy one-to-one matching of detected to true change times, s (closest first, at most
    ``tol`` s apart); returns the number of matches and ``(len(detected),)`` bool: matched."""
    pairs = sorted(
        (abs(d - t), i, j)
        for i, d in enumerate(detected)
        for j, t in enumerate(true)
        if abs(d - t) <= tol
    )
    used_d, used_t = set(), set()
    for _, i, j in pairs:
        if i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
    matched = np.zeros(len(detected), bool)
    matched[list(used_d)] = True
    return len(used_d), matched


@dataclass
class StreamResult:
    """What the runtime said over one stream.

    ``probs`` ``(n, 4)``; ``valence``, ``arousal``, ``segment_start`` (stream s at which the
    window's segment began), ``window_steps`` ``(n,)``; ``changes`` the detected change times
    (stream s); ``seconds`` wall time of the runtime (detector included).
    """

    stream: Stream
    probs: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    window_steps: np.ndarray
    segment_start: np.ndarray
    changes: np.ndarray
    seconds: float = 0.0
    detect_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return int(len(self.probs))


def stream_report(results: Sequence[StreamResult], tol: float = CHANGE_TOLERANCE) -> dict:
    """The streaming figures over one or more streams, JSON-ready.

    Returns
    -------
    dict
        ``per_step`` (:func:`~streammood.training.metrics.classification_metrics` of every
        step against the song playing); ``accuracy_since_change`` (``"0-5"`` … ``"25-30"`` →
        accuracy and steps, seconds from the last true change or stream start to the step's end);
        ``follow`` (time until the quadrant is the new song's and stays so to the song's end, for
        song changes whose song ends right: ``median_s``, ``mean_s``, ``n``, ``of``);
        ``changes`` (``true``, ``detected``, ``precision``, ``recall`` within ``tol`` s,
        ``false_per_hour`` = unmatched detections per hour of audio, ``hours``).
    """
    y_true, probs, since = [], [], []
    follow: list[float] = []
    n_changes = 0
    matched_total = detected_total = true_total = 0
    false_total = 0
    hours = 0.0
    for r in results:
        n = r.n_steps
        labels = r.stream.step_labels(n)
        pred = np.argmax(r.probs, axis=1)
        y_true.append(labels)
        probs.append(r.probs)
        since.append(r.stream.since_change(n))
        end = (np.arange(n) + 1) * STEP_SECONDS
        bounds = list(r.stream.starts[1:]) + [n * STEP_SECONDS + 1.0]
        for k in range(1, len(r.stream.starts)):
            start, stop = r.stream.starts[k], bounds[k]
            idx = np.flatnonzero((end - 0.5 * STEP_SECONDS >= start) & (end <= stop + 1e-9))
            if not len(idx):
                continue
            n_changes += 1
            right = pred[idx] == r.stream.labels[k]
            if not right[-1]:
                continue
            wrong = np.flatnonzero(~right)
            first = idx[wrong[-1] + 1] if len(wrong) else idx[0]
            follow.append(float(end[first] - start))
        true = r.stream.starts[1:]
        m, matched = match_changes(np.asarray(r.changes, np.float64), true, tol)
        matched_total += m
        detected_total += len(r.changes)
        true_total += len(true)
        false_total += int((~matched).sum())
        hours += n * STEP_SECONDS / 3600.0
    y_true_all = np.concatenate(y_true)
    probs_all = np.concatenate(probs)
    since_all = np.concatenate(since)
    correct = np.argmax(probs_all, axis=1) == y_true_all
    by_since = {}
    for lo, hi in zip(SINCE_BINS[:-1], SINCE_BINS[1:], strict=True):
        sel = (since_all > lo) & (since_all <= hi)
        by_since[f"{lo}-{hi}"] = {
            "accuracy": float(correct[sel].mean()) if sel.any() else None,
            "steps": int(sel.sum()),
        }
    return to_jsonable(
        {
            "streams": len(results),
            "songs": int(sum(len(r.stream.songs) for r in results)),
            "n_steps": int(len(y_true_all)),
            "per_step": classification_metrics(y_true_all, probs_all),
            "accuracy_since_change": by_since,
            "follow": {
                "median_s": float(np.median(follow)) if follow else None,
                "mean_s": float(np.mean(follow)) if follow else None,
                "n": len(follow),
                "of": n_changes,
            },
            "changes": {
                "true": true_total,
                "detected": detected_total,
                "precision": matched_total / detected_total if detected_total else None,
                "recall": matched_total / true_total if true_total else None,
                "false_per_hour": false_total / hours if hours else None,
                "hours": hours,
                "tolerance_s": tol,
            },
        }
    )


def format_stream_report(report: dict, title: str = "stream") -> str:
    """A few terminal lines of a :func:`stream_report`."""
    step, ch, fol = report["per_step"], report["changes"], report["follow"]

    def f(x: Any, fmt: str = ".3f") -> str:
        return "-" if x is None else format(x, fmt)

    lines = [
        f"{title}: {report['streams']} streams, {report['songs']} songs, {report['n_steps']} steps",
        f"  per-step macro-F1 {f(step['macro_f1'])}  accuracy {f(step['accuracy'])}",
        "  accuracy by seconds since the song changed: "
        + "  ".join(
            f"{k} {f(v['accuracy'], '.2f')}" for k, v in report["accuracy_since_change"].items()
        ),
        f"  median time to follow a change {f(fol['median_s'], '.1f')} s "
        f"({fol['n']} of {fol['of']} changes whose song ends right)",
        f"  changes: {ch['detected']} detected of {ch['true']}; precision {f(ch['precision'])}, "
        f"recall {f(ch['recall'])} (±{ch['tolerance_s']:g} s); false changes "
        f"{f(ch['false_per_hour'], '.1f')} per hour",
    ]
    return "\n".join(lines)


# --- running streams through the live path -------------------------------------------------------


def stream_features(
    stream: Stream,
    embedder_path: str | Path,
    cache_dir: Path | None = None,
    norm_path: str | Path | None = None,
    detector_config: Any = None,
) -> FeatureSet:
    """:func:`extract_offline` of a stream's audio (what ``listen`` computes on it: with
    ``norm_path``, a change detector standardising with it adds a patch at each detected change),
    cached under ``cache_dir`` by the audio's hash, the feature version, the embedder file and
    the detector."""
    from streammood.features.changes import ChangeDetector
    from streammood.features.embedding import MusicnnEmbedder

    key = None
    if cache_dir is not None:
        digest = hashlib.sha256(stream.y.tobytes())
        digest.update(f"v{FEATURE_VERSION}".encode())
        digest.update(hashlib.sha256(Path(embedder_path).read_bytes()).digest())
        if norm_path is not None:
            digest.update(hashlib.sha256(Path(norm_path).read_bytes()).digest())
            digest.update(repr(detector_config).encode())
        key = Path(cache_dir) / f"stream-{digest.hexdigest()[:24]}.npz"
        if key.is_file():
            with np.load(key) as z:
                return FeatureSet(
                    **{k: z[k] for k in ("mfcc", "lld", "emb", "t_start", "seq", "patch_steps")},
                    mel_patches=np.zeros((0, 187, 96), np.float32),
                )
    detector = None
    if norm_path is not None:
        detector = ChangeDetector.from_norm(norm_path, detector_config)
    feats = extract_offline(
        stream.y, STREAM_RATE, MusicnnEmbedder(embedder_path), detector=detector
    )
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        tmp = key.with_suffix(".tmp.npz")
        arrays = {k: v for k, v in feats.arrays().items() if k not in ("mel_patches", "lld_names")}
        np.savez(tmp, **arrays)
        os.replace(tmp, key)
    return feats


def run_stream(
    stream: Stream,
    feats: FeatureSet,
    artifact: ModelArtifact,
    detector_factory: Callable[[], Any] | None = None,
    clean_embedding: bool = True,
) -> StreamResult:
    """Push a stream's steps through a fresh :class:`MoodRuntime` (with a change detector from
    ``detector_factory``, if given) and collect what it says."""
    import time

    from streammood.runtime.rolling import MoodRuntime

    detector = detector_factory() if detector_factory is not None else None
    runtime = MoodRuntime(artifact, detector=detector, clean_embedding=clean_embedding)
    started = time.perf_counter()
    preds = [p for inputs in feats.steps() for p in runtime.push(inputs)]
    seconds = time.perf_counter() - started
    changes = [p.segment_start * STEP_SECONDS for p in preds if p.changed]
    return StreamResult(
        stream=stream,
        probs=np.array([p.probs for p in preds], np.float32).reshape(-1, len(QUADRANTS)),
        valence=np.array([p.valence for p in preds], np.float32),
        arousal=np.array([p.arousal for p in preds], np.float32),
        window_steps=np.array([p.window_steps for p in preds], np.int64),
        segment_start=np.array([p.segment_start * STEP_SECONDS for p in preds], np.float64),
        changes=np.array(changes, np.float64),
        seconds=seconds,
        detect_seconds=runtime.detect_seconds,
    )


def _build_one(
    paths: list[str], labels: list[int], songs: list[str], xfade: float, seed: int
) -> Stream:
    return join_songs([load_audio(p) for p in paths], labels, songs, xfade=xfade, seed=seed)


def _extract_one(
    paths: list[str],
    labels: list[int],
    songs: list[str],
    xfade: float,
    seed: int,
    embedder: str,
    cache_dir: str | None,
    norm: str | None = None,
    detector_config: Any = None,
) -> tuple[Stream, FeatureSet]:
    stream = _build_one(paths, labels, songs, xfade, seed)
    cache = Path(cache_dir) if cache_dir else None
    return stream, stream_features(stream, embedder, cache, norm, detector_config)


def build_streams(
    songs: Sequence[str],
    paths: dict[str, Path],
    labels: dict[str, int],
    embedder: str | Path,
    *,
    xfade: float = 0.0,
    seed: int = 0,
    per_stream: int = SONGS_PER_STREAM,
    cache_dir: Path | None = None,
    jobs: int | None = None,
    progress: bool = True,
    norm: str | Path | None = None,
    detector_config: Any = None,
) -> list[tuple[Stream, FeatureSet]]:
    """Seeded playlists of ``songs`` joined into streams, with their model inputs (in parallel,
    one process per stream, a rich progress bar); with ``norm`` (a model's ``norm.npz``) the
    features include the patches a change detector adds (:func:`stream_features`)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    lists = playlists(list(songs), seed, per_stream)
    args = [
        (
            [str(paths[s]) for s in pl],
            [int(labels[s]) for s in pl],
            pl,
            float(xfade),
            seed * 1000 + k,
            str(embedder),
            str(cache_dir) if cache_dir else None,
            str(norm) if norm else None,
            detector_config,
        )
        for k, pl in enumerate(lists)
    ]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(args)))
    out: list[tuple[Stream, FeatureSet] | None] = [None] * len(args)
    with Progress(
        "[bold]streams" + (f" (xfade {xfade:g} s)" if xfade else " (hard cuts)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task("", total=len(args))
        if jobs == 1:
            for k, a in enumerate(args):
                out[k] = _extract_one(*a)
                bar.advance(task)
        else:
            from multiprocessing import get_context

            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_extract_one, *a): k for k, a in enumerate(args)}
                from concurrent.futures import as_completed

                for fut in as_completed(futures):
                    out[futures[fut]] = fut.result()
                    bar.advance(task)
    return [o for o in out if o is not None]


def timeline_rows(result: StreamResult) -> list[dict[str, Any]]:
    """Per-step rows of one stream's result (for a JSON/CSV dump)."""
    n = result.n_steps
    labels = result.stream.step_labels(n)
    return [
        {
            "t_end": round((i + 1) * STEP_SECONDS, 3),
            "true": QUADRANTS[int(labels[i])],
            "pred": QUADRANTS[int(np.argmax(result.probs[i]))],
            "valence": round(float(result.valence[i]), 4),
            "arousal": round(float(result.arousal[i]), 4),
            "segment_start": round(float(result.segment_start[i]), 3),
            "window_steps": int(result.window_steps[i]),
        }
        for i in range(n)
    ]


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n")


def fourq_songs(data_dir: Path) -> tuple[dict[str, Path], dict[str, int]]:
    """``(song → path, song → quadrant index)`` of the annotated 4Q clips on disk."""
    from streammood.datasets.fourq import FOURQ_QUADRANT, read_fourq_labels

    labels = read_fourq_labels(data_dir)
    paths = {p.stem: p for q in FOURQ_QUADRANT for p in sorted((Path(data_dir) / q).glob("*.mp3"))}
    return paths, {s: v for s, v in labels.items() if s in paths}


def evaluate_streams(
    artifact: ModelArtifact,
    songs: Sequence[str],
    paths: dict[str, Path],
    labels: dict[str, int],
    report_dir: Path,
    *,
    xfade: float = 0.0,
    seed: int = 0,
    detector_config: Any = None,
    cache_dir: Path | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Play ``songs`` as streams through the live path, with the fixed 60-step window and with
    the change-aware one; the figures of both, the detector's cost, and a timeline PNG of the
    first stream (``report_dir / stream_timeline[_xfadeN].png``).

    Returns
    -------
    dict
        ``xfade_s``, ``seed``, ``songs``, ``streams``, ``hours``; ``fixed_window`` and
        ``change_aware`` (each a :func:`stream_report`); ``detector`` (settings, look-ahead in
        s, CPU ms per step); ``runtime_ms_per_step``; ``timeline`` (the PNG's file name).
    """
    from dataclasses import asdict

    from streammood.features.changes import ChangeConfig, ChangeDetector
    from streammood.training.plots import plot_stream_timeline

    config = detector_config or ChangeConfig()
    built = build_streams(
        songs,
        paths,
        labels,
        artifact.file("embedder"),
        xfade=xfade,
        seed=seed,
        cache_dir=cache_dir,
        jobs=jobs,
        progress=progress,
        norm=artifact.file("norm"),
        detector_config=config,
    )
    fixed = [run_stream(s, f, artifact) for s, f in built]
    aware = [
        run_stream(s, f, artifact, lambda: ChangeDetector.from_norm(artifact.file("norm"), config))
        for s, f in built
    ]
    steps = sum(r.n_steps for r in aware)
    name = "stream_timeline" + (f"_xfade{xfade:g}" if xfade else "") + ".png"
    first = aware[0]
    t = (np.arange(first.n_steps) + 1) * STEP_SECONDS
    plot_stream_timeline(
        t,
        first.stream.step_labels(first.n_steps),
        np.argmax(first.probs, axis=1),
        first.valence,
        first.arousal,
        Path(report_dir) / name,
        true_changes=first.stream.starts[1:],
        detected_changes=first.changes,
        title=f"{artifact.name} v{artifact.version}: {len(first.stream.songs)} songs back to "
        + (f"back, {xfade:g} s crossfades" if xfade else "back, hard cuts")
        + ", change-aware window (top: predicted valence/arousal)",
    )
    return to_jsonable(
        {
            "xfade_s": xfade,
            "seed": seed,
            "gain_db": list(GAIN_DB),
            "songs": len(songs),
            "streams": len(built),
            "hours": steps * STEP_SECONDS / 3600,
            "fixed_window": stream_report(fixed),
            "change_aware": stream_report(aware),
            "detector": {
                **asdict(config),
                "lookahead_s": config.lag * STEP_SECONDS,
                "cpu_ms_per_step": 1000 * sum(r.detect_seconds for r in aware) / steps,
            },
            "runtime_ms_per_step": 1000 * sum(r.seconds for r in aware) / steps,
            "timeline": name,
        }
    )


def format_stream_evaluation(result: dict[str, Any]) -> str:
    """Terminal lines of :func:`evaluate_streams`: both windows, and the detector's cost."""
    how = f"{result['xfade_s']:g} s crossfades" if result["xfade_s"] else "hard cuts"
    det = result["detector"]
    return "\n".join(
        [
            format_stream_report(result["fixed_window"], f"streams ({how}), fixed 60-step window"),
            format_stream_report(result["change_aware"], f"streams ({how}), change-aware window"),
            f"  detector: look-ahead {det['lookahead_s']:.1f} s, {det['cpu_ms_per_step']:.3f} ms "
            f"CPU per step; runtime with it {result['runtime_ms_per_step']:.2f} ms per step",
        ]
    )
