"""Pictures of evaluations and timelines: confusion matrix, valence–arousal plane, trajectory.

Drawn with matplotlib's object API on the Agg canvas (``Figure`` + ``FigureCanvasAgg``), so this
module touches neither pyplot's global state nor the default backend. Every function writes one
PNG and returns its path. Class order and colours follow
:data:`streammood.runtime.labels.QUADRANTS` = ``("AP", "AN", "PP", "PN")``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from streammood.errors import StreammoodError
from streammood.runtime.labels import QUADRANTS

QUADRANT_COLOURS: dict[str, str] = {
    "AP": "#e69f00",  # active-positive: orange
    "AN": "#d55e00",  # active-negative: vermilion
    "PP": "#009e73",  # passive-positive: green
    "PN": "#0072b2",  # passive-negative: blue
}
"""Colour of each quadrant (Okabe–Ito, colour-blind safe)."""

QUADRANT_NAMES: dict[str, str] = {
    "AP": "active-positive",
    "AN": "active-negative",
    "PP": "passive-positive",
    "PN": "passive-negative",
}
"""Long name of each quadrant."""

# where each quadrant sits on the plane: (x, y, horizontal alignment, vertical alignment)
_CORNERS = {
    "AP": (0.97, 0.97, "right", "top"),
    "AN": (-0.97, 0.97, "left", "top"),
    "PP": (0.97, -0.97, "right", "bottom"),
    "PN": (-0.97, -0.97, "left", "bottom"),
}
_DPI = 110


class PlotError(StreammoodError):
    """A picture could not be written (bad path, no permission)."""


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        FigureCanvasAgg(fig)
        fig.savefig(path, dpi=_DPI, format="png")
    except OSError as exc:
        raise PlotError(f"cannot write picture {path}: {exc.strerror or exc}") from exc
    return path


def _plane_axes(ax, title: str | None = None) -> None:
    """Fixed ``[-1, 1]^2`` valence–arousal axes with quadrant lines and corner names."""
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.5", lw=0.8, zorder=1)
    ax.axvline(0, color="0.5", lw=0.8, zorder=1)
    for name, (x, y, ha, va) in _CORNERS.items():
        lines = [name, QUADRANT_NAMES[name]]
        text = "\n".join(lines if va == "top" else lines[::-1])
        ax.text(
            x,
            y,
            text,
            ha=ha,
            va=va,
            fontsize=8,
            fontweight="bold",
            zorder=4,
            color=QUADRANT_COLOURS[name],
            bbox={"facecolor": "white", "alpha": 0.6, "edgecolor": "none", "pad": 1},
        )
    ticks = [-1, -0.5, 0, 0.5, 1]
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("valence (−1 negative … +1 positive)")
    ax.set_ylabel("arousal (−1 passive … +1 active)")
    if title:
        ax.set_title(title)


def plot_confusion_matrix(
    cm: np.ndarray, path: str | Path, title: str = "Confusion matrix", normalize: bool = True
) -> Path:
    """Write an annotated 4 x 4 confusion matrix.

    Parameters
    ----------
    cm : np.ndarray
        ``(4, 4)`` int counts, rows = true, columns = predicted, in :data:`QUADRANTS` order.
    path : str or Path
        PNG to write (parent folders are created).
    title : str
        Figure title.
    normalize : bool
        Colour by the row fraction (recall) and print ``count`` and row percentage in each cell;
        otherwise colour by and print counts only.

    Returns
    -------
    Path
        ``path``.
    """
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(QUADRANTS), len(QUADRANTS)):
        raise ValueError(f"cm must have shape (4, 4), got {cm.shape}")
    row_sum = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, row_sum, out=np.zeros(cm.shape), where=row_sum > 0)
    shade = frac if normalize else cm / max(int(cm.max()), 1)

    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot()
    im = ax.imshow(shade, cmap="Blues", vmin=0, vmax=1)
    for i in range(4):
        for j in range(4):
            text = f"{cm[i, j]}\n{100 * frac[i, j]:.0f}%" if normalize else f"{cm[i, j]}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=10,
                color="white" if shade[i, j] > 0.55 else "black",
            )
    ticks = [q + "\n" + QUADRANT_NAMES[q].replace("-", "-\n") for q in QUADRANTS]
    ax.set_xticks(range(4), ticks, fontsize=8)
    ax.set_yticks(
        range(4), [f"{q} ({n})" for q, n in zip(QUADRANTS, row_sum[:, 0], strict=True)], fontsize=9
    )
    ax.set_xlabel("predicted quadrant")
    ax.set_ylabel("true quadrant (support)")
    total = int(cm.sum())
    acc = np.trace(cm) / total if total else float("nan")
    ax.set_title(f"{title}\nn = {total}, accuracy = {acc:.3f}", fontsize=11)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label("fraction of true class" if normalize else "count / max count")
    fig.tight_layout()
    return _save(fig, path)


def plot_va_plane(
    va_pred: np.ndarray,
    path: str | Path,
    labels: np.ndarray | None = None,
    title: str = "Predictions on the valence–arousal plane",
) -> Path:
    """Write a scatter of predicted points on the valence–arousal plane.

    Parameters
    ----------
    va_pred : np.ndarray
        ``(N, 2)`` predicted ``(valence, arousal)`` in ``[-1, 1]``.
    path : str or Path
        PNG to write.
    labels : np.ndarray, optional
        ``(N,)`` int true quadrant indices into :data:`QUADRANTS`; points are coloured by them
        (grey when not given).
    title : str
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    va_pred = np.asarray(va_pred, dtype=np.float64)
    if va_pred.ndim != 2 or va_pred.shape[1] != 2:
        raise ValueError(f"va_pred must have shape (N, 2), got {va_pred.shape}")
    fig = Figure(figsize=(7.0, 5.2))
    ax = fig.add_subplot()
    _plane_axes(ax, f"{title}\nn = {len(va_pred)}")
    if labels is None:
        ax.scatter(va_pred[:, 0], va_pred[:, 1], s=16, c="0.3", alpha=0.7, zorder=2)
    else:
        labels = np.asarray(labels)
        if labels.shape != (len(va_pred),):
            raise ValueError(f"labels must have shape ({len(va_pred)},), got {labels.shape}")
        for k, name in enumerate(QUADRANTS):
            sel = labels == k
            ax.scatter(
                va_pred[sel, 0],
                va_pred[sel, 1],
                s=16,
                alpha=0.75,
                zorder=2,
                color=QUADRANT_COLOURS[name],
                edgecolors="none",
                label=f"true {name} ({int(sel.sum())})",
            )
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1.01, 0.5),
            fontsize=8,
            frameon=False,
            title="colour = true quadrant",
            title_fontsize=8,
        )
    fig.tight_layout()
    return _save(fig, path)


