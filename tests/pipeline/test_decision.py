import pytest

from pipeline.decision import UNCERTAIN, decide

NAMES = ["Apis mellifera", "Formicidae", "Vespa velutina"]


@pytest.mark.parametrize("probs,threshold,taxon,accepted", [
    ([0.94, 0.05, 0.01], 0.94, "Apis mellifera", True),         # exactly at the threshold: accepted
    ([0.9399, 0.0501, 0.01], 0.94, UNCERTAIN, False),           # just under
    ([0.9401, 0.0499, 0.01], 0.94, "Apis mellifera", True),     # just over
    ([0.02, 0.03, 0.95], 0.94, "Vespa velutina", True),
    ([0.40, 0.35, 0.25], 0.94, UNCERTAIN, False),
    ([0.40, 0.35, 0.25], 0.40, "Apis mellifera", True),
    ([1.0, 0.0, 0.0], 1.0, "Apis mellifera", True),
])
def test_decision_table(probs, threshold, taxon, accepted):
    d = decide(probabilities=probs, class_names=NAMES, threshold=threshold)
    assert (d["taxon"], d["accepted"]) == (taxon, accepted)
    assert d["probability"] == pytest.approx(max(probs))
    assert d["threshold"] == threshold


def test_uncertain_gives_the_three_best_guesses_best_first():
    d = decide(probabilities=[0.2, 0.5, 0.3], class_names=NAMES, threshold=0.94)
    assert d["taxon"] == UNCERTAIN
    assert [t["taxon"] for t in d["top"]] == ["Formicidae", "Vespa velutina", "Apis mellifera"]
    assert [t["probability"] for t in d["top"]] == [0.5, 0.3, 0.2]


def test_per_class_threshold_overrides():
    probs = [0.05, 0.05, 0.90]
    assert decide(probabilities=probs, class_names=NAMES, threshold=0.94)["taxon"] == UNCERTAIN
    d = decide(probabilities=probs, class_names=NAMES, threshold=0.94, class_thresholds={"Vespa velutina": 0.85})
    assert d["taxon"] == "Vespa velutina" and d["threshold"] == 0.85


def test_keyword_only_and_checked():
    with pytest.raises(TypeError):
        decide([0.5, 0.5], NAMES[:2], 0.94)  # type: ignore[misc]
    with pytest.raises(ValueError, match="2 probabilities for 3 classes"):
        decide(probabilities=[0.5, 0.5], class_names=NAMES, threshold=0.94)
