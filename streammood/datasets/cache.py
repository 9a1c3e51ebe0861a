"""Per-clip features, extracted once in parallel and cached on disk.

A cache entry is one ``.npz`` per clip under ``root`` (default ``.cache/features``), named by a
SHA-256 key over

- the audio file's **content** (not its name or mtime),
- :data:`streammood.layout.FEATURE_VERSION`,
- the pretrained embedder model file's content (``"none"`` without one),

so changing the audio, the feature code (bump the version) or the embedder invalidates it. Entries
are written atomically (temporary file, then rename); an unreadable or inconsistent entry is
recomputed and overwritten.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from streammood.errors import StreammoodError
from streammood.layout import FEATURE_VERSION, MFCC_FRAMES, N_LLD_STATS, N_MFCC

log = logging.getLogger(__name__)

DEFAULT_CACHE_ROOT = Path(".cache/features")
"""Default cache folder, relative to the working directory (git-ignored in the repository)."""

_REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ClipFeatures:
    """Every step's model inputs for one clip.

    Attributes
    ----------
    mfcc : np.ndarray
        ``(n, 21, 20)`` float32 MFCC blocks.
    lld : np.ndarray
        ``(n, 260)`` float32 openSMILE LLD statistics.
    emb : np.ndarray
        ``(n, D)`` float32 pretrained embeddings, each held until the next patch
        (``D == 0`` without an embedder).
    t_start : np.ndarray
        ``(n,)`` float64 start time of each step, seconds.
    path : str
        The audio file the features come from.
    """

    mfcc: np.ndarray
    lld: np.ndarray
    emb: np.ndarray
    t_start: np.ndarray
    path: str = ""

    @property
    def n_steps(self) -> int:
        """Number of 500 ms steps."""
        return int(self.mfcc.shape[0])


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def default_embedder_model() -> Path | None:
    """The product's pretrained embedder (:data:`~streammood.features.embedding.DEFAULT_TFLITE`,
    the shipped model's ``embedder.tflite``: caches hold what serving computes), or None when it
    is not there."""
    from streammood.features.embedding import DEFAULT_TFLITE

    return DEFAULT_TFLITE if DEFAULT_TFLITE.is_file() else None


class FeatureCache:
    """On-disk cache of :class:`ClipFeatures`, one ``.npz`` per clip.

    Parameters
    ----------
    root : Path
        Cache folder (created on first write).
    embedder_model : Path, "auto" or None
        LiteRT model of the pretrained embedder; ``"auto"`` picks
        :func:`default_embedder_model`; None extracts no embeddings (``D == 0``).

    Attributes
    ----------
    hits, computed, failed : int
        Running counts of clips served from the cache, extracted, and skipped.
    damaged_files, decode_errors : int
        Clips extracted whose MP3 frames the decoder had to conceal, and those frames in all
        (reported in one line per run, not one per clip).
    """

    def __init__(
        self,
        root: str | Path = DEFAULT_CACHE_ROOT,
        embedder_model: str | Path | None = "auto",
    ) -> None:
        self.root = Path(root)
        if embedder_model == "auto":
            embedder_model = default_embedder_model()
        self.embedder_model = None if embedder_model is None else Path(embedder_model)
        if self.embedder_model is not None and not self.embedder_model.is_file():
            raise StreammoodError(f"embedder model {self.embedder_model}: no such file")
        self.embedder_hash = (
            "none" if self.embedder_model is None else file_sha256(self.embedder_model)
        )
        self.hits = 0
        self.computed = 0
        self.failed = 0
        self.damaged_files = 0
        self.decode_errors = 0

    def key(self, audio_path: str | Path) -> str:
        """Cache key of an audio file: hex SHA-256 over its content, the feature version and the
        embedder model."""
        parts = f"{file_sha256(audio_path)}:{FEATURE_VERSION}:{self.embedder_hash}"
        return hashlib.sha256(parts.encode()).hexdigest()

    def entry(self, key: str) -> Path:
        """Path of the ``.npz`` entry of ``key``."""
        return self.root / f"{key}.npz"

    def load(self, key: str, path: str = "") -> ClipFeatures | None:
        """The cached features of ``key``, or None when absent or corrupt (corrupt entries are
        logged and will be overwritten)."""
        entry = self.entry(key)
        if not entry.is_file():
            return None
        try:
            with np.load(entry, allow_pickle=False) as z:
                clip = ClipFeatures(
                    mfcc=z["mfcc"], lld=z["lld"], emb=z["emb"], t_start=z["t_start"], path=path
                )
                stored_key = str(z["key"])
            _check(clip)
            if stored_key != key:
                raise ValueError("key mismatch")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("cache entry %s for %s is corrupt (%s); recomputing", entry, path, exc)
            return None
        return clip

    def save(self, key: str, clip: ClipFeatures) -> Path:
        """Write ``clip`` under ``key`` atomically; returns the entry's path."""
        return _save(self.root, key, clip)


