"""Linear probe: how much mood is lost with fewer pretrained patches (a patch every 20th step)?

The embedding costs most of a step's CPU (a 3 s patch every :data:`EMBED_EVERY` steps). This
asks, before any retraining, what a sparser schedule would cost: from the training cache (layout
v6: patches at step 0, 5, every 10th step and at detected changes), the embeddings a schedule of
``0, 5`` and every ``--every``-th step would hold are derived exactly (each step holds the
latest patch of the sparser schedule; detected-change patches are kept), then window statistics
(mean and std over the first ``k`` steps of each clip: ``k`` = 10, 20, 60, so early opinions
count too) of the embedding with the openSMILE and MFCC statistics → standardise → logistic
regression; 5-fold StratifiedGroupKFold by artist over the train+validation songs of split 0
(the test songs are never loaded), macro-F1 mean ± sd over seeds.

Run: ``.venv/bin/python -m research.probe_cadence [--every 20,30] [--seeds 3]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from research.common import DATA_DIR, load_seen, mean_sd, probe, window_stats
from streammood.layout import EARLY_PATCH_STEP, EMBED_EVERY


def patch_mask(emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(N, T)`` bool: the steps whose embedding is a fresh patch (it differs from the step
    before, or is the first real step)."""
    fresh = np.ones(mask.shape, bool)
    fresh[:, 1:] = np.any(emb[:, 1:] != emb[:, :-1], axis=2)
    return fresh & mask


def sparser(emb: np.ndarray, mask: np.ndarray, every: int) -> np.ndarray:
    """The held embeddings of a schedule with a patch every ``every`` steps (and at step 0,
    :data:`EARLY_PATCH_STEP` and the detected changes, as now): ``(N, T, D)``."""
    fresh = patch_mask(emb, mask)
    t = np.arange(emb.shape[1])
    scheduled = (t % EMBED_EVERY == 0) | (t == EARLY_PATCH_STEP)
    keep = fresh & ~(scheduled & (t % every != 0) & (t != EARLY_PATCH_STEP))[None, :]
    out = emb.copy()
    for i in range(len(emb)):
        last = 0
        for s in range(emb.shape[1]):
            if keep[i, s]:
                last = s
            out[i, s] = emb[i, last]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--every", default="20,30", help="sparser cadences to compare")
    parser.add_argument("--c", type=float, default=0.01, help="inverse L2 strength")
    args = parser.parse_args()

    seen = load_seen(args.data_dir, args.jobs)
    mask = seen["mask"].astype(bool)
    other = [seen["lld"], seen["mfcc"].mean(axis=2)]
    cadences = [EMBED_EVERY] + [int(v) for v in args.every.split(",")]
    embs = {c: seen["emb"] if c == EMBED_EVERY else sparser(seen["emb"], mask, c) for c in cadences}
    print(f"{len(seen['label'])} train+validation songs, {len(set(seen['group']))} artists")
    print("| patch every | patches per clip | first 10 steps | first 20 steps | all 60 steps |")
    print("|---|---|---|---|---|")
    for c in cadences:
        fresh = patch_mask(embs[c], mask).sum(axis=1).mean()
        cells = []
        for k in (10, 20, 60):
            m = mask.copy()
            m[:, k:] = False
            x = np.concatenate([window_stats(a[:, :k], m[:, :k]) for a in [embs[c], *other]], 1)
            cells.append(mean_sd(probe(x, seen["label"], seen["group"], args.c, args.seeds)))
        print(f"| {c} | {fresh:.1f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
