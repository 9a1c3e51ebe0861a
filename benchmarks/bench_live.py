"""Live tagging on Redis: latency, CPU per step, ``infer`` capacity, and the naive reference.

One run measures, on real 4Q music, the real model and the real Redis (private key prefix
``smbench-<pid>``, deleted at the end):

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
   queue hand-over, model step, publisher
   thread, Redis round trip, delivery to the subscriber. The parts add up to the latency.
2. **CPU per step** of that ``listen`` run: process CPU time (all threads: the feature thread,
   openSMILE's thread, the model thread, the publisher thread) per step, in steady state (from
   step 10) and over the whole run; per-thread split read from ``/proc/self/task``, and the
   feature thread's own split (extractor vs musicnn) from ``time.thread_time``.
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

The machine is shared: the load average is printed before and after each part.

Run (from the project root; ~3-4 minutes)::

    .venv/bin/python benchmarks/bench_live.py [--model models/streammood-4q] [--block-ms 20]
        [--sources 25,50,100,150,200,250] [--capacity-seconds 20]
        [--parts listen,capacity,naive] [--redis-url redis://127.0.0.1:6379/0]
        [--profile-infer DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from streammood.audio.sources import BLOCK_SECONDS

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "4q"
DEFAULT_CLIPS = ("Q1/MT0000040632.mp3", "Q2")  # a Q1 clip, then the first Q2 clip
CLK = os.sysconf("SC_CLK_TCK")
WARM_STEPS = 10
"""Steps of ``listen`` counted as start-up (imports, first calls) in the steady-state figures."""

# A subscriber in its own process: stamps each pub/sub message on arrival, parses afterwards.
SUBSCRIBER = r"""
import json, sys, time, redis
url, channel, out = sys.argv[1:4]
r = redis.Redis.from_url(url)
p = r.pubsub()
p.subscribe(channel)
while p.get_message(timeout=5) is None:
    pass
print("ready", flush=True)
rows = []
while True:
    m = p.get_message(timeout=1.0)
    t = time.time()
    if m is None or m["type"] != "message":
        continue
    if m["data"] == b"END":
        break
    rows.append((t, m["data"]))
with open(out, "w") as fh:
    for t, data in rows:
        d = json.loads(data)
        fh.write(f"{t:.6f}\t{d['source']}\t{d['seq']}\t{d['t_end']}\t{d['emitted_at']}\n")
"""


# Prototype (not production): an ``infer`` worker whose sources share one LiteRT step
# interpreter; each source keeps only its own state arrays (the step model's state is explicit).
# --- helpers -----------------------------------------------------------------------------------


def load_avg() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else float("nan")


def summary_ms(values) -> str:
    v = 1000 * np.asarray(values, np.float64)
    if v.size == 0:
        return "(none)"
    return (
        f"median {np.median(v):7.1f}  p90 {pct(v, 90):7.1f}  p99 {pct(v, 99):7.1f}  "
        f"max {v.max():7.1f} ms  (n={v.size})"
    )


def proc_cpu(pid: int | str = "self", tid: int | None = None) -> float:
    """utime + stime of a process (or one of its threads), seconds."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def proc_rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def clip_paths(specs: list[str]) -> list[Path]:
    out = []
    for spec in specs:
        p = DATA / spec
        out.append(p if p.suffix else sorted(p.glob("*.mp3"))[0])
    return out


def start_subscriber(url: str, channel: str, out: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, url, channel, str(out)],
        stdout=subprocess.PIPE,
        stderr=open(str(out) + ".err", "w"),  # noqa: SIM115 - the child owns it
        text=True,
    )
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("subscriber process did not start")
    return proc


def stop_subscriber(client, channel: str, proc: subprocess.Popen, out: Path) -> list[tuple]:
    """Send END, wait, return rows ``(t_recv, source, seq, t_end, emitted_at)``."""
    client.publish(channel, b"END")
    proc.wait(timeout=60)
    rows = []
    for line in out.read_text().splitlines():
        t, src, seq, t_end, emitted = line.split("\t")
        rows.append((float(t), src, int(seq), float(t_end), float(emitted)))
    return rows


