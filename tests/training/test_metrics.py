"""Metrics against hand-computed small cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from streammood.runtime.labels import QUADRANTS
from streammood.training.metrics import (
    classification_metrics,
    evaluation_report,
    format_report,
    last_real_step,
    regression_metrics,
)


def scores_for(pred: list[int], high: float = 0.7, low: float = 0.1) -> np.ndarray:
    """``(N, 4)`` scores whose arg-max is ``pred``."""
    probs = np.full((len(pred), 4), low)
    probs[np.arange(len(pred)), pred] = high
    return probs


def test_perfect_classifier() -> None:
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    m = classification_metrics(y, scores_for(y.tolist()))
    assert m["n"] == 8
    assert m["accuracy"] == 1.0
    assert m["macro_f1"] == 1.0
    assert m["roc_auc"] == 1.0
    assert m["confusion_matrix"] == [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 2]]
    for name in QUADRANTS:
        assert m["per_class"][name] == {
            "precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2, "roc_auc": 1.0
        }


def test_all_wrong_classifier() -> None:
    y = np.array([0, 1, 2, 3])
    m = classification_metrics(y, scores_for([1, 2, 3, 0]))
    assert m["accuracy"] == 0.0
    assert m["macro_f1"] == 0.0
    # rows = true, columns = predicted
    assert m["confusion_matrix"] == [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]]
    assert all(m["per_class"][q]["f1"] == 0.0 for q in QUADRANTS)


def test_known_confusion_matrix() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    y_pred = [0, 0, 1, 1, 1, 2, 3, 3]
    m = classification_metrics(y_true, scores_for(y_pred))
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]]
    assert m["accuracy"] == pytest.approx(6 / 8)
    # by hand: AP P=1 R=2/3 F1=0.8; AN P=2/3 R=1 F1=0.8; PP P=1 R=1/2 F1=2/3; PN P=1/2 R=1 F1=2/3
    ap, an, pp, pn = (m["per_class"][q] for q in QUADRANTS)
    assert (ap["precision"], ap["recall"], ap["f1"]) == pytest.approx((1, 2 / 3, 0.8))
    assert (an["precision"], an["recall"], an["f1"]) == pytest.approx((2 / 3, 1, 0.8))
    assert (pp["precision"], pp["recall"], pp["f1"]) == pytest.approx((1, 1 / 2, 2 / 3))
    assert (pn["precision"], pn["recall"], pn["f1"]) == pytest.approx((1 / 2, 1, 2 / 3))
    assert [ap["support"], an["support"], pp["support"], pn["support"]] == [3, 2, 2, 1]
    assert m["macro_f1"] == pytest.approx((0.8 + 0.8 + 2 / 3 + 2 / 3) / 4)


def test_missing_class_does_not_crash_and_is_left_out_of_macro_figures() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])  # no PN, and PN is never predicted
    m = classification_metrics(y_true, scores_for([0, 0, 1, 2, 2, 2]))
    # F1 by hand: AP 1, AN 2/3 (P=1, R=1/2), PP 0.8 (P=2/3, R=1); PN does not count
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0.8) / 3)
    pn = m["per_class"]["PN"]
    assert pn["support"] == 0 and pn["roc_auc"] is None
    # one-vs-rest AUC by hand (0.7 on the predicted class, 0.1 elsewhere; ties count 1/2):
    # AP 1; AN: (4 + 4 * 0.5) / 8 = 0.75; PP: (2 * 3.5) / 8 = 0.875
    aucs = [m["per_class"][q]["roc_auc"] for q in ("AP", "AN", "PP")]
    assert aucs == pytest.approx([1.0, 0.75, 0.875])
    assert m["roc_auc"] == pytest.approx((1.0 + 0.75 + 0.875) / 3)
    json.dumps(m, allow_nan=False)


def test_single_class_has_no_auc() -> None:
    m = classification_metrics(np.array([2, 2, 2]), scores_for([2, 2, 0]))
    assert m["roc_auc"] is None
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_macro_auc_equals_sklearn_ovr_when_all_classes_occur() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    probs[np.arange(200), y] += 0.3
    probs /= probs.sum(axis=1, keepdims=True)
    m = classification_metrics(y, probs)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr"))


def test_classification_rejects_bad_shapes_and_labels() -> None:
    with pytest.raises(ValueError, match="probs"):
        classification_metrics(np.array([0, 1]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="0..3"):
        classification_metrics(np.array([0, 4]), np.ones((2, 4)))
    with pytest.raises(ValueError, match="non-empty"):
        classification_metrics(np.array([], int), np.ones((0, 4)))


def test_regression_rmse_is_root_of_mean_squared_error_not_of_mae() -> None:
    va_true = np.array([[-0.5, 0.2], [0.5, -0.4], [0.2, 0.6], [-0.2, -0.8]])
    err_v = np.array([0.4, 0.0, 0.2, -0.2])
    va_pred = va_true.copy()
    va_pred[:, 0] += err_v
    va_pred[:, 1] = -va_true[:, 1]
    m = regression_metrics(va_true, va_pred)
    assert m["n"] == 4
    assert m["valence_mae"] == pytest.approx(0.2)
    assert m["valence_rmse"] == pytest.approx(math.sqrt((0.16 + 0 + 0.04 + 0.04) / 4))
    assert m["valence_rmse"] != pytest.approx(math.sqrt(m["valence_mae"]))
    # arousal predicted as its negation: error 2|a|, r = -1
    assert m["arousal_mae"] == pytest.approx(2 * np.mean(np.abs(va_true[:, 1])))
    assert m["arousal_rmse"] == pytest.approx(2 * np.sqrt(np.mean(va_true[:, 1] ** 2)))
    assert m["arousal_r"] == pytest.approx(-1.0)
    assert m["valence_r"] == pytest.approx(np.corrcoef(va_true[:, 0], va_pred[:, 0])[0, 1])
    # every arousal sign flips, every valence sign stays: AP<->PP, AN<->PN
    assert m["quadrant_accuracy"] == 0.0
    assert m["quadrant_confusion_matrix"] == [[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0],
                                              [0, 1, 0, 0]]


def test_regression_perfect_and_threshold_at_zero() -> None:
    va = np.array([[0.0, 0.5], [0.1, 0.5], [0.3, 0.0], [-0.3, -0.1]])
    m = regression_metrics(va, va)
    assert m["valence_mae"] == 0.0 and m["valence_rmse"] == 0.0 and m["valence_r"] == 1.0
    assert m["quadrant_accuracy"] == 1.0 and m["quadrant_macro_f1"] == 1.0
    # 0 counts as negative / passive: (0, .5) is AN, (.1, .5) AP, (.3, 0) PP, (-.3, -.1) PN
    assert m["quadrant_confusion_matrix"] == np.eye(4, dtype=int).tolist()
    # nudging the first point's valence above 0 moves it to AP
    pred = va.copy()
    pred[0, 0] = 1e-6
    assert regression_metrics(va, pred)["quadrant_confusion_matrix"][1] == [1, 0, 0, 0]


def test_regression_constant_prediction_has_no_correlation() -> None:
    va_true = np.array([[0.1, 0.2], [0.3, -0.2], [-0.4, 0.5]])
    m = regression_metrics(va_true, np.zeros((3, 2)))
    assert m["valence_r"] is None and m["arousal_r"] is None
    assert json.loads(json.dumps(m, allow_nan=False))["valence_r"] is None


def test_last_real_step() -> None:
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
    assert last_real_step(mask).tolist() == [2, 4, 0]
    with pytest.raises(ValueError, match="without any real step"):
        last_real_step(np.array([[1, 0], [0, 0]], bool))


def _sequence_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 windows of 5 steps; right at each last real step, wrong before, NaN in padding."""
    y = np.array([0, 1, 3])
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], bool)
    probs = np.full((3, 5, 4), np.nan)
    for i, length in enumerate(mask.sum(axis=1)):
        wrong = (y[i] + 2) % 4
        probs[i, :length] = scores_for([wrong] * length)
        probs[i, length - 1] = scores_for([y[i]])[0]
    return probs, mask, y


