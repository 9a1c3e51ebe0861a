"""Cost of the feature pipeline per 500 ms step: streaming path vs the naive per-chunk reference.

Streaming path (what ``listen`` runs): ``StreamingExtractor`` fed 50 ms blocks: framer (streaming
soxr resampling to 22 050 / 16 000 Hz), MFCC block, musicnn mel patch (rolling), openSMILE LLDs +
deltas through the SMILEapi engine, written ahead of the steps. Its stages are timed by wrapping
the extractor's own collaborators; it also prints the step lag: how much audio past a step's end
had been pushed when the push returned that step (the latency the features add, in audio).
Naive reference (measured in the same run): per step, librosa MFCC on the step plus its history,
and ``opensmile.Smile.process_signal`` on the step with 2 s of prepended context, once for LLDs
and once for deltas (two Smile objects). For reference also openSMILE on the whole file.

CPU is process CPU time (``time.process_time``: all threads, openSMILE's included); wall is
``time.perf_counter``. Medians over every step of a few minutes of real 4Q music (clips
concatenated). OpenBLAS is limited to one thread (unless OPENBLAS_NUM_THREADS is set): our code
makes no BLAS call, but librosa's MFCC in the naive path does, and on a 2-core machine OpenBLAS
threads spinning against openSMILE's thread would inflate the naive figures.

    .venv/bin/python benchmarks/bench_features.py [--clips 6] [--naive-steps 120] [--block-ms 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "4q"


def _music(n_clips: int) -> tuple[np.ndarray, int]:
    from streammood.audio.decode import load_audio

    clips = [sorted((DATA / q).glob("*.mp3"))[i] for i in range(n_clips) for q in ("Q1", "Q2")]
    ys, sr = [], None
    for path in clips[:n_clips]:
        y, sr = load_audio(path)
        ys.append(y)
    return np.concatenate(ys), int(sr)


class Clock:
    """Accumulate (cpu, wall) seconds per named stage for the current step."""

    def __init__(self) -> None:
        self.rows: list[dict[str, tuple[float, float]]] = []

    def new_step(self) -> None:
        self.rows.append({})

    def time(self, stage: str, fn, *args):
        c0, w0 = time.process_time(), time.perf_counter()
        out = fn(*args)
        c1, w1 = time.process_time(), time.perf_counter()
        c, w = self.rows[-1].get(stage, (0.0, 0.0))
        self.rows[-1][stage] = (c + c1 - c0, w + w1 - w0)
        return out

    def median(self, stage: str, which: int) -> float:
        return 1000 * statistics.median(r.get(stage, (0.0, 0.0))[which] for r in self.rows)

    def total_median(self, which: int) -> float:
        return 1000 * statistics.median(sum(v[which] for v in r.values()) for r in self.rows)


def streaming(y: np.ndarray, sr: int, block_ms: float) -> tuple[Clock, float, float, list[float]]:
    """Run the live extractor over ``block_ms`` blocks; per-step (500 ms of input) clock of its
    stages, whole-run CPU and wall seconds, and each step's lag in ms of audio.

    The stages are timed by wrapping the extractor's own collaborators (its framer, mel patcher
    and openSMILE engine, on this instance only); the MFCC block, a pure function called inside
    the extractor, is timed on the same steps afterwards (:func:`mfcc_steps`)."""
    from streammood.features.extractor import StreamingExtractor

    clock = Clock()
    ex = StreamingExtractor(sr)
    for obj, name, stage in (
        (ex.framer, "push", "resample"),
        (ex.framer, "finish", "resample"),
        (ex._mel, "push", "mel"),
        (ex._smile, "push", "lld"),
    ):
        fn = getattr(obj, name)
        setattr(obj, name, lambda *a, fn=fn, stage=stage: clock.time(stage, fn, *a))
    block = max(1, round(sr * block_ms / 1000))
    step_in = sr / 2
    lags: list[float] = []
    try:
        c0, w0 = time.process_time(), time.perf_counter()
        for i in range(0, len(y), block):
            if not clock.rows or i // step_in != (i - block) // step_in:
                clock.new_step()
            for f in ex.push(y[i : i + block]):
                lags.append(1000 * (ex.samples_in - f.t_end * sr) / sr)
        ex.finish()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        ex.close()
    for row, mfcc in zip(clock.rows, mfcc_steps(y, sr).rows, strict=False):
        row.update(mfcc)
    return clock, cpu, wall, lags


def mfcc_steps(y: np.ndarray, sr: int) -> Clock:
    """The streaming MFCC block (``mfcc_block`` on each step and its history), timed per step."""
    from streammood.audio.framer import frame_signal
    from streammood.features.mfcc import mfcc_block
    from streammood.layout import MFCC_HISTORY

    clock = Clock()
    history = np.zeros(MFCC_HISTORY, np.float32)
    for step in frame_signal(y, sr):
        clock.new_step()
        clock.time("mfcc", mfcc_block, history, step.y22)
        history = step.y22[-MFCC_HISTORY:]
    return clock


def naive(y: np.ndarray, sr: int, n_steps: int) -> Clock:
    """The per-chunk reference: librosa MFCC + two openSMILE process_signal calls with 2 s
    context, on the same framed steps."""
    import opensmile

    from streammood.audio.framer import frame_signal
    from streammood.layout import MFCC_HISTORY

    steps = frame_signal(y[: int(sr * 0.5 * (n_steps + 1))], sr)[:n_steps]
    lld = opensmile.Smile(
        opensmile.FeatureSet.ComParE_2016, opensmile.FeatureLevel.LowLevelDescriptors
    )
    lld_de = opensmile.Smile(
        opensmile.FeatureSet.ComParE_2016, opensmile.FeatureLevel.LowLevelDescriptors_Deltas
    )
    y22 = np.concatenate([np.zeros(MFCC_HISTORY, np.float32)] + [s.y22 for s in steps])
    y16 = np.concatenate([np.zeros(32000, np.float32)] + [s.y16 for s in steps])
    y16 = np.clip(y16, -1.0, 32767 / 32768)
    clock = Clock()
    for k in range(len(steps)):
        clock.new_step()
        chunk22 = y22[k * 11025 : (k + 1) * 11025 + MFCC_HISTORY]
        clock.time("mfcc", _librosa_mfcc, chunk22)
        chunk16 = y16[k * 8000 : k * 8000 + 40000]  # 2 s context + the step
        clock.time("lld", lld.process_signal, chunk16, 16000)
        clock.time("lld", lld_de.process_signal, chunk16, 16000)
    return clock


def _librosa_mfcc(y: np.ndarray) -> np.ndarray:
    import librosa

    return librosa.feature.mfcc(y=y, sr=22050, n_mfcc=20, n_fft=2048, hop_length=525, center=False)


def whole_file(y: np.ndarray, sr: int) -> dict[str, float]:
    """openSMILE on the whole signal: our one-configuration engine and the package's two passes;
    and the complete offline extractor. CPU ms per step."""
    import opensmile

    from streammood.audio.framer import frame_signal
    from streammood.features.extractor import extract_offline
    from streammood.features.smile import lld_offline

    steps = frame_signal(y, sr)
    y16 = np.clip(np.concatenate([s.y16 for s in steps]), -1.0, 32767 / 32768)
    n = len(steps)
    out = {}
    c = time.process_time()
    lld_offline(y16, n)
    out["openSMILE whole file, one configuration (LLD + deltas)"] = time.process_time() - c
    c = time.process_time()
    for level in (
        opensmile.FeatureLevel.LowLevelDescriptors,
        opensmile.FeatureLevel.LowLevelDescriptors_Deltas,
    ):
        opensmile.Smile(opensmile.FeatureSet.ComParE_2016, level).process_signal(y16, 16000)
    out["openSMILE whole file, package, two passes"] = time.process_time() - c
    c = time.process_time()
    extract_offline(y, sr)
    out["extract_offline (everything, whole file)"] = time.process_time() - c
    return {k: 1000 * v / n for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=6, help="4Q clips concatenated (~30 s each)")
    ap.add_argument("--naive-steps", type=int, default=120, help="steps timed for the naive path")
    ap.add_argument("--block-ms", type=float, default=50.0, help="streaming input block, ms")
    args = ap.parse_args()

    y, sr = _music(args.clips)
    print(f"audio: {args.clips} real 4Q clips, {len(y) / sr:.1f} s at {sr} Hz")
    # warm-up (imports, mel bases, config parsing)
    streaming(y[: sr * 3], sr, args.block_ms)
    naive(y, sr, 2)

    clock, cpu, wall, lags = streaming(y, sr, args.block_ms)
    n = len(lags) + 1
    ref = naive(y, sr, min(args.naive_steps, n))

    print(f"\nper step, medians over {n} steps (streaming) / {len(ref.rows)} steps (naive), ms")
    print(f"{'stage':<12}{'stream CPU':>12}{'stream wall':>13}{'naive CPU':>11}{'naive wall':>12}")
    for stage in ("resample", "mfcc", "mel", "lld"):
        nc = ref.median(stage, 0) if stage in ("mfcc", "lld") else float("nan")
        nw = ref.median(stage, 1) if stage in ("mfcc", "lld") else float("nan")
        print(
            f"{stage:<12}{clock.median(stage, 0):>12.2f}{clock.median(stage, 1):>13.2f}"
            f"{nc:>11.2f}{nw:>12.2f}"
        )
    resample_c, resample_w = clock.median("resample", 0), clock.median("resample", 1)
    tot_c, tot_w = clock.total_median(0), clock.total_median(1)
    # the naive path needs the same resampling: add the streaming resampler's cost to it
    ref_c, ref_w = ref.total_median(0) + resample_c, ref.total_median(1) + resample_w
    print(f"{'total':<12}{tot_c:>12.2f}{tot_w:>13.2f}{ref_c:>11.2f}{ref_w:>12.2f}")
    print(f"\nwhole run, streaming: {1000 * cpu / n:.2f} ms CPU / step (mean, openSMILE thread "
          f"included), {1000 * wall / n:.2f} ms wall / step")
    print(f"ratio naive / streaming (medians): CPU {ref_c / tot_c:.1f}x, wall {ref_w / tot_w:.1f}x")
    q = np.percentile(lags, [50, 99, 100])
    print(f"step lag with {args.block_ms:g} ms blocks (audio pushed past a step's end when its "
          f"features came back; {len(lags)} steps, the last one comes with finish): "
          f"median {q[0]:.0f} ms, p99 {q[1]:.0f} ms, max {q[2]:.0f} ms")
    print(f"targets: streaming <= 1/12 of naive: {'met' if ref_c / tot_c >= 12 else 'NOT met'}; "
          f"<= 8 ms CPU per step: {'met' if max(tot_c, 1000 * cpu / n) <= 8 else 'NOT met'}")
    print("\nwhole-file reference, CPU ms per step:")
    for name, ms in whole_file(y, sr).items():
        print(f"  {name:<58}{ms:>7.2f}")


if __name__ == "__main__":
    main()
