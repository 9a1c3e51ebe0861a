"""Live tagging on Redis, one source: the latency of ``listen`` and its CPU per step.

On real 4Q music, the real model and the real Redis (private key prefix ``smbench-<pid>``,
deleted at the end):

1. **Latency** of ``listen``: :func:`~streammood.workers.listen.run_listen` runs in this process
   over two clips back to back (~60 s, written to a temporary WAV) through
   ``FileSource(realtime=True)``, paced like a device delivering blocks (20 ms by default,
   ``--block-ms``); a subscriber in a **separate process** (plain redis-py pub/sub) stamps each
   message with ``time.time()`` when it arrives. Latency = receive time - (wall time at which the
   source's audio clock started + the step's ``t_end``): from the moment the step's last sample
   would have been captured to the moment a consumer holds the message. Broken down per step by
   wrapping the stages passed to ``run_listen`` (the feature stage and ``MoodStage``) and
   subclassing ``MoodPublisher``, production code unchanged: audio past the step's end
   written to openSMILE when the step came out (its look-ahead, quantised by the block), the
   resampler's delay, how late the releasing block reached the feature thread, the extractor
   push (including the wait for musicnn's thread on steps with ``seq % EMBED_EVERY == 0``),
   queue hand-over, model step, publisher thread, Redis round trip, delivery to the subscriber.
   The parts add up to the latency.
2. **CPU per step** of that ``listen`` run: process CPU time (all threads: the feature thread,
   openSMILE's thread, the model thread, the publisher thread) per step, in steady state (from
   step 10) and over the whole run; per-thread split read from ``/proc/self/task``, and the
   feature thread's own split (extractor vs musicnn) from ``time.thread_time``.

The machine is shared: the load average is printed before and after. The capacity of one
``infer`` worker and the naive reference are ``bench_capacity.py``.

Run (from the project root; ~1.5 minutes; needs Redis and ``../shared/data/4q``)::

    .venv/bin/python benchmarks/bench_latency.py [--model models/streammood-4q] [--block-ms 20]
        [--clips Q1/MT0000040632.mp3 Q2] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from live_harness import (
    ThreadCPU,
    add_common_args,
    clip_paths,
    delete_keys,
    load_avg,
    load_clips,
    model_line,
    pct,
    start_subscriber,
    stop_subscriber,
    summary_ms,
)

from streammood.audio.sources import BLOCK_SECONDS

WARM_STEPS = 10
"""Steps of ``listen`` counted as start-up (imports, first calls) in the steady-state figures."""


def bench_listen(
    artifact,
    url: str,
    prefix: str,
    clips: list[Path],
    tmp: Path,
    block_ms: float = 1000 * BLOCK_SECONDS,
) -> dict:
    import redis
    import soundfile as sf

    from streammood.audio.sources import FileSource
    from streammood.bus.keys import Keys
    from streammood.bus.moods import MoodPublisher
    from streammood.layout import EMBED_EVERY
    from streammood.workers.listen import run_listen
    from streammood.workers.tagging import MoodStage, feature_stage

    y, sr = load_clips(clips)
    wav = tmp / "listen.wav"
    sf.write(wav, y, sr, subtype="FLOAT")
    audio_s = len(y) / sr

    rec: dict[int, dict[str, float]] = defaultdict(dict)
    feature_cpu: dict[str, float] = defaultdict(float)

    class TimedSource(FileSource):
        def __iter__(self):
            self.t0_wall = time.time()  # FileSource's own t0 is taken on the first next()
            yield from super().__iter__()

    class TimedFeatures:
        """The feature stage, wrapped: times each push (in the feature thread)."""

        def __init__(self, inner) -> None:
            self.inner = inner

        def push(self, block, captured_at=None):
            t_in, c_in = time.time(), time.thread_time()
            out = self.inner.push(block, captured_at)
            t_out = time.time()
            if threads.base_seq is not None:  # steady state: this thread's CPU
                feature_cpu["extractor push (incl. waiting for musicnn)"] += (
                    time.thread_time() - c_in
                )
            audio_at = self.inner.samples_in / self.inner.input_rate
            smile_at = self.inner.samples_written / 16_000
            for i in out:
                rec[i.seq].update(
                    t_block=t_in, t_inputs=t_out, audio_at=audio_at, smile_at=smile_at
                )
            return out

        def finish(self):
            out = self.inner.finish()
            for i in out:
                rec[i.seq]["finish"] = 1.0
            return out

        def close(self) -> None:
            self.inner.close()

    class TimedMood:
        """The mood stage, wrapped: times each step (in the calling thread)."""

        def __init__(self, inner) -> None:
            self.inner = inner

        @property
        def gaps(self) -> int:
            return self.inner.gaps

        @property
        def source(self) -> str:
            return self.inner.source

        def push(self, inputs):
            t = time.time()
            out = self.inner.push(inputs)
            rec[inputs.seq].update(t_mood=t, t_msg=time.time(), cpu=time.process_time())
            if inputs.seq == WARM_STEPS:
                threads.rebase(WARM_STEPS)
            return out

        def finish(self):
            return self.inner.finish()

        def close(self) -> None:
            self.inner.close()

    class TimedPublisher(MoodPublisher):
        def _write(self, pipe, items):
            t = time.time()
            seqs = [m.seq for m in items]
            execute = pipe.execute

            def timed_execute(*a, **k):
                result = execute(*a, **k)
                t_done = time.time()
                for s in seqs:
                    rec[s].update(t_write=t, t_written=t_done)
                return result

            pipe.execute = timed_execute
            super()._write(pipe, items)

    keys = Keys(prefix)
    client = redis.Redis.from_url(url)
    sub = start_subscriber(url, keys.mood_channel, tmp / "listen-sub.tsv")
    source = TimedSource(wav, realtime=True, block_seconds=block_ms / 1000)
    features = TimedFeatures(feature_stage(artifact, source.sample_rate))
    mood = TimedMood(MoodStage(artifact, "bench-latency"))
    threads = ThreadCPU()
    publisher = TimedPublisher(url, prefix)
    print(
        f"[1] listen: {audio_s:.1f} s of audio ({', '.join(p.name for p in clips)}) at {sr} Hz, "
        f"{block_ms:g} ms blocks, real time; {load_avg()}",
        flush=True,
    )
    try:
        with threads:
            c0, w0 = time.process_time(), time.perf_counter()
            stats = run_listen(source, features, mood, publisher)
            publisher.flush(timeout=10)
            c1, w1 = time.process_time(), time.perf_counter()
        time.sleep(0.5)
        rows = stop_subscriber(client, keys.mood_channel, sub, tmp / "listen-sub.tsv")
    finally:
        publisher.close(timeout=10)
        if sub.poll() is None:  # only when something failed
            sub.kill()
            sub.wait()
        client.close()
    print(f"    done; {load_avg()}", flush=True)

    t0 = source.t0_wall
    last = max(seq for seq, r in rec.items() if "cpu" in r)
    steady_steps = last - WARM_STEPS
    steady_cpu = rec[last]["cpu"] - rec[WARM_STEPS]["cpu"]
    lat, lat_steady, lat_embed, lat_other = [], [], [], []
    parts: dict[str, list[float]] = defaultdict(list)
    embed_parts: dict[str, list[float]] = defaultdict(list)
    worst: list[tuple[float, int, dict[str, float]]] = []
    for t_recv, _, seq, t_end, _ in rows:
        r = rec.get(seq, {})
        if "finish" in r or "t_written" not in r or "t_block" not in r:
            continue  # the last step comes with finish() at end of file: no device ends
        latency = t_recv - (t0 + t_end)
        lat.append(latency)
        if seq >= WARM_STEPS:
            lat_steady.append(latency)
        (lat_embed if seq % EMBED_EVERY == 0 else lat_other).append(latency)
        step = {
            "audio past the step's end written to openSMILE (look-ahead + block)": r["smile_at"]
            - t_end,
            "resampler delay (input audio not yet out at 16 kHz)": r["audio_at"] - r["smile_at"],
            "block handed to the feature thread late by": r["t_block"] - (t0 + r["audio_at"]),
            "extractor push (resample, MFCC, mel, openSMILE + musicnn wait)": r["t_inputs"]
            - r["t_block"],
            "step queue hand-over to the model thread": r["t_mood"] - r["t_inputs"],
            "model step (LiteRT, all members)": r["t_msg"] - r["t_mood"],
            "publisher hand-over (thread wake-up)": r["t_write"] - r["t_msg"],
            "Redis pipeline round trip (PUBLISH, XADD)": r["t_written"] - r["t_write"],
            "Redis -> subscriber process": t_recv - r["t_written"],
        }
        worst.append((latency, seq, step))
        for name, value in step.items():
            parts[name].append(value)
            if seq % EMBED_EVERY == 0:
                embed_parts[name].append(value)
    return dict(
        audio_s=audio_s,
        steps=stats.steps,
        dropped=stats.dropped_steps,
        received=len(rows),
        lat=lat,
        lat_embed=lat_embed,
        lat_other=lat_other,
        lat_steady=lat_steady,
        block_ms=block_ms,
        steady_cpu=steady_cpu,
        steady_steps=steady_steps,
        parts=parts,
        embed_parts=embed_parts,
        worst=sorted(worst, key=lambda e: -e[0])[:5],
        cpu=c1 - c0,
        wall=w1 - w0,
        threads=threads.by_name(),
        feature_cpu=dict(feature_cpu),
    )


def report(artifact, live: dict) -> None:
    """Print parts 1 and 2."""
    from streammood.layout import EMBED_EVERY

    print()
    print("=" * 100)
    print(f"model {artifact.name} v{artifact.version}; {load_avg()} (2-core machine, shared)")
    print(
        f"\n1. latency, end of step audio -> message in a subscriber process, "
        f"{live['block_ms']:g} ms blocks "
        f"({live['steps']} steps, {live['received']} received, {live['dropped']} dropped; "
        f"the last step, released by end of file, excluded)"
    )
    print(f"   all steps          {summary_ms(live['lat'])}")
    print(f"   from step {WARM_STEPS:<3}      {summary_ms(live['lat_steady'])}  (no start-up)")
    print(f"   embedding steps    {summary_ms(live['lat_embed'])}  (seq % {EMBED_EVERY} == 0)")
    print(f"   other steps        {summary_ms(live['lat_other'])}")
    print("   where it goes, per step (all steps | embedding steps), median / p99 ms:")
    for name, values in live["parts"].items():
        v = 1000 * np.asarray(values)
        e = 1000 * np.asarray(live["embed_parts"][name])
        print(
            f"     {name:<64} {np.median(v):7.1f} / {pct(v, 99):7.1f}  |"
            f" {np.median(e):7.1f} / {pct(e, 99):7.1f}"
        )
    print("   slowest steps (ms; parts in the order above):")
    for latency, seq, step in live["worst"]:
        print(
            f"     seq {seq:3d}: {1000 * latency:6.1f} = "
            + " + ".join(f"{1000 * v:.1f}" for v in step.values())
        )
    print(
        "\n2. CPU per step of listen: "
        f"{1000 * live['steady_cpu'] / live['steady_steps']:.2f} ms "
        f"steady state (process CPU, all threads incl. openSMILE's, from step {WARM_STEPS} "
        f"on); whole run incl. start-up: {1000 * live['cpu'] / live['steps']:.2f} ms "
        f"({live['cpu']:.1f} s CPU over {live['wall']:.1f} s wall, {live['steps']} steps)"
    )
    print("   by thread, steady state:")
    for name, cpu in sorted(live["threads"].items(), key=lambda e: -e[1]):
        print(f"     {name:<40} {1000 * cpu / live['steady_steps']:6.2f} ms/step")
        if name == "streammood-features":
            for stage, stage_cpu in live["feature_cpu"].items():
                print(
                    f"       {stage:<38} {1000 * stage_cpu / live['steady_steps']:6.2f} ms/step"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument(
        "--block-ms", type=float, default=1000 * BLOCK_SECONDS, help="listen's audio blocks, ms"
    )
    args = parser.parse_args()

    from streammood.runtime.artifact import load_artifact

    artifact = load_artifact(args.model)
    clips = clip_paths(args.clips)
    prefix = f"smbench-{os.getpid()}"
    t_start = time.time()
    print(f"{model_line(artifact)}; {os.cpu_count()} CPUs; {load_avg()}")
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmpdir:
        try:
            live = bench_listen(
                artifact, args.redis_url, prefix, clips, Path(tmpdir), args.block_ms
            )
        finally:
            delete_keys(args.redis_url, prefix)
    report(artifact, live)
    print(f"\ntotal {time.time() - t_start:.0f} s; {load_avg()}")


if __name__ == "__main__":
    main()
