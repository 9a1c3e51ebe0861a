"""Linear probe: what do 25 % more training songs buy (the case for ``train --refit-all``)?

``streammood train --refit-all`` ships a model trained on all 720 4Q songs instead of the 576
train+validation songs of the split, 1.25 times as many songs and artists. This probe measures
what that factor is worth, without touching the split's test songs: on the 576 train+validation
songs of split seed 0, 5-fold StratifiedGroupKFold by artist; in each fold a linear read-out of
the window's embedding statistics (mean and std of the musicnn embedding over the real steps,
as the model's pooled branch sees it; standardise → logistic regression, C = 0.01) is trained

* on the whole training fold (~461 songs), and
* on 80 % of it by artist (~369 songs; one inner group fold dropped),

and both are scored on the same held-out fold (macro-F1 of the pooled out-of-fold predictions).
Repeated over ``--seeds`` fold assignments; prints each repetition and the mean gain ± sd.

Run: ``.venv/bin/python -m research.probe_refit [--seeds 10]`` (features from the training
cache; a cold cache is extracted first, ~4–7 minutes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from research.common import DATA_DIR, load_seen, window_stats


def _fit_predict(x, y, tr, va, c: float) -> np.ndarray:
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
    return clf.fit(x[tr], y[tr]).predict(x[va])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--c", type=float, default=0.01)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    seen = load_seen(args.data_dir, args.jobs)
    x, y, groups = window_stats(seen["emb"], seen["mask"]), seen["label"], seen["group"]
    print(f"{len(y)} train+validation songs, {len(set(groups))} artists; C = {args.c}")
    print("| seed | train songs (full / 80 %) | macro-F1 full | macro-F1 80 % | gain |")
    print("|---|---|---|---|---|")
    gains = []
    for seed in range(args.seeds):
        full, part = np.zeros_like(y), np.zeros_like(y)
        sizes = []
        outer = StratifiedGroupKFold(5, shuffle=True, random_state=seed)
        for tr, va in outer.split(x, y, groups):
            full[va] = _fit_predict(x, y, tr, va, args.c)
            inner = StratifiedGroupKFold(5, shuffle=True, random_state=1000 + seed)
            keep, _ = next(inner.split(x[tr], y[tr], groups[tr]))
            part[va] = _fit_predict(x, y, tr[keep], va, args.c)
            sizes.append((len(tr), len(keep)))
        f_full, f_part = f1_score(y, full, average="macro"), f1_score(y, part, average="macro")
        gains.append(f_full - f_part)
        n_full, n_part = np.mean(sizes, axis=0)
        print(
            f"| {seed} | {n_full:.0f} / {n_part:.0f} | {f_full:.3f} | {f_part:.3f} | "
            f"{f_full - f_part:+.3f} |",
            flush=True,
        )
    print(f"gain from 1.25x the songs: {np.mean(gains):+.3f} ± {np.std(gains):.3f} (mean ± sd)")


if __name__ == "__main__":
    main()
