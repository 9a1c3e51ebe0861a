from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import streammood.features.smile
from streammood.audio.sources import FileSource
from streammood.features.extractor import (
    FeatureSet,
    StreamingExtractor,
    extract_offline,
    extract_stream,
)
from streammood.features.mel import patch_steps
from streammood.layout import EMBED_EVERY
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
    assert stream.emb.shape == offline.emb.shape
    if stream.emb.shape[-1]:
        assert_parity(stream.emb, offline.emb, "embedding")


@pytest.fixture(scope="module")
def offline_sets(decoded_clips) -> list[FeatureSet]:
    return [extract_offline(y, sr) for _, y, sr in decoded_clips]


def test_offline_shapes_and_step_count(decoded_clips, offline_sets):
    for (path, y, sr), fs in zip(decoded_clips, offline_sets, strict=True):
        n = math.floor(len(y) / sr / 0.5)
        assert fs.n_steps == n, path
        assert fs.mfcc.shape == (n, 21, 20) and fs.lld.shape == (n, 260)
        assert fs.mel_patches.shape == (len(patch_steps(n)), 187, 96)
        np.testing.assert_array_equal(fs.patch_steps[:4], [0, 5, 10, 20])
        np.testing.assert_array_equal(fs.t_start, np.arange(n) * 0.5)
        assert len(fs.lld_names) == 260
        for arr in (fs.mfcc, fs.lld, fs.mel_patches):
            assert arr.dtype == np.float32 and np.isfinite(arr).all()


def test_file_through_live_path_equals_offline(decoded_clips, offline_sets):
    """Every clip (one per quadrant, one peaking at 1.47) read by FileSource in 100 ms blocks
    and pushed through the live extractor: equal to the whole-file path."""
    for (path, _, _), offline in zip(decoded_clips, offline_sets, strict=True):
        with FileSource(path) as source, StreamingExtractor(source.sample_rate) as ex:
            out = []
            for block in source:
                done = ex.push(block)
                # in order, and never before the step's audio is in
                assert [f.seq for f in done] == list(range(len(out), len(out) + len(done)))
                assert all(f.t_end * source.sample_rate <= ex.samples_in for f in done)
                out += done
            out += ex.finish()
        _assert_feature_parity(FeatureSet.from_steps(out), offline)


def _blocks(y: np.ndarray, n: int) -> list[np.ndarray]:
    return [y[i : i + n] for i in range(0, len(y), n)]


