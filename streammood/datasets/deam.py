"""DEAM, the MediaEval Database for Emotional Analysis in Music (Aljanaki, Yang & Soleymani, 2017).

Layout of the download (only songs whose audio is on disk are loaded)::

    DIR/MEMD_audio/<song_id>.mp3                                     45 s excerpts
    DIR/annotations/annotations averaged per song/song_level/
        static_annotations_averaged_songs_1_2000.csv                 1-9 scale
        static_annotations_averaged_songs_2000_2058.csv              (spaces after commas)
    DIR/annotations/annotations averaged per song/dynamic (per second annotations)/
        valence.csv, arousal.csv                                     song_id,sample_15000ms,...
    DIR/songs_info.csv or DIR/metadata/*.csv                         optional: artists

**Dynamic labels.** A value ``sample_<T>ms`` is the annotators' judgement at time T of the audio
heard up to T, so it belongs to the 500 ms step that *ends* at T: step ``T / 500 - 1``. The 60
labels ``T = 15.0, 15.5, ..., 44.5 s`` therefore label steps 29..88 (``t_start`` 14.5 .. 44.0 s,
``t_end`` 15.0 .. 44.5 s), and the window is those 60 steps (``sample_45000ms``, a 61st value, is
not used). Values are on ``[-1, 1]``.

**Static labels.** Per song on the 1–9 scale, mapped to ``[-1, 1]`` with ``(x - 5) / 4``; the
quadrant uses threshold 0 there (5 on the 1–9 scale). The static window is the same steps 29..88
(the annotated part of the excerpt, after the annotators' 15 s of orientation).

**Valence/arousal swap.** DEAM's ``static_annotations_averaged_songs_1_2000.csv`` has valence and
arousal swapped for the 2013 part (songs 1–1000, DEAM's emoMusic subset): its ``valence_mean``
correlates 0.96 with the mean dynamic *arousal* and equals emoMusic's published ``mean_arousal``
for 734 of 744 songs. :func:`check_static_swap` finds this from the data alone: per static file
and DEAM part (2013: songs 1–1000, 2014: 1001–2000, 2015: 2001–2058) it compares each song's static
means with the means of its dynamic annotations, straight and swapped; where most songs fit better
swapped, and the total error is lower swapped, it warns and :func:`load_deam` uses the swapped
(dynamic-consistent) values for that whole part. Parts without dynamic annotations are left as
they are.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from streammood.datasets.cache import FeatureCache, extract_clips
from streammood.datasets.csvtable import read_csv_rows
from streammood.datasets.windows import Window, make_window
from streammood.errors import StreammoodError
from streammood.layout import STEP_SECONDS, WINDOW_STEPS
from streammood.runtime.labels import quadrant_index

log = logging.getLogger(__name__)

AUDIO_DIR = Path("MEMD_audio")
SONG_LEVEL_DIR = Path("annotations/annotations averaged per song/song_level")
DYNAMIC_DIR = Path("annotations/annotations averaged per song/dynamic (per second annotations)")
STATIC_FILES = (
    "static_annotations_averaged_songs_1_2000.csv",
    "static_annotations_averaged_songs_2000_2058.csv",
)
DEAM_PARTS: tuple[tuple[str, int, int], ...] = (
    ("2013", 1, 1000),
    ("2014", 1001, 2000),
    ("2015", 2001, 2058),
)
"""DEAM's parts: ``(name, first song id, last song id)``."""

DYNAMIC_FIRST_MS = 15_000
"""Time of the first dynamic label used, ms (the end of the first labelled step)."""
DEAM_START_STEP = round(DYNAMIC_FIRST_MS / (STEP_SECONDS * 1000)) - 1
"""First step of every DEAM window (29: ``t_start`` 14.5 s, ``t_end`` 15.0 s)."""

_SAMPLE_COLUMN = re.compile(r"sample_(\d+)ms")


@dataclass(frozen=True)
class StaticLabel:
    """A song's static annotation as read: means on the 1–9 scale, and its source file."""

    valence: float
    arousal: float
    file: str


