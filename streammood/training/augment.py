"""Training windows for streams: what the change-aware window shows the model (pure numpy).

Live, the window restarts at a detected change and again at the segment's first clean
embedding (a patch step), and a missed change leaves two songs in one window. Two kinds of
extra training windows, made from cached clip features, teach the model both:

- **restarts**: a clip's window begun at a later patch step (10, 20, … within the clip), so the
  model sees windows that start mid-song with a real embedding at their first step;
- **splices**: the first ``k`` steps of one training song followed by another song's steps from
  its own step ``k`` on (a hard cut at a random step; the patch cadence stays aligned, and the
  first song's embedding is held until the second song's first patch, as live: the next
  scheduled one, or the one taken when the change is detected 3 s after the cut), with per-step
  targets the song playing (``label_steps``).

Splices are made at the feature level (features of the steps of each song are those of the clip
alone, which a hard cut changes only for the MFCC history and openSMILE's filter context at the
cut); crossfades need the audio, so they are only evaluated, not trained.
"""

from __future__ import annotations

import numpy as np

from streammood.features.changes import ChangeConfig
from streammood.layout import EMBED_EVERY

CHANGE_LAG = ChangeConfig().lag
"""Steps from a cut to the patch the live path takes when it detects the change there."""

PER_STEP = ("mfcc", "lld", "emb", "mask")
"""The arrays with a step axis (``(N, T, ...)``)."""


def _label_steps(arrays: dict[str, np.ndarray]) -> np.ndarray:
    if "label_steps" in arrays:
        return arrays["label_steps"]
    steps = arrays["mask"].shape[1]
    return np.repeat(arrays["label"][:, None], steps, axis=1)


def restart_windows(arrays: dict[str, np.ndarray], starts=(10, 20)) -> dict[str, np.ndarray]:
    """Each window begun again at each of ``starts`` (patch steps): ``(N * len(starts), T,
    ...)``, shifted left and padded at the end (``mask`` False), labels as the window's.
    Windows with fewer than 10 real steps left are dropped."""
    t = arrays["mask"].shape[1]
    labels = _label_steps(arrays)
    out: dict[str, list[np.ndarray]] = {k: [] for k in arrays if k != "label_steps"}
    out["label_steps"] = []
    for s in starts:
        if s % EMBED_EVERY:
            raise ValueError(f"restart at step {s}: not a patch step")
        idx = np.minimum(np.arange(s, s + t), t - 1)
        mask = arrays["mask"][:, idx] & (np.arange(s, s + t) < t)[None, :]
        keep = mask.sum(axis=1) >= 10
        for k, v in arrays.items():
            if k == "mask":
                out[k].append(mask[keep])
            elif k in PER_STEP:
                out[k].append(v[keep][:, idx])
            elif k != "label_steps":
                out[k].append(v[keep])
        out["label_steps"].append(labels[keep][:, idx])
    return {k: np.concatenate(v) for k, v in out.items()}


def splice_windows(
    arrays: dict[str, np.ndarray],
    n: int,
    seed: int = 0,
    cut: tuple[int, int] = (8, 52),
) -> dict[str, np.ndarray]:
    """``n`` windows of two songs joined by a hard cut at a random step ``k`` in ``cut``.

    Steps ``< k`` are song A's, steps ``>= k`` song B's own steps ``k, k + 1, …`` (so B's patch
    steps stay on the stream's cadence); B's steps before its first patch step at or after
    ``k`` (the scheduled one, or ``k + CHANGE_LAG`` where the change is detected, whichever
    comes first) hold A's last embedding (what the live path holds). ``label_steps`` is A's label
    before the cut and B's after; ``label`` (the window's) is B's. Pairs are of different
    songs; B's steps past its last real step are padding (``mask`` False).
    """
    rng = np.random.default_rng(seed)
    total, t = arrays["mask"].shape
    a = rng.integers(0, total, n)
    b = (a + rng.integers(1, total, n)) % total  # never the same window
    k = rng.integers(cut[0], cut[1] + 1, n)
    before = np.arange(t)[None, :] < k[:, None]  # (n, T): step from A
    labels = _label_steps(arrays)
    out: dict[str, np.ndarray] = {}
    for key, v in arrays.items():
        if key in PER_STEP:
            sel = before.reshape(n, t, *([1] * (v.ndim - 2)))
            out[key] = np.where(sel, v[a], v[b])
        elif key != "label_steps":
            out[key] = v[b]
    first_patch = np.minimum(((k + EMBED_EVERY - 1) // EMBED_EVERY) * EMBED_EVERY, k + CHANGE_LAG)
    held = np.arange(t)[None, :] < first_patch[:, None]
    held &= ~before
    rows, cols = np.nonzero(held)
    out["emb"][rows, cols] = arrays["emb"][a[rows], k[rows] - 1]
    out["label_steps"] = np.where(before, labels[a], labels[b])
    out["mask"] = np.where(before, arrays["mask"][a], arrays["mask"][b])
    return out


def stream_training_windows(
    arrays: dict[str, np.ndarray],
    seed: int = 0,
    splice_share: float = 0.5,
    restart_share: float = 0.5,
) -> dict[str, np.ndarray]:
    """``arrays`` plus ``restart_share * N`` restarts (random windows, each begun again at step
    10 or 20) and ``splice_share * N`` splices, with ``label_steps`` ``(N', T)`` on all."""
    n = len(arrays["mask"])
    rng = np.random.default_rng(seed + 7919)
    pick = rng.permutation(n)[: int(round(restart_share * n))]
    half = len(pick) // 2
    restarts = [
        restart_windows({k: v[idx] for k, v in arrays.items()}, starts=(s,))
        for idx, s in ((pick[:half], 10), (pick[half:], 20))
        if len(idx)
    ]
    parts = [
        {**arrays, "label_steps": _label_steps(arrays)},
        *restarts,
        splice_windows(arrays, int(round(splice_share * n)), seed),
    ]
    keys = parts[0].keys()
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}