def _check(clip: ClipFeatures) -> None:
    """Raise ValueError unless the arrays have the documented shapes."""
    n = clip.mfcc.shape[0]
    if clip.mfcc.shape[1:] != (MFCC_FRAMES, N_MFCC):
        raise ValueError(f"mfcc shape {clip.mfcc.shape}")
    if clip.lld.shape != (n, N_LLD_STATS):
        raise ValueError(f"lld shape {clip.lld.shape}")
    if clip.emb.ndim != 2 or clip.emb.shape[0] != n:
        raise ValueError(f"emb shape {clip.emb.shape}")
    if clip.t_start.shape != (n,):
        raise ValueError(f"t_start shape {clip.t_start.shape}")


def _save(root: Path, key: str, clip: ClipFeatures) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    entry = root / f"{key}.npz"
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".npz.tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                mfcc=clip.mfcc,
                lld=clip.lld,
                emb=clip.emb,
                t_start=clip.t_start,
                key=np.array(key),
                feature_version=np.array(FEATURE_VERSION),
                source=np.array(os.path.basename(clip.path)),
            )
        os.replace(tmp, entry)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return entry


# --- extraction (runs in worker processes; each builds its own embedder and openSMILE) ---------

_embedder = None


def _init_worker(embedder_model: str | None) -> None:
    global _embedder
    _embedder = None
    if embedder_model is not None:
        from streammood.features.embedding import MusicnnEmbedder

        _embedder = MusicnnEmbedder(embedder_model, num_threads=1)


def compute_clip(path: str | Path, embedder=None, messages=None) -> ClipFeatures:
    """Decode one audio file and extract every step's features (no cache).

    Parameters
    ----------
    path : str or Path
        Audio file.
    embedder : MusicnnEmbedder or None
        Pretrained embedder; None gives ``D == 0`` embeddings.
    messages : DecoderMessages, optional
        Collects the MP3 decoder's complaints for the caller to report (else reported here).
    """
    from streammood.audio.decode import load_audio
    from streammood.features.extractor import extract_offline

    y, sr = load_audio(path, messages)
    fs = extract_offline(y, sr, embedder)
    clip = ClipFeatures(mfcc=fs.mfcc, lld=fs.lld, emb=fs.emb, t_start=fs.t_start, path=str(path))
    _check(clip)
    return clip


def _extract_job(
    path: str, key: str, root: str
) -> tuple[ClipFeatures | None, str | None, int]:
    """Worker task: extract, save, return ``(clip, None, decode_errors)`` or
    ``(None, reason, decode_errors)``; the parent sums the MP3 frames the decoder concealed
    into one line for the whole run."""
    from streammood.audio.decode import DecoderMessages

    messages = DecoderMessages(path)
    try:
        clip = compute_clip(path, _embedder, messages)
    except Exception as exc:  # a bad clip must not end the run; the parent reports it by name
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, reason, messages.count
    if clip.n_steps == 0:
        return None, "no complete 500 ms step", messages.count
    _save(Path(root), key, clip)
    return clip, None, messages.count