def test_report_per_window_takes_the_last_real_step() -> None:
    probs, mask, y = _sequence_case()
    report = evaluation_report(probs, mask, y_true=y)
    assert report["task"] == "classification"
    assert report["class_order"] == list(QUADRANTS)
    assert report["n_windows"] == 3 and report["n_steps"] == 10
    assert report["per_window"]["accuracy"] == 1.0
    assert report["per_window"]["n"] == 3
    # per step: 3 of the 10 real steps (one per window) are right; padding (NaN) is ignored
    assert report["per_step"]["n"] == 10
    assert report["per_step"]["accuracy"] == pytest.approx(3 / 10)
    assert sum(map(sum, report["per_step"]["confusion_matrix"])) == 10
    json.dumps(report, allow_nan=False)


def test_report_without_mask_uses_the_final_step() -> None:
    probs, _, y = _sequence_case()
    probs = np.nan_to_num(probs, nan=0.25)
    probs[:, -1] = scores_for([1, 1, 1])  # final step says AN everywhere
    report = evaluation_report(probs, y_true=y)
    assert report["n_steps"] == 15
    assert report["per_window"]["confusion_matrix"][0] == [0, 1, 0, 0]
    assert report["per_window"]["accuracy"] == pytest.approx(1 / 3)


def test_report_per_step_labels_and_va_block() -> None:
    probs, mask, y = _sequence_case()
    y_steps = np.argmax(np.nan_to_num(probs, nan=0), axis=-1)  # the step labels the model hits
    va_true = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    report = evaluation_report(probs, mask, y_true=y, y_true_steps=y_steps, va_true=va_true)
    assert report["per_step"]["accuracy"] == 1.0
    # a classifier's valence/arousal comes from its probabilities: (0.7-0.1-0.1-0.1)=0.4 on
    # its quadrant's sides; at the last step it is right, so per window the signs all match
    assert report["per_window"]["va"]["quadrant_accuracy"] == 1.0
    assert report["per_window"]["va"]["valence_mae"] == pytest.approx(0.1)
    assert report["per_step"]["va"]["n"] == 10


