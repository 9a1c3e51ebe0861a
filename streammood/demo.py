"""``make demo``: live tagging of music in real time, with mood lines streaming in over Redis.

Finds Redis (``$STREAMMOOD_REDIS_URL``, 127.0.0.1:6379, or starts an embedded server), starts a
``streammood subscribe`` process and the dashboard (its URL printed: watch the mood move in a
browser), and runs ``streammood listen --realtime`` on real music: two 4Q clips of contrasting
mood from ``../shared/data`` when that folder exists, else a synthesised piece (a bright fast
section, then a dark slow one) so that the demo runs on any machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STREAMMOOD_DATA_DIR", ROOT.parent / "shared" / "data")) / "4q"
RATE = 22_050


def _tone(freqs: list[float], seconds: float, rate: int, decay: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    env = np.exp(-decay * t)
    return sum(np.sin(2 * np.pi * f * t) for f in freqs) * env / len(freqs)


def synthesise(rate: int = RATE) -> np.ndarray:
    """~40 s of synthetic music: 20 s of fast major arpeggios with a beat, then 20 s of slow,
    low minor chords. Float32 mono at ``rate`` Hz."""
    rng = np.random.default_rng(7)
    bright = []
    for k in range(80):  # 0.25 s notes, C major arpeggio + noise hi-hat
        note = [261.6, 329.6, 392.0, 523.3][k % 4]
        x = _tone([note, 2 * note], 0.25, rate, 6.0)
        x[: int(0.02 * rate)] += rng.normal(0, 0.3, int(0.02 * rate))
        bright.append(x)
    dark = [_tone([110.0, 130.8, 164.8], 2.5, rate, 0.6) for _ in range(8)]  # A minor, slow
    y = np.concatenate(bright + dark) * 0.5
    return y.astype(np.float32)


def demo_audio(workdir: Path) -> Path:
    """Real clips (a Q1 then a Q3 one) when the data set is here, else the synthetic piece."""
    target = workdir / "demo.wav"
    q1, q3 = sorted((DATA / "Q1").glob("*.mp3")), sorted((DATA / "Q3").glob("*.mp3"))
    if q1 and q3:
        from streammood.audio.decode import load_audio

        parts = [load_audio(q1[0]), load_audio(q3[0])]
        y = np.concatenate([_to_demo_rate(y, sr) for y, sr in parts])
        print(
            f"demo: tagging {q1[0].name} (4Q Q1, active-positive) then {q3[0].name} (Q3, "
            "passive-negative), in real time"
        )
    else:
        y = synthesise()
        print("demo: tagging a synthesised piece (bright fast section, then dark slow chords)")
    sf.write(target, y, RATE)
    return target


def _to_demo_rate(y: np.ndarray, sr: int) -> np.ndarray:
    from streammood.audio.resample import resample

    return resample(y, sr, RATE) if sr != RATE else y


def main() -> int:
    from streammood.bus.embedded import ensure_redis

    endpoint = ensure_redis(None, start=True)
    print(f"demo: {endpoint.describe()}")
    exe = [sys.executable, "-m", "streammood"]
    with tempfile.TemporaryDirectory(prefix="streammood-demo-") as tmp:
        audio = demo_audio(Path(tmp))
        env = {**os.environ, "STREAMMOOD_REDIS_URL": endpoint.url}
        subscriber = subprocess.Popen(
            [*exe, "subscribe", "--source", "demo"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        dashboard, url = start_dashboard(exe, env)
        listener = subprocess.Popen(
            [*exe, "listen", "--file", str(audio), "--realtime", "--source-id", "demo", "--quiet"],
            env=env,
        )
        print("demo: mood lines below arrive through Redis (a separate subscriber process):")
        try:
            assert subscriber.stdout is not None
            while listener.poll() is None or _readable(subscriber):
                line = subscriber.stdout.readline()
                if not line:
                    break
                print(f"  {line.rstrip()}", flush=True)
                if listener.poll() is not None and not _readable(subscriber):
                    break
            if url and sys.stdin.isatty():
                print(f"demo: the music has ended; the dashboard stays up at {url} (Ctrl-C ends)")
                dashboard.wait()
        except KeyboardInterrupt:
            listener.terminate()
        finally:
            listener.wait()
            subscriber.terminate()
            subscriber.wait()
            dashboard.terminate()
            dashboard.wait()
            endpoint.close()
    return listener.returncode or 0


def start_dashboard(exe: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str | None]:
    """Start ``streammood dashboard`` (port 8765, else any free one) and print its URL.

    Returns the process and the URL (``None`` if it did not come up)."""
    import threading

    for port in ("8765", "0"):
        proc = subprocess.Popen(
            [*exe, "dashboard", "--port", port], env=env, stderr=subprocess.PIPE, text=True
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            if "dashboard at " in line:
                url = line.split("dashboard at ", 1)[1].split()[0]
                print(f"demo: open {url} in a browser to watch the mood move", flush=True)
                # its later messages keep flowing (and its pipe never fills)
                threading.Thread(target=_forward, args=(proc.stderr,), daemon=True).start()
                return proc, url
        proc.wait()
    print("demo: the dashboard did not start; mood lines only", flush=True)
    return proc, None


def _forward(stream) -> None:
    for line in stream:
        sys.stderr.write(line)


def _readable(proc: subprocess.Popen) -> bool:
    import select

    return bool(proc.stdout) and bool(select.select([proc.stdout], [], [], 0.5)[0])


if __name__ == "__main__":
    sys.exit(main())