def plot_trajectory(
    t: np.ndarray,
    valence: np.ndarray,
    arousal: np.ndarray,
    quadrant: np.ndarray,
    path: str | Path,
    title: str = "Mood over time",
) -> Path:
    """Write a two-panel picture of a mood timeline.

    Left: the path on the valence–arousal plane, coloured by time, start and end marked. Right:
    valence and arousal over time above a band of the quadrant (or stacked probabilities).

    Parameters
    ----------
    t : np.ndarray
        ``(n,)`` step times in seconds.
    valence, arousal : np.ndarray
        ``(n,)`` values in ``[-1, 1]``.
    quadrant : np.ndarray
        ``(n,)`` quadrant names (``"AP"`` …) or int indices into :data:`QUADRANTS`, drawn as a
        coloured band; or ``(n, 4)`` probabilities in that order, drawn stacked.
    path : str or Path
        PNG to write.
    title : str
        Figure title.

    Returns
    -------
    Path
        ``path``.
    """
    t = np.asarray(t, dtype=np.float64)
    valence = np.asarray(valence, dtype=np.float64)
    arousal = np.asarray(arousal, dtype=np.float64)
    quadrant = np.asarray(quadrant)
    n = t.shape[0] if t.ndim == 1 else -1
    if n < 1 or valence.shape != (n,) or arousal.shape != (n,):
        raise ValueError(
            f"t, valence and arousal must be equal-length 1-D arrays, got {t.shape}, "
            f"{valence.shape}, {arousal.shape}"
        )
    probs = None
    if quadrant.shape == (n, len(QUADRANTS)) and quadrant.dtype.kind == "f":
        probs = quadrant
    elif quadrant.shape == (n,):
        if quadrant.dtype.kind in "iu":
            q_idx = quadrant.astype(np.int64)
        else:
            lookup = {q: i for i, q in enumerate(QUADRANTS)}
            try:
                q_idx = np.array([lookup[str(q)] for q in quadrant], np.int64)
            except KeyError as exc:
                raise ValueError(f"unknown quadrant name {exc.args[0]!r}") from exc
    else:
        raise ValueError(f"quadrant must have shape ({n},) or ({n}, 4), got {quadrant.shape}")

    fig = Figure(figsize=(12, 5.2))
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.45], height_ratios=[3, 1.3])
    ax_plane = fig.add_subplot(grid[:, 0])
    ax_line = fig.add_subplot(grid[0, 1])
    ax_band = fig.add_subplot(grid[1, 1], sharex=ax_line)

    # left: trajectory on the plane, coloured by time
    _plane_axes(ax_plane, "trajectory on the valence–arousal plane")
    norm = Normalize(t[0], t[-1] if t[-1] > t[0] else t[0] + 1)
    points = np.stack([valence, arousal], axis=1)
    if n > 1:
        segments = np.stack([points[:-1], points[1:]], axis=1)
        lc = LineCollection(segments, cmap="viridis", norm=norm, linewidths=2, zorder=2)
        lc.set_array(0.5 * (t[:-1] + t[1:]))
        ax_plane.add_collection(lc)
        cbar = fig.colorbar(lc, ax=ax_plane, fraction=0.046, pad=0.03)
        cbar.set_label("time (s)")
    ax_plane.plot(*points[0], "o", ms=9, mfc="white", mec="black", zorder=3, label="start")
    ax_plane.plot(*points[-1], "s", ms=9, mfc="black", mec="black", zorder=3, label="end")
    ax_plane.legend(loc="lower center", fontsize=8, ncols=2, framealpha=0.8)

    # right top: valence and arousal over time
    ax_line.axhline(0, color="0.6", lw=0.8)
    ax_line.plot(t, valence, color="#cc3311", lw=1.6, label="valence")
    ax_line.plot(t, arousal, color="#0077bb", lw=1.6, label="arousal")
    ax_line.set_ylim(-1.05, 1.05)
    ax_line.set_ylabel("value (−1 … +1)")
    ax_line.set_title("valence and arousal over time")
    ax_line.legend(loc="upper right", fontsize=8, ncols=2)
    ax_line.tick_params(labelbottom=False)
    ax_line.grid(alpha=0.3)

    # right bottom: quadrant band or stacked probabilities
    colours = [QUADRANT_COLOURS[q] for q in QUADRANTS]
    step = float(np.median(np.diff(t))) if n > 1 else 0.5
    edges = np.append(t, t[-1] + step)
    if probs is None:
        ax_band.pcolormesh(
            edges,
            [0, 1],
            q_idx[None, :],
            cmap=ListedColormap(colours),
            vmin=-0.5,
            vmax=len(QUADRANTS) - 0.5,
            shading="flat",
        )
        ax_band.set_yticks([])
        ax_band.set_ylabel("quadrant")
    else:
        # one more edge so the last step gets its full width
        stacked = np.concatenate([probs, probs[-1:]], axis=0)
        ax_band.stackplot(edges, stacked.T, colors=colours, step="post")
        ax_band.set_ylim(0, 1)
        ax_band.set_ylabel("probability")
    ax_band.set_xlim(edges[0], edges[-1])
    ax_band.set_xlabel("time (s)")
    ax_band.legend(
        handles=[Patch(color=QUADRANT_COLOURS[q], label=q) for q in QUADRANTS],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.45),
        ncols=4,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return _save(fig, path)


