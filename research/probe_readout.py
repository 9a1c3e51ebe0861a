"""Linear probe: how should the pooled read-out be fitted, and does anything beat it?

The model's pooled branch is a multinomial logistic regression on the window's mean and std of
the musicnn embedding (``E`` of ``probe_pooled``, held between patches as the model sees it).
This probe compares other ways of fitting a read-out on the same statistics, touching only the
train+validation songs of the training split (split seed 0; the test songs are never loaded):

* ``4-way``: multinomial logistic regression on the quadrant (what the model does);
* ``PQuad-weighted``: each song weighted by its label confidence from ``metadata.csv``
  (``PQuad``, the share of the song's AllMusic mood tags that agree with its quadrant), raised to
  a power, normalised to mean 1;
* ``factorised``: two binary logistic regressions, arousal (AP, AN vs PP, PN) and valence
  (AP, PP vs AN, PN), ``P(q) = P(arousal) P(valence)``; ``4-way + factorised`` averages both;
* ``RBF SVM``: a kernel machine instead of a linear read-out (its C is 100 times the column's);
* ``late fusion``: the 4-way read-out's log-probabilities plus half those of a second logistic
  regression on the window statistics of the 260 LLD values and the 20 MFCCs (what the seed's
  features know, fused after the fact rather than concatenated).

5-fold StratifiedGroupKFold by artist, repeated over seeds; macro-F1 of each repetition's pooled
out-of-fold predictions, mean ± sd.

Run: ``.venv/bin/python -m research.probe_readout [--data-dir ../shared/data/4q] [--seeds 5]``
(~10 minutes on two cores; features from the training cache, a cold cache is extracted first).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from research.common import DATA_DIR, cv_macro_f1, feature_stats, load_seen, mean_sd
from streammood.datasets.csvtable import read_csv_rows
from streammood.runtime.labels import QUADRANTS

AROUSAL = np.array([q in ("AP", "AN") for q in QUADRANTS])
"""Per quadrant: high arousal."""
VALENCE = np.array([q in ("AP", "PP") for q in QUADRANTS])
"""Per quadrant: positive valence."""
CS = (0.003, 0.01, 0.03)
"""Inverse L2 strengths of the logistic regressions (on standardised statistics)."""

Scorer = Callable[[np.ndarray, np.ndarray, float], np.ndarray]
"""``score(train_idx, test_idx, C) -> (n_test, 4)`` class scores (argmax = prediction)."""


def standardised(x: np.ndarray, tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaler = StandardScaler().fit(x[tr])
    return scaler.transform(x[tr]), scaler.transform(x[te])


def logistic(x, y, w, tr, te, c) -> np.ndarray:
    """Log-probabilities of a (weighted) logistic regression; binary ``y`` gives ``(n, 2)``."""
    xtr, xte = standardised(x, tr, te)
    clf = LogisticRegression(C=c, max_iter=5000).fit(xtr, y[tr], sample_weight=w[tr] / w[tr].mean())
    return clf.predict_log_proba(xte)


def factorised(x, y, w, tr, te, c) -> np.ndarray:
    """Log-probabilities of the quadrants from independent arousal and valence regressions."""
    la = logistic(x, AROUSAL[y], w, tr, te, c)[:, 1]
    lv = logistic(x, VALENCE[y], w, tr, te, c)[:, 1]
    pa, pv = np.exp(la)[:, None], np.exp(lv)[:, None]
    a = np.where(AROUSAL[None, :], pa, 1 - pa)
    v = np.where(VALENCE[None, :], pv, 1 - pv)
    return np.log(np.maximum(a * v, 1e-12))


def rbf_svm(x, y, tr, te, c) -> np.ndarray:
    xtr, xte = standardised(x, tr, te)
    return SVC(C=100 * c, gamma="scale").fit(xtr, y[tr]).decision_function(xte)


def readout_f1(
    y: np.ndarray, groups: np.ndarray, score: Scorer, c: float, seeds: int
) -> list[float]:
    """Macro-F1 per seed of the read-out ``score`` at inverse L2 strength ``c``."""
    return cv_macro_f1(y, groups, lambda tr, te: score(tr, te, c).argmax(axis=1), seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    seen = load_seen(args.data_dir, args.jobs)
    stats = feature_stats(seen)
    e, lm = stats["E"], np.concatenate([stats["L"], stats["M"]], axis=1)
    y, groups = seen["label"], seen["group"]
    rows = read_csv_rows(args.data_dir / "metadata.csv", ("Song", "PQuad"))
    pquad = {r["Song"]: float(r["PQuad"]) for r in rows}
    conf = np.array([pquad[s] for s in seen["song_id"]])
    ones = np.ones_like(conf)
    print(
        f"{len(y)} train+validation songs, {len(set(groups))} artists; "
        f"PQuad median {np.median(conf):.2f}, min {conf.min():.2f}"
    )
    variants: list[tuple[str, Scorer]] = [
        ("4-way", lambda tr, te, c: logistic(e, y, ones, tr, te, c)),
        ("4-way, PQuad-weighted", lambda tr, te, c: logistic(e, y, conf, tr, te, c)),
        ("4-way, PQuad²-weighted", lambda tr, te, c: logistic(e, y, conf**2, tr, te, c)),
        ("factorised", lambda tr, te, c: factorised(e, y, ones, tr, te, c)),
        (
            "4-way + factorised",
            lambda tr, te, c: np.logaddexp(
                logistic(e, y, ones, tr, te, c), factorised(e, y, ones, tr, te, c)
            ),
        ),
        ("RBF SVM", lambda tr, te, c: rbf_svm(e, y, tr, te, c)),
        (
            "late fusion with LLD + MFCC",
            lambda tr, te, c: (
                logistic(e, y, ones, tr, te, c) + 0.5 * logistic(lm, y, ones, tr, te, c)
            ),
        ),
    ]
    print("| read-out | " + " | ".join(f"C={c}" for c in CS) + " |")
    print("|---|" + "---|" * len(CS))
    for name, score in variants:
        cells = [mean_sd(readout_f1(y, groups, score, c, args.seeds)) for c in CS]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
