"""Per-patch cost of the pretrained branch: LiteRT (1 and 2 threads) vs ``tf.function``.

Models: musicnn MSD alone, MTT alone, the MSD VGG alone, both musicnn models in one graph
(``models/musicnn/msd_mtt.tflite``) and all three (the product's
``models/musicnn/msd_mtt_vgg.tflite``), and any ``--extra`` LiteRT embedder (e.g. a student from
``scripts/distill_embedder.py``; LiteRT only).
Input: real 3 s log-mel patches of a 4Q clip (random values when the data is absent). Each
configuration is timed in interleaved rounds (so load from other processes hits all alike); the
figures are medians of single calls at batch 1, plus a batch-16 call per patch.

Run: ``.venv/bin/python benchmarks/bench_musicnn.py [--rounds 10] [--calls 5] [--extra FILE]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from research.common import MSD_MTT_TFLITE  # noqa: E402
from streammood.features.embedding import MSD_MTT_VGG_TFLITE, MusicnnEmbedder  # noqa: E402
from streammood.layout import EMBED_EVERY, MEL_BANDS, MEL_PATCH_FRAMES  # noqa: E402

CHOICES = {
    "MSD": ("MSD",),
    "MTT": ("MTT",),
    "VGG": ("MSD_vgg",),
    "MSD+MTT": ("MSD", "MTT"),
    "MSD+MTT+VGG": ("MSD", "MTT", "MSD_vgg"),
}


def real_patches(n: int) -> np.ndarray:
    """``(n, 187, 96)`` log-mel patches from the first 4Q clip (random if the data is absent)."""
    clips = sorted((ROOT.parent / "shared" / "data" / "4q" / "Q1").glob("*.mp3"))
    if not clips:
        print("(no 4Q data: random patches)")
        return np.random.default_rng(0).uniform(0, 3, (n, MEL_PATCH_FRAMES, MEL_BANDS)).astype(
            np.float32)
    import librosa

    from streammood.features.mel import log_mel_frames

    y, _ = librosa.load(clips[0], sr=16_000)
    frames = log_mel_frames(y)
    starts = np.linspace(0, len(frames) - MEL_PATCH_FRAMES, n).astype(int)
    return np.stack([frames[s:s + MEL_PATCH_FRAMES] for s in starts])


def tflite_files(cache: Path) -> dict[str, Path]:
    """The shipped combined files and single-model files (built once into ``cache``)."""
    from streammood.training.musicnn import build_embedder, export_tflite

    files = {"MSD+MTT": MSD_MTT_TFLITE, "MSD+MTT+VGG": MSD_MTT_VGG_TFLITE}
    for name in ("MSD", "MTT", "VGG"):
        path = cache / f"{name.lower()}.tflite"
        if not path.is_file():
            export_tflite(build_embedder(CHOICES[name]), path)
        files[name] = path
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per round")
    parser.add_argument("--tf-threads", type=int, default=1, help="TensorFlow intra-op threads")
    parser.add_argument("--extra", type=Path, action="append", default=[],
                        help="another LiteRT embedder to time (its file name is its label)")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from streammood.training.musicnn import build_embedder

    patches = real_patches(16)
    files = tflite_files(ROOT / ".cache" / "musicnn-bench")

    runners = {}
    for path in args.extra:
        files[path.stem] = path
        for threads in (1, 2):
            emb = MusicnnEmbedder(path, num_threads=threads)
            runners[f"LiteRT fp32, {threads} thread{'s' * (threads > 1)}", path.stem] = emb.embed
    for name, which in CHOICES.items():
        for threads in (1, 2):
            emb = MusicnnEmbedder(files[name], num_threads=threads)
            runners[f"LiteRT fp32, {threads} thread{'s' * (threads > 1)}", name] = emb.embed
        model = build_embedder(which)
        fn = tf.function(lambda x, m=model: m(x, training=False), reduce_retracing=True)
        runners[f"tf.function, {args.tf_threads} thread{'s' * (args.tf_threads > 1)}", name] = (
            lambda x, f=fn: f(tf.constant(x)).numpy())

    batch1 = {key: [] for key in runners}
    batch16 = {key: [] for key in runners}
    for run in runners.values():  # warm-up: graph tracing, tensor allocation
        run(patches[:1])
        run(patches)
        run(patches[:1])
    for r in range(args.rounds):
        for key, run in runners.items():
            for i in range(args.calls):
                x = patches[(r * args.calls + i) % len(patches)][None]
                t0 = time.perf_counter()
                run(x)
                batch1[key].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run(patches)
            batch16[key].append((time.perf_counter() - t0) / len(patches))
            run(patches[:1])  # back to batch 1 outside the timing (LiteRT re-allocates)
        print(f"  round {r + 1}/{args.rounds}", end="\r", flush=True)

    print(f"\npretrained embedders per 3 s patch, median over {args.rounds * args.calls} calls "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    ref = {name: np.median(batch1[key]) for key in runners for name in [key[1]]
           if key[0].startswith("LiteRT fp32, 1 thread")}
    print(f"{'runtime':<24} {'model':<12} {'batch 1 ms':>10} {'batch 16 ms/patch':>18} "
          f"{'vs LiteRT 1 thr':>15} {'per step ms (1 patch / ' + str(EMBED_EVERY) + ' steps)':>30}")
    for key in sorted(runners, key=lambda k: (k[1], k[0])):
        b1 = np.median(batch1[key]) * 1e3
        b16 = np.median(batch16[key]) * 1e3
        print(f"{key[0]:<24} {key[1]:<12} {b1:>10.1f} {b16:>18.1f} {b1 / ref[key[1]] / 1e3:>15.2f} "
              f"{b1 / EMBED_EVERY:>30.1f}")


if __name__ == "__main__":
    main()
