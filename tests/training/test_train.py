"""Training mechanics on small synthetic windows: targets, fixed-epoch stages, distillation,
refitting on every song.

Model quality is judged on real music elsewhere (``test_pipeline.py``, the shipped model's card);
these tests pin down what the trainer does with its settings.
"""

from __future__ import annotations

import numpy as np
import pytest

from streammood.layout import MFCC_FRAMES, N_LLD_STATS, N_MFCC
from streammood.training.config import TrainConfig

pytest.importorskip("tensorflow")

from streammood.training.architecture import NormStats  # noqa: E402
from streammood.training.train import (  # noqa: E402
    _targets,
    distill_student,
    fit_member,
    mean_readout,
    predict_windows,
    refit_all,
)

STEPS, EMB = 12, 8


def _arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` windows whose embedding carries the label (so a read-out can learn it)."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 4
    emb = rng.normal(size=(n, STEPS, EMB)).astype(np.float32)
    emb[:, :, :4] += 3.0 * np.eye(4, dtype=np.float32)[label][:, None, :]
    mask = np.ones((n, STEPS), bool)
    mask[0, -3:] = False  # a padded window
    return {
        "mfcc": rng.normal(size=(n, STEPS, MFCC_FRAMES, N_MFCC)).astype(np.float32),
        "lld": rng.normal(size=(n, STEPS, N_LLD_STATS)).astype(np.float32),
        "emb": emb,
        "mask": mask,
        "label": label,
    }


def _norm(a: dict[str, np.ndarray]) -> NormStats:
    return NormStats.fit(a["mfcc"], a["lld"], a["emb"])


def test_targets_are_one_hot_on_real_steps_with_rising_weights():
    a = _arrays(8)
    y, w = _targets(a, "classification", power=1.0)
    assert y.shape == (8, STEPS, 4)
    np.testing.assert_array_equal(y.argmax(-1), np.repeat(a["label"][:, None], STEPS, 1))
    np.testing.assert_array_equal(y.sum(-1), 1.0)
    assert np.all(w[0, -3:] == 0) and np.all(np.diff(w[1]) > 0) and w[1, -1] == 1.0


def test_fit_member_without_validation_runs_the_given_stages():
    a = _arrays(16)
    config = TrainConfig(batch_size=8)
    _, summary = fit_member(a, None, _norm(a), config, seed=0, stage_epochs=(3, 2))
    assert summary["stage_best_epochs"] == [3, 2] and summary["epochs_run"] == 5
    assert summary["lstm_branch"] == "kept" and summary["best_val_loss"] is None
    _, summary = fit_member(a, None, _norm(a), config, seed=0, stage_epochs=(3, 0))
    assert summary["epochs_run"] == 3 and summary["lstm_branch"] == "zero (no gain)"
    with pytest.raises(ValueError, match="stage_epochs"):
        fit_member(a, None, _norm(a), config, seed=0)


@pytest.mark.slow
def test_student_follows_its_teachers_and_the_members_epochs():
    train, val = _arrays(24, seed=1), _arrays(12, seed=2)
    config = TrainConfig(batch_size=8, learning_rate=0.03, seeds=(0, 1, 2), distill_alpha=1.0)
    norm = _norm(train)
    # teachers that learned a shifted labelling: a student that follows them (alpha = 1)
    # must disagree with the true labels it is also given
    shifted = {**train, "label": (train["label"] + 1) % 4}
    teachers = [
        fit_member(shifted, None, norm, config, seed, stage_epochs=(40, 0))[0]
        for seed in config.seeds
    ]
    # the members' best epochs per stage; two of three kept their LSTM branch
    summaries = [
        {"stage_best_epochs": [30, 1], "lstm_branch": "kept"},
        {"stage_best_epochs": [40, 3], "lstm_branch": "kept"},
        {"stage_best_epochs": [50, 9], "lstm_branch": "zero (no gain)"},
    ]
    student, summary = distill_student(teachers, summaries, train, config)
    # its read-out is the teachers' mean (no stage 1 of its own); stage 2 runs the median
    # of the kept members' epochs
    assert summary["stage_best_epochs"] == [0, 2] and summary["train_songs"] == 24
    teacher_pred = predict_windows(teachers, val)[:, -1].argmax(-1)
    student_pred = predict_windows([student], val)[:, -1].argmax(-1)
    assert np.mean(teacher_pred == (val["label"] + 1) % 4) >= 0.9  # the data are easy
    assert np.mean(student_pred == teacher_pred) >= 0.9
    assert np.mean(student_pred == val["label"]) <= 0.1

    summaries = [{**s, "lstm_branch": "zero (no gain)"} for s in summaries[:2]] + summaries[2:]
    student, summary = distill_student(teachers, summaries, train, config)
    assert summary["stage_best_epochs"] == [0] and summary["lstm_branch"] == "zero (no gain)"
    # without an LSTM stage the student is exactly the averaged read-out
    for got, want in zip(student.pooled_out.get_weights(), mean_readout(teachers), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(
        predict_windows([student], val)[..., -1, :],
        _softmax_of_mean_logits(teachers, val),
        atol=1e-5,
    )


def _softmax_of_mean_logits(members, arrays) -> np.ndarray:
    """Reference for a read-out-only student: softmax of the mean of the members' read-out
    logits at the last step, computed by hand from the window statistics."""
    norm = members[0].norm
    e = (arrays["emb"] - norm.emb_mean) / norm.emb_std
    mean = e.mean(axis=1)
    std = np.sqrt(np.maximum((e * e).mean(axis=1) - mean**2, 0.0) + 1e-2)
    stats = np.concatenate([mean, std], axis=1)
    kernel, bias = mean_readout(members)
    logits = stats @ kernel + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def test_mean_readout_averages_the_members_weights():
    a = _arrays(16)
    config = TrainConfig(batch_size=8)
    members = [fit_member(a, None, _norm(a), config, s, stage_epochs=(2, 0))[0] for s in (0, 1)]
    kernel, bias = mean_readout(members)
    (k0, b0), (k1, b1) = (m.pooled_out.get_weights() for m in members)
    assert not np.allclose(k0, k1)  # different seeds, different read-outs
    np.testing.assert_allclose(kernel, (k0 + k1) / 2, rtol=1e-6)
    np.testing.assert_allclose(bias, (b0 + b1) / 2, rtol=1e-6)


def _two_teachers():
    """20 windows, a 2-seed config, their normalisation and two 1-epoch read-out teachers."""
    a = _arrays(20)
    config = TrainConfig(batch_size=8, seeds=(0, 1))
    norm = _norm(a)
    teachers = [fit_member(a, None, norm, config, s, stage_epochs=(1, 0))[0] for s in (0, 1)]
    return a, config, norm, teachers


def test_refit_without_distillation_repeats_each_members_epochs_on_every_song():
    a, config, norm, teachers = _two_teachers()
    summaries = [
        {"stage_best_epochs": [3, 2], "lstm_branch": "kept"},
        {"stage_best_epochs": [4, 5], "lstm_branch": "zero (no gain)"},
    ]
    refitted, out = refit_all(teachers, summaries, a, config, distilled=False)
    assert len(refitted) == 2 and all(p.norm is norm for p in refitted)
    assert [o["stage_best_epochs"] for o in out] == [[3, 2], [4]]
    assert [o["lstm_branch"] for o in out] == ["kept", "zero (no gain)"]
    assert [o["train_songs"] for o in out] == [20, 20] and out[1]["seed"] == 1


def test_refit_with_distillation_bags_read_outs_without_each_members_fold():
    a, config, norm, teachers = _two_teachers()
    summaries = [
        {"stage_best_epochs": [3, 2], "lstm_branch": "kept"},
        {"stage_best_epochs": [4, 1], "lstm_branch": "kept"},
    ]
    holdout = [np.arange(0, 5), np.arange(5, 12)]
    shipped, out = refit_all(teachers, summaries, a, config, distilled=True, holdout=holdout)
    assert len(shipped) == 1 and shipped[0].norm is norm
    assert out[0]["readout_train_songs"] == [15, 13] and out[0]["train_songs"] == 20
    assert out[0]["stage_best_epochs"] == [0, 1]  # read-out given, LSTM stage: median of 2, 1
