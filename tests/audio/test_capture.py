"""Real capture: known music -> ALSA ``file`` plugin -> PortAudio -> DeviceSource (no sound card).

The device only exists in processes started with the fixture's environment, so capture runs in
a fresh interpreter (``AlsaCaptureDevice.run_python``) and the parent compares the samples.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streammood.audio.framer import Step, frame_signal

CAPTURE = r"""
import itertools, logging, sys, time
import numpy as np
from streammood.audio.framer import Framer
from streammood.audio.sources import DeviceSource

device, rate, n_blocks, queue_blocks, wait, out = sys.argv[1:]
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
rate = None if rate == "none" else int(rate)
src = DeviceSource(device, samplerate=rate, block_seconds=0.05, queue_blocks=int(queue_blocks))
with src:
    it = iter(src)
    first = next(it)               # starts the stream
    time.sleep(float(wait))        # a stalled consumer: the queue fills, blocks are dropped
    blocks = [first, *itertools.islice(it, int(n_blocks) - 1)]
    stats = src.stats
framer = Framer(src.sample_rate)
steps = [s for b in blocks for s in framer.push(b)]  # live steps, before any flush
np.savez(
    out,
    y=np.concatenate(blocks),
    sizes=np.array([b.size for b in blocks]),
    rate=src.sample_rate,
    channels=src.channels,
    stats=np.array([stats.blocks, stats.overflows, stats.underflows, stats.dropped_blocks]),
    y22=np.array([s.y22 for s in steps]).reshape(len(steps), 11025),
    y16=np.array([s.y16 for s in steps]).reshape(len(steps), 8000),
    seq=np.array([s.seq for s in steps], int),
)
"""


def capture(dev, tmp_path, n_blocks, rate=None, queue_blocks=None, wait=0.0):
    out = tmp_path / f"captured-{dev.rate}-{rate}.npz"
    proc = dev.run_python(
        CAPTURE,
        dev.device,
        "none" if rate is None else str(rate),
        str(n_blocks),
        str(queue_blocks or n_blocks + 8),
        str(wait),
        str(out),
    )
    return dict(np.load(out)), proc.stderr


def assert_bit_exact(captured: np.ndarray, dev) -> None:
    pcm = captured * 32768
    np.testing.assert_array_equal(pcm, np.round(pcm))  # whole int16 values: no conversion
    # the start of the file is the start of the capture (measured); locate it to be sure
    start = int(
        np.flatnonzero(
            np.all(
                np.lib.stride_tricks.sliding_window_view(dev.samples[:4000], 64) == pcm[:64], axis=1
            )
        )[0]
    )
    assert start == 0
    np.testing.assert_array_equal(pcm.astype(np.int16), dev.samples[: pcm.size])


@pytest.mark.parametrize("rate", [16_000, 22_050, 44_100])
def test_capture_is_bit_exact_and_frames_like_the_file(
    alsa_capture_device, music_pcm16, tmp_path, rate
):
    dev = alsa_capture_device(music_pcm16(rate, 4.0), rate)
    block = round(rate * 0.05)
    n_blocks = dev.samples.size // block - 2  # stay inside the file (the device loops stale data)
    got, _ = capture(dev, tmp_path, n_blocks)
    assert int(got["rate"]) == rate and int(got["channels"]) == 1
    assert (got["sizes"] == block).all()
    blocks, overflows, underflows, _ = got["stats"]
    assert (blocks, overflows, underflows) == (n_blocks, 0, 0)
    # the unpaced device outruns the queue once it holds our blocks (drops counted then);
    # bit-exactness proves none of the blocks read was lost
    assert_bit_exact(got["y"], dev)
    # the live framer on captured blocks gives the offline framer's steps of the same samples
    offline: list[Step] = frame_signal(dev.float_samples, rate)
    assert len(got["seq"]) >= int(got["y"].size // (rate * 0.5)) - 1
    for k, seq in enumerate(got["seq"]):
        assert seq == k
        np.testing.assert_array_equal(got["y22"][k], offline[k].y22)
        np.testing.assert_array_equal(got["y16"][k], offline[k].y16)


def test_unsupported_rate_falls_back_to_native(alsa_capture_device, music_pcm16, tmp_path):
    dev = alsa_capture_device(music_pcm16(44_100, 2.0), 44_100)
    got, log = capture(dev, tmp_path, n_blocks=20, rate=1_000)  # PortAudio error -9997
    assert int(got["rate"]) == 44_100
    assert "1000 Hz not supported" in log and "native 44100 Hz" in log
    assert_bit_exact(got["y"], dev)


def test_stalled_consumer_drops_are_counted_and_logged(alsa_capture_device, music_pcm16, tmp_path):
    dev = alsa_capture_device(music_pcm16(16_000, 2.0), 16_000)
    # the ALSA file device is not paced: with 4 queue slots and a 0.5 s stall it must drop
    got, log = capture(dev, tmp_path, n_blocks=10, queue_blocks=4, wait=0.5)
    blocks, _, _, dropped = got["stats"]
    assert blocks == 10 and dropped > 0
    assert "blocks dropped" in log


DEVICES = r"""
import sys
from streammood.audio.sources import DeviceError, resolve_input_device, list_input_devices
print("LIST", [(d.index, d.name, d.default_rate) for d in list_input_devices()])
print("EXACT", resolve_input_device("cap").name)
print("SUB", resolve_input_device("CAP_R").name)
print("IDX", resolve_input_device(str(resolve_input_device("cap").index)).name)
for bad in ("no-such-device", "99", "ca"):
    try:
        resolve_input_device(bad)
    except DeviceError as exc:
        print("ERR", exc)
