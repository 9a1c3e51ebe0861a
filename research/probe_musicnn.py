"""Linear probe on musicnn embeddings of the 4Q clips: which model (MSD, MTT, both), which pooling,
which patch hop.

For every clip of ``../shared/data/4q`` (720): 16 kHz log-mel (the musicnn recipe, float32,
``center=False``), patches of 187 frames on a 2 s hop (125 frames, the streaming design's
``EMBED_EVERY`` = 4 steps) and non-overlapping 3 s patches (187 frames), embedded with the
research LiteRT file ``models/musicnn/msd_mtt.tflite`` (MSD 0..199, MTT 200..399). Embeddings are
cached under ``.cache/musicnn-probe/``.

Per clip: mean (or mean and std) of the patch embeddings -> standardise -> logistic regression;
5-fold StratifiedGroupKFold **by artist**, repeated over seeds; macro-F1 of the pooled predictions
of each repetition, mean and spread over repetitions.

Run: ``.venv/bin/python -m research.probe_musicnn [--data-dir ../shared/data/4q] [--threads 1]``
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from research.common import (
    CACHE,
    DATA_DIR,
    MSD_MTT_TFLITE,
    log_mel,
    mean_sd,
    patches,
    probe,
    read_clips,
)
from streammood.features.embedding import MusicnnEmbedder
from streammood.layout import MEL_PATCH_FRAMES

HOPS = {"2s": 125, "3s": MEL_PATCH_FRAMES}
"""Patch hops in mel frames: 2 s (125 frames of 16 ms) and 3 s (non-overlapping)."""
CS = (0.003, 0.01, 0.03)
"""Inverse L2 strengths of the logistic regression (weak C wins on standardised embeddings)."""
PARTS = {"MSD": slice(0, 200), "MTT": slice(200, 400), "MSD+MTT": slice(0, 400)}


def embed_all(clips, tflite: Path, cache: Path, threads: int) -> dict[str, dict[str, np.ndarray]]:
    embedder = MusicnnEmbedder(tflite, num_threads=threads)
    out = {}
    t0 = time.perf_counter()
    n_new = 0
    for i, (song, _, _, path) in enumerate(clips):
        file = cache / f"{song}.npz"
        if file.is_file():
            with np.load(file) as z:
                out[song] = {k: z[k] for k in HOPS}
            continue
        logmel = log_mel(path)
        out[song] = {k: embedder.embed(patches(logmel, hop)) for k, hop in HOPS.items()}
        np.savez(file, **out[song])
        n_new += 1
        if n_new % 20 == 0 or i == len(clips) - 1:
            rate = (time.perf_counter() - t0) / n_new
            print(
                f"  embedded {i + 1}/{len(clips)} clips, {rate:.2f} s/clip, "
                f"~{rate * (len(clips) - i - 1) / 60:.1f} min left",
                flush=True,
            )
    return out


def clip_features(
    emb: dict[str, dict[str, np.ndarray]], songs, hop: str, part: str, pooling: str
) -> np.ndarray:
    rows = []
    for song in songs:
        e = emb[song][hop][:, PARTS[part]]
        rows.append(np.concatenate([e.mean(0), e.std(0)]) if pooling == "mean+std" else e.mean(0))
    return np.asarray(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--tflite", type=Path, default=MSD_MTT_TFLITE)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="probe only the clips already in the cache (a quick early look)",
    )
    args = parser.parse_args()

    clips = read_clips(args.data_dir)
    digest = hashlib.sha256(args.tflite.read_bytes()).hexdigest()[:10]
    cache = CACHE / "musicnn-probe" / f"{args.tflite.stem}-{digest}"
    if args.cached_only:
        clips = [c for c in clips if (cache / f"{c[0]}.npz").is_file()]
    print(f"{len(clips)} clips, {len({c[1] for c in clips})} artists in {args.data_dir}")
    cache.mkdir(parents=True, exist_ok=True)
    print(f"embedding cache: {cache}")
    emb = embed_all(clips, args.tflite, cache, args.threads)

    songs = [c[0] for c in clips]
    y = np.array([c[2] for c in clips])
    groups = np.array([c[1] for c in clips])
    print(f"\nmacro-F1, 5-fold StratifiedGroupKFold by artist, mean ± sd over {args.seeds} seeds")
    print(f"{'hop':<4} {'model':<8} {'pooling':<9} " + " ".join(f"{'C=' + str(c):>13}" for c in CS))
    for hop in HOPS:
        for part in PARTS:
            for pooling in ("mean", "mean+std"):
                x = clip_features(emb, songs, hop, part, pooling)
                cells = [mean_sd(probe(x, y, groups, c, args.seeds)) for c in CS]
                print(
                    f"{hop:<4} {part:<8} {pooling:<9} " + " ".join(f"{c:>13}" for c in cells),
                    flush=True,
                )


if __name__ == "__main__":
    main()