def _progress(total: int, enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("-- clips/s" if speed is None else f"{speed:5.1f} clips/s")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def extract_clips(
    paths: Sequence[str | Path],
    cache: FeatureCache,
    jobs: int | None = None,
    progress: bool = True,
) -> list[ClipFeatures]:
    """Features of many clips, from the cache where possible, else extracted in parallel.

    Parameters
    ----------
    paths : sequence of path
        Audio files.
    cache : FeatureCache
        Where entries are read and written; its counters are updated.
    jobs : int or None
        Worker processes (default ``os.cpu_count()``); with 1, or a single clip to extract, the
        work runs in this process.
    progress : bool
        Show a progress bar (done / total, clips per second, ETA).

    Returns
    -------
    list of ClipFeatures
        In the order of ``paths``, with ``path`` set; clips that cannot be read or decoded are
        reported by name (a warning) and left out.
    """
    jobs = max(1, jobs or os.cpu_count() or 1)
    paths = [str(p) for p in paths]
    results: dict[int, ClipFeatures] = {}
    todo: list[tuple[int, str, str]] = []
    t0 = time.perf_counter()

    with _progress(len(paths), progress) as bar:
        task = bar.add_task("features", total=len(paths))
        for i, path in enumerate(paths):
            try:
                key = cache.key(path)
            except OSError as exc:
                _skip(cache, path, exc.strerror or str(exc))
                bar.advance(task)
                continue
            clip = cache.load(key, path)
            if clip is None:
                todo.append((i, path, key))
            else:
                results[i] = clip
                cache.hits += 1
                bar.advance(task)

        for i, path, clip, reason in _run_jobs(todo, cache, jobs):
            if clip is None:
                _skip(cache, path, reason)
            else:
                results[i] = clip
                cache.computed += 1
            bar.advance(task)

    if cache.damaged_files:
        log.warning(
            "%d of %d clips extracted had damaged MP3 frames, concealed by the decoder (%d decoder "
            "messages in all, libmpg123); features computed anyway",
            cache.damaged_files,
            len(todo),
            cache.decode_errors,
        )
    log.info(
        "features of %d clips in %.1f s (%d from cache, %d extracted)",
        len(results),
        time.perf_counter() - t0,
        len(paths) - len(todo),
        len(todo),
    )
    if paths and not results:
        raise StreammoodError(f"no clip could be read or decoded (of {len(paths)}; see warnings)")
    return [results[i] for i in sorted(results)]


def _skip(cache: FeatureCache, path: str, reason: str | None) -> None:
    cache.failed += 1
    log.warning("skipped %s: %s", path, reason)


def _run_jobs(
    todo: list[tuple[int, str, str]], cache: FeatureCache, jobs: int
) -> Iterable[tuple[int, str, ClipFeatures | None, str | None]]:
    if not todo:
        return
    model = None if cache.embedder_model is None else str(cache.embedder_model)
    root = str(cache.root)
    # Always in fresh worker processes, even for one job: openSMILE's SMILEapi has been seen to
    # crash inside processes that loaded other native libraries first (the CLI, TensorFlow).
    workers = min(jobs, len(todo))
    with ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(model,)
    ) as pool:
        pending = {pool.submit(_extract_job, path, key, root): (i, path) for i, path, key in todo}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                i, path = pending.pop(fut)
                try:
                    clip, reason, decode_errors = fut.result()
                except BrokenProcessPool as exc:
                    raise StreammoodError(
                        f"feature worker died while extracting {path} ({exc})"
                    ) from exc
                if decode_errors:
                    cache.decode_errors += decode_errors
                    cache.damaged_files += 1
                yield i, path, clip, reason