"""


def test_device_lookup_by_name_index_and_clear_errors(alsa_capture_device, music_pcm16):
    dev = alsa_capture_device(music_pcm16(16_000, 1.0), 16_000)
    out = dev.run_python(DEVICES).stdout
    assert "EXACT cap\n" in out and "SUB cap_raw\n" in out and "IDX cap\n" in out
    errors = [line for line in out.splitlines() if line.startswith("ERR")]
    assert len(errors) == 3
    assert "'no-such-device' not found" in errors[0] and "cap_raw" in errors[0]
    assert "99 not found" in errors[1] and ": cap" in errors[1]
    assert "ambiguous" in errors[2]


def test_cli_devices_lists_the_capture_device(alsa_capture_device, music_pcm16):
    dev = alsa_capture_device(music_pcm16(16_000, 1.0), 16_000)
    out = dev.run_python("from streammood.cli import app; app(['devices'])").stdout
    assert "cap_raw" in out and "16000" in out


REALTIME = r"""
import itertools, logging, sys, time
import numpy as np
from streammood.audio.sources import DeviceSource

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
with DeviceSource("system", samplerate=16000, block_seconds=0.05, queue_blocks=4) as src:
    it = iter(src)
    before = [next(it) for _ in range(10)]
    s0 = src.stats
    time.sleep(1.0)                         # stall: 20 blocks arrive, 4 fit in the queue
    after = [next(it) for _ in range(5)]
    s1 = src.stats
print("RATE", src.sample_rate, src.channels)
print("BEFORE", s0.blocks, s0.dropped_blocks, s0.overflows)
print("AFTER", s1.blocks, s1.dropped_blocks, s1.dropped_samples)
print("SILENT", bool(np.all(np.concatenate(before + after) == 0)))
"""


def test_realtime_device_falls_back_and_counts_drops(jack_dummy_server):
    """JACK's dummy driver is paced in real time and runs at 48 kHz only: 16 kHz is refused
    (PortAudio -9997) and capture falls back; a stalled consumer loses blocks, counted, logged."""
    proc = subprocess.run(
        [sys.executable, "-c", REALTIME],
        env=jack_dummy_server,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert out["RATE"] == "48000 1"
    assert "16000 Hz not supported" in proc.stderr and "native 48000 Hz" in proc.stderr
    assert out["BEFORE"].split()[0] == "10"
    blocks, dropped, dropped_samples = map(int, out["AFTER"].split())
    assert blocks == 15 and dropped > 0 and dropped_samples == dropped * 2400
    assert "blocks dropped" in proc.stderr
    assert out["SILENT"] == "True"  # the dummy driver captures silence
