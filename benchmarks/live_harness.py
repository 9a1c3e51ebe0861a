"""The harness the live benchmarks share (``bench_latency.py``, ``bench_capacity.py``): a
subscriber in its own process that stamps every mood message on arrival, CPU readings from
``/proc`` (per process, per thread), the 4Q clips, the inputs of the live feature stage, the
common options, and how the figures are printed.

Imported by those scripts as ``live_harness`` (a script's own folder is on ``sys.path``); not a
benchmark by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "4q"
DEFAULT_CLIPS = ("Q1/MT0000040632.mp3", "Q2")  # a Q1 clip, then the first Q2 clip
DEFAULT_MODEL = ROOT / "models" / "streammood-4q"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CLK = os.sysconf("SC_CLK_TCK")

# A subscriber in its own process: stamps each pub/sub message on arrival, parses afterwards.
# Columns: receive time, source, seq, t_end, emitted_at, captured_at (0 when absent).
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
        fh.write(f"{t:.6f}\t{d['source']}\t{d['seq']}\t{d['t_end']}\t{d['emitted_at']}"
                 f"\t{d.get('captured_at') or 0}\n")
"""


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
    """The 4Q clips named by ``--clips`` (a folder stands for its first clip)."""
    out = []
    for spec in specs:
        p = DATA / spec
        out.append(p if p.suffix else sorted(p.glob("*.mp3"))[0])
    return out


def start_subscriber(url: str, channel: str, out: Path) -> subprocess.Popen:
    """Start :data:`SUBSCRIBER` on ``channel``; returns once it is subscribed."""
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
        t, src, seq, t_end, emitted = line.split("\t")[:5]
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


def load_clips(clips: list[Path]) -> tuple[np.ndarray, int]:
    """The clips decoded (``load_audio``: mono, their own rate) and concatenated."""
    from streammood.audio.decode import load_audio

    ys, sr = [], None
    for path in clips:
        y, sr = load_audio(path)
        ys.append(y)
    return np.concatenate(ys), sr


def precompute_inputs(artifact, clips: list[Path], n_steps: int) -> list:
    """The first ``n_steps`` :class:`~streammood.features.extractor.ModelInputs` of the clips
    back to back, from the streaming extractor with the artifact's embedder (50 ms blocks)."""
    from streammood.features.extractor import extract_stream

    y, sr = load_clips(clips)
    block = int(sr * 0.05)
    blocks = (y[i : i + block] for i in range(0, len(y), block))
    return list(extract_stream(blocks, sr, artifact.embedder()).steps())[:n_steps]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--redis-url`` and ``--clips``, the options both live benchmarks take."""
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--clips",
        nargs="+",
        default=list(DEFAULT_CLIPS),
        help="4Q clips (paths under ../shared/data/4q; a folder means its first)",
    )


def model_line(artifact) -> str:
    """``model streammood-4q v1 (1 members, emb 656)``: the artifact, for the first line."""
    return (
        f"model {artifact.name} v{artifact.version} ({artifact.manifest.get('members')} members, "
        f"emb {artifact.emb_dim})"
    )


def delete_keys(url: str, prefix: str) -> None:
    """Delete every Redis key under the benchmark's private ``prefix``."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()