def plot_stream_timeline(
    t: np.ndarray,
    true_q: np.ndarray,
    pred_q: np.ndarray,
    valence: np.ndarray,
    arousal: np.ndarray,
    path: str | Path,
    *,
    true_changes: np.ndarray = (),
    detected_changes: np.ndarray = (),
    title: str = "Stream timeline",
) -> Path:
    """Write a stream's timeline: true and predicted quadrant bands, valence and arousal curves,
    true changes (solid lines) and detected ones (dashed).

    Parameters
    ----------
    t : np.ndarray
        ``(n,)`` step end times, s.
    true_q, pred_q : np.ndarray
        ``(n,)`` int quadrant indices into :data:`QUADRANTS`.
    valence, arousal : np.ndarray
        ``(n,)`` predicted values in ``[-1, 1]``.
    path : str or Path
        PNG to write.
    true_changes, detected_changes : array-like
        Change times, s.
    title : str
        Figure title.
    """
    t = np.asarray(t, np.float64)
    n = len(t)
    if n < 1 or any(np.shape(a) != (n,) for a in (true_q, pred_q, valence, arousal)):
        raise ValueError("t, true_q, pred_q, valence and arousal must be equal-length 1-D arrays")
    width = float(min(24, max(10, t[-1] / 30)))
    fig = Figure(figsize=(width, 5.0))
    grid = fig.add_gridspec(3, 1, height_ratios=[3, 0.7, 0.7], hspace=0.08)
    ax_line = fig.add_subplot(grid[0])
    ax_true = fig.add_subplot(grid[1], sharex=ax_line)
    ax_pred = fig.add_subplot(grid[2], sharex=ax_line)
    ax_line.axhline(0, color="0.6", lw=0.8)
    ax_line.plot(t, valence, color="#cc3311", lw=1.3, label="valence")
    ax_line.plot(t, arousal, color="#0077bb", lw=1.3, label="arousal")
    ax_line.set_ylim(-1.05, 1.05)
    ax_line.set_ylabel("predicted (−1 … +1)")
    ax_line.grid(alpha=0.3)
    for k, c in enumerate(np.asarray(true_changes, np.float64)):
        for ax in (ax_line, ax_true, ax_pred):
            ax.axvline(
                c, color="black", lw=1.0, label="true change" if k == 0 and ax is ax_line else None
            )
    for k, c in enumerate(np.asarray(detected_changes, np.float64)):
        for ax in (ax_line, ax_pred):
            ax.axvline(
                c,
                color="#aa3377",
                lw=1.2,
                ls="--",
                label="detected change" if k == 0 and ax is ax_line else None,
            )
    ax_line.legend(loc="upper right", fontsize=8, ncols=4)
    ax_line.tick_params(labelbottom=False)
    cmap = ListedColormap([QUADRANT_COLOURS[q] for q in QUADRANTS])
    edges = np.concatenate([[t[0] - (t[1] - t[0] if n > 1 else 0.5)], t])
    for ax, q, name in ((ax_true, true_q, "true"), (ax_pred, pred_q, "predicted")):
        ax.pcolormesh(
            edges,
            [0, 1],
            np.asarray(q, np.int64)[None, :],
            cmap=cmap,
            vmin=-0.5,
            vmax=len(QUADRANTS) - 0.5,
            shading="flat",
        )
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
    ax_true.tick_params(labelbottom=False)
    ax_pred.set_xlim(edges[0], edges[-1])
    ax_pred.set_xlabel("stream time (s)")
    ax_pred.legend(
        handles=[Patch(color=QUADRANT_COLOURS[q], label=q) for q in QUADRANTS],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.9),
        ncols=4,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(title, fontsize=12)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.2)
    return _save(fig, path)
