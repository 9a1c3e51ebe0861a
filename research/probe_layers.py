"""Linear probe: which pretrained layer carries the most mood? musicnn's penultimate layer, its
pooled mid end or its tags; the VGG tagger's last pooled map; and their combinations.

musicnn's penultimate layer has 200 values, the bottleneck before the 50 tag logits. The layer
below it, the temporal max and mean of the 753-channel front + mid end (``pooled``, 1506 values),
is wider and less specialised to the tagging task; the tag probabilities (50) are the narrowest.
The wheel's VGG-like MSD tagger is another architecture trained on the same tags; its last pooled
feature map (256 values) is what feeds its tag layer. This probe embeds every 4Q clip with the
Keras ports (:func:`streammood.training.musicnn.load_musicnn`: MSD and MTT musicnn, MSD VGG) on
non-overlapping 3 s patches, caches the layers under ``.cache/musicnn-layers/`` (a model missing
from a cached clip is added to it), and per clip pools the patches (mean, or mean and std) →
standardise → logistic regression.

Only the train+validation songs of split seed 0 are probed (the test songs are never loaded):
5-fold StratifiedGroupKFold by artist, repeated over seeds; macro-F1 of each repetition's pooled
out-of-fold predictions, mean ± sd.

Run: ``.venv/bin/python -m research.probe_layers [--data-dir ../shared/data/4q] [--only VGG]``
(~15–25 minutes cold on two cores, ~15 minutes with the embeddings cached).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from research.common import CACHE, DATA_DIR, log_mel, mean_sd, patches, probe, read_clips
from streammood.datasets.splits import split_by_group
from streammood.layout import MEL_PATCH_FRAMES

LAYERS = {
    "MSD": ("embedding", "pooled", "tags"),
    "MTT": ("embedding", "pooled", "tags"),
    "MSD_vgg": ("embedding", "tags"),
}
"""The layers probed of each model (the VGG has no pooled mid end)."""
CS = (0.001, 0.003, 0.01)


def embed_all(clips, cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per song: ``{"MSD/embedding": (k, 200), "MSD/pooled": (k, 1506), ...}`` over its patches."""
    from streammood.training.musicnn import load_musicnn

    models = {}
    out = {}
    t0, n_new = time.perf_counter(), 0
    for i, (song, _, _, path) in enumerate(clips):
        file = cache / f"{song}.npz"
        arrays = {}
        if file.is_file():
            with np.load(file) as z:
                arrays = {k: z[k] for k in z.files}
        missing = [w for w in LAYERS if f"{w}/embedding" not in arrays]
        if missing:
            x = patches(log_mel(path), MEL_PATCH_FRAMES)
            for which in missing:
                if which not in models:
                    models[which] = load_musicnn(which)
                y = models[which].predict_on_batch(x)
                arrays.update({f"{which}/{k}": np.asarray(y[k]) for k in LAYERS[which]})
            np.savez(file, **arrays)
            n_new += 1
            if n_new % 20 == 0:
                rate = (time.perf_counter() - t0) / n_new
                print(f"  embedded {i + 1}/{len(clips)}, {rate:.2f} s/clip", flush=True)
        out[song] = arrays
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--only", nargs="+", metavar="SUBSTRING", help="probe only the rows whose name contains one"
    )
    args = parser.parse_args()

    clips = read_clips(args.data_dir)
    labels = np.array([c[2] for c in clips])
    artists = np.array([c[1] for c in clips])
    seen, _ = split_by_group(labels, artists, 0.2, 0)
    clips = [clips[i] for i in seen]
    cache = CACHE / "musicnn-layers"
    cache.mkdir(parents=True, exist_ok=True)
    emb = embed_all(clips, cache)
    y, groups = labels[seen], artists[seen]
    songs = [c[0] for c in clips]
    print(f"{len(songs)} train+validation songs, {len(set(groups))} artists")

    def features(keys: list[str], pooling: str) -> np.ndarray:
        rows = []
        for song in songs:
            parts = []
            for key in keys:
                e = emb[song][key]
                parts += [e.mean(0), e.std(0)] if pooling == "mean+std" else [e.mean(0)]
            rows.append(np.concatenate(parts))
        return np.asarray(rows)

    combos = {
        "MSD penultimate": ["MSD/embedding"],
        "MSD+MTT penultimate": ["MSD/embedding", "MTT/embedding"],
        "MSD pooled": ["MSD/pooled"],
        "MTT pooled": ["MTT/pooled"],
        "MSD+MTT pooled": ["MSD/pooled", "MTT/pooled"],
        "MSD+MTT tags": ["MSD/tags", "MTT/tags"],
        "MSD penultimate+pooled": ["MSD/embedding", "MSD/pooled"],
        "MSD+MTT penultimate+tags": ["MSD/embedding", "MTT/embedding", "MSD/tags", "MTT/tags"],
        "MSD VGG pooled map": ["MSD_vgg/embedding"],
        "MSD VGG tags": ["MSD_vgg/tags"],
        "MSD penultimate + MSD VGG": ["MSD/embedding", "MSD_vgg/embedding"],
        "MSD+MTT penultimate + MSD VGG": ["MSD/embedding", "MTT/embedding", "MSD_vgg/embedding"],
    }
    print("| layer | pooling | dims | " + " | ".join(f"C={c}" for c in CS) + " |")
    print("|---|---|---|" + "---|" * len(CS))
    for name, keys in combos.items():
        if args.only and not any(part in name for part in args.only):
            continue
        for pooling in ("mean", "mean+std"):
            x = features(keys, pooling)
            cells = [mean_sd(probe(x, y, groups, c, args.seeds)) for c in CS]
            print(f"| {name} | {pooling} | {x.shape[1]} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
