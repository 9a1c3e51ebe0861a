from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from streammood.audio.framer import Framer, frame_signal
from streammood.audio.sources import FileSource
from streammood.features.extractor import (
    FeatureSet,
    StreamingExtractor,
    extract_offline,
    extract_steps,
)
from streammood.features.layout import EMBED_EVERY
from tests.features.parity import assert_parity


def _assert_feature_parity(stream: FeatureSet, offline: FeatureSet) -> None:
    assert stream.n_steps == offline.n_steps
    np.testing.assert_array_equal(stream.seq, offline.seq)
    np.testing.assert_array_equal(stream.t_start, offline.t_start)
    np.testing.assert_array_equal(stream.patch_steps, offline.patch_steps)
    assert_parity(stream.mfcc, offline.mfcc, "MFCC")
    assert_parity(stream.lld, offline.lld, "LLD")
    assert_parity(
        stream.mel_patches.reshape(-1, 96), offline.mel_patches.reshape(-1, 96), "mel patches"
    )


@pytest.fixture(scope="module")
def offline_sets(decoded_clips) -> list[FeatureSet]:
    return [extract_offline(y, sr) for _, y, sr in decoded_clips]


def test_offline_shapes_and_step_count(decoded_clips, offline_sets):
    for (path, y, sr), fs in zip(decoded_clips, offline_sets, strict=True):
        n = math.floor(len(y) / sr / 0.5)
        assert fs.n_steps == n, path
        assert fs.mfcc.shape == (n, 21, 20) and fs.lld.shape == (n, 260)
        assert fs.mel_patches.shape == (len(range(0, n, EMBED_EVERY)), 187, 96)
        np.testing.assert_array_equal(fs.t_start, np.arange(n) * 0.5)
        assert len(fs.lld_names) == 260
        for arr in (fs.mfcc, fs.lld, fs.mel_patches):
            assert arr.dtype == np.float32 and np.isfinite(arr).all()


def test_file_through_live_path_equals_offline(decoded_clips, offline_sets):
    """Every clip (one per quadrant, one peaking at 1.47) read by FileSource in 100 ms blocks,
    framed, extracted step by step: equal to the whole-file path."""
    for (path, _, _), offline in zip(decoded_clips, offline_sets, strict=True):
        with FileSource(path) as source:
            framer = Framer(source.sample_rate)
            ex = StreamingExtractor()
            out = []
            for block in source:
                for step in framer.push(block):
                    done = ex.push(step)
                    # LLD statistics lag by exactly one step
                    assert [f.seq for f in done] == ([step.seq - 1] if step.seq else [])
                    out += done
            for step in framer.flush():
                out += ex.push(step)
            out += ex.finish()
        _assert_feature_parity(FeatureSet.from_steps(out), offline)


def test_irregular_blocks_equal_offline(decoded_clips, offline_sets):
    _, y, sr = decoded_clips[1]
    rng = np.random.default_rng(3)
    cuts = np.cumsum(rng.integers(1, sr, size=200))
    blocks = np.split(y, cuts[cuts < len(y)])
    framer = Framer(sr)
    steps = [s for b in blocks for s in framer.push(b)] + framer.flush()
    _assert_feature_parity(extract_steps(steps), offline_sets[1])


def test_step_features_fields(clip_steps):
    with StreamingExtractor() as ex:
        out = []
        for step in clip_steps[:6]:
            out += ex.push(step)
        out += ex.finish()
    assert [f.seq for f in out] == list(range(6))
    assert [f.mel_patch is not None for f in out] == [s % EMBED_EVERY == 0 for s in range(6)]
    f = out[5]
    assert (f.t_start, f.t_end) == (2.5, 3.0)
    assert f.mfcc.shape == (21, 20) and f.lld.shape == (260,)


def test_out_of_order_step_is_refused(clip_steps):
    with StreamingExtractor() as ex:
        ex.push(clip_steps[0])
        with pytest.raises(ValueError, match="expected step seq 1"):
            ex.push(clip_steps[2])


def test_shorter_than_one_step_gives_empty_set():
    fs = extract_offline(np.zeros(10_000, np.float32), 22_050)
    assert fs.n_steps == 0 and fs.mfcc.shape == (0, 21, 20) and fs.lld.shape == (0, 260)
    assert fs.mel_patches.shape == (0, 187, 96)


def test_other_rates_and_silence():
    rng = np.random.default_rng(5)
    for sr in (8_000, 48_000, 96_000):
        y = (0.1 * rng.standard_normal(int(sr * 2.3))).astype(np.float32)
        off = extract_offline(y, sr)
        assert off.n_steps == 4
        _assert_feature_parity(extract_steps(frame_signal(y, sr)), off)
    silent = extract_offline(np.zeros(44_100, np.float32), 44_100)
    assert silent.n_steps == 2 and np.isfinite(silent.lld).all() and np.isfinite(silent.mfcc).all()


CAPTURE = r"""
import sys
import numpy as np
from streammood.audio.framer import Framer
from streammood.audio.sources import DeviceSource
from streammood.features.extractor import FeatureSet, StreamingExtractor

device, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
src = DeviceSource(device, queue_blocks=4096)
framer, ex, feats, got = Framer(src.sample_rate), StreamingExtractor(), [], []
for block in src:
    block = block[: n - sum(map(len, got))]
    got.append(block)
    for step in framer.push(block):
        feats += ex.push(step)
    if sum(map(len, got)) >= n:
        break
src.close()
for step in framer.flush():
    feats += ex.push(step)
feats += ex.finish()
fs = FeatureSet.from_steps(feats)
np.savez(out, captured=np.concatenate(got), rate=src.sample_rate,
         **fs.arrays())
"""


def test_device_capture_equals_offline(alsa_capture_device, music_pcm16, tmp_path: Path):
    """Real capture: sounddevice -> PortAudio -> ALSA (file plugin) at 44.1 kHz, framed and
    extracted live; equal to the offline features of the samples the device played."""
    dev = alsa_capture_device(music_pcm16(44_100, 8.0), 44_100)
    out = tmp_path / "captured.npz"
    dev.run_python(CAPTURE, dev.device, str(len(dev.samples)), str(out))
    got = np.load(out)
    assert int(got["rate"]) == 44_100
    # the unpaced device keeps delivering (stale buffers, dropped) after we stop reading; what
    # was read is the known signal, sample for sample
    np.testing.assert_array_equal(got["captured"], dev.float_samples)
    live = FeatureSet(
        mfcc=got["mfcc"], lld=got["lld"], t_start=got["t_start"], seq=got["seq"],
        patch_steps=got["patch_steps"], mel_patches=got["mel_patches"],
    )
    assert live.n_steps == 16
    _assert_feature_parity(live, extract_offline(dev.float_samples, 44_100))
