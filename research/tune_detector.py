"""Which change-detector settings follow the most song changes for the fewest false ones?

Model-free: the detector (``streammood.features.changes``) sees only each step's MFCC block and
openSMILE statistics, which do not depend on its settings, so the streams' features are
extracted once (``extract_offline`` without an embedder, cached under
``.cache/detector-tune/``) and every setting of the grid replays them. Only train+validation
songs of the model's split are used (its ``test_songs`` are never loaded):

* streams of those songs back to back (the evaluation's playlists, hard cuts and ``--xfade``
  crossfades): precision and recall of the detections (±3 s, as ``evaluate --stream``);
* single pieces: each of ``--long`` songs looped ``--repeat`` times (the loop points are cuts
  inside one song) and the DEAM sample's 45 s excerpts: every detection there is false.

Run::

    .venv/bin/python -m research.tune_detector [--songs 288] [--jobs 2]

and read the table: recall and precision on streams, false changes per hour of single pieces,
and the look-ahead (s) of each setting.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from research.common import CACHE, DATA_DIR, ROOT
from streammood.layout import STEP_SECONDS


def _features(y: np.ndarray, sr: int, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mfcc (n, 21, 20), lld (n, 260))`` of a signal, cached by ``key``."""
    from streammood.features.extractor import extract_offline
    from streammood.layout import FEATURE_VERSION

    path = CACHE / "detector-tune" / f"{key}-v{FEATURE_VERSION}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["mfcc"], z["lld"]
    feats = extract_offline(y, sr)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mfcc=feats.mfcc, lld=feats.lld)
    return feats.mfcc, feats.lld


def _stream_job(paths, labels, songs, xfade, seed):
    from streammood.audio.decode import load_audio
    from streammood.training.streams import STREAM_RATE, join_songs

    stream = join_songs([load_audio(p) for p in paths], labels, songs, xfade=xfade, seed=seed)
    key = hashlib.sha256(stream.y.tobytes()).hexdigest()[:20]
    mfcc, lld = _features(stream.y, STREAM_RATE, f"stream-{key}")
    return mfcc, lld, stream.starts[1:]


def _piece_job(path: str, repeat: int):
    from streammood.audio.decode import load_audio

    y, sr = load_audio(path)
    y = np.tile(y, repeat)
    key = hashlib.sha256(y.tobytes()).hexdigest()[:20]
    mfcc, lld = _features(y, sr, f"piece-{key}")
    return mfcc, lld, np.zeros(0)


def detections(detector, mfcc: np.ndarray, lld: np.ndarray) -> np.ndarray:
    """Stream seconds of the boundaries ``detector`` reports over one signal's steps."""
    detector.reset()
    out = []
    for t in range(len(lld)):
        lag = detector.step(mfcc[t], lld[t])
        if lag is not None:
            out.append((t - lag) * STEP_SECONDS)
    return np.asarray(out, np.float64)


def score(detector, streams, pieces) -> dict:
    """Recall and precision on ``streams``, false changes per hour of ``pieces``."""
    from streammood.training.streams import CHANGE_TOLERANCE, match_changes

    hit = det = true = 0
    for mfcc, lld, starts in streams:
        d = detections(detector, mfcc, lld)
        m, _ = match_changes(d, starts, CHANGE_TOLERANCE)
        hit, det, true = hit + m, det + len(d), true + len(starts)
    false = sum(len(detections(detector, m, v)) for m, v, _ in pieces)
    hours = sum(len(v) for _, v, _ in pieces) * STEP_SECONDS / 3600
    return {
        "recall": hit / true if true else 0.0,
        "precision": hit / det if det else 0.0,
        "false_per_hour": false / hours if hours else 0.0,
    }


def main() -> None:
    from streammood.features.changes import ChangeConfig, ChangeDetector
    from streammood.runtime.artifact import load_artifact
    from streammood.training.streams import fourq_songs, playlists

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "streammood-4q"))
    ap.add_argument("--data-dir", default=str(DATA_DIR))
    ap.add_argument("--songs", type=int, default=288, help="train+validation songs in streams")
    ap.add_argument("--xfade", type=float, default=4.0)
    ap.add_argument("--long", type=int, default=24, help="songs looped into long pieces")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--after", default="4,5,6")
    ap.add_argument("--before", default="8,12")
    ap.add_argument("--threshold", default="0.5,0.6,0.7,0.8,1.0")
    ap.add_argument("--peak", default="1")
    ap.add_argument("--min-segment", default="24")
    args = ap.parse_args()

    artifact = load_artifact(args.model)
    paths, labels = fourq_songs(Path(args.data_dir))
    test = set(artifact.manifest["training"]["test_songs"])
    train = sorted(s for s in labels if s not in test)
    rng = np.random.default_rng(7)
    songs = [train[i] for i in rng.permutation(len(train))[: args.songs]]
    long = songs[: args.long]
    jobs = []
    for xfade in (0.0, args.xfade):
        for k, pl in enumerate(playlists(songs, seed=3)):
            job = ([str(paths[s]) for s in pl], [labels[s] for s in pl], pl, xfade, 3000 + k)
            jobs.append((xfade, job))
    deam = sorted((Path(args.data_dir).parent / "deam-sample" / "MEMD_audio").glob("*.mp3"))
    pieces_args = [(str(paths[s]), args.repeat) for s in long] + [(str(p), 1) for p in deam]
    with ProcessPoolExecutor(args.jobs) as pool:
        stream_f = [pool.submit(_stream_job, *a) for _, a in jobs]
        piece_f = [pool.submit(_piece_job, *a) for a in pieces_args]
        streams = [f.result() for f in stream_f]
        pieces = [f.result() for f in piece_f]
    hard = [s for s, (x, _) in zip(streams, jobs, strict=True) if x == 0.0]
    faded = [s for s, (x, _) in zip(streams, jobs, strict=True) if x != 0.0]
    hours = sum(len(v) for _, v, _ in pieces) * STEP_SECONDS / 3600
    print(
        f"{len(hard)} + {len(faded)} streams of {len(songs)} train+validation songs; "
        f"{len(pieces)} single pieces ({hours:.2f} h)\n"
    )
    print(
        "| after | before | peak | threshold | min_segment | look-ahead s | hard R / P "
        "| xfade R / P | false per h |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with np.load(artifact.file("norm")) as z:
        stats = [z[k] for k in ("lld_mean", "lld_std", "mfcc_mean", "mfcc_std")]

    def ints(s: str) -> list[int]:
        return [int(v) for v in s.split(",")]

    grid = itertools.product(
        ints(args.after),
        ints(args.before),
        ints(args.peak),
        [float(v) for v in args.threshold.split(",")],
        ints(args.min_segment),
    )
    for after, before, peak, threshold, min_segment in grid:
        config = replace(
            ChangeConfig(),
            after=after,
            before=before,
            peak=peak,
            threshold=threshold,
            min_segment=min_segment,
            min_before=min(ChangeConfig().min_before, before),
        )
        detector = ChangeDetector(*stats, config)
        h = score(detector, hard, pieces)
        x = score(detector, faded, [])
        print(
            f"| {after} | {before} | {peak} | {threshold:g} | {min_segment} "
            f"| {config.lag * STEP_SECONDS:.1f} | {h['recall']:.2f} / {h['precision']:.2f} "
            f"| {x['recall']:.2f} / {x['precision']:.2f} | {h['false_per_hour']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
