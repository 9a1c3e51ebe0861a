"""Labelled 60-step windows, the unit of training and evaluation.

The window rule (explicit, the same for every data set):

- **crop**: a clip with more steps than needed keeps the *first* ``WINDOW_STEPS`` steps from its
  start step (4Q: step 0; DEAM: the step whose end is 15 s);
- **pad**: a shorter clip is padded at the end by repeating its last step; ``n_pad`` counts the
  repeated steps and ``mask`` marks the real ones, so a trainer can weight or drop them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streammood.datasets.cache import ClipFeatures
from streammood.layout import WINDOW_STEPS


@dataclass(frozen=True)
class Window:
    """One labelled window of ``WINDOW_STEPS`` (60) steps of 500 ms.

    Attributes
    ----------
    mfcc : np.ndarray
        ``(60, 21, 20)`` float32 MFCC blocks.
    lld : np.ndarray
        ``(60, 260)`` float32 openSMILE LLD statistics.
    emb : np.ndarray
        ``(60, D)`` float32 pretrained embeddings, held between patches.
    label : int or None
        Quadrant index into :data:`streammood.runtime.labels.QUADRANTS`, or None when unknown.
    va : np.ndarray or None
        ``(2,)`` (song-level) or ``(60, 2)`` (per step) float32 ``(valence, arousal)`` in
        ``[-1, 1]``, or None when the data set has none (4Q).
    song_id : str
        Song identifier within its data set.
    group : str
        Split group: the artist where known, else the song.
    n_pad : int
        Trailing steps that repeat the clip's last real step.
    t_start : float
        Time of the first step in the clip, seconds.
    """

    mfcc: np.ndarray
    lld: np.ndarray
    emb: np.ndarray
    label: int | None
    va: np.ndarray | None
    song_id: str
    group: str
    n_pad: int = 0
    t_start: float = 0.0
    mask: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = self.mfcc.shape[0]
        object.__setattr__(self, "mask", np.arange(n) < n - self.n_pad)


def fit_steps(
    clip: ClipFeatures, start: int = 0, n_steps: int = WINDOW_STEPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Crop or pad a clip's steps ``start, start + 1, ...`` to exactly ``n_steps``.

    Parameters
    ----------
    clip : ClipFeatures
        Features of the whole clip.
    start : int
        First step of the window.
    n_steps : int
        Steps in the window.

    Returns
    -------
    mfcc, lld, emb : np.ndarray
        ``(n_steps, 21, 20)``, ``(n_steps, 260)``, ``(n_steps, D)``.
    n_pad : int
        How many trailing steps repeat the last real step.

    Raises
    ------
    ValueError
        When the clip has no step at or after ``start``.
    """
    available = clip.n_steps - start
    if available <= 0:
        raise ValueError(f"{clip.path}: {clip.n_steps} steps, none from step {start}")
    take = min(available, n_steps)
    idx = np.arange(start, start + n_steps).clip(max=start + take - 1)
    return clip.mfcc[idx], clip.lld[idx], clip.emb[idx], n_steps - take


def make_window(
    clip: ClipFeatures,
    *,
    song_id: str,
    group: str,
    label: int | None = None,
    va: np.ndarray | None = None,
    start: int = 0,
) -> Window:
    """A :class:`Window` of ``WINDOW_STEPS`` steps from ``start`` (cropped or padded as documented
    in this module)."""
    mfcc, lld, emb, n_pad = fit_steps(clip, start)
    return Window(
        mfcc=mfcc,
        lld=lld,
        emb=emb,
        label=label,
        va=None if va is None else np.asarray(va, np.float32),
        song_id=song_id,
        group=group,
        n_pad=n_pad,
        t_start=float(clip.t_start[start]),
    )


def stack_windows(windows: Sequence[Window]) -> dict[str, np.ndarray]:
    """Stack windows into training arrays.

    Parameters
    ----------
    windows : sequence of Window
        ``N`` windows (non-empty).

    Returns
    -------
    dict
        ``mfcc (N, 60, 21, 20)``, ``lld (N, 60, 260)``, ``emb (N, 60, D)`` float32;
        ``mask (N, 60)`` bool (real, not padded, steps); ``n_pad (N,)`` int; ``song_id`` and
        ``group`` ``(N,)`` str; ``label (N,)`` int64, -1 where unknown; ``va`` ``(N, 2)`` or
        ``(N, 60, 2)`` float32, present only when every window has one of the same shape.
    """
    if not windows:
        raise ValueError("no windows to stack")
    out: dict[str, np.ndarray] = {
        "mfcc": np.stack([w.mfcc for w in windows]).astype(np.float32, copy=False),
        "lld": np.stack([w.lld for w in windows]).astype(np.float32, copy=False),
        "emb": np.stack([w.emb for w in windows]).astype(np.float32, copy=False),
        "mask": np.stack([w.mask for w in windows]),
        "n_pad": np.array([w.n_pad for w in windows], np.int64),
        "label": np.array([-1 if w.label is None else w.label for w in windows], np.int64),
        "song_id": np.array([w.song_id for w in windows], dtype=str),
        "group": np.array([w.group for w in windows], dtype=str),
    }
    vas = [w.va for w in windows]
    if all(v is not None for v in vas) and len({v.shape for v in vas}) == 1:
        out["va"] = np.stack(vas).astype(np.float32, copy=False)
    return out
