"""Linear probe: which window statistics should the pooled read-out see?

The model's pooled branch is a linear read-out of the window's running mean and std of the
musicnn embedding. This probe asks whether the same statistics of the other per-step features
would add to it: for the train+validation songs of the training split (split seed 0, the test
songs are never touched), per window the mean and std over its real steps of

* ``E``: the musicnn embedding (held between patches, as the model sees it),
* ``L``: the 260 openSMILE LLD statistics,
* ``M``: the 20 MFCCs (each step's 21 frames averaged),

→ standardise → logistic regression; 5-fold StratifiedGroupKFold by artist, repeated over 3
seeds; macro-F1 of each repetition's pooled out-of-fold predictions, mean ± sd.

Run: ``.venv/bin/python benchmarks/probe_pooled.py [--data-dir ../shared/data/4q]`` (features
come from the training cache; a cold cache is extracted first, ~4–7 minutes).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]


def window_stats(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean and std over the real steps: ``(N, T, F)``, ``(N, T)`` → ``(N, 2F)``."""
    m = mask[..., None].astype(np.float64)
    n = m.sum(axis=1)
    mean = (x * m).sum(axis=1) / n
    std = np.sqrt(np.maximum((x * x * m).sum(axis=1) / n - mean**2, 0.0))
    return np.concatenate([mean, std], axis=1)


def feature_stats(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per window the statistics of each feature: ``E`` embedding ``(N, 2D)``, ``L`` LLD
    statistics ``(N, 520)``, ``M`` MFCCs (frames averaged) ``(N, 40)``."""
    mask = arrays["mask"]
    return {
        "E": window_stats(arrays["emb"], mask),
        "L": window_stats(arrays["lld"], mask),
        "M": window_stats(arrays["mfcc"].mean(axis=2), mask),
    }


def load_seen(data_dir: Path, jobs: int) -> dict[str, np.ndarray]:
    """The train+validation songs of split seed 0 (its test songs are never loaded into a probe)."""
    from streammood.datasets.splits import split_by_group
    from streammood.training.pipeline import load_dataset, subset

    arrays = load_dataset("4q", data_dir, "classification", None, jobs)
    seen_idx, _ = split_by_group(arrays["label"], arrays["group"], 0.2, 0)
    return subset(arrays, seen_idx)


def cv_macro_f1(
    y: np.ndarray,
    groups: np.ndarray,
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    seeds: int,
) -> list[float]:
    """Macro-F1 of 5-fold StratifiedGroupKFold (by ``groups``), one value per seed: the pooled
    out-of-fold predictions ``predict(train_idx, test_idx) -> (n_test,)`` labels."""
    scores = []
    for seed in range(seeds):
        pred = np.zeros_like(y)
        folds = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
        for tr, te in folds.split(np.zeros(len(y)), y, groups):
            pred[te] = predict(tr, te)
        scores.append(f1_score(y, pred, average="macro"))
    return scores


def mean_sd(scores: list[float]) -> str:
    """``"0.723 ± 0.005"``: a table cell."""
    return f"{np.mean(scores):.3f} ± {np.std(scores):.3f}"


def probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float, seeds: int) -> list[float]:
    """:func:`cv_macro_f1` of standardise → logistic regression (inverse L2 strength ``c``)."""

    def predict(tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        return clf.fit(x[tr], y[tr]).predict(x[te])

    return cv_macro_f1(y, groups, predict, seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "4q")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    seen = load_seen(args.data_dir, args.jobs)
    parts = feature_stats(seen)
    print(f"{len(seen['label'])} train+validation songs, {len(set(seen['group']))} artists")
    print("| features | dims | C=0.003 | C=0.01 | C=0.03 |")
    print("|---|---|---|---|---|")
    for combo in ("E", "E+M", "E+L", "E+L+M", "L", "L+M"):
        x = np.concatenate([parts[k] for k in combo.split("+")], axis=1)
        cells = [
            mean_sd(probe(x, seen["label"], seen["group"], c, args.seeds))
            for c in (0.003, 0.01, 0.03)
        ]
        print(f"| {combo} | {x.shape[1]} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