@dataclass(frozen=True)
class SwapCheck:
    """Static means compared with dynamic means for one static file and DEAM part.

    Attributes
    ----------
    file, part : str
        Static file name and DEAM part (``"2013"``, ...).
    n_checked : int
        Songs with both static and dynamic annotations.
    n_swapped_better : int
        Of those, songs whose static values fit the dynamic means better swapped.
    err_straight, err_swapped : float
        Mean absolute error (valence + arousal, on ``[-1, 1]``) as read and swapped.
    swapped : bool
        The verdict: the part's valence and arousal are swapped.
    """

    file: str
    part: str
    n_checked: int
    n_swapped_better: int
    err_straight: float
    err_swapped: float
    swapped: bool


def static_to_unit(x: np.ndarray | float) -> np.ndarray | float:
    """Map DEAM's static 1–9 scale to ``[-1, 1]``: ``(x - 5) / 4``."""
    return (np.asarray(x, np.float64) - 5.0) / 4.0


def deam_part(song_id: int) -> str:
    """DEAM part (``"2013"``, ``"2014"``, ``"2015"``) of a song id; ``"other"`` outside them."""
    for name, first, last in DEAM_PARTS:
        if first <= song_id <= last:
            return name
    return "other"


def _song_id(value: str, path: Path) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise StreammoodError(f"{path}: song_id {value!r} is not a number") from None


