"""Shared fixtures: the real data folder, real audio clips, a real Redis namespace, and an ALSA
capture device that plays known samples through PortAudio (no sound card needed)."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from streammood.features.smile import load_library

# Test modules import TensorFlow when collected; openSMILE's native library has to be loaded
# before it, or SMILEapi crashes the process (see load_library).
load_library()

# Tests stop real CLI processes with SIGINT (Ctrl-C). A shell starts background jobs with SIGINT
# ignored, and an ignored signal stays ignored across exec, so under `make test &` every child
# would ignore Ctrl-C. A Python handler here is reset to the default in each child at exec.
signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("STREAMMOOD_DATA_DIR", ROOT.parent / "shared" / "data"))
REDIS_URL = os.environ.get("STREAMMOOD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ALSA_CONF = Path("/usr/share/alsa/alsa.conf")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``; tests that need it skip with a reason when it is absent."""
    if not (DATA_DIR / "4q").is_dir():
        pytest.skip(f"real data not found at {DATA_DIR} (set STREAMMOOD_DATA_DIR)")
    return DATA_DIR


@pytest.fixture(scope="session")
def fourq_dir(data_dir: Path) -> Path:
    return data_dir / "4q"


@pytest.fixture(scope="session")
def deam_dir(data_dir: Path) -> Path:
    path = data_dir / "deam-sample"
    if not path.is_dir():
        pytest.skip(f"DEAM sample not found at {path}")
    return path


@pytest.fixture(scope="session")
def fourq_clips(fourq_dir: Path) -> list[Path]:
    """One real 4Q MP3 per quadrant (sorted, deterministic)."""
    return [sorted((fourq_dir / q).glob("*.mp3"))[0] for q in ("Q1", "Q2", "Q3", "Q4")]


@pytest.fixture(scope="session")
def music_clip(fourq_clips: list[Path]) -> Path:
    """One real ~30 s music clip (22.05 kHz mono MP3)."""
    return fourq_clips[0]


