"""The 4Q audio emotion data set (Panda, Malheiro & Paiva, 2018): song-level quadrant labels.

Layout::

    DIR/Q1/*.mp3 ... DIR/Q4/*.mp3     ~30 s clips, named <Song>.mp3
    DIR/annotations.csv               Song,Quadrant          (Q1..Q4)
    DIR/metadata.csv                  Song,Artist,...        (optional: split groups by artist)

4Q's quadrants map to :data:`streammood.runtime.labels.QUADRANTS` as Q1 = AP, Q2 = AN, Q3 = PN,
Q4 = PP. Each clip gives one window of its first 60 steps (padded by repeating the last step when
shorter; see :mod:`streammood.datasets.windows`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from streammood.datasets.cache import FeatureCache, extract_clips
from streammood.datasets.csvtable import read_csv_rows
from streammood.datasets.windows import Window, make_window
from streammood.errors import StreammoodError
from streammood.runtime.labels import QUADRANTS

log = logging.getLogger(__name__)

FOURQ_QUADRANT = {"Q1": "AP", "Q2": "AN", "Q3": "PN", "Q4": "PP"}
"""4Q folder / label name → quadrant name."""


def read_fourq_labels(data_dir: str | Path) -> dict[str, int]:
    """``Song → quadrant index`` from ``annotations.csv``."""
    path = Path(data_dir) / "annotations.csv"
    labels: dict[str, int] = {}
    for row in read_csv_rows(path, ("Song", "Quadrant")):
        quadrant = FOURQ_QUADRANT.get(row["Quadrant"])
        if quadrant is None:
            raise StreammoodError(
                f"{path}: song {row['Song']} has unknown quadrant {row['Quadrant']!r}"
            )
        labels[row["Song"]] = QUADRANTS.index(quadrant)
    return labels


def read_fourq_artists(data_dir: str | Path) -> dict[str, str]:
    """``Song → artist`` from the optional ``metadata.csv`` (empty when absent)."""
    path = Path(data_dir) / "metadata.csv"
    if not path.is_file():
        return {}
    return {r["Song"]: r["Artist"] for r in read_csv_rows(path, ("Song", "Artist")) if r["Artist"]}


def load_fourq(
    data_dir: str | Path,
    cache: FeatureCache | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> list[Window]:
    """Windows of every 4Q clip that is both annotated and on disk.

    Parameters
    ----------
    data_dir : path
        Folder with ``Q1..Q4/``, ``annotations.csv`` and optional ``metadata.csv``.
    cache : FeatureCache or None
        Feature cache (default: ``FeatureCache()`` in ``.cache/features``).
    jobs : int or None
        Extraction processes (default: all CPUs).
    progress : bool
        Show a progress bar.

    Returns
    -------
    list of Window
        One per clip, sorted by song; ``label`` the quadrant index, ``va`` None, ``group`` the
        artist (the song without ``metadata.csv``). Annotated songs missing on disk are skipped
        with one summary warning; clips that fail to decode are skipped by name.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise StreammoodError(f"4Q data folder {data_dir}: not found")
    labels = read_fourq_labels(data_dir)
    artists = read_fourq_artists(data_dir)

    on_disk = {p.stem: p for q in FOURQ_QUADRANT for p in sorted((data_dir / q).glob("*.mp3"))}
    songs = sorted(s for s in labels if s in on_disk)
    missing = len(labels) - len(songs)
    if missing:
        log.warning(
            "4Q: %d of %d annotated songs are not on disk under %s; skipped",
            missing,
            len(labels),
            data_dir,
        )
    if not songs:
        raise StreammoodError(f"4Q data folder {data_dir}: no annotated clip found in Q1..Q4/")

    clips = extract_clips([on_disk[s] for s in songs], cache or FeatureCache(), jobs, progress)
    by_path = {c.path: c for c in clips}
    windows = []
    for song in songs:
        clip = by_path.get(str(on_disk[song]))
        if clip is None:
            continue
        windows.append(
            make_window(clip, song_id=song, group=artists.get(song, song), label=labels[song])
        )
    return windows
