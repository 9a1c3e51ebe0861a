"""The LiteRT streaming runtime against the Keras model on whole windows, on real music."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from streammood.features.extractor import ModelInputs, extract_offline
from streammood.features.mel import is_patch_step
from streammood.layout import WINDOW_STEPS
from streammood.runtime.labels import quadrant_of
from streammood.runtime.rolling import MoodRuntime, probs_from_va


@pytest.fixture(scope="module")
def long_inputs(long_music, shipped_model):
    y, sr = long_music
    feats = extract_offline(y, sr, shipped_model.embedder())
    return feats.mfcc, feats.lld, feats.emb


def _step(runtime: MoodRuntime, mfcc, lld, emb, t: int):
    """Push step ``t`` of the arrays; its one prediction."""
    (pred,) = runtime.push(ModelInputs(t, 0.5 * t, 0.5 * t + 0.5, mfcc[t], lld[t], emb[t]))
    return pred


@pytest.mark.slow
def test_streamed_predictions_equal_offline_windows(long_inputs, shipped_model):
    """Every streamed step equals the Keras model on steps t-59..t (or the prefix 0..t)."""
    from streammood.training.train import load_members, predict_windows

    mfcc, lld, emb = long_inputs
    n = len(mfcc)
    assert n > WINDOW_STEPS + 30  # the test needs windows that slide

    runtime = MoodRuntime(shipped_model)
    streamed = [_step(runtime, mfcc, lld, emb, t) for t in range(n)]

    members = load_members(shipped_model)
    # prefixes: the per-step outputs of one run over steps 0..59 are the models of 0..t
    first = predict_windows(members, _arrays(mfcc[:WINDOW_STEPS], lld, emb, 0))[0]
    starts = np.arange(1, n - WINDOW_STEPS + 1)
    windows = {
        k: np.stack([v[s : s + WINDOW_STEPS] for s in starts])
        for k, v in {"mfcc": mfcc, "lld": lld, "emb": emb}.items()
    }
    sliding = predict_windows(members, windows)[:, -1]
    expected = np.concatenate([first, sliding])
    assert expected.shape[0] == n
    expected = _as_probs(expected, shipped_model.task)

    got = np.array([p.probs for p in streamed])
    assert np.abs(got - expected).max() < 1e-4
    assert [p.window_steps for p in streamed] == [min(t + 1, WINDOW_STEPS) for t in range(n)]
    # the window really slides: late predictions differ from the never-forgetting prefix run
    no_forgetting = predict_windows(members, _arrays(mfcc, lld, emb, 0))[0, -1]
    assert np.abs(sliding[-1] - no_forgetting).max() > 1e-4


def _as_probs(y: np.ndarray, task: str) -> np.ndarray:
    """Model outputs as the runtime reports them (quadrant probabilities)."""
    return y if task == "classification" else probs_from_va(np.clip(y, -1.0, 1.0))


def _arrays(mfcc, lld, emb, start):
    n = len(mfcc)
    return {
        "mfcc": mfcc[None],
        "lld": lld[start : start + n][None],
        "emb": emb[start : start + n][None],
    }


def test_runtime_reset_restarts_the_stream(long_inputs, shipped_model):
    mfcc, lld, emb = long_inputs
    rt = MoodRuntime(shipped_model)
    first = [_step(rt, mfcc, lld, emb, t).probs for t in range(5)]
    rt.reset()
    again = [_step(rt, mfcc, lld, emb, t).probs for t in range(5)]
    np.testing.assert_array_equal(first, again)
    assert _step(rt, mfcc, lld, emb, 5).window_steps == 6
    assert rt.finish() == []


def test_probabilities_and_va_are_consistent(long_inputs, shipped_model):
    mfcc, lld, emb = long_inputs
    rt = MoodRuntime(shipped_model)
    for t in range(10):
        p = _step(rt, mfcc, lld, emb, t)
        assert p.probs.shape == (4,)
        assert abs(float(p.probs.sum()) - 1.0) < 1e-5
        assert -1.0 <= p.valence <= 1.0 and -1.0 <= p.arousal <= 1.0
        if shipped_model.task == "classification":  # the card's rule: VA from probabilities
            v = p.probs[0] + p.probs[2] - p.probs[1] - p.probs[3]
            assert p.valence == pytest.approx(v, abs=1e-6)
        else:
            assert p.quadrant == quadrant_of(p.valence, p.arousal)


def test_probs_from_va_puts_mass_in_the_right_quadrant():
    probs = probs_from_va(np.array([[0.8, 0.8], [-0.8, 0.8], [0.8, -0.8], [-0.8, -0.8]]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert list(np.argmax(probs, axis=1)) == [0, 1, 2, 3]  # AP, AN, PP, PN


def test_serving_path_does_not_import_tensorflow(shipped_model):
    code = (
        "import sys, numpy as np\n"
        "from streammood.runtime.artifact import load_artifact\n"
        "from streammood.workers.tagging import MoodStage, feature_stage\n"
        f"a = load_artifact({str(shipped_model.path)!r})\n"
        "stage = feature_stage(a, 22050); mood = MoodStage(a, 'x')\n"
        "rng = np.random.default_rng(0)\n"
        "steps = [i for b in [rng.normal(0, .1, 22050).astype('f4')] * 3 for i in stage.push(b)]\n"
        "msgs = [m for i in steps + stage.finish() for m in mood.push(i)]\n"
        "assert len(msgs) == 6, len(msgs)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "assert 'keras' not in sys.modules, 'keras imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_streams_sharing_one_step_model_equal_separate_ones(long_inputs, shipped_model):
    """An infer worker runs many sources on one interpreter: interleaving must change nothing."""
    from streammood.runtime.rolling import StepModel

    mfcc, lld, emb = long_inputs
    shared = StepModel(shipped_model)
    a, b = (
        MoodRuntime(shipped_model, step_model=shared),
        MoodRuntime(shipped_model, step_model=shared),
    )
    b.warm_up()
    alone = MoodRuntime(shipped_model)
    for t in range(70):
        pa = _step(a, mfcc, lld, emb, t)
        _step(b, mfcc[::-1], lld[::-1], emb[::-1], t)  # another stream in between
        np.testing.assert_array_equal(pa.probs, _step(alone, mfcc, lld, emb, t).probs)


class _ScriptedDetector:
    """A change detector that reports given changes: ``{detected_at_step: lag}``."""

    def __init__(self, script: dict[int, int]) -> None:
        self.script = script
        self.reset()

    def reset(self) -> None:
        self.t = -1

    def step(self, mfcc, lld):
        self.t += 1
        return self.script.get(self.t)


@pytest.mark.slow
def test_change_aware_window_equals_the_model_on_the_segment(long_inputs, shipped_model):
    """With changes, step t is the Keras model on steps max(t-59, c)..t, c the last change
    known at t (detected some steps after it began: the state begun at c is still live)."""
    from streammood.training.architecture import build_window_model
    from streammood.training.train import load_members

    mfcc, lld, emb = long_inputs
    n = len(mfcc)
    script = {20: 0, 50: 5, 95: 59}  # changes at steps 20, 45 and 36 (ignored: before 45)
    script[n - 30] = 3  # one more, late in the stream
    runtime = MoodRuntime(shipped_model, detector=_ScriptedDetector(script))
    streamed = [_step(runtime, mfcc, lld, emb, t) for t in range(n)]

    # the window: from the change c until the first patch step p >= c + 5 (an embedding of
    # the new segment's audio alone), then from p; from stream start until 60 steps
    starts, ready = [], []
    c = w = 0
    awaiting, last_patch = 0, -1
    for t in range(n):
        if is_patch_step(t):  # 0, 5, 10, 20, ...
            last_patch = t
        if t in script and t - script[t] > c:
            c = w = t - script[t]
            awaiting = c
        if awaiting is not None and last_patch >= awaiting + 5:
            w = max(w, last_patch) if c > 0 else w
            awaiting = None
        starts.append(max(t - WINDOW_STEPS + 1, w))
        ready.append(awaiting is None)
    assert starts[29] == 20 and starts[30] == 30 and starts[50] == 50  # the clean restarts
    # one Keras model per member, called eagerly per window length (predict() would trace a
    # new graph for each of the ~60 lengths)
    models = [build_window_model(p) for p in load_members(shipped_model)]
    expected = np.zeros((n, 4), np.float32)
    by_length: dict[int, list[int]] = {}
    for t, s in enumerate(starts):
        by_length.setdefault(t - s + 1, []).append(t)
    for length, ts in by_length.items():
        windows = [
            np.stack([v[t - length + 1 : t + 1] for t in ts]).astype(np.float32)
            for v in (mfcc, lld, emb)
        ]
        out = np.mean([m(windows, training=False).numpy() for m in models], axis=0)
        expected[ts] = _as_probs(out[:, -1], shipped_model.task)

    got = np.array([p.probs for p in streamed])
    assert np.abs(got - expected).max() < 1e-4
    assert [p.window_steps for p in streamed] == [t - s + 1 for t, s in enumerate(starts)]
    assert [p.window_start for p in streamed] == starts
    assert [p.embedding_ready for p in streamed] == ready
    assert not any(ready[:5]) and all(ready[5:20]) and not any(ready[20:30])
    changes = [(t, p.segment_start) for t, p in enumerate(streamed) if p.changed]
    assert changes == [(20, 20), (50, 45), (n - 30, n - 33)]
    # the segment start of each step: the last change known then
    seg = [p.segment_start for p in streamed]
    assert seg[19] == 0 and seg[20] == 20 and seg[49] == 20 and seg[50] == 45
    assert seg[-1] == n - 33


def test_restart_outside_the_live_window_is_refused(long_inputs, shipped_model):
    mfcc, lld, emb = long_inputs
    rt = MoodRuntime(shipped_model, clean_embedding=False)
    for t in range(70):
        _step(rt, mfcc, lld, emb, t)
    with pytest.raises(ValueError, match="outside the live window"):
        rt.restart(10)  # its state was retired at step 70
    with pytest.raises(ValueError, match="outside the live window"):
        rt.restart(71)  # not begun yet
    rt.restart(11)
    assert _step(rt, mfcc, lld, emb, 70).window_steps == 60  # 11..70
    rt.restart()
    p = _step(rt, mfcc, lld, emb, 71)
    assert (p.window_steps, p.segment_start) == (1, 71)
    # by default the window waits for the segment's own embedding: the patch at step 70
    clean = MoodRuntime(shipped_model)
    for t in range(70):
        _step(clean, mfcc, lld, emb, t)
    clean.restart(62)
    p = _step(clean, mfcc, lld, emb, 70)
    assert (p.window_steps, p.segment_start, p.window_start, p.embedding_ready) == (1, 62, 70, True)
    clean.restart(66)  # step 70's patch began before 66: the window covers 66.. and waits
    p = _step(clean, mfcc, lld, emb, 71)
    assert (p.window_steps, p.window_start, p.embedding_ready) == (6, 66, False)


def test_detector_finds_the_song_change(long_music, long_inputs, shipped_model, fourq_clips):
    """Two real clips back to back: one change, within 3 s of the cut, none inside the songs."""
    from streammood.audio.decode import load_audio
    from streammood.features.changes import ChangeDetector

    mfcc, lld, emb = long_inputs
    detector = ChangeDetector.from_norm(shipped_model.file("norm"))
    runtime = MoodRuntime(shipped_model, detector=detector)
    preds = [_step(runtime, mfcc, lld, emb, t) for t in range(len(mfcc))]
    y0, sr = load_audio(fourq_clips[0])
    cut = len(y0) / sr
    changes = [(t, p.segment_start * 0.5) for t, p in enumerate(preds) if p.changed]
    assert len(changes) == 1, changes
    ((detected_at, start),) = changes
    assert abs(start - cut) <= 3.0
    assert (detected_at - start / 0.5) == detector.config.lag
    assert preds[-1].segment_start == start / 0.5


def test_patch_steps_are_found_by_fresh_embeddings_not_by_seq(long_inputs, shipped_model):
    """A continued session numbers its steps from any seq: the change-aware window must not
    care (patch steps are where the embedding is fresh)."""
    mfcc, lld, emb = long_inputs
    script = {30: 6, 80: 6}
    runs = []
    for offset in (0, 3):
        rt = MoodRuntime(shipped_model, detector=_ScriptedDetector(script))
        runs.append(
            [
                rt.push(ModelInputs(t + offset, 0.5 * t, 0.5 * t + 0.5, mfcc[t], lld[t], emb[t]))[0]
                for t in range(len(mfcc))
            ]
        )
    a, b = runs
    assert [p.window_start for p in a] == [p.window_start for p in b]
    assert [p.embedding_ready for p in a] == [p.embedding_ready for p in b]
    np.testing.assert_array_equal([p.probs for p in a], [p.probs for p in b])
    assert a[29].window_start == 0 and a[30].window_start == 30  # change at 24, patch at 30
    assert (a[30].segment_start, a[30].window_steps, a[30].embedding_ready) == (24, 1, True)
