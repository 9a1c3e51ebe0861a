"""Decoding real audio in every format the issue lists, and a clear one-line error for bad files."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streammood.audio.decode import (
    AudioError,
    DecoderMessages,
    file_info,
    load_audio,
)
from streammood.audio.framer import frame_blocks, frame_signal
from streammood.audio.resample import resample
from streammood.audio.sources import FileSource
from streammood.errors import StreammoodError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def music(music_clip):
    """10 s of the real clip, mono float32 at 22 050 Hz, scaled into [-0.9, 0.9]."""
    y, sr = load_audio(music_clip)
    y = y[: 10 * sr]
    return (0.9 * y / np.abs(y).max()).astype(np.float32), sr


def assert_one_line_error(exc: pytest.ExceptionInfo, path, *words: str) -> None:
    msg = str(exc.value)
    assert isinstance(exc.value, StreammoodError)
    assert "\n" not in msg and str(path) in msg, msg
    for w in words:
        assert w in msg, msg


def test_real_mp3(music_clip):
    y, sr = load_audio(music_clip)
    assert sr == 22_050 and y.dtype == np.float32 and y.ndim == 1
    assert 29.5 < y.size / sr < 31 and np.isfinite(y).all()
    info = file_info(music_clip)
    assert (info.sample_rate, info.channels) == (22_050, 1)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp3"
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert_one_line_error(exc, path, "not found")


@pytest.mark.parametrize("suffix", [".mp3", ".wav"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert_one_line_error(exc, path, "empty")
    with pytest.raises(AudioError):
        FileSource(path)


def test_text_file_named_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert_one_line_error(exc, path, "cannot decode")


def test_mp3_header_only(tmp_path, music_clip):
    path = tmp_path / "stub.mp3"
    path.write_bytes(music_clip.read_bytes()[:300])
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert_one_line_error(exc, path, "cannot decode")


def test_truncated_mp3_decodes_what_is_there(tmp_path, music_clip):
    full, sr = load_audio(music_clip)
    data = music_clip.read_bytes()
    path = tmp_path / "half.mp3"
    path.write_bytes(data[: len(data) // 2])
    y, sr2 = load_audio(path)  # no hang, no error
    assert sr2 == sr and 0.4 < y.size / full.size < 0.6
    # what is there is the start of the song
    n = y.size - 2 * 1152  # the last, cut frame may differ
    np.testing.assert_allclose(y[:n], full[:n], atol=1e-6)
    steps = list(frame_blocks(FileSource(path), sr))
    assert len(steps) == int(y.size // (sr * 0.5))


def test_zero_length_wav(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 44_100)
    with pytest.raises(AudioError) as exc:
        load_audio(path)
    assert_one_line_error(exc, path, "no audio samples")
    with pytest.raises(AudioError):
        list(FileSource(path))


@pytest.mark.parametrize(
    ("subtype", "atol"),
    [("PCM_U8", 1 / 64), ("PCM_16", 1 / 16384), ("PCM_24", 1e-6), ("PCM_32", 1e-7), ("FLOAT", 0)],
)
def test_wav_sample_formats(tmp_path, music, subtype, atol):
    y, sr = music
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, y, sr, subtype=subtype)
    z, sr2 = load_audio(path)
    assert sr2 == sr and z.dtype == np.float32 and z.shape == y.shape
    np.testing.assert_allclose(z, y, atol=atol, rtol=0)


@pytest.mark.parametrize(
    ("fmt", "suffix", "atol"), [("FLAC", ".flac", 1 / 16384), ("OGG", ".ogg", 0.2)]
)
def test_flac_and_ogg(tmp_path, music, fmt, suffix, atol):
    y, sr = music
    path = tmp_path / f"clip{suffix}"
    sf.write(path, y, sr, format=fmt)
    z, sr2 = load_audio(path)
    assert sr2 == sr
    assert abs(z.size - y.size) < sr // 10
    n = min(z.size, y.size)
    np.testing.assert_allclose(z[:n], y[:n], atol=atol)
    if fmt == "OGG":  # lossy: still the same music
        assert np.corrcoef(z[:n], y[:n])[0, 1] > 0.95


def test_96khz(tmp_path, music):
    y, sr = music
    y96 = resample(y, sr, 96_000)
    path = tmp_path / "hires.wav"
    sf.write(path, y96, 96_000, subtype="FLOAT")
    z, sr2 = load_audio(path)
    assert sr2 == 96_000
    steps = frame_signal(z, sr2)
    assert len(steps) == int(z.size // 48_000) == 20
    back = np.concatenate([s.y22 for s in steps])
    inner = slice(2_000, back.size - 2_000)
    # 22.05 -> 96 -> 22.05 kHz round trip: the same music, within resampling error
    assert np.max(np.abs(back[inner] - y[inner])) < 0.02


def test_six_channels_are_averaged(tmp_path, music):
    y, sr = music
    gains = np.array([1.0, 0.5, -0.25, 0.0, 0.75, 0.1], np.float32)
    multi = y[:, None] * gains[None, :]
    path = tmp_path / "surround.wav"
    sf.write(path, multi, sr, subtype="FLOAT")
    assert file_info(path).channels == 6
    z, _ = load_audio(path)
    np.testing.assert_allclose(z, y * gains.mean(), atol=1e-6)


def test_nan_and_inf_become_zero_with_a_warning(tmp_path, music, caplog):
    y, sr = music
    bad = y.copy()
    idx = np.array([10, 5_000, 100_000, 150_000])
    bad[idx] = [np.nan, np.inf, -np.inf, np.nan]
    path = tmp_path / "glitch.wav"
    sf.write(path, bad, sr, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="streammood.audio.decode"):
        z, _ = load_audio(path)
    assert np.isfinite(z).all()
    assert (z[idx] == 0).all()
    keep = np.ones(y.size, bool)
    keep[idx] = False
    np.testing.assert_array_equal(z[keep], y[keep])
    assert any(
        "non-finite" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records
    )
    steps = frame_signal(z, sr)
    assert all(np.isfinite(s.y22).all() and np.isfinite(s.y16).all() for s in steps)


def test_pure_silence(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(2 * 44_100, np.int16), 44_100, subtype="PCM_16")
    z, sr = load_audio(path)
    steps = frame_signal(z, sr)
    assert len(steps) == 4
    assert all(not s.y22.any() and not s.y16.any() for s in steps)


def test_shorter_than_one_step(tmp_path, music):
    y, sr = music
    path = tmp_path / "blip.wav"
    sf.write(path, y[: int(0.3 * sr)], sr)
    z, sr2 = load_audio(path)
    assert z.size == int(0.3 * sr)
    assert frame_signal(z, sr2) == []
    assert list(frame_blocks(FileSource(path), sr2)) == []


# --- libmpg123's stderr lines: captured, counted, one warning per file -----------------------

CLEAN_CLIP = "Q1/MT0001898830.mp3"
"""A 4Q clip that libmpg123 decodes without a message."""

UNCAPTURED = """
import os, sys, numpy as np, soundfile as sf
from streammood.audio.decode import DECODE_FRAMES, to_mono
with sf.SoundFile(sys.argv[1]) as f:   # plain libsndfile reads, as before the capture
    blocks = []
    os.write(2, b"read 0\\n")
    while len(block := f.read(DECODE_FRAMES, dtype="float32", always_2d=True)):
        blocks.append(to_mono(block))
        os.write(2, b"read %d\\n" % len(blocks))  # the decoder's lines after it: of this read
