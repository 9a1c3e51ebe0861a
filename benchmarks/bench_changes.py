"""False changes inside single songs, on pieces longer than the 30 s training clips.

The change detector (``streammood.features.changes``) must not cut songs into pieces. This plays
single pieces through the live path (``extract_offline``, then the change-aware runtime) and
counts every detected change as false:

* the DEAM sample's 45 s excerpts (``../shared/data/deam-sample/MEMD_audio``), other music
  than 4Q's;
* long pieces made of one 4Q test song played ``--repeat`` times back to back (2 min from a
  30 s clip; the loop points are cuts inside one song);
* the 4Q test songs alone (each clip is its own stream).

It also reports the detector's CPU time per step. Run::

    .venv/bin/python benchmarks/bench_changes.py [--model DIR] [--songs 24] [--repeat 4]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def count(artifact, signals) -> dict:
    """Changes detected in each ``(y, sr)`` signal (all false: one piece each)."""
    from streammood.features.changes import ChangeDetector
    from streammood.features.extractor import extract_offline
    from streammood.runtime.rolling import MoodRuntime

    detected, steps, cpu = 0, 0, 0.0
    for y, sr in signals:
        norm = artifact.file("norm")
        feats = extract_offline(y, sr, artifact.embedder(), detector=ChangeDetector.from_norm(norm))
        rt = MoodRuntime(artifact, detector=ChangeDetector.from_norm(norm))
        detected += sum(p.changed for s in feats.steps() for p in rt.push(s))
        steps += feats.n_steps
        cpu += rt.detect_seconds
    hours = steps * 0.5 / 3600
    return {
        "pieces": len(signals),
        "hours": round(hours, 4),
        "false_changes": detected,
        "per_hour": round(detected / hours, 2) if hours else None,
        "detector_ms_per_step": round(1000 * cpu / steps, 3) if steps else None,
    }


def main() -> None:
    from streammood.audio.decode import load_audio
    from streammood.runtime.artifact import load_artifact
    from streammood.training.streams import fourq_songs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--songs", type=int, default=24, help="4Q test songs to use")
    ap.add_argument("--repeat", type=int, default=4, help="plays of each song in a long piece")
    args = ap.parse_args()
    artifact = load_artifact(args.model)
    data = Path(args.data)
    started = time.perf_counter()
    deam = [load_audio(p) for p in sorted((data / "deam-sample" / "MEMD_audio").glob("*.mp3"))]
    paths, _ = fourq_songs(data / "4q")
    test = sorted(artifact.manifest["training"]["test_songs"])[: args.songs]
    clips = [load_audio(paths[s]) for s in test]
    long = [(np.tile(y, args.repeat), sr) for y, sr in clips[: max(1, args.songs // 4)]]
    out = {
        "deam_45s_excerpts": count(artifact, deam),
        f"4q_songs_x{args.repeat}": count(artifact, long),
        "4q_clips_alone": count(artifact, clips),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
