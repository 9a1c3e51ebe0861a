"""Speed of ``analyze`` on one long file: x real time, CPU and where the time goes, features on one
thread (before) and on two (after, the default).

Builds ``--minutes`` of real 4Q music (clips of the four quadrants in turn, joined) and writes it
to a temporary 22.05 kHz WAV and, with ffmpeg on the PATH, a 128 kbit/s MP3. Each run is a cold
process (``python bench_analyze.py --child``) that does what ``streammood analyze FILE --out
t.csv -j 1`` does (``load_artifact``, ``analyze_files`` in-process, ``write_timelines``), with
``extract_offline`` held at ``--threads`` 1 or 2 and its parts timed by wrapping them: decode
(``load_audio``), framer, mel patches, embedding, openSMILE, MFCC (wall and thread CPU of each;
with two threads the parts overlap, so their walls add up to more than the features' wall), and
the model (the timeline minus the features). The parent measures the process's wall clock (start
and imports included) and CPU (``RUSAGE_CHILDREN``) and checks that both modes wrote the same
CSV. Rounds are interleaved (before, after, per file); medians are printed.

    .venv/bin/python benchmarks/bench_analyze.py [--minutes 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "4q"
PARTS = ("decode", "framer", "mel", "embed", "smile", "mfcc")


def build(minutes: float, folder: Path) -> list[Path]:
    """``minutes`` of joined 4Q clips as ``long.wav`` (and ``long.mp3`` when ffmpeg is there)."""
    import numpy as np
    import soundfile as sf

    from streammood.audio.decode import load_audio

    lists = [sorted((DATA / q).glob("*.mp3")) for q in ("Q1", "Q2", "Q3", "Q4")]
    parts, total, i = [], 0.0, 0
    while total < minutes * 60:
        y, sr = load_audio(lists[i % 4][i // 4])
        assert sr == 22_050
        parts.append(y)
        total += len(y) / sr
        i += 1
    y = np.concatenate(parts)[: int(minutes * 60 * 22_050)]
    wav = folder / "long.wav"
    sf.write(wav, np.clip(y, -1, 1), 22_050, subtype="PCM_16")
    out = [wav]
    if shutil.which("ffmpeg"):
        mp3 = folder / "long.mp3"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "128k", str(mp3)], check=True
        )
        out.append(mp3)
    return out


def child(path: str, threads: int, out: str) -> None:
    """One cold ``analyze`` of ``path``; prints the split as one JSON line."""
    import threading
    from collections import defaultdict

    t_start = time.perf_counter()
    import streammood.features.extractor as extractor
    import streammood.workers.analyze as analyze
    from streammood.audio.framer import Framer
    from streammood.features.embedding import MusicnnEmbedder
    from streammood.runtime.artifact import load_artifact

    wall: dict[str, float] = defaultdict(float)
    cpu: dict[str, float] = defaultdict(float)
    lock = threading.Lock()

    def timed(name, fn):
        def run(*a, **k):
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                with lock:
                    wall[name] += time.perf_counter() - t
                    cpu[name] += time.thread_time() - c

        return run

    analyze.load_audio = timed("decode", analyze.load_audio)
    extractor.lld_offline = timed("smile", extractor.lld_offline)
    extractor.mfcc_offline = timed("mfcc", extractor.mfcc_offline)
    extractor._PatchWork._cut = timed("mel", extractor._PatchWork._cut)
    MusicnnEmbedder.embed = timed("embed", MusicnnEmbedder.embed)
    Framer.push = timed("framer", Framer.push)
    Framer.finish = timed("framer", Framer.finish)
    extract = analyze.extract_offline

    def features(y, sr, embedder=None, *, detector=None, **_):
        return extract(y, sr, embedder, threads=threads, detector=detector)

    analyze.extract_offline = timed("features", features)
    analyze.timeline_of_signal = timed("timeline", analyze.timeline_of_signal)
    c0 = time.process_time()
    artifact = load_artifact()
    timelines, errors = analyze.analyze_files([path], artifact, jobs=1)
    assert not errors, errors
    analyze.write_timelines(timelines, Path(out))
    split = {k: [wall[k], cpu[k]] for k in wall}
    split["model"] = [wall["timeline"] - wall["features"], float("nan")]
    split["in_process"] = [time.perf_counter() - t_start, time.process_time() - c0]
    print(json.dumps({"audio_s": float(timelines[0].t_end[-1]), "split": split}))


def run_child(path: Path, threads: int, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--threads", str(threads),
         "--out", str(out)],
        capture_output=True, text=True, check=False,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall"] = wall
    res["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads, args.out)
        return

    folder = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    try:
        files = build(args.minutes, folder)
        print(f"{args.minutes:g} min of 4Q clips joined: {', '.join(p.name for p in files)}; "
              f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the start")
        results: dict[tuple[str, int], list[dict]] = {}
        for r in range(args.rounds):
            for path in files:
                for threads in (1, 2):
                    out = folder / f"{path.stem}-{path.suffix[1:]}-{threads}.csv"
                    res = run_child(path, threads, out)
                    results.setdefault((path.suffix, threads), []).append(res)
                    print(f"round {r + 1} {path.name} threads={threads}: wall {res['wall']:.2f} s, "
                          f"{res['audio_s'] / res['wall']:.1f}x real time, CPU {res['cpu']:.2f} s "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)
            for path in files:
                a = (folder / f"{path.stem}-{path.suffix[1:]}-1.csv").read_bytes()
                b = (folder / f"{path.stem}-{path.suffix[1:]}-2.csv").read_bytes()
                assert a == b, f"{path.name}: the timelines of one and two threads differ"
        print("\nthe CSV of one and two threads is byte-identical for every file and round")
        print(f"\nmedians of {args.rounds} rounds (cold process: wall includes start-up and "
              "imports; parts: wall / thread CPU, s)")
        for path in files:
            med = {}
            for threads in (1, 2):
                runs = results[(path.suffix, threads)]
                audio = runs[0]["audio_s"]
                w = statistics.median(x["wall"] for x in runs)
                c = statistics.median(x["cpu"] for x in runs)
                med[threads] = w
                parts = "  ".join(
                    f"{k} {statistics.median(x['split'].get(k, [0, 0])[0] for x in runs):.2f}"
                    f"/{statistics.median(x['split'].get(k, [0, 0])[1] for x in runs):.2f}"
                    for k in PARTS
                )
                feats = statistics.median(x["split"]["features"][0] for x in runs)
                model = statistics.median(x["split"]["model"][0] for x in runs)
                label = "before (1 thread) " if threads == 1 else "after (2 threads) "
                print(f"{path.name} {label}: {audio / w:6.1f}x real time  wall {w:6.2f} s  "
                      f"CPU {c:6.2f} s  features {feats:.2f} s ({audio / feats:.1f}x)  "
                      f"model {model:.2f} s")
                print(f"    {parts}")
            print(f"{path.name}: after / before wall {med[2] / med[1]:.2f} "
                  f"(speed-up {med[1] / med[2]:.2f}x)")
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