def test_report_regression_with_dynamic_labels() -> None:
    n, t = 2, 4
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    va_steps = np.linspace(-0.9, 0.9, n * t * 2).reshape(n, t, 2)
    pred = va_steps + 0.1
    pred[~mask] = 99.0  # padding must not count
    va_song = va_steps.mean(axis=1)
    report = evaluation_report(pred, mask, va_true=va_song, va_true_steps=va_steps)
    assert report["task"] == "regression"
    assert report["per_step"]["n"] == 6
    assert report["per_step"]["valence_mae"] == pytest.approx(0.1)
    assert report["per_step"]["arousal_rmse"] == pytest.approx(0.1)
    # per window: prediction at the last real step (steps 3 and 1) against the song label
    last = pred[[0, 1], [3, 1]]
    assert report["per_window"]["valence_mae"] == pytest.approx(
        np.mean(np.abs(last[:, 0] - va_song[:, 0]))
    )
    assert report["per_window"]["valence_r"] == pytest.approx(1.0)  # 2 points
    json.dumps(report, allow_nan=False)


def test_report_rejects_inconsistent_inputs() -> None:
    probs, mask, y = _sequence_case()
    with pytest.raises(ValueError, match="need y_true"):
        evaluation_report(probs, mask)
    with pytest.raises(ValueError, match="mask"):
        evaluation_report(probs, mask[:, :3], y_true=y)
    with pytest.raises(ValueError, match="va_true"):
        evaluation_report(np.zeros((3, 5, 2)), mask)
    with pytest.raises(ValueError, match="predictions"):
        evaluation_report(np.zeros((3, 5, 3)), mask, y_true=y)


def test_format_report_shows_both_levels_and_survives_json() -> None:
    probs, mask, y = _sequence_case()
    report = json.loads(json.dumps(evaluation_report(probs, mask, y_true=y)))
    text = format_report(report)
    assert "3 windows, 10 steps" in text
    macro_line = next(line for line in text.splitlines() if "macro-F1" in line)
    assert "1.000" in macro_line  # per window
    assert "confusion matrix" in text and all(q in text for q in QUADRANTS)

    va = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5]])
    reg = evaluation_report(np.broadcast_to(va[:, None], (3, 5, 2)), mask, va_true=va)
    text = format_report(reg)
    assert "valence RMSE" in text and "quadrant macro-F1" in text
    assert "regression" in text
