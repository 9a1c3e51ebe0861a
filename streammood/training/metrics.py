"""Evaluation metrics for quadrant classifiers and valence–arousal regressors (pure numpy).

Class order everywhere is :data:`streammood.runtime.labels.QUADRANTS`
= ``("AP", "AN", "PP", "PN")``;
confusion matrices have true classes in rows and predicted classes in columns, in that order.
Valence and arousal live on ``[-1, 1]`` with the quadrant threshold at 0 (0 counts as negative /
passive, as in :mod:`streammood.runtime.labels`).

Every function returns plain Python values (``float``, ``int``, ``list``, ``dict``, ``None`` for an
undefined figure), so the result goes straight into ``json.dumps``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix
from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

from streammood.runtime.labels import QUADRANTS, quadrant_index, va_from_probs

_N_CLASSES = len(QUADRANTS)
_LABELS = list(range(_N_CLASSES))


def _float(x: float | np.floating) -> float | None:
    """A finite Python float, or ``None`` for NaN / infinity."""
    x = float(x)
    return x if math.isfinite(x) else None


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats into JSON-ready Python values.

    Parameters
    ----------
    obj : Any
        Nested dicts, lists, tuples, numpy arrays and scalars.

    Returns
    -------
    Any
        The same structure with ``dict``/``list``/``int``/``float``/``str``/``bool``/``None``
        only; NaN and infinities become ``None``.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _float(obj)
    return obj


def _check_labels(y: np.ndarray, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class indices, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{name} must hold integer class indices")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= _N_CLASSES:
        raise ValueError(f"{name} must hold class indices in 0..{_N_CLASSES - 1}")
    return y.astype(np.int64)


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation, ``None`` when undefined (fewer than 2 points or a constant input)."""
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return _float(np.corrcoef(a, b)[0, 1])


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Quadrant classification metrics from true classes and predicted probabilities.

    Parameters
    ----------
    y_true : np.ndarray
        ``(N,)`` int true class indices into :data:`QUADRANTS`.
    probs : np.ndarray
        ``(N, 4)`` class probabilities (or any scores) in :data:`QUADRANTS` order; the
        prediction is the arg-max.

    Returns
    -------
    dict
        - ``n``: number of examples.
        - ``accuracy``: fraction of arg-max predictions equal to ``y_true``.
        - ``macro_f1``: unweighted mean F1 over the classes that occur in ``y_true`` or in the
          predictions (scikit-learn's default), so a class absent from both does not count as 0.
        - ``per_class``: ``{"AP": {"precision", "recall", "f1", "support", "roc_auc"}, ...}``;
          precision/recall/F1 are 0 where undefined (scikit-learn's ``zero_division=0``),
          ``roc_auc`` is one-vs-rest and ``None`` when the class is absent (or the only one).
        - ``roc_auc``: macro mean of the defined one-vs-rest AUCs (``None`` if none is defined);
          equals scikit-learn's ``roc_auc_score(multi_class="ovr")`` when all classes occur.
        - ``confusion_matrix``: 4 x 4 list of int counts, rows = true, columns = predicted.
    """
    y_true = _check_labels(y_true, "y_true")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (y_true.size, _N_CLASSES):
        raise ValueError(f"probs must have shape ({y_true.size}, {_N_CLASSES}), got {probs.shape}")
    y_pred = probs.argmax(axis=1)

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=_LABELS, zero_division=0
    )
    per_class: dict[str, dict[str, Any]] = {}
    aucs: list[float] = []
    for k, name in enumerate(QUADRANTS):
        positive = y_true == k
        auc = None
        if 0 < positive.sum() < y_true.size:
            auc = _float(roc_auc_score(positive, probs[:, k]))
            if auc is not None:
                aucs.append(auc)
        per_class[name] = {
            "precision": _float(precision[k]),
            "recall": _float(recall[k]),
            "f1": _float(f1[k]),
            "support": int(support[k]),
            "roc_auc": auc,
        }
    return {
        "n": int(y_true.size),
        "accuracy": _float(np.mean(y_pred == y_true)),
        "macro_f1": _float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "roc_auc": _float(np.mean(aucs)) if aucs else None,
        "per_class": per_class,
        "confusion_matrix": _sk_confusion_matrix(y_true, y_pred, labels=_LABELS).tolist(),
    }


def regression_metrics(va_true: np.ndarray, va_pred: np.ndarray) -> dict[str, Any]:
    """Valence–arousal regression metrics, plus the quadrant figures implied by the signs.

    Parameters
    ----------
    va_true, va_pred : np.ndarray
        ``(N, 2)`` ``(valence, arousal)`` in ``[-1, 1]``.

    Returns
    -------
    dict
        ``n``; ``valence_mae``, ``valence_rmse``, ``valence_r`` (Pearson, ``None`` when a side is
        constant) and the same for ``arousal_``; RMSE is ``sqrt(mean((pred - true) ** 2))``.
        ``quadrant_accuracy``, ``quadrant_macro_f1`` and ``quadrant_confusion_matrix`` (4 x 4,
        rows = true) of the quadrants given by the signs (threshold 0, 0 is negative / passive).
    """
    va_true = np.asarray(va_true, dtype=np.float64)
    va_pred = np.asarray(va_pred, dtype=np.float64)
    if va_true.ndim != 2 or va_true.shape[1] != 2 or va_true.shape[0] == 0:
        raise ValueError(f"va_true must have shape (N, 2) with N > 0, got {va_true.shape}")
    if va_pred.shape != va_true.shape:
        raise ValueError(f"va_pred must have shape {va_true.shape}, got {va_pred.shape}")
    err = va_pred - va_true
    out: dict[str, Any] = {"n": int(va_true.shape[0])}
    for j, name in enumerate(("valence", "arousal")):
        out[f"{name}_mae"] = _float(np.mean(np.abs(err[:, j])))
        out[f"{name}_rmse"] = _float(np.sqrt(np.mean(err[:, j] ** 2)))
        out[f"{name}_r"] = _pearson(va_true[:, j], va_pred[:, j])
    q_true = quadrant_index(va_true[:, 0], va_true[:, 1])
    q_pred = quadrant_index(va_pred[:, 0], va_pred[:, 1])
    out["quadrant_accuracy"] = _float(np.mean(q_true == q_pred))
    out["quadrant_macro_f1"] = _float(f1_score(q_true, q_pred, average="macro", zero_division=0))
    out["quadrant_confusion_matrix"] = _sk_confusion_matrix(q_true, q_pred, labels=_LABELS).tolist()
    return out


def last_real_step(mask: np.ndarray) -> np.ndarray:
    """Index of the last real (unpadded) step of each window.

    Parameters
    ----------
    mask : np.ndarray
        ``(N, T)`` bool, True where a step is real.

    Returns
    -------
    np.ndarray
        ``(N,)`` int64 step indices.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (N, T), got {mask.shape}")
    empty = ~mask.any(axis=1)
    if empty.any():
        first = np.flatnonzero(empty)[:5].tolist()
        raise ValueError(f"mask has windows without any real step: {first}")
    return (mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)).astype(np.int64)


def _metrics(
    pred: np.ndarray, y_true: np.ndarray | None, va_true: np.ndarray | None
) -> dict[str, Any]:
    """Metrics of flat predictions ``(M, 4|2)`` against whichever truths are given."""
    if pred.shape[-1] == _N_CLASSES:
        out: dict[str, Any] = {}
        if y_true is not None:
            out.update(classification_metrics(y_true, pred))
        if va_true is not None:
            out["va"] = regression_metrics(va_true, va_from_probs(pred))
        return out
    if va_true is None:
        raise ValueError("regression predictions (..., 2) need va_true")
    return regression_metrics(va_true, pred)


def evaluation_report(
    predictions: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    y_true: np.ndarray | None = None,
    va_true: np.ndarray | None = None,
    y_true_steps: np.ndarray | None = None,
    va_true_steps: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-window (song) and per-step figures of a sequence model, as one JSON-ready dict.

    Per window, the prediction is the one at the last real step of each window (what the model
    says after hearing the whole window); per step, every real step is scored against the step's
    label (``y_true_steps`` / ``va_true_steps``, e.g. DEAM's dynamic annotations) or, when none is
    given, against its window's label.

    Parameters
    ----------
    predictions : np.ndarray
        ``(N, T, 4)`` quadrant probabilities (classification) or ``(N, T, 2)`` valence–arousal
        (regression).
    mask : np.ndarray, optional
        ``(N, T)`` bool, True at real steps (padding False); default all real.
    y_true : np.ndarray, optional
        ``(N,)`` int window (song) quadrant indices. Needed for classification; ignored for
        regression (whose quadrant figures come from the signs of ``va_true``).
    va_true : np.ndarray, optional
        ``(N, 2)`` window valence–arousal in ``[-1, 1]``. Needed for regression; for a classifier
        it adds a ``"va"`` block scoring :func:`~streammood.runtime.labels.va_from_probs`.
    y_true_steps : np.ndarray, optional
        ``(N, T)`` int per-step quadrant indices (values at padded steps are ignored).
    va_true_steps : np.ndarray, optional
        ``(N, T, 2)`` per-step valence–arousal.

    Returns
    -------
    dict
        ``{"task": "classification" | "regression", "class_order": [...], "n_windows",
        "n_steps", "per_window": {...}, "per_step": {...}}`` where each block is the output of
        :func:`classification_metrics` (plus ``"va"``) or :func:`regression_metrics`. Plain
        Python values only, NaN as ``None``.
    """
    pred = np.asarray(predictions, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[-1] not in (2, _N_CLASSES) or pred.shape[0] == 0:
        raise ValueError(f"predictions must have shape (N, T, 4) or (N, T, 2), got {pred.shape}")
    n, t = pred.shape[:2]
    mask = np.ones((n, t), bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != (n, t):
        raise ValueError(f"mask must have shape {(n, t)}, got {mask.shape}")
    classification = pred.shape[-1] == _N_CLASSES
    if classification and y_true is None:
        raise ValueError("classification predictions (N, T, 4) need y_true")

    if y_true is not None:
        y_true = _check_labels(y_true, "y_true")
        if y_true.shape != (n,):
            raise ValueError(f"y_true must have shape ({n},), got {y_true.shape}")
    if va_true is not None:
        va_true = np.asarray(va_true, dtype=np.float64)
        if va_true.shape != (n, 2):
            raise ValueError(f"va_true must have shape ({n}, 2), got {va_true.shape}")

    last = last_real_step(mask)
    rows = np.arange(n)
    per_window = _metrics(pred[rows, last], y_true if classification else None, va_true)

    # per step: every real step, against its own label or its window's
    if y_true_steps is not None:
        y_true_steps = np.asarray(y_true_steps)
        if y_true_steps.shape != (n, t):
            raise ValueError(f"y_true_steps must have shape {(n, t)}, got {y_true_steps.shape}")
    elif y_true is not None:
        y_true_steps = np.broadcast_to(y_true[:, None], (n, t))
    if va_true_steps is not None:
        va_true_steps = np.asarray(va_true_steps, dtype=np.float64)
        if va_true_steps.shape != (n, t, 2):
            raise ValueError(
                f"va_true_steps must have shape {(n, t, 2)}, got {va_true_steps.shape}"
            )
    elif va_true is not None:
        va_true_steps = np.broadcast_to(va_true[:, None, :], (n, t, 2))
    per_step = _metrics(
        pred[mask],
        y_true_steps[mask] if (classification and y_true_steps is not None) else None,
        va_true_steps[mask] if va_true_steps is not None else None,
    )

    return to_jsonable(
        {
            "task": "classification" if classification else "regression",
            "class_order": list(QUADRANTS),
            "n_windows": n,
            "n_steps": int(mask.sum()),
            "per_window": per_window,
            "per_step": per_step,
        }
    )


def _fmt(x: Any, width: int = 8, digits: int = 3) -> str:
    if x is None:
        return "-".rjust(width)
    if isinstance(x, int):
        return str(x).rjust(width)
    return f"{x:.{digits}f}".rjust(width)


def _matrix_lines(cm: list[list[int]], title: str) -> list[str]:
    lines = [title, "  true\\pred " + "".join(q.rjust(7) for q in QUADRANTS)]
    for name, row in zip(QUADRANTS, cm, strict=True):
        lines.append(f"  {name:<10}" + "".join(str(v).rjust(7) for v in row))
    return lines


def format_report(report: dict[str, Any]) -> str:
    """A compact plain-text table of an :func:`evaluation_report` for the terminal.

    Parameters
    ----------
    report : dict
        The output of :func:`evaluation_report` (or the same dict read back from JSON).

    Returns
    -------
    str
        Several lines: headline figures per window and per step side by side, the per-class
        table and the per-window confusion matrix.
    """
    win, step = report["per_window"], report["per_step"]
    lines = [
        f"{report['task']}: {report['n_windows']} windows, {report['n_steps']} steps",
        f"  {'':<22}{'per window':>11}{'per step':>11}",
    ]

    def row(label: str, key: str, a: dict[str, Any] = win, b: dict[str, Any] = step) -> None:
        if key in a or key in b:
            lines.append(f"  {label:<22}{_fmt(a.get(key), 11)}{_fmt(b.get(key), 11)}")

    if report["task"] == "classification":
        row("accuracy", "accuracy")
        row("macro-F1", "macro_f1")
        row("ROC AUC (OvR macro)", "roc_auc")
    va_win, va_step = (
        (win, step) if report["task"] == "regression" else (win.get("va", {}), step.get("va", {}))
    )
    for key, label in (
        ("valence_mae", "valence MAE"),
        ("valence_rmse", "valence RMSE"),
        ("valence_r", "valence r"),
        ("arousal_mae", "arousal MAE"),
        ("arousal_rmse", "arousal RMSE"),
        ("arousal_r", "arousal r"),
        ("quadrant_accuracy", "quadrant accuracy"),
        ("quadrant_macro_f1", "quadrant macro-F1"),
    ):
        row(label, key, va_win, va_step)

    if "per_class" in win:
        lines.append("")
        lines.append("  per window   precision  recall      F1     AUC  support")
        for name in QUADRANTS:
            c = win["per_class"][name]
            lines.append(
                f"  {name:<10}"
                + _fmt(c["precision"], 11)
                + _fmt(c["recall"])
                + _fmt(c["f1"])
                + _fmt(c["roc_auc"])
                + _fmt(c["support"], 9)
            )
    cm = win.get("confusion_matrix", win.get("quadrant_confusion_matrix"))
    if cm is not None:
        lines.append("")
        title = "  confusion matrix per window (rows true, columns predicted)"
        lines.extend(_matrix_lines(cm, title))
    return "\n".join(lines)
