"""Many real-time sources in one process (``listen --sources``): CPU per step, latency, memory.

For each N (``--sources``, default 1 8 16 32 48 64), N sources of real 4Q music (a different
clip each, ``loop = true``, paced in real time like live sources) run through
:func:`~streammood.workers.many.run_many` with the shipped model and the real Redis (private
key prefix ``smbench-<pid>``, deleted at the end), for ``--warm`` + ``--seconds`` seconds:

- **CPU ms per published step**: process CPU (all threads, ``/proc/self/stat``) over the
  measuring window, divided by the steps published in it (start-up cancelled out: the window
  starts ``--warm`` seconds in);
- **latency** p50 / p99: a subscriber in a **separate process** stamps each message on arrival;
  latency = arrival - ``captured_at`` (the pacing clock at the step's last sample), steps of
  the window only;
- **RSS**: of the process at the end of the window (each N runs in a fresh process), and per
  source (RSS then - RSS before ``run_many``) / N, which includes the shared interpreters once;
- **steps dropped**: steps of stream time lost in gaps (audio dropped because the worker fell
  behind) plus steps due in the window but not published;
- threads of the process while it runs, and the embedding batches.

N *holds* when every step is published and p99 < 1 s. The reference, in the same run: the
whole-file cost of the same features and model (``extract_offline`` of 60 s of the same music
with the same embedder, then the same step model over every step), CPU ms per step.

Run (from the project root; ~1 minute per N; needs Redis and ``../shared/data/4q``)::

    .venv/bin/python benchmarks/bench_sources.py [--sources 1 8 16 32 48 64] [--seconds 30]
        [--warm 12] [--model models/streammood-4q] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from live_harness import (
    DATA,
    DEFAULT_MODEL,
    DEFAULT_REDIS_URL,
    load_avg,
    pct,
    proc_cpu,
    start_subscriber,
)


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far per thread name (threads of the same name summed)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for entry in os.listdir("/proc/self/task"):
        try:
            cpu = proc_cpu("self", int(entry))
        except (OSError, ValueError):
            continue
        name = names.get(int(entry), "native")
        out[name] = out.get(name, 0.0) + cpu
    return out


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def clips(n: int) -> list[Path]:
    """``n`` different 4Q clips, quadrants in turn."""
    per_q = [sorted((DATA / q).glob("*.mp3")) for q in ("Q1", "Q2", "Q3", "Q4")]
    return [per_q[i % 4][i // 4] for i in range(n)]


def whole_file_reference(artifact, seconds: float = 60.0) -> dict:
    """CPU per step of the same features and model on a whole signal (the reference)."""
    from streammood.audio.decode import load_audio
    from streammood.features.extractor import extract_offline
    from streammood.runtime.rolling import MoodRuntime

    ys, sr = [], None
    for path in clips(4):
        y, sr = load_audio(path)
        ys.append(y)
    y = np.concatenate(ys)[: int(seconds * sr)]
    embedder = artifact.embedder()
    extract_offline(y[: 4 * sr], sr, embedder)  # warm up
    c0 = time.process_time()
    fs = extract_offline(y, sr, embedder)
    c1 = time.process_time()
    runtime = MoodRuntime(artifact)
    runtime.warm_up()
    c2 = time.process_time()
    for inputs in fs.steps():
        runtime.push(inputs)
    c3 = time.process_time()
    n = fs.n_steps
    return {
        "steps": n,
        "features_ms": 1000 * (c1 - c0) / n,
        "model_ms": 1000 * (c3 - c2) / n,
        "total_ms": 1000 * (c3 - c2 + c1 - c0) / n,
    }


def bench_n(
    artifact, n: int, url: str, prefix: str, warm: float, seconds: float, rss_every: float = 0.0
) -> dict:
    import redis

    from streammood.audio.mux import SourceSpec
    from streammood.bus.keys import Keys
    from streammood.bus.moods import MoodPublisher
    from streammood.workers.many import run_many

    specs = [SourceSpec(f"b{i:03d}", "file", str(p), loop=True) for i, p in enumerate(clips(n))]
    channel = Keys(prefix).mood_channel
    out = Path(tempfile.mkstemp(prefix="bench-sources-", suffix=".tsv")[1])
    sub = start_subscriber(url, channel, out)
    publisher = MoodPublisher(url, prefix, buffer=20_000, metrics_id=f"bench-{n}")
    published = [0]
    stop = threading.Event()
    marks: dict[str, tuple] = {}
    memory: list[tuple[int, float, int]] = []  # (s into the window, RSS MiB, steps published)

    def count(_msg, _stats) -> None:
        published[0] += 1

    def clock() -> None:
        t0 = time.monotonic()
        if stop.wait(warm):
            return
        marks["start"] = (time.time(), proc_cpu(), published[0], rss_mib())
        marks["threads0"] = thread_cpu()
        end = time.monotonic() + seconds
        while rss_every > 0 and time.monotonic() + rss_every < end:
            if stop.wait(rss_every):
                return
            elapsed = round(time.time() - marks["start"][0])
            memory.append((elapsed, round(rss_mib(), 1), published[0]))
            print(f"RSS {json.dumps(memory[-1])}", flush=True)
        if stop.wait(max(0.0, end - time.monotonic())):
            return
        marks["end"] = (time.time(), proc_cpu(), published[0], rss_mib())
        marks["threads1"] = thread_cpu()
        marks["threads"] = (len(os.listdir("/proc/self/task")), time.monotonic() - t0)
        stop.set()

    rss0 = rss_mib()  # after the model is loaded and warmed up: the sources' own memory
    timer = threading.Thread(target=clock, name="bench-clock", daemon=True)
    timer.start()
    stats = run_many(specs, artifact, moods=publisher, stop=stop, on_message=count)
    timer.join()
    publisher.close(timeout=30)
    client = redis.Redis.from_url(url)
    client.publish(channel, b"END")
    sub.wait(timeout=120)
    client.close()
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    out.unlink()
    Path(str(out) + ".err").unlink(missing_ok=True)
    (ta, ca, pa, _), (tb, cb, pb, rss1) = marks["start"], marks["end"]
    lat = [float(r[0]) - float(r[5]) for r in rows if ta <= float(r[5]) <= tb]
    steps = pb - pa
    due = n * seconds / 0.5
    gap_steps = sum(s.gap_steps for s in stats.sources.values())
    dropped = gap_steps + max(0, round(due - steps))
    p99 = pct(lat, 99)
    t0, t1 = marks["threads0"], marks["threads1"]
    split = {k: 1000 * (v - t0.get(k, 0.0)) / max(steps, 1) for k, v in t1.items()}
    return {
        "split": ", ".join(
            f"{k.replace('streammood-', '')} {v:.1f}"
            for k, v in sorted(split.items(), key=lambda kv: -kv[1])
            if v >= 0.05
        ),
        "n": n,
        "cpu_ms": 1000 * (cb - ca) / max(steps, 1),
        "cpu_ms_per_source_step": 1000 * (cb - ca) / max(steps, 1),
        "cores": (cb - ca) / (tb - ta),
        "p50_ms": 1000 * pct(lat, 50),
        "p99_ms": 1000 * p99,
        "rss_per_source_mib": (rss1 - rss0) / n,
        "rss_mib": rss1,
        "steps": steps,
        "due": due,
        "dropped": dropped,
        "threads": marks["threads"][0],
        "batches": f"{stats.patches}/{stats.embed_calls} (max {stats.largest_batch})",
        "memory": memory,
        "holds": dropped <= n and p99 < 1.0,  # +-1 step per source at the window's edges
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, nargs="+", default=[1, 8, 16, 32, 48, 64])
    ap.add_argument("--seconds", type=float, default=30.0, help="measuring window, s")
    ap.add_argument("--warm", type=float, default=12.0, help="start-up left out, s")
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument(
        "--rss-every", type=float, default=0.0, help="also sample RSS every this many s (long runs)"
    )
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one N, in this process
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        import logging

        logging.basicConfig(level=logging.ERROR)
        from streammood.runtime.artifact import load_artifact

        r = bench_n(
            load_artifact(args.model), args.one, args.redis_url, args.prefix, args.warm,
            args.seconds, args.rss_every,
        )  # fmt: skip
        print("RESULT " + json.dumps(r), flush=True)
        return

    import logging

    logging.basicConfig(level=logging.WARNING)
    from live_harness import delete_keys

    from streammood.runtime.artifact import load_artifact

    artifact = load_artifact(args.model)
    prefix = f"smbench-{os.getpid()}"
    print(f"bench_sources: {load_avg()}, {os.cpu_count()} CPUs", flush=True)
    if not args.no_reference:
        ref = whole_file_reference(artifact)
        print(
            f"whole-file reference ({ref['steps']} steps): features {ref['features_ms']:.2f} + "
            f"model {ref['model_ms']:.2f} = {ref['total_ms']:.2f} ms CPU per step",
            flush=True,
        )
    print(
        f"{'N':>3} {'CPU ms/step':>11} {'cores':>5} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'RSS MiB':>7} {'RSS/src':>7} {'steps':>6} {'due':>6} {'dropped':>7} {'threads':>7} "
        f"{'patches/calls':>15} holds",
        flush=True,
    )
    try:
        for n in args.sources:
            # each N in a fresh process: its RSS and threads are its own
            cmd = [sys.executable, __file__, "--one", str(n), "--prefix", prefix]
            cmd += ["--seconds", str(args.seconds), "--warm", str(args.warm)]
            cmd += ["--model", args.model, "--redis-url", args.redis_url]
            cmd += ["--rss-every", str(args.rss_every)]
            run = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
            if not lines:
                print(f"{n:>3} failed: {run.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(lines[-1][7:])
            print(
                f"{r['n']:>3} {r['cpu_ms']:>11.2f} {r['cores']:>5.2f} {r['p50_ms']:>7.0f} "
                f"{r['p99_ms']:>7.0f} {r['rss_mib']:>7.0f} {r['rss_per_source_mib']:>7.1f} "
                f"{r['steps']:>6} "
                f"{r['due']:>6.0f} {r['dropped']:>7} {r['threads']:>7} {r['batches']:>15} "
                f"{'yes' if r['holds'] else 'no'}   ({load_avg()})",
                flush=True,
            )
            print(f"      CPU ms per step by thread: {r['split']}", flush=True)
            if r["memory"]:
                rss = [m[1] for m in r["memory"]]
                listed = ", ".join(f"{v:.0f}" for v in rss)
                print(
                    f"      RSS every {args.rss_every:g} s (MiB): {listed}"
                    f"; first→last {rss[0]:.1f}→{rss[-1]:.1f}, max {max(rss):.1f}",
                    flush=True,
                )
    finally:
        delete_keys(args.redis_url, prefix)


if __name__ == "__main__":
    main()
