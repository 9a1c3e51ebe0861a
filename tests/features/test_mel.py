from __future__ import annotations

import librosa
import numpy as np

from streammood.features.mel import MelPatcher, is_patch_step, log_mel_frames, mel_patches_offline
from streammood.layout import EMBED_EVERY


def test_frames_equal_librosa(clip_steps):
    y16 = np.concatenate([s.y16 for s in clip_steps[:12]])
    ref = librosa.feature.melspectrogram(
        y=y16, sr=16000, hop_length=256, n_fft=512, n_mels=96, center=False
    ).T
    ref = np.log10(10000 * ref + 1)
    got = log_mel_frames(y16)
    assert got.dtype == np.float32 and got.shape == ref.shape == ((len(y16) - 512) // 256 + 1, 96)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_streaming_patches_equal_offline(clip_steps):
    from tests.features.parity import assert_parity

    y16 = np.concatenate([s.y16 for s in clip_steps])
    steps, patches = mel_patches_offline(y16)
    n = len(clip_steps)
    assert list(steps) == [0, 5, *range(EMBED_EVERY, n, EMBED_EVERY)]
    assert [s for s in range(n) if is_patch_step(s)] == list(steps)
    assert patches.shape == (len(steps), 187, 96)
    mp = MelPatcher()
    got = []
    rng = np.random.default_rng(1)
    for step in clip_steps:
        # irregular pieces of the step: the patch at the step's end must not depend on them
        cuts = np.sort(rng.integers(0, 8000, 3))
        for piece in np.split(step.y16, cuts):
            got += mp.push(piece)
    assert [seq for seq, _ in got] == list(steps)
    got = np.stack([patch for _, patch in got])
    assert_parity(got.reshape(-1, 96), patches.reshape(-1, 96), "mel frames")
    np.testing.assert_allclose(got, patches, rtol=0, atol=1e-5)


def test_first_patch_zero_before_stream_start(clip_steps):
    _, patches = mel_patches_offline(np.concatenate([s.y16 for s in clip_steps[:4]]))
    # 8000 samples give 30 complete frames; the 157 before the stream start are zeros
    assert np.all(patches[0][:157] == 0) and np.any(patches[0][157:] != 0)