def _number(value: str, path: Path, song: int, column: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise StreammoodError(f"{path}: song {song}, {column} {value!r} is not a number") from None


def read_static(data_dir: str | Path) -> dict[int, StaticLabel]:
    """Static annotations of every song, as read (1–9 scale, no swap applied).

    Reads each of :data:`STATIC_FILES` that exists (headers and values whitespace-stripped).
    """
    folder = Path(data_dir) / SONG_LEVEL_DIR
    labels: dict[int, StaticLabel] = {}
    found = False
    for name in STATIC_FILES:
        path = folder / name
        if not path.is_file():
            continue
        found = True
        for row in read_csv_rows(path, ("song_id", "valence_mean", "arousal_mean")):
            song = _song_id(row["song_id"], path)
            labels[song] = StaticLabel(
                valence=_number(row["valence_mean"], path, song, "valence_mean"),
                arousal=_number(row["arousal_mean"], path, song, "arousal_mean"),
                file=name,
            )
    if not found:
        raise StreammoodError(f"DEAM: no static annotation file in {folder}")
    return labels


def _read_dynamic_file(path: Path) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    rows = read_csv_rows(path, ("song_id",))
    if not rows:
        raise StreammoodError(f"{path}: no annotation rows")
    columns = [c for c in rows[0] if _SAMPLE_COLUMN.fullmatch(c)]
    if not columns:
        raise StreammoodError(f"{path}: no sample_<T>ms columns")
    times = np.array([int(_SAMPLE_COLUMN.fullmatch(c).group(1)) for c in columns])
    values: dict[int, np.ndarray] = {}
    for row in rows:
        song = _song_id(row["song_id"], path)
        values[song] = np.array(
            [float(row[c]) if row.get(c, "") not in ("", "NaN", "nan") else np.nan for c in columns]
        )
    return times, values


def read_dynamic(data_dir: str | Path) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Dynamic annotations.

    Returns
    -------
    times_ms : np.ndarray
        ``(m,)`` label times, ms (15000, 15500, ...).
    values : dict
        ``song_id → (m, 2)`` float64 ``(valence, arousal)`` on ``[-1, 1]``, NaN where a song has no
        value at a time.
    """
    folder = Path(data_dir) / DYNAMIC_DIR
    for name in ("valence.csv", "arousal.csv"):
        if not (folder / name).is_file():
            raise StreammoodError(f"DEAM: dynamic annotation file {folder / name} not found")
    t_val, valence = _read_dynamic_file(folder / "valence.csv")
    t_aro, arousal = _read_dynamic_file(folder / "arousal.csv")
    if not np.array_equal(t_val, t_aro):
        raise StreammoodError(f"DEAM: valence.csv and arousal.csv in {folder} differ in columns")
    songs = sorted(set(valence) & set(arousal))
    return t_val, {s: np.stack([valence[s], arousal[s]], axis=-1) for s in songs}


def dynamic_window(times_ms: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """The 60 dynamic labels of the window: ``T = 15000, 15500, ..., 44500`` ms, one per step
    29..88 (the step ending at T).

    Parameters
    ----------
    times_ms : np.ndarray
        ``(m,)`` label times, ms.
    values : np.ndarray
        ``(m, 2)`` valence and arousal.

    Returns
    -------
    np.ndarray or None
        ``(60, 2)`` float32, or None when a needed time is absent or NaN.
    """
    wanted = DYNAMIC_FIRST_MS + np.arange(WINDOW_STEPS) * round(STEP_SECONDS * 1000)
    index = {int(t): i for i, t in enumerate(times_ms)}
    if any(int(t) not in index for t in wanted):
        return None
    out = values[[index[int(t)] for t in wanted]]
    return None if np.isnan(out).any() else out.astype(np.float32)


def check_static_swap(
    static: dict[int, StaticLabel], dynamic: dict[int, np.ndarray]
) -> list[SwapCheck]:
    """Compare static means with the means of the dynamic annotations, per file and part.

    Parameters
    ----------
    static : dict
        From :func:`read_static`.
    dynamic : dict
        ``song_id → (m, 2)`` from :func:`read_dynamic`.

    Returns
    -------
    list of SwapCheck
        One per (file, part) with at least one song annotated both ways.
    """
    errors: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for song, label in static.items():
        if song not in dynamic:
            continue
        dv, da = np.nanmean(dynamic[song], axis=0)
        if np.isnan(dv) or np.isnan(da):
            continue
        sv, sa = static_to_unit(label.valence), static_to_unit(label.arousal)
        straight = abs(sv - dv) + abs(sa - da)
        swapped = abs(sa - dv) + abs(sv - da)
        errors.setdefault((label.file, deam_part(song)), []).append((straight, swapped))
    checks = []
    for (file, part), errs in sorted(errors.items()):
        e = np.array(errs)
        n_better = int((e[:, 1] < e[:, 0]).sum())
        err_straight, err_swapped = (float(x) for x in e.mean(axis=0))
        checks.append(
            SwapCheck(
                file=file,
                part=part,
                n_checked=len(e),
                n_swapped_better=n_better,
                err_straight=err_straight,
                err_swapped=err_swapped,
                swapped=n_better > len(e) / 2 and err_swapped < err_straight,
            )
        )
    return checks


def resolve_static(
    static: dict[int, StaticLabel], dynamic: dict[int, np.ndarray]
) -> tuple[dict[int, np.ndarray], list[SwapCheck]]:
    """Static labels on ``[-1, 1]``, with valence and arousal swapped back where
    :func:`check_static_swap` finds a part swapped (a warning names file, part and counts).

    Returns
    -------
    labels : dict
        ``song_id → (2,)`` float32 ``(valence, arousal)`` on ``[-1, 1]``.
    checks : list of SwapCheck
    """
    checks = check_static_swap(static, dynamic)
    swapped_parts = set()
    for c in checks:
        if c.swapped:
            swapped_parts.add((c.file, c.part))
            log.warning(
                "DEAM %s, part %s: valence and arousal look swapped (%d of %d songs fit their "
                "dynamic annotations better swapped; mean error %.3f swapped vs %.3f as read); "
                "using them swapped",
                c.file,
                c.part,
                c.n_swapped_better,
                c.n_checked,
                c.err_swapped,
                c.err_straight,
            )
        elif c.n_swapped_better:
            log.warning(
                "DEAM %s, part %s: %d of %d songs fit their dynamic annotations better with "
                "valence and arousal swapped; not a systematic swap, kept as read",
                c.file,
                c.part,
                c.n_swapped_better,
                c.n_checked,
            )
    out = {}
    for song, label in static.items():
        va = np.array([static_to_unit(label.valence), static_to_unit(label.arousal)], np.float32)
        out[song] = va[::-1].copy() if (label.file, deam_part(song)) in swapped_parts else va
    return out, checks


def read_artists(data_dir: str | Path) -> dict[int, str]:
    """``song_id → artist`` from ``songs_info.csv`` or ``metadata/*.csv`` when present (columns
    ``song_id``/``id`` and ``artist``, any case); empty otherwise."""
    data_dir = Path(data_dir)
    artists: dict[int, str] = {}
    for path in [data_dir / "songs_info.csv", *sorted((data_dir / "metadata").glob("*.csv"))]:
        if not path.is_file():
            continue
        try:
            rows = read_csv_rows(path, ())
        except StreammoodError as exc:
            log.warning("DEAM: ignoring artist table %s", exc)
            continue
        for row in rows:
            lower = {k.lower(): v for k, v in row.items()}
            song, artist = lower.get("song_id") or lower.get("id"), lower.get("artist")
            if song and artist:
                try:
                    artists.setdefault(int(float(song)), artist)
                except ValueError:
                    continue
    return artists


def load_deam(
    data_dir: str | Path,
    task: Literal["static", "dynamic"] = "static",
    cache: FeatureCache | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> list[Window]:
    """Windows of every DEAM song whose audio is on disk and that has labels for ``task``.

    Parameters
    ----------
    data_dir : path
        DEAM's folder (see the module docstring for the layout).
    task : {"static", "dynamic"}
        ``"static"``: ``va`` ``(2,)``, the song's static means on ``[-1, 1]`` (swap-corrected);
        ``"dynamic"``: ``va`` ``(60, 2)``, the labels of steps 29..88.
    cache : FeatureCache or None
        Feature cache (default: ``FeatureCache()``).
    jobs : int or None
        Extraction processes (default: all CPUs).
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of Window
        Sorted by song id; window steps 29..88 (padded by repeating the last step if the audio
        is shorter); ``label`` the quadrant of the static values (static) or of the mean of the
        60 dynamic labels (dynamic); ``group`` the artist where known, else the song id.
    """
    if task not in ("static", "dynamic"):
        raise StreammoodError(f"DEAM task must be 'static' or 'dynamic', got {task!r}")
    data_dir = Path(data_dir)
    audio_dir = data_dir / AUDIO_DIR
    if not audio_dir.is_dir():
        raise StreammoodError(f"DEAM data folder {data_dir}: no {AUDIO_DIR}/ folder")
    audio = {}
    for p in sorted(audio_dir.glob("*.mp3")):
        if p.stem.isdigit():
            audio[int(p.stem)] = p

    times, dynamic = read_dynamic(data_dir)
    if task == "static":
        labels, _ = resolve_static(read_static(data_dir), dynamic)
    else:
        labels = {}
        for song, values in dynamic.items():
            window = dynamic_window(times, values)
            if window is not None:
                labels[song] = window
    songs = sorted(s for s in audio if s in labels)
    unlabelled = len(audio) - len(songs)
    if unlabelled:
        log.warning("DEAM: %d audio files without %s labels; skipped", unlabelled, task)
    if not songs:
        raise StreammoodError(f"DEAM data folder {data_dir}: no audio file with {task} labels")

    artists = read_artists(data_dir)
    clips = extract_clips([audio[s] for s in songs], cache or FeatureCache(), jobs, progress)
    by_path = {c.path: c for c in clips}
    windows = []
    for song in songs:
        clip = by_path.get(str(audio[song]))
        if clip is None:
            continue
        if clip.n_steps <= DEAM_START_STEP:
            log.warning("skipped %s: %d steps, shorter than 15 s", audio[song], clip.n_steps)
            continue
        va = labels[song]
        mean_va = va if va.ndim == 1 else va.mean(axis=0)
        windows.append(
            make_window(
                clip,
                song_id=str(song),
                group=artists.get(song, str(song)),
                label=int(quadrant_index(mean_va[0], mean_va[1])),
                va=va,
                start=DEAM_START_STEP,
            )
        )
    return windows
