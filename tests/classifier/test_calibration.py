"""Calibration, thresholds measured on data and unknown scores, on synthetic sets with known answers."""

import numpy as np
import pytest

from classifier.calibration import (
    UNKNOWN_METHODS,
    auroc,
    fit_reference,
    fit_temperature,
    nll,
    pass_threshold,
    reliability,
    softmax,
    thresholds_for_precision,
    unknown_scores,
)


def _overconfident(n=2000, seed=0):
    """Logits 4x too large for how often they are right: the classic overconfident network."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    true_logits = rng.normal(0, 1, (n, 3))
    true_logits[np.arange(n), labels] += 1.5
    # labels drawn from the true probabilities, then the logits inflated
    probs = softmax(true_logits)
    labels = np.array([rng.choice(3, p=p / p.sum()) for p in probs])
    return 4.0 * true_logits, labels


def test_temperature_scaling_lowers_nll_and_ece():
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(4.0, rel=0.15)  # it finds the inflation
    assert nll(logits, labels, t) < nll(logits, labels) - 0.3
    before, after = reliability(softmax(logits), labels)["ece"], reliability(softmax(logits, t), labels)["ece"]
    assert after < before / 2
    # ranking unchanged: the same best class for every crop
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_reliability_table_by_hand():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    r = reliability(probs, labels, bins=10)
    # bin (0.5, 0.6]: confidence 0.6, accuracy 1.0; bin (0.8, 0.9]: confidence 0.9, accuracy 0.5
    assert [(b["count"], b["accuracy"]) for b in r["bins"]] == [(2, 1.0), (2, 0.5)]
    assert r["ece"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_per_class_thresholds_reach_the_target_on_their_data():
    rng = np.random.default_rng(1)
    n = 600
    labels = rng.integers(0, 3, n)
    probs = rng.dirichlet([1, 1, 1], n).astype(np.float32)
    # class 0 is right when sure; class 2 is never right
    sure = rng.random(n) < 0.5
    probs[sure & (labels == 0)] = [0.97, 0.02, 0.01]
    probs[labels == 2] = [0.1, 0.1, 0.8]
    probs[(labels == 1) & (probs.argmax(1) == 2)] = [0.05, 0.05, 0.9]
    table = thresholds_for_precision(probs, labels, ["a", "b", "c"], target=0.9)
    for c, name in enumerate(["a", "b", "c"]):
        row = table[name]
        kept = (probs.argmax(1) == c) & (probs.max(1) >= np.float32(row["threshold"]))
        if row["reached"]:
            assert (labels[kept] == c).mean() >= 0.9 and kept.sum() == row["predicted"]
        else:
            assert row["threshold"] > 1.0 and not kept.any()
    assert table["a"]["reached"] and table["a"]["threshold"] <= 0.97
    assert thresholds_for_precision(probs, labels, ["a", "b", "c"], 0.9, skip=["c"]).keys() == {"a", "b"}


def test_unknown_scores_rank_far_embeddings_above_near_ones():
    rng = np.random.default_rng(2)
    centres = np.eye(3, 16) * 5
    labels = np.repeat(np.arange(3), 50)
    train = centres[labels] + rng.normal(0, 0.5, (150, 16))
    near = centres[rng.integers(0, 3, 40)] + rng.normal(0, 0.5, (40, 16))
    far = rng.normal(0, 0.5, (40, 16)) + np.eye(1, 16, 10) * 5  # a direction no class lives in
    logits_near = near @ centres.T / 5
    logits_far = far @ centres.T / 5
    for method in UNKNOWN_METHODS:
        ref = fit_reference(method, train, labels, [0, 1, 2])
        s_near = unknown_scores(method, logits_near, near, ref)
        s_far = unknown_scores(method, logits_far, far, ref)
        assert auroc(s_near, s_far) > 0.9, method
        thr = pass_threshold(s_near, 0.95)
        assert (s_near <= thr).mean() >= 0.95


def test_auroc_by_hand():
    assert auroc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert auroc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert auroc(np.array([0.1, 0.3]), np.array([0.2, 0.3])) == pytest.approx(0.625)  # 2.5 of 4 pairs
    assert auroc(np.array([]), np.array([1.0])) is None


def test_each_class_fitted_to_its_own_required_precision_on_a_literal_table():
    """Asian hornet (index 0) must reach 0.99, bees (1) 0.9; the global threshold 0.94 is the hornet's floor."""
    from classifier.calibration import class_thresholds

    names = ["Vespa velutina", "Apis mellifera", "Vespa crabro"]
    # (probability of the best class, best class, true class)
    table = [(0.999, 0, 0), (0.99, 0, 0), (0.98, 0, 0), (0.97, 0, 2), (0.96, 0, 0), (0.95, 0, 2), (0.90, 0, 0),
             (0.80, 0, 0), (0.99, 1, 1), (0.97, 1, 1), (0.92, 1, 2), (0.85, 1, 1), (0.70, 1, 1)]
    probs = np.zeros((len(table), 3), np.float32)
    for i, (p, best, _) in enumerate(table):
        probs[i] = (1 - p) / 2
        probs[i, best] = p
    labels = np.array([t for _, _, t in table])
    got = class_thresholds(probs, labels, names, targets={"Vespa velutina": 0.99, "Apis mellifera": 0.9},
                           floors={"Vespa velutina": 0.94})
    # hornet: above 0.97 its 3 predictions are all right (a crabro at 0.97 is the first mistake)
    assert got["Vespa velutina"] == {"threshold": pytest.approx(0.98), "precision": 1.0, "predicted": 3,
                                     "reached": True, "target": 0.99}
    # bees: at 0.7 precision 4/5 = 0.8; at 0.85, 3/4; at 0.92... the lowest reaching 0.9 is 0.97
    assert got["Apis mellifera"]["threshold"] == pytest.approx(0.97) and got["Apis mellifera"]["reached"]
    assert "Vespa crabro" not in got  # no target: the global threshold
    # a target never reached: never named alone (threshold above 1)
    never = class_thresholds(probs, labels, names, targets={"Vespa velutina": 1.0 + 1e-9})
    assert never["Vespa velutina"]["threshold"] > 1 and not never["Vespa velutina"]["reached"]
    # the floor: a stricter requirement never makes an answer easier to give than the global 0.94
    easy = class_thresholds(probs, labels, names, targets={"Apis mellifera": 0.5}, floors={"Apis mellifera": 0.94})
    assert easy["Apis mellifera"]["threshold"] == pytest.approx(0.94)
    assert easy["Apis mellifera"]["predicted"] == 2 and easy["Apis mellifera"]["precision"] == 1.0
