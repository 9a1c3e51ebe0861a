"""Live tagging on Redis, many sources: the capacity of one ``infer`` worker, and the naive
reference.

On real 4Q music, the real model and the real Redis (private key prefix ``smbench-<pid>``,
deleted at the end):

3. **Capacity of one ``infer`` worker**: real feature frames (the live feature stage on the same
   music, ``encode_inputs``; 120 steps, reused cyclically with increasing ``seq``) are XADDed for
   N sources in real time (2 frames/s each, start times staggered over 500 ms) by this process;
   ``streammood infer --quiet`` runs in a separate process (a fresh one and a fresh key prefix per
   N); a separate subscriber process stamps every mood message. Lag = receive time - the time the
   frame was sent. N "holds" when every frame is answered, lag p99 < 1 s and the median lag of
   the second half of the run is not above the first half's by more than 100 ms. Worker CPU from
   ``/proc/<pid>/stat`` (utime + stime) over the run. Stops at the first N not held.
4. **Naive reference**, same run: Keras ``model.predict`` of every member of the artifact on the
   full 60-step window, one call per step, in a subprocess (the only place TensorFlow is
   imported), against the streaming core (one LiteRT call of ``MoodRuntime.push``) and against
   the whole ``infer`` worker's CPU per message.

(Parts 1 and 2, the latency and CPU per step of ``listen``, are ``bench_latency.py``.) The machine
is shared: the load average is printed before each part.

Run (from the project root; ~2-3 minutes; needs Redis and ``../shared/data/4q``)::

    .venv/bin/python benchmarks/bench_capacity.py [--model models/streammood-4q]
        [--sources 25,50,100,150,200,250] [--capacity-seconds 20] [--parts capacity,naive]
        [--redis-url redis://127.0.0.1:6379/0] [--profile-infer DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from live_harness import (
    ROOT,
    add_common_args,
    clip_paths,
    delete_keys,
    load_avg,
    model_line,
    pct,
    precompute_inputs,
    proc_cpu,
    proc_rss_mib,
    start_subscriber,
    stop_subscriber,
    summary_ms,
)


def redis_usage(client) -> dict[str, float]:
    """Redis server CPU seconds (user + sys) and XREAD calls so far (the whole server: other
    users of the same server are counted too)."""
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    return {
        "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "xread": float(stats.get("cmdstat_xread", {}).get("calls", 0)),
    }


def bench_capacity(
    artifact,
    model_path: str,
    url: str,
    prefix: str,
    inputs: list,
    n: int,
    seconds: float,
    tmp: Path,
    profile: Path | None = None,
) -> dict:
    import redis

    from streammood.bus.frames import DEFAULT_FRAME_MAXLEN, encode_inputs
    from streammood.bus.keys import Keys

    keys = Keys(f"{prefix}-n{n}")
    ident = artifact.embedder_id
    sources = [f"src{k:03d}" for k in range(n)]
    per_source = int(round(seconds / 0.5))
    frames = {
        (k, i): encode_inputs(
            src,
            replace(inputs[i % len(inputs)], seq=i, t_start=0.5 * i, t_end=0.5 * (i + 1)),
            ident,
        )
        for k, src in enumerate(sources)
        for i in range(per_source)
    }
    client = redis.Redis.from_url(url)
    procs: list[subprocess.Popen] = []
    try:
        client.sadd(keys.frame_sources, *sources)
        out = tmp / f"cap-{n}.tsv"
        sub = start_subscriber(url, keys.mood_channel, out)
        procs.append(sub)
        err = open(tmp / f"infer-{n}.log", "w")  # noqa: SIM115 - closed below
        worker = subprocess.Popen(
            [
                sys.executable,
                *(["-m", "cProfile", "-o", str(profile / f"infer-{n}.prof")] if profile else []),
                "-m",
                "streammood",
                "infer",
                "--redis-url",
                url,
                "--prefix",
                keys.prefix,
                "--model",
                model_path,
                "--quiet",
            ],
            cwd=ROOT,
            stdout=err,
            stderr=subprocess.STDOUT,
        )
        procs.append(worker)
        leases = [keys.lease(s) for s in sources]
        deadline = time.monotonic() + 60
        while client.exists(*leases) < n:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"infer worker did not claim {n} sources; see {err.name}")
            time.sleep(0.1)

        sent: dict[tuple[str, int], float] = {}
        late = []
        redis0 = redis_usage(client)
        cpu0, w0 = proc_cpu(worker.pid), time.time()
        t_base = w0 + 0.2
        schedule = sorted((t_base + k * 0.5 / n + i * 0.5, k, i) for k, i in frames)
        for due, k, i in schedule:
            delay = due - time.time()
            if delay > 0.0005:
                time.sleep(delay)
            t = time.time()
            client.xadd(
                keys.frames_stream(sources[k]),
                {"frame": frames[(k, i)]},
                maxlen=DEFAULT_FRAME_MAXLEN,
                approximate=True,
            )
            sent[(sources[k], i)] = t
            late.append(t - due)
        t_fed = time.time()
        # drain: wait until every frame has a mood in the history streams (or no progress for 5 s)
        total, last, last_change = len(sent), -1, time.time()
        mood_keys = [keys.mood_stream(s) for s in sources]
        while True:
            pipe = client.pipeline(transaction=False)
            for key in mood_keys:
                pipe.xlen(key)
            done = sum(pipe.execute())
            if done != last:
                last, last_change = done, time.time()
            if done >= total or time.time() - last_change > 5:
                break
            time.sleep(0.1)
        cpu1, w1 = proc_cpu(worker.pid), time.time()
        rss = proc_rss_mib(worker.pid)
        redis1 = redis_usage(client)
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        err.close()
        time.sleep(0.3)
        rows = stop_subscriber(client, keys.mood_channel, sub, out)
    finally:
        for proc in procs:  # left running only when something failed
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for key in client.scan_iter(f"{keys.prefix}:*"):
            client.delete(key)
        client.close()

    lags, first, second = [], [], []
    mid = t_base + seconds / 2
    for t_recv, src, seq, _, _ in rows:
        t_sent = sent.get((src, seq))
        if t_sent is None:
            continue
        lag = t_recv - t_sent
        lags.append(lag)
        (first if t_sent < mid else second).append(lag)
    steady = [
        t_recv - sent[(src, seq)]
        for t_recv, src, seq, _, _ in rows
        if (src, seq) in sent and sent[(src, seq)] >= t_base + 3.0
    ]
    t_max = max(
        (
            (t_recv - sent[(src, seq)], sent[(src, seq)] - t_base)
            for t_recv, src, seq, _, _ in rows
            if (src, seq) in sent
        ),
        default=(0.0, 0.0),
    )[1]
    answered = len({(src, seq) for _, src, seq, _, _ in rows} & set(sent))
    growth = (np.median(second) - np.median(first)) if first and second else float("inf")
    holds = answered == total and pct(lags, 99) < 1.0 and growth <= 0.1
    return dict(
        n=n,
        sent=total,
        answered=answered,
        lags=lags,
        steady=steady,
        t_max=t_max,
        growth=growth,
        holds=holds,
        cpu=cpu1 - cpu0,
        wall=w1 - w0,
        feed_wall=t_fed - w0,
        redis_cpu=redis1["cpu"] - redis0["cpu"],
        rss=rss,
        xreads=redis1["xread"] - redis0["xread"],
        late=late,
        log=(tmp / f"infer-{n}.log").read_text().strip().splitlines()[-1:],
    )


def naive_main(npz: Path, model: str, repeats: int) -> None:
    """Part 4, in its own process (``--naive-npz``): prints the median Keras ``predict`` time of
    all members on the window in ``npz``, as JSON."""
    from streammood.runtime.artifact import load_artifact
    from streammood.training.architecture import build_window_model
    from streammood.training.train import load_members

    artifact = load_artifact(model)
    w = np.load(npz)
    window = [w["mfcc"][None], w["lld"][None], w["emb"][None]]
    models = [build_window_model(p) for p in load_members(artifact)]

    def naive() -> None:
        for m in models:
            m.predict(window, verbose=0)

    naive()
    times = []
    for _ in range(repeats):
        c0 = time.perf_counter()
        naive()
        times.append(time.perf_counter() - c0)
    print(json.dumps({"naive_ms": 1000 * statistics.median(times), "members": len(models)}))


def streaming_core_ms(artifact, inputs: list, repeats: int = 300) -> float:
    """Median ms of one ``MoodRuntime.push`` with every staggered state live."""
    from streammood.runtime.rolling import MoodRuntime

    runtime = MoodRuntime(artifact)
    for t in range(artifact.rows):  # every staggered state live
        i = inputs[t % len(inputs)]
        runtime.push(i)
    times = []
    for t in range(repeats):
        i = inputs[t % len(inputs)]
        c0 = time.perf_counter()
        runtime.push(i)
        times.append(time.perf_counter() - c0)
    return 1000 * statistics.median(times)


def report(artifact, caps: list[dict], naive: dict | None, core_ms: float) -> None:
    """Print parts 3 and 4."""
    print()
    print("=" * 100)
    print(f"model {artifact.name} v{artifact.version}; {load_avg()} (2-core machine, shared)")
    print("\n3. one infer worker (separate process), N real-time sources at 2 frames/s each:")
    if caps:
        print(
            f"   {'N':>4} {'sent':>6} {'answered':>8} {'lag median':>11} {'lag p99':>9} "
            f"{'lag max':>8} {'growth':>8} {'worker CPU':>10} {'CPU/msg':>8} "
            f"{'Redis CPU':>9} {'XREAD/msg':>9} {'RSS':>8} {'feeder late p99':>15}  verdict"
        )
    for c in caps:
        lag = 1000 * np.asarray(c["lags"]) if c["lags"] else np.array([np.nan])
        print(
            f"   {c['n']:>4} {c['sent']:>6} {c['answered']:>8} {np.median(lag):9.1f}ms "
            f"{pct(lag, 99):7.1f}ms {lag.max():6.0f}ms {1000 * c['growth']:6.1f}ms "
            f"{100 * c['cpu'] / c['wall']:9.0f}% "
            f"{1000 * c['cpu'] / max(1, c['answered']):6.2f}ms "
            f"{100 * c['redis_cpu'] / c['wall']:8.0f}% {c['xreads'] / max(1, c['answered']):9.2f} "
            f"{c['rss']:5.0f}MiB "
            f"{1000 * pct(c['late'], 99):13.1f}ms  {'holds' if c['holds'] else 'falls behind'}"
        )
    held = [c["n"] for c in caps if c["holds"]]
    per_msg = [1000 * c["cpu"] / c["answered"] for c in caps if c["answered"]]
    if caps:
        print(f"   holds up to N = {max(held) if held else 0} of those tried")
    for c in caps:
        print(
            f"   N = {c['n']}: lag after the first 3 s {summary_ms(c['steady'])}; the largest lag "
            f"was a frame sent {c['t_max']:.1f} s into the run"
        )
    if naive is None:
        print(f"\n4. naive reference: not run or failed; streaming core {core_ms:.3f} ms per step")
    else:
        print(
            f"\n4. naive reference: Keras predict, {naive['members']} members, 60-step window, per "
            f"step: {naive['naive_ms']:.1f} ms -> {500 / naive['naive_ms']:.1f} real-time sources "
            f"per core"
        )
        print(
            f"   streaming core (MoodRuntime.push, LiteRT, all members): {core_ms:.3f} ms -> "
            f"{500 / core_ms:.0f} sources per core; "
            f"naive / core = {naive['naive_ms'] / core_ms:.0f}x"
        )
        if per_msg:
            best = min(per_msg)
            print(
                f"   whole infer worker, CPU per message (decode + step + publish, best run): "
                f"{best:.2f} ms -> {500 / best:.0f} sources per core; naive / worker = "
                f"{naive['naive_ms'] / best:.0f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--sources", default="25,50,100,150,200,250")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--naive-repeats", type=int, default=10)
    parser.add_argument(
        "--profile-infer", type=Path, help="write a cProfile of each infer worker to this folder"
    )
    parser.add_argument(
        "--parts", default="capacity,naive", help="which parts to run (comma-separated)"
    )
    parser.add_argument("--naive-npz", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_npz is not None:
        naive_main(args.naive_npz, args.model, args.naive_repeats)
        return

    from streammood.layout import WINDOW_STEPS
    from streammood.runtime.artifact import load_artifact

    artifact = load_artifact(args.model)
    clips = clip_paths(args.clips)
    prefix = f"smbench-{os.getpid()}"
    parts = set(args.parts.split(","))
    t_start = time.time()
    print(f"{model_line(artifact)}; {os.cpu_count()} CPUs; {load_avg()}")
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            caps, naive = [], None
            inputs = precompute_inputs(artifact, clips, 120)
            for n in [int(x) for x in args.sources.split(",")] if "capacity" in parts else []:
                print(
                    f"[3] infer capacity, N = {n} sources, {args.capacity_seconds:.0f} s; "
                    f"{load_avg()}",
                    flush=True,
                )
                cap = bench_capacity(
                    artifact,
                    args.model,
                    args.redis_url,
                    prefix,
                    inputs,
                    n,
                    args.capacity_seconds,
                    tmp,
                    args.profile_infer,
                )
                caps.append(cap)
                print(
                    f"    lag {summary_ms(cap['lags'])}; answered {cap['answered']}/"
                    f"{cap['sent']}; {'holds' if cap['holds'] else 'FALLS BEHIND'}",
                    flush=True,
                )
                if not cap["holds"]:
                    break
            core_ms = streaming_core_ms(artifact, inputs)
            if "naive" in parts:
                print(f"[4] naive reference (Keras predict, subprocess); {load_avg()}", flush=True)
                np.savez(
                    tmp / "window.npz",
                    mfcc=np.stack([i.mfcc for i in inputs[:WINDOW_STEPS]]),
                    lld=np.stack([i.lld for i in inputs[:WINDOW_STEPS]]),
                    emb=np.stack([i.emb for i in inputs[:WINDOW_STEPS]]),
                )
                res = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--naive-npz",
                        str(tmp / "window.npz"),
                        "--model",
                        args.model,
                        "--naive-repeats",
                        str(args.naive_repeats),
                    ],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                )
                if res.returncode == 0:
                    naive = json.loads(res.stdout.strip().splitlines()[-1])
                else:
                    print("    naive reference failed:\n" + res.stderr[-2000:], flush=True)
        finally:
            delete_keys(args.redis_url, prefix)
    report(artifact, caps, naive, core_ms)
    print(f"\ntotal {time.time() - t_start:.0f} s; {load_avg()}")


if __name__ == "__main__":
    main()