@pytest.fixture()
def redis_namespace() -> Iterator[tuple[str, str]]:
    """``(redis_url, key_prefix)`` on the machine's real Redis; every key under the prefix is
    deleted afterwards."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis server at {REDIS_URL}")
    prefix = f"smtest-{uuid.uuid4().hex[:10]}"
    yield REDIS_URL, prefix
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


# --- real capture without a sound card: PortAudio -> ALSA "file" plugin (DESIGN.md) -------------


@dataclass
class AlsaCaptureDevice:
    """An ALSA capture device that plays back known int16 samples, for real PortAudio capture.

    The device exists only for processes started with :attr:`env` (``ALSA_CONFIG_PATH`` must be
    set before PortAudio initialises, i.e. before ``sounddevice`` is first imported), so capture
    in a fresh interpreter: :meth:`run_python`.

    Facts that matter (measured): capture with ``dtype="int16"`` (``DeviceSource``'s default) is
    bit-exact, ``captured_float * 32768 == samples``, from the first sample; asking PortAudio for
    float32 makes ALSA's ``plug`` skip chunks. The device is not paced: it delivers as fast as it
    is read, so give ``DeviceSource`` a ``queue_blocks`` at least the number of blocks you read
    (or blocks are dropped, and counted). After the file ends it repeats stale buffers: read at
    most ``len(samples)`` samples. Any requested rate the ``plug`` layer can convert is accepted;
    an impossible one (e.g. 1000 Hz) gives PortAudio error -9997, and the device's default rate
    is ``rate``.

    Attributes
    ----------
    device : str
        PortAudio/ALSA device name to capture from (``"cap"``).
    rate : int
        Native rate of the device, Hz.
    samples : np.ndarray
        ``(n,)`` int16 samples the device delivers.
    raw_path, config_path : Path
    env : dict
        ``os.environ`` plus ``ALSA_CONFIG_PATH`` and ``PYTHONPATH`` (the project root).
    """

    device: str
    rate: int
    samples: np.ndarray
    raw_path: Path
    config_path: Path
    env: dict[str, str]

    @property
    def float_samples(self) -> np.ndarray:
        """``(n,)`` float32, ``samples / 32768``: what ``DeviceSource`` yields."""
        return self.samples.astype(np.float32) * np.float32(1 / 32768)

    def run_python(
        self, code: str, *args: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -c code args...`` with the device visible; fails the test on error."""
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            pytest.fail(f"capture subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc


def pcm16(y: np.ndarray) -> np.ndarray:
    """Float samples to int16 (``round(y * 32768)``, clipped to the int16 range)."""
    return np.clip(np.round(np.asarray(y, np.float64) * 32768), -32768, 32767).astype("<i2")


@pytest.fixture()
def alsa_capture_device(tmp_path: Path) -> Callable[..., AlsaCaptureDevice]:
    """Factory ``make(samples, rate, name="cap") -> AlsaCaptureDevice``.

    ``samples``: ``(n,)`` int16, or float (converted by :func:`pcm16`). Writes the raw file and an
    ALSA config (``pcm.<name>_raw``: ``file`` plugin reading it over a ``null`` slave;
    ``pcm.<name>``: ``plug`` at S16_LE, ``rate`` Hz, mono) under ``tmp_path``. Skips when
    libportaudio or ALSA's configuration is missing. See :class:`AlsaCaptureDevice`; e.g.::

        dev = alsa_capture_device(music_pcm16(44_100, 5.0), 44_100)
        proc = dev.run_python(CODE_USING_DeviceSource(dev.device), str(tmp_path / "out.npz"))
    """
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("libportaudio2 not installed")
    if not ALSA_CONF.is_file():
        pytest.skip(f"ALSA configuration {ALSA_CONF} not found")

    def make(samples: np.ndarray, rate: int, name: str = "cap") -> AlsaCaptureDevice:
        pcm = samples if samples.dtype == np.int16 else pcm16(samples)
        pcm = np.ascontiguousarray(pcm, dtype="<i2")
        raw = tmp_path / f"{name}-{rate}.raw"
        pcm.tofile(raw)
        conf = tmp_path / f"{name}-{rate}.asoundrc"
        conf.write_text(
            f'pcm.{name}_raw {{ type file; slave.pcm "null"; file "/dev/null"; '
            f'infile "{raw}"; format "raw" }}\n'
            f'pcm.{name} {{ type plug; slave {{ pcm "{name}_raw"; format S16_LE; '
            f"rate {int(rate)}; channels 1 }} }}\n"
        )
        env = dict(os.environ)
        env["ALSA_CONFIG_PATH"] = f"{ALSA_CONF}:{conf}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return AlsaCaptureDevice(name, int(rate), pcm, raw, conf, env)

    return make


@pytest.fixture(scope="session")
def music_pcm16(music_clip: Path) -> Callable[..., np.ndarray]:
    """Factory ``make(rate, seconds=None) -> (n,) int16``: the real ``music_clip`` decoded,
    resampled to ``rate`` Hz (soxr HQ) and converted by :func:`pcm16`; the first ``seconds``."""
    from streammood.audio.decode import load_audio
    from streammood.audio.resample import resample

    y, sr = load_audio(music_clip)

    def make(rate: int, seconds: float | None = None) -> np.ndarray:
        x = y if seconds is None else y[: round(seconds * sr)]
        return pcm16(resample(x, sr, rate))

    return make


@pytest.fixture(scope="session")
def musicnn_patches(fourq_clips: list[Path]) -> np.ndarray:
    """``(8, 187, 96)`` float32 musicnn input from the real 4Q clips (two per quadrant): librosa
    power mel at 16 kHz (n_fft 512, hop 256, 96 bands, ``center=False``), ``log10(10000 x + 1)``."""
    import librosa

    out = []
    for clip in fourq_clips:
        y, _ = librosa.load(clip, sr=16_000, mono=True, duration=8.0)
        mel = librosa.feature.melspectrogram(
            y=y, sr=16_000, n_fft=512, hop_length=256, n_mels=96, center=False
        ).T.astype(np.float32)
        logmel = np.log10(np.float32(10_000) * mel + np.float32(1))
        out += [logmel[:187], logmel[187:374]]
    return np.stack(out)


@pytest.fixture()
def jack_dummy_server() -> Iterator[dict[str, str]]:
    """A JACK server on the ``dummy`` driver (48 kHz, 1024-frame periods): a capture device that is
    paced in real time and delivers silence, for fallback and overflow tests. Yields the
    environment (``JACK_DEFAULT_SERVER``, ``JACK_NO_AUDIO_RESERVATION``, ``PYTHONPATH``) in which
    a fresh interpreter sees it as PortAudio device ``"system"`` (host API JACK, 2 channels,
    48 000 Hz only). Skips when ``jackd`` (Debian ``jackd2``) or libportaudio is missing."""
    jackd = shutil.which("jackd")
    if jackd is None or shutil.which("jack_lsp") is None:
        pytest.skip("jackd not installed (Debian package jackd2)")
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("libportaudio2 not installed")
    env = dict(os.environ)
    env["JACK_DEFAULT_SERVER"] = f"smtest-{uuid.uuid4().hex[:8]}"
    env["JACK_NO_AUDIO_RESERVATION"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [jackd, "-r", "-d", "dummy", "-r", "48000", "-p", "1024", "-C", "2", "-P", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jackd exited with status {proc.returncode} on start")
            ok = subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=10)
            if ok.returncode == 0 and b"system:capture_1" in ok.stdout:
                break
            if time.monotonic() > deadline:
                pytest.fail("jackd did not come up within 15 s")
            time.sleep(0.2)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


SHIPPED_MODEL = ROOT / "models" / "streammood-4q"


@pytest.fixture(scope="session")
def shipped_model():
    """The shipped model artifact (loaded and checked)."""
    from streammood.runtime.artifact import load_artifact

    if not (SHIPPED_MODEL / "manifest.json").is_file():
        pytest.skip(f"no shipped model at {SHIPPED_MODEL} (run the training command in its card)")
    return load_artifact(SHIPPED_MODEL)


@pytest.fixture(scope="session")
def long_music(fourq_clips: list[Path]) -> tuple[np.ndarray, int]:
    """About 60 s of real music (two 4Q clips back to back, 22.05 kHz): longer than a window."""
    from streammood.audio.decode import load_audio

    parts = [load_audio(p) for p in fourq_clips[:2]]
    assert {sr for _, sr in parts} == {parts[0][1]}
    return np.concatenate([y for y, _ in parts]), parts[0][1]
