"""The LiteRT streaming runtime against the Keras model on whole windows, on real music."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from streammood.features.extractor import ModelInputs, extract_offline
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
