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

Run: ``.venv/bin/python -m research.probe_pooled [--data-dir ../shared/data/4q]`` (features
come from the training cache; a cold cache is extracted first, ~4–7 minutes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from research.common import DATA_DIR, feature_stats, load_seen, mean_sd, probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
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
