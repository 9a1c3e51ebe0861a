"""Feature extraction of the 4Q training set, cold (no cache) and warm (every clip a cache hit).

Cold: every clip of ``--data-dir`` (720 in ``../shared/data/4q``) is decoded and its per-step
features (MFCC blocks, openSMILE LLD statistics, musicnn embeddings every 4th step on LiteRT) are
extracted with ``--jobs`` processes into a fresh temporary cache folder. Its entries are then
moved into ``--cache`` (default ``.cache/features``, the folder training reads), and the warm runs
load them all from there (content hash + ``.npz`` read per clip). Prints seconds in total, per
clip, and the cold / warm ratio (warm: median of ``--warm-repeats`` runs).

Run: ``.venv/bin/python benchmarks/bench_extraction.py [--data-dir ../shared/data/4q] [--jobs N]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streammood.datasets.cache import FeatureCache, extract_clips  # noqa: E402
from streammood.datasets.fourq import FOURQ_QUADRANT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "4q")
    parser.add_argument("--cache", type=Path, default=Path(".cache/features"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--limit", type=int, default=0, help="only the first N clips (0: all)")
    parser.add_argument("--warm-repeats", type=int, default=3)
    args = parser.parse_args()

    paths = sorted(p for q in FOURQ_QUADRANT for p in (args.data_dir / q).glob("*.mp3"))
    if args.limit:
        paths = paths[: args.limit]
    n = len(paths)
    print(f"{n} clips from {args.data_dir}; {args.jobs} processes; {os.cpu_count()} CPUs; "
          f"{platform.processor() or platform.machine()}")

    args.cache.parent.mkdir(parents=True, exist_ok=True)
    cold_root = Path(tempfile.mkdtemp(prefix="bench-cold-", dir=args.cache.parent))
    try:
        cold_cache = FeatureCache(cold_root)
        print(f"embedder: {cold_cache.embedder_model}")
        t0 = time.perf_counter()
        clips = extract_clips(paths, cold_cache, jobs=args.jobs)
        cold = time.perf_counter() - t0
        assert cold_cache.computed == len(clips) and cold_cache.hits == 0
        steps = sum(c.n_steps for c in clips)
        args.cache.mkdir(parents=True, exist_ok=True)
        for entry in cold_root.glob("*.npz"):
            os.replace(entry, args.cache / entry.name)
    finally:
        shutil.rmtree(cold_root, ignore_errors=True)

    warm_runs = []
    for _ in range(args.warm_repeats):
        warm_cache = FeatureCache(args.cache)
        t0 = time.perf_counter()
        extract_clips(paths, warm_cache, jobs=args.jobs, progress=False)
        warm_runs.append(time.perf_counter() - t0)
        assert warm_cache.computed == 0 and warm_cache.hits == len(clips)
    warm = statistics.median(warm_runs)

    print()
    print(f"clips extracted: {len(clips)} of {n} ({cold_cache.failed} skipped), {steps} steps")
    print(f"cold (no cache):  {cold:8.1f} s total  {1000 * cold / n:8.1f} ms per clip  "
          f"({1000 * cold / steps:.2f} ms per step, wall clock with {args.jobs} processes)")
    print(f"warm (cache hit): {warm:8.2f} s total  {1000 * warm / n:8.2f} ms per clip  "
          f"(median of {len(warm_runs)}: {', '.join(f'{w:.2f}' for w in warm_runs)} s)")
    print(f"cold / warm: {cold / warm:.0f}x")
    size = sum(p.stat().st_size for p in args.cache.glob("*.npz"))
    print(f"cache: {args.cache.resolve()} ({len(list(args.cache.glob('*.npz')))} entries, "
          f"{size / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
