from __future__ import annotations

import numpy as np
import opensmile
import pytest

from streammood.features.smile import (
    StreamingSmile,
    frame_names,
    lld_names,
    lld_offline,
    to_pcm16,
)
from streammood.layout import N_LLD_STATS
from tests.features.parity import assert_parity


@pytest.fixture(scope="module")
def y16(clip_steps) -> np.ndarray:
    """~30 s of real music at 16 kHz that peaks above 1.0 (whole steps)."""
    y = np.concatenate([s.y16 for s in clip_steps])
    assert np.abs(y).max() > 1.0
    return y


@pytest.fixture(scope="module")
def offline(y16) -> np.ndarray:
    return lld_offline(y16, len(y16) // 8000)


def _reference_stats(y16: np.ndarray) -> np.ndarray:
    """Per-step mean/std of the frames of the ``opensmile`` package's own ``process_signal`` on
    the whole (clipped) signal: an independent reference for the SMILEapi engine."""
    clipped = np.clip(y16, -1.0, 32767 / 32768).astype(np.float32)
    frames = []
    for level in (opensmile.FeatureLevel.LowLevelDescriptors,
                  opensmile.FeatureLevel.LowLevelDescriptors_Deltas):
        smile = opensmile.Smile(opensmile.FeatureSet.ComParE_2016, level)
        df = smile.process_signal(clipped, 16000)
        start = df.index.get_level_values("start").total_seconds().to_numpy()
        frames.append((np.floor(np.round(start * 100) / 50).astype(int), df.to_numpy()))
    n = len(y16) // 8000
    out = np.zeros((n, 2, 65, 2))
    for level, (step, x) in enumerate(frames):
        for k in range(n):
            rows = x[step == k].astype(np.float64)
            out[k, level, :, 0] = rows.std(axis=0)
            out[k, level, :, 1] = rows.mean(axis=0)
    return out.reshape(n, N_LLD_STATS)


def test_offline_equals_opensmile_package(y16, offline):
    assert offline.shape == (len(y16) // 8000, 260) and offline.dtype == np.float32
    np.testing.assert_allclose(offline, _reference_stats(y16), rtol=1e-5, atol=1e-5)


def test_audio_after_the_last_step_changes_only_the_last_step(y16, offline):
    """The tail after the last whole step is openSMILE input (the extractor writes it in both
    paths): it is no step of its own, and the steps before the last do not see it."""
    n = len(offline)
    with_tail = lld_offline(y16[: (n - 1) * 8000 + 3000], n - 1)
    np.testing.assert_array_equal(with_tail[:-1], offline[: n - 2])


def test_streaming_in_irregular_blocks_equals_offline(y16, offline):
    rng = np.random.default_rng(7)
    cuts = np.cumsum(rng.integers(1, 5000, size=400))
    cuts = cuts[cuts < len(y16)]
    smile = StreamingSmile()
    got = []
    for block in np.split(y16, cuts):
        got += smile.push(block)
        # a step is released once it is final: never before all its audio is in
        assert len(got) <= smile.samples_written // 8000
    got += smile.finish()
    assert [k for k, _ in got] == list(range(len(offline)))
    stream = np.stack([v for _, v in got])
    assert_parity(stream, offline, "LLD stats")
    np.testing.assert_array_equal(stream, offline)  # in fact bit-identical


def test_instances_are_independent(clip_steps, decoded_clips, offline):
    """Two engines in one process, interleaved, each equal to its own offline result."""
    from streammood.audio.framer import frame_signal

    _, y, sr = decoded_clips[2]
    other = np.concatenate([s.y16 for s in frame_signal(y[: sr * 12], sr)])
    a, b = StreamingSmile(), StreamingSmile()
    got_a, got_b = [], []
    for k in range(len(other) // 8000):
        got_a += a.push(clip_steps[k].y16)
        got_b += b.push(other[k * 8000 : (k + 1) * 8000])
    got_b += b.finish()
    for step in clip_steps[len(other) // 8000 :]:
        got_a += a.push(step.y16)
    got_a += a.finish()
    np.testing.assert_array_equal(np.stack([v for _, v in got_a]), offline)
    other_offline = lld_offline(other, len(other) // 8000)
    np.testing.assert_array_equal(np.stack([v for _, v in got_b]), other_offline)


def test_pcm_conversion_clips_instead_of_wrapping():
    pcm = to_pcm16(np.array([1.47, -1.2, 1.0, 0.5, -1.0, -0.5], np.float32))
    assert pcm.tolist() == [32767, -32768, 32767, 16384, -32768, -16384]


def test_names_follow_deam_layout():
    names = lld_names()
    lld, de = frame_names()
    assert len(names) == N_LLD_STATS == len(set(names)) and len(lld) == len(de) == 65
    assert names[:4] == [
        "F0final_sma_stddev", "F0final_sma_amean",
        "voicingFinalUnclipped_sma_stddev", "voicingFinalUnclipped_sma_amean",
    ]
    assert names[130:132] == ["F0final_sma_de_stddev", "F0final_sma_de_amean"]
    assert "audSpec_Rfilt_sma_de[0]_amean" in names
    assert "pcm_fftMag_spectralHarmonicity_sma_amean" in names


def test_short_input_gives_no_steps():
    assert lld_offline(np.zeros(7999, np.float32), 0).shape == (0, 260)
    with pytest.raises(ValueError, match="n_steps"):
        lld_offline(np.zeros(7999, np.float32), 1)
    smile = StreamingSmile()
    assert smile.push(np.zeros(7999, np.float32)) == []
    assert smile.finish() == []


def test_silence_gives_finite_stats():
    stats = lld_offline(np.zeros(16000, np.float32), 2)
    assert stats.shape == (2, 260) and np.isfinite(stats).all()


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_memory_flat_over_a_long_stream(y16):
    """5 minutes of music through one engine: resident memory stops growing after warm-up."""
    smile = StreamingSmile()
    n = len(y16) // 8000
    rss = []
    for _ in range(10):
        for k in range(n):
            out = smile.push(y16[k * 8000 : (k + 1) * 8000])
            assert all(np.isfinite(v).all() for _, v in out)
        rss.append(_rss_mib())
    smile.finish()
    # the whole 5 minutes as int16 alone would be ~9 MiB, as float frames far more
    assert rss[-1] - rss[1] < 4.0, f"RSS grew: {rss}"


def test_close_never_hangs():
    """Abandoning an engine at any point (even before smile_run is running) returns."""
    for n in (0, 100, 8000, 20000):
        smile = StreamingSmile()
        if n:
            smile.push(np.zeros(n, np.float32))
        smile.close()
        smile.close()


@pytest.mark.parametrize(
    "module", ["streammood.training.architecture", "streammood.training.train"]
)
def test_smile_runs_after_the_tensorflow_side_is_imported(module: str):
    """A process that imports the TensorFlow side first must still extract LLDs (with TensorFlow's
    libraries loaded first, SMILEapi crashes the process on its first run)."""
    import subprocess
    import sys

    code = (
        f"import numpy as np, {module}; "
        "from streammood.features.smile import lld_offline; "
        "y = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32); "
        "print(lld_offline(y, 2).shape)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-1000:]
    assert run.stdout.strip() == f"(2, {N_LLD_STATS})"
