import numpy as np
import pytest

from classifier.metrics import (
    SWEEP_THRESHOLDS,
    accepts,
    cohen_kappa,
    confusion_matrix,
    confusion_summary,
    evaluate_probabilities,
    knee,
    per_class,
    threshold_sweep,
)

# y_true 0 0 0 1 1 2 / y_pred 0 0 1 1 2 2: worked by hand below
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])
NAMES = ["a", "b", "c"]


def test_confusion_matrix_rows_true_columns_predicted():
    assert confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_kappa_by_hand():
    # po = 4/6; pe = (3*2 + 2*2 + 1*2) / 36 = 1/3; kappa = (2/3 - 1/3) / (2/3) = 0.5
    assert cohen_kappa(confusion_matrix(Y_TRUE, Y_PRED, 3)) == pytest.approx(0.5)


def test_kappa_edge_cases():
    assert cohen_kappa(np.array([[5, 0], [0, 5]])) == pytest.approx(1.0)
    assert cohen_kappa(np.array([[0, 0], [0, 0]])) is None
    # everything predicted as one class: no agreement beyond chance
    assert cohen_kappa(np.array([[6, 0], [4, 0]])) == pytest.approx(0.0)
    # systematic disagreement is negative
    assert cohen_kappa(np.array([[0, 5], [5, 0]])) == pytest.approx(-1.0)


def test_per_class_by_hand():
    rows = {r["class"]: r for r in per_class(confusion_matrix(Y_TRUE, Y_PRED, 3), NAMES)}
    a, b, c = rows["a"], rows["b"], rows["c"]
    assert (a["tp"], a["fn"], a["fp"], a["tn"]) == (2, 1, 0, 3)
    assert a["sensitivity"] == pytest.approx(2 / 3) and a["specificity"] == 1.0 and a["fallout"] == 0.0
    assert a["precision"] == 1.0 and a["f1"] == pytest.approx(0.8)
    assert b["sensitivity"] == 0.5 and b["specificity"] == 0.75 and b["fallout"] == 0.25
    assert b["precision"] == 0.5 and b["f1"] == 0.5
    assert c["sensitivity"] == 1.0 and c["specificity"] == 0.8 and c["fallout"] == pytest.approx(0.2)
    assert c["precision"] == 0.5 and c["f1"] == pytest.approx(2 / 3)


def test_summary_accuracy():
    s = confusion_summary(Y_TRUE, Y_PRED, NAMES)
    assert s["accuracy"] == pytest.approx(4 / 6) and s["n"] == 6


def test_threshold_exactly_094_is_accepted():
    assert accepts(0.94, 0.94)
    assert accepts(np.float32(0.94), 0.94)  # what a float32 softmax gives
    assert not accepts(0.9399, 0.94)
    assert accepts(0.9401, 0.94)
    probs = np.array([[0.94, 0.06], [0.9399, 0.0601], [0.95, 0.05]], dtype=np.float32)
    r = evaluate_probabilities(probs, np.array([0, 0, 1]), ["x", "y"], threshold=0.94)
    assert r["thresholded"]["kept"] == pytest.approx(2 / 3)
    assert r["thresholded"]["n"] == 2
    assert r["thresholded"]["accuracy"] == pytest.approx(0.5)  # 0.94 right, 0.95 wrong


def test_majority_baseline_and_sweep():
    probs = np.array([[0.99, 0.01], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.55, 0.45]], dtype=np.float32)
    y = np.array([0, 1, 1, 1, 0])
    r = evaluate_probabilities(probs, y, ["x", "y"])
    assert r["majority_baseline"] == {"class": "y", "accuracy": pytest.approx(0.6), "kappa": 0.0}
    assert [s["threshold"] for s in r["sweep"]] == list(SWEEP_THRESHOLDS)
    assert SWEEP_THRESHOLDS[0] == 0.5 and SWEEP_THRESHOLDS[-1] == 0.99
    first = r["sweep"][0]  # at 0.50 everything is kept
    assert first["discarded"] == 0.0 and first["accuracy"] == pytest.approx(4 / 5)
    at_06 = next(s for s in r["sweep"] if s["threshold"] == 0.6)  # 0.6, 0.7, 0.8, 0.99 kept
    assert at_06["discarded"] == pytest.approx(1 / 5) and at_06["accuracy"] == pytest.approx(3 / 4)


def test_knee_finds_the_bend():
    # kappa rises quickly then flattens while the discard rate rises steadily: the bend is at 0.7
    sweep = [{"threshold": t, "kappa": min(t, 0.7) + 0.01 * t, "discarded": (t - 0.5)} for t in
             (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert knee(sweep)["threshold"] == 0.7
    assert knee(sweep[:2]) is None


def test_sweep_handles_everything_discarded():
    rows = threshold_sweep(np.array([[0.5, 0.5]], dtype=np.float32), np.array([0]), 2)
    assert rows[-1]["kappa"] is None and rows[-1]["discarded"] == 1.0
