"""The change detector, and the patch it adds to the feature stage: a step change is found
``lag`` steps after it began (and not again within ``min_segment``); with a detector, streamed
and offline features are equal, and the new song's first embedding comes with the change."""

from __future__ import annotations

import numpy as np

from streammood.audio.decode import load_audio
from streammood.features.changes import ChangeConfig, ChangeDetector
from streammood.features.extractor import FeatureSet, StreamingExtractor, extract_offline
from streammood.features.mel import patch_steps
from streammood.layout import N_LLD_STATS, N_MFCC, STEP_SECONDS


def _unit_detector(config: ChangeConfig | None = None) -> ChangeDetector:
    """A detector whose standardisation is the identity."""
    return ChangeDetector(
        np.zeros(N_LLD_STATS), np.ones(N_LLD_STATS), np.zeros(N_MFCC), np.ones(N_MFCC), config
    )


def test_a_level_change_is_found_lag_steps_after_it_began():
    rng = np.random.default_rng(0)
    det = _unit_detector()
    lag = det.config.lag
    # levels: 0 from step 0, 2 from 40, 0 from 50 (too soon after 40), -2 from 70
    levels = np.select([np.arange(100) < 40, np.arange(100) < 50, np.arange(100) < 70],
                       [0.0, 2.0, 0.0], -2.0)
    found = {}
    for t, level in enumerate(levels):
        got = det.step(rng.normal(level, 1.0, (21, N_MFCC)), rng.normal(level, 1.0, N_LLD_STATS))
        if got is not None:
            found[t] = got
    assert found == {40 + lag: lag, 70 + lag: lag}
    det.reset()
    quiet = [det.step(rng.normal(0, 1, (21, N_MFCC)), rng.normal(0, 1, N_LLD_STATS))
             for _ in range(200)]
    assert quiet == [None] * 200  # noise alone never fires


def _streamed(y: np.ndarray, sr: int, artifact, block: int) -> FeatureSet:
    out = []
    detector = ChangeDetector.from_norm(artifact.file("norm"))
    with StreamingExtractor(sr, artifact.embedder(), detector=detector) as ex:
        for i in range(0, len(y), block):
            out += ex.push(y[i : i + block])
        out += ex.finish()
    return FeatureSet.from_steps(out, ex.emb_dim)


def test_a_detected_change_brings_the_new_songs_embedding(long_music, fourq_clips, shipped_model):
    """Two real clips back to back: one extra patch, at the step the change is detected (3 s
    after the cut), in the streamed and the offline features alike; its embedding is the new
    song's and the runtime's window begins there with it (``embedding_ready``)."""
    from streammood.runtime.rolling import MoodRuntime

    y, sr = long_music
    norm = shipped_model.file("norm")
    offline = extract_offline(
        y, sr, shipped_model.embedder(), detector=ChangeDetector.from_norm(norm)
    )
    stream = _streamed(y, sr, shipped_model, sr // 10)
    np.testing.assert_array_equal(stream.patch_steps, offline.patch_steps)
    for name in ("lld", "emb", "mel_patches"):
        np.testing.assert_array_equal(getattr(stream, name), getattr(offline, name), name)
    np.testing.assert_allclose(stream.mfcc, offline.mfcc, rtol=0, atol=1e-5)

    extra = sorted(set(offline.patch_steps.tolist()) - set(patch_steps(offline.n_steps).tolist()))
    lag = ChangeConfig().lag
    cut = len(load_audio(fourq_clips[0])[0]) / sr / STEP_SECONDS  # steps
    assert len(extra) == 1, extra
    (at,) = extra
    assert abs(at - lag - cut) <= 3.0 / STEP_SECONDS
    assert not np.array_equal(offline.emb[at], offline.emb[at - 1])  # fresh at the change
    np.testing.assert_array_equal(offline.emb[at + 1], offline.emb[at])  # then held

    runtime = MoodRuntime(shipped_model, detector=ChangeDetector.from_norm(norm))
    preds = [p for inputs in offline.steps() for p in runtime.push(inputs)]
    changed = [t for t, p in enumerate(preds) if p.changed]
    assert changed == [at]  # the runtime's own detector agrees with the feature stage's
    p = preds[at]
    assert (p.segment_start, p.window_start, p.embedding_ready) == (at - lag, at, True)
    assert not any(q.embedding_ready for q in preds[:5]) and preds[5].embedding_ready