np.save(sys.argv[2], np.concatenate(blocks))
"""

CAPTURED = """
import logging, os, sys, threading, numpy as np
logging.basicConfig(level=logging.WARNING, format="REPORT %(name)s %(message)s")
from streammood.audio.decode import load_audio
stop, written = threading.Event(), []
def chatter():  # another thread writing to fd 2 while the decoder's lines are captured
    while not stop.is_set():
        os.write(2, b"other thread %d\\n" % len(written))
        written.append(1)
        stop.wait(0.0002)
thread = threading.Thread(target=chatter)
thread.start()
y, sr = load_audio(sys.argv[1])
stop.set()
thread.join()
np.save(sys.argv[2], y)
print(len(written))
"""


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def decoder_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "src/libmpg123/" in line]


@pytest.fixture(scope="module")
def noisy_clip(music_clip, tmp_path_factory) -> tuple[Path, int, np.ndarray]:
    """``(clip, n, samples)``: the real clip ``Q1/MT0000040632.mp3``; how many lines libmpg123
    prints to fd 2 while plain libsndfile reads decode it (4, all ``part2_3_length (...) too large
    for available bit count (1568)``); and the samples those reads give."""
    out = tmp_path_factory.mktemp("uncaptured") / "y.npy"
    proc = run_python(UNCAPTURED, str(music_clip), str(out))
    lines = decoder_lines(proc.stderr)
    assert lines and all("part2_3_length" in line for line in lines), proc.stderr[-2000:]
    return music_clip, len(lines), np.load(out)


def test_mp3_decode_errors_are_one_warning_and_off_the_terminal(noisy_clip, tmp_path):
    clip, n, uncaptured = noisy_clip
    proc = run_python(CAPTURED, str(clip), str(tmp_path / "y.npy"))
    err = proc.stderr.splitlines()
    assert decoder_lines(proc.stderr) == [] and "part2_3_length" not in proc.stderr
    reports = [line for line in err if line.startswith("REPORT")]
    assert reports == [
        f"REPORT streammood.audio.decode {clip}: {n} MP3 frames had decode errors (libmpg123); "
        "audio decoded anyway"
    ]
    # the other thread's lines, captured or not, all reach stderr once (those written during a
    # capture a little later)
    chatter = [line for line in err if line.startswith("other thread")]
    assert sorted(chatter, key=lambda line: int(line.split()[-1])) == [
        f"other thread {i}" for i in range(int(proc.stdout))
    ]
    assert len(err) == len(reports) + len(chatter)
    # the capture changes no sample
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), uncaptured)


def test_mp3_decode_errors_are_counted_per_file(noisy_clip, fourq_dir, caplog):
    clip, n, _ = noisy_clip
    with caplog.at_level(logging.WARNING, logger="streammood.audio.decode"):
        load_audio(fourq_dir / CLEAN_CLIP)
        assert caplog.records == []  # nothing to report
        load_audio(clip)
        with FileSource(clip) as src:
            for _ in src:
                pass
    assert [r.getMessage() for r in caplog.records] == [
        f"{clip}: {n} MP3 frames had decode errors (libmpg123); audio decoded anyway"
    ] * 2  # once per decode of the file


def test_decoder_messages_summary():
    messages = DecoderMessages("x.mp3")
    assert messages.summary() is None
    messages.add([b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length"])
    assert messages.summary() == (
        "x.mp3: 1 MP3 frame had decode errors (libmpg123); audio decoded anyway"
    )
    messages.add([b"Note: Illegal Audio-MPEG-Header 0x98ce101e at offset 5059.", b"Note: x"])
    assert messages.summary() == (
        "x.mp3: 1 MP3 frame had decode errors, 2 other decoder messages (libmpg123, first: "
        "'Note: Illegal Audio-MPEG-Header 0x98ce101e at offset 5059.'); audio decoded anyway"
    )