class ThreadCPU:
    """Samples per-thread CPU time of this process from ``/proc/self/task`` (threads that exit
    keep their last sample), named by ``threading``'s names."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.cpu: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self.base: dict[int, float] = {}
        self.base_seq: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def sample(self) -> None:
        for t in threading.enumerate():
            if t.native_id is not None:
                self.names[t.native_id] = t.name
        for entry in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError, ValueError):
                self.cpu[int(entry)] = proc_cpu("self", int(entry))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> ThreadCPU:
        self.sample()
        self.base = dict(self.cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def rebase(self, seq: int) -> None:
        """Count from now on (from step ``seq``)."""
        self.sample()
        self.base = dict(self.cpu)
        self.base_seq = seq

    def by_name(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for tid, cpu in self.cpu.items():
            name = self.names.get(tid, "native (non-Python) threads")
            if name == "bench-sampler":
                continue
            out[name] += cpu - self.base.get(tid, 0.0)
        return dict(out)


# --- 1 + 2: latency and CPU of listen -----------------------------------------------------------


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

    from streammood.audio.decode import load_audio
    from streammood.audio.sources import FileSource
    from streammood.bus.keys import Keys
    from streammood.bus.publisher import MoodPublisher
    from streammood.layout import EMBED_EVERY
    from streammood.workers.listen import run_listen
    from streammood.workers.tagging import MoodStage, feature_stage

    ys, sr = [], None
    for path in clips:
        y, sr = load_audio(path)
        ys.append(y)
    wav = tmp / "listen.wav"
    sf.write(wav, np.concatenate(ys), sr, subtype="FLOAT")
    audio_s = sum(len(y) for y in ys) / sr

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

        def push(self, block):
            t_in, c_in = time.time(), time.thread_time()
            out = self.inner.push(block)
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
    mood = TimedMood(MoodStage(artifact, "bench-live"))
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


# --- 3: capacity of one infer worker ------------------------------------------------------------


def redis_usage(client) -> dict[str, float]:
    """Redis server CPU seconds (user + sys) and XREAD calls so far (the whole server: other
    users of the same server are counted too)."""
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    return {
        "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "xread": float(stats.get("cmdstat_xread", {}).get("calls", 0)),
    }


def precompute_inputs(artifact, clips: list[Path], n_steps: int) -> list:
    from streammood.audio.decode import load_audio
    from streammood.features.extractor import extract_stream

    ys, sr = [], None
    for path in clips:
        y, sr = load_audio(path)
        ys.append(y)
    y = np.concatenate(ys)
    block = int(sr * 0.05)
    blocks = (y[i : i + block] for i in range(0, len(y), block))
    return list(extract_stream(blocks, sr, artifact.embedder()).steps())[:n_steps]


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

    from streammood.bus.keys import Keys
    from streammood.bus.publisher import DEFAULT_FRAME_MAXLEN
    from streammood.workers.tagging import encode_inputs

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


# --- 4: naive reference (subprocess: the only TensorFlow import) ------------------------------


def naive_main(npz: Path, model: str, repeats: int) -> None:
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


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "streammood-4q"))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--clips",
        nargs="+",
        default=list(DEFAULT_CLIPS),
        help="4Q clips (paths under ../shared/data/4q; a folder means its first)",
    )
    parser.add_argument("--sources", default="25,50,100,150,200,250")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--naive-repeats", type=int, default=10)
    parser.add_argument(
        "--profile-infer", type=Path, help="write a cProfile of each infer worker to this folder"
    )
    parser.add_argument(
        "--block-ms", type=float, default=1000 * BLOCK_SECONDS, help="listen's audio blocks, ms"
    )
    parser.add_argument(
        "--parts", default="listen,capacity,naive", help="which parts to run (comma-separated)"
    )
    parser.add_argument("--naive-npz", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_npz is not None:
        naive_main(args.naive_npz, args.model, args.naive_repeats)
        return

    import redis

    from streammood.layout import EMBED_EVERY, WINDOW_STEPS
    from streammood.runtime.artifact import load_artifact

    artifact = load_artifact(args.model)
    clips = clip_paths(args.clips)
    prefix = f"smbench-{os.getpid()}"
    parts = set(args.parts.split(","))
    t_start = time.time()
    print(
        f"model {artifact.name} v{artifact.version} ({artifact.manifest.get('members')} members, "
        f"emb {artifact.emb_dim}); {os.cpu_count()} CPUs; {load_avg()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            live, caps, naive = None, [], None
            if "listen" in parts:
                live = bench_listen(artifact, args.redis_url, prefix, clips, tmp, args.block_ms)
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
            np.savez(
                tmp / "window.npz",
                mfcc=np.stack([i.mfcc for i in inputs[:WINDOW_STEPS]]),
                lld=np.stack([i.lld for i in inputs[:WINDOW_STEPS]]),
                emb=np.stack([i.emb for i in inputs[:WINDOW_STEPS]]),
            )
            if "naive" in parts:
                print(f"[4] naive reference (Keras predict, subprocess); {load_avg()}", flush=True)
            res = (
                None
                if "naive" not in parts
                else subprocess.run(
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
            )
            if res is not None and res.returncode == 0:
                naive = json.loads(res.stdout.strip().splitlines()[-1])
            elif res is not None:
                print("    naive reference failed:\n" + res.stderr[-2000:], flush=True)
        finally:
            client = redis.Redis.from_url(args.redis_url)
            for key in client.scan_iter(f"{prefix}*"):
                client.delete(key)
            client.close()

    print()
    print("=" * 100)
    print(f"model {artifact.name} v{artifact.version}; {load_avg()} (2-core machine, shared)")
    if live is not None:
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
    print(f"\ntotal {time.time() - t_start:.0f} s; {load_avg()}")


if __name__ == "__main__":
    main()