def test_steps_come_out_about_150_ms_after_their_end(decoded_clips, monkeypatch):
    """The latency claim, counted in audio: pushing 50 ms blocks, each step's features come
    back from the push whose audio reaches less than 250 ms past the step's end (openSMILE needs
    ~150 ms of look-ahead, plus resampler delay and the block size); only the last step waits for
    finish(). openSMILE's thread is given time to catch up (a loaded machine must not decide a
    claim about audio)."""
    monkeypatch.setattr(streammood.features.smile, "CATCH_UP_SECONDS", 10.0)
    _, y, sr = decoded_clips[2]
    for rate, x in ((sr, y[: sr * 12]), (48_000, _resampled(y[: sr * 12], sr, 48_000))):
        lags = []
        with StreamingExtractor(rate) as ex:
            for block in _blocks(x, rate // 20):
                for f in ex.push(block):
                    lags.append(ex.samples_in - round(f.t_end * rate))
            last = ex.finish()
        assert [f.seq for f in last] == [len(lags)] == [len(x) // (rate // 2) - 1]
        lag_ms = 1000 * np.array(lags) / rate
        assert lag_ms.max() < 250, f"{rate} Hz: step lags {lag_ms.round()} ms"
        assert lag_ms.min() >= 0


def _resampled(y: np.ndarray, sr: int, rate: int) -> np.ndarray:
    from streammood.audio.resample import resample

    return resample(y, sr, rate)


@pytest.mark.parametrize("seconds", [11.37, 11.5])
def test_last_step_equals_offline(decoded_clips, seconds):
    """The last step too: openSMILE sees the audio after the last whole step, then end of input,
    in both paths (lengths a multiple of 0.5 s and not)."""
    _, y, sr = decoded_clips[3]
    x = y[: round(seconds * sr)]
    offline = extract_offline(x, sr)
    assert offline.n_steps == int(seconds / 0.5)
    stream = extract_stream(_blocks(x, sr // 20), sr)
    _assert_feature_parity(stream, offline)
    np.testing.assert_array_equal(stream.lld[-1], offline.lld[-1])


def test_irregular_blocks_equal_offline(decoded_clips, offline_sets):
    _, y, sr = decoded_clips[1]
    rng = np.random.default_rng(3)
    cuts = np.cumsum(rng.integers(1, sr, size=200))
    blocks = np.split(y, cuts[cuts < len(y)])
    _assert_feature_parity(extract_stream(blocks, sr), offline_sets[1])


def test_stage_with_embedder_equals_offline_and_holds_between_patches(decoded_clips, shipped_model):
    """With the shipped embedder: streamed model inputs equal the offline ones (embedding
    included), each patch step's embedding is held until the next patch, and ``close`` stops
    the musicnn and openSMILE threads."""
    import threading

    _, y, sr = decoded_clips[2]
    x = y[: 12 * sr]
    offline = extract_offline(x, sr, shipped_model.embedder())
    assert offline.emb.shape == (24, shipped_model.emb_dim)
    stream = extract_stream(_blocks(x, sr // 20), sr, shipped_model.embedder())
    _assert_feature_parity(stream, offline)
    for seq in range(offline.n_steps):  # held: equal to the embedding of the last patch step
        last = max(p for p in (0, 5, 10, 20) if p <= seq)
        np.testing.assert_array_equal(stream.emb[seq], stream.emb[last])
    assert not np.array_equal(stream.emb[0], stream.emb[5])  # the early patch: 3 s in
    assert not np.array_equal(stream.emb[5], stream.emb[EMBED_EVERY])
    ex = StreamingExtractor(sr, shipped_model.embedder())
    ex.push(x[: 2 * sr])
    assert any(t.name.startswith("streammood-musicnn") for t in threading.enumerate())
    ex.close()
    ex.close()
    assert not any(t.name.startswith("streammood-musicnn") for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="after finish"):
        ex.push(x[:100])


def test_step_features_fields(decoded_clips):
    _, y, sr = decoded_clips[0]
    with StreamingExtractor(sr) as ex:
        out = ex.push(y[: int(3.2 * sr)])
        out += ex.finish()
    assert [f.seq for f in out] == list(range(6))
    assert [f.mel_patch is not None for f in out] == [s in (0, 5) for s in range(6)]
    f = out[5]
    assert (f.t_start, f.t_end) == (2.5, 3.0)
    assert f.mfcc.shape == (21, 20) and f.lld.shape == (260,) and f.emb.shape == (0,)


def test_bad_blocks_and_push_after_finish_are_refused():
    with StreamingExtractor(22_050) as ex:
        with pytest.raises(ValueError, match="mono"):
            ex.push(np.zeros((100, 2), np.float32))
        assert ex.push(np.zeros(0, np.float32)) == []
        assert ex.finish() == [] and ex.finish() == []
        with pytest.raises(RuntimeError, match="after finish"):
            ex.push(np.zeros(100, np.float32))


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
        blocks = np.split(y, np.sort(rng.integers(0, len(y), size=7)))
        _assert_feature_parity(extract_stream(blocks, sr), off)
    silent = extract_offline(np.zeros(44_100, np.float32), 44_100)
    assert silent.n_steps == 2 and np.isfinite(silent.lld).all() and np.isfinite(silent.mfcc).all()


CAPTURE = r"""
import sys
import numpy as np
from streammood.audio.sources import DeviceSource
from streammood.features.extractor import FeatureSet, StreamingExtractor

device, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
src = DeviceSource(device, queue_blocks=4096)
ex, feats, got = StreamingExtractor(src.sample_rate), [], []
for block in src:
    block = block[: n - sum(map(len, got))]
    got.append(block)
    feats += ex.push(block)
    if sum(map(len, got)) >= n:
        break
src.close()
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
        mfcc=got["mfcc"],
        lld=got["lld"],
        emb=np.zeros((len(got["mfcc"]), 0), np.float32),
        t_start=got["t_start"],
        seq=got["seq"],
        patch_steps=got["patch_steps"],
        mel_patches=got["mel_patches"],
    )
    assert live.n_steps == 16
    _assert_feature_parity(live, extract_offline(dev.float_samples, 44_100))
