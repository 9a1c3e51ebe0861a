"""File sources and the device API's behaviour without PortAudio devices."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from streammood.audio.decode import DECODE_FRAMES, load_audio
from streammood.audio.framer import frame_blocks, frame_signal
from streammood.audio.sources import AudioSource, FileSource, open_source
from streammood.errors import StreammoodError
from tests.audio.test_decode import UNCAPTURED, decoder_lines, run_python

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_file_source_blocks_equal_the_decoded_file(music_clip):
    y, sr = load_audio(music_clip)
    with FileSource(music_clip, block_seconds=0.1) as src:
        assert isinstance(src, AudioSource)
        assert src.sample_rate == sr
        blocks = list(src)
        stats = src.stats
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    assert all(b.size == 2205 for b in blocks[:-1])
    np.testing.assert_array_equal(np.concatenate(blocks), y)
    assert (stats.blocks, stats.samples, stats.problems) == (len(blocks), y.size, 0)


def test_file_source_through_framer_equals_offline(music_clip, tmp_path):
    y, sr = load_audio(music_clip)
    path = tmp_path / "clip48k.flac"
    sf.write(path, (resample_to(y, sr, 48_000)[: 48_000 * 6] * 0.5), 48_000, subtype="PCM_24")
    z, sr2 = load_audio(path)
    streamed = list(frame_blocks(FileSource(path, block_seconds=0.05), sr2))
    offline = frame_signal(z, sr2)
    assert len(streamed) == len(offline) == 12
    for a, b in zip(streamed, offline, strict=True):
        np.testing.assert_array_equal(a.y22, b.y22)
        np.testing.assert_array_equal(a.y16, b.y16)


def resample_to(y, sr, rate):
    from streammood.audio.resample import resample

    return resample(y, sr, rate)


def test_realtime_file_source_is_paced(music_clip, tmp_path):
    y, sr = load_audio(music_clip)
    path = tmp_path / "one_second.wav"
    sf.write(path, y[:sr], sr)
    t0 = time.monotonic()
    n = sum(b.size for b in FileSource(path, realtime=True, block_seconds=0.1))
    elapsed = time.monotonic() - t0
    assert n == sr
    assert elapsed >= 0.95  # never faster than real time (the last block is due at 1.0 s)


def test_open_source_picks_file_and_refuses_both(music_clip):
    src = open_source(file=music_clip)
    assert isinstance(src, FileSource)
    src.close()
    with pytest.raises(StreammoodError, match="not both"):
        open_source(device="cap", file=music_clip)


STREAMED = """
import logging, sys, numpy as np
logging.basicConfig(level=logging.WARNING, format="REPORT %(name)s %(message)s")
from streammood.audio.sources import FileSource
with FileSource(sys.argv[1]) as src:  # to the end, then closed: one report
    y = np.concatenate(list(src))
np.save(sys.argv[2], y)
src = FileSource(sys.argv[1], block_seconds=float(sys.argv[3]))
next(iter(src))  # one block, then closed (twice): one report of what was decoded
src.close()
src.close()
"""


def test_file_source_reports_mp3_decode_errors_once(music_clip, tmp_path):
    uncaptured = tmp_path / "uncaptured.npy"
    stderr = run_python(UNCAPTURED, str(music_clip), str(uncaptured)).stderr
    n = len(decoder_lines(stderr))
    assert n, "the clip no longer makes libmpg123 complain"
    # one 12 s block takes 5 libsndfile reads; the decoder's complaints about those (2 of 4)
    reads = 12 * 22_050 // DECODE_FRAMES + 1
    n_first = len(decoder_lines(stderr[: stderr.index(f"read {reads}\n")]))
    assert 0 < n_first < n  # the clip has errors inside and after the first block

    proc = run_python(STREAMED, str(music_clip), str(tmp_path / "y.npy"), "12")
    assert decoder_lines(proc.stderr) == [] and "part2_3_length" not in proc.stderr

    def report(k: int) -> str:
        return (
            f"REPORT streammood.audio.decode {music_clip}: {k} MP3 frames had decode errors "
            "(libmpg123); audio decoded anyway"
        )

    assert proc.stderr.splitlines() == [report(n), report(n_first)]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(uncaptured))


NO_PORTAUDIO = r"""
import ctypes.util, sys
ctypes.util.find_library = lambda name: None          # as on a machine without libportaudio2
sys.modules.pop("_sounddevice_data", None)
from streammood.audio.decode import load_audio         # files still work
from streammood.audio.sources import DeviceSource, DeviceError
load_audio(sys.argv[1])
try:
    DeviceSource()
except DeviceError as exc:
    print("ERR", exc)
"""


def test_missing_portaudio_is_a_clear_error_only_for_devices(music_clip):
    proc = subprocess.run(
        [sys.executable, "-c", NO_PORTAUDIO, str(music_clip)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERR cannot use sound devices" in proc.stdout
    assert "libportaudio2" in proc.stdout
