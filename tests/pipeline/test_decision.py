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


# ---- every reason, on literal tables -------------------------------------------------------------------

CLASSES = ["Apis mellifera", "Vespa crabro", "Vespa velutina", "Formicidae", "no organism", "other insect"]
LINEAGES = {
    "Apis mellifera": [["order", "Hymenoptera"], ["family", "Apidae"], ["genus", "Apis"],
                       ["species", "Apis mellifera"]],
    "Vespa crabro": [["order", "Hymenoptera"], ["family", "Vespidae"], ["genus", "Vespa"], ["species", "Vespa crabro"]],
    "Vespa velutina": [["order", "Hymenoptera"], ["family", "Vespidae"], ["genus", "Vespa"],
                       ["species", "Vespa velutina"]],
    "Formicidae": [["order", "Hymenoptera"], ["family", "Formicidae"]],
}
FULL = {"class_names": CLASSES, "threshold": 0.94, "lineages": LINEAGES, "background_classes": ["no organism"],
        "outlier_classes": ["other insect"], "unknown_threshold": 5.0}


@pytest.mark.parametrize("probs,unknown_score,taxon,rank,reason,probability", [
    # named: a species at or over 0.94
    ([0.00, 0.01, 0.97, 0.00, 0.01, 0.01], 1.0, "Vespa velutina", "species", "named", 0.97),
    ([0.00, 0.00, 0.00, 0.96, 0.02, 0.02], 1.0, "Formicidae", "family", "named", 0.96),
    # rolled up: neither hornet reaches 0.94, the genus does (0.50 + 0.47)
    ([0.01, 0.50, 0.47, 0.00, 0.01, 0.01], 1.0, "Vespa", "genus", "rolled_up", 0.97),
    # rolled up further: the genus Vespa holds 0.62, Hymenoptera 0.96 (Apidae and Formicidae hold one class each)
    ([0.30, 0.32, 0.30, 0.04, 0.02, 0.02], 1.0, "Hymenoptera", "order", "rolled_up", 0.96),
    # uncertain: no taxon reaches 0.94 (Hymenoptera holds 0.93; Apidae and Apis hold one class each)
    ([0.88, 0.02, 0.02, 0.01, 0.05, 0.02], 1.0, "uncertain", None, "uncertain", 0.88),
    # the same photo with less background: Hymenoptera holds 0.96, an order-level answer
    ([0.90, 0.02, 0.02, 0.02, 0.02, 0.02], 1.0, "Hymenoptera", "order", "rolled_up", 0.96),
    # no organism: the background class is the most probable, even with little margin
    ([0.20, 0.10, 0.10, 0.05, 0.45, 0.10], 1.0, "no organism", None, "no_organism", 0.45),
    # unknown: the look-alike class is the most probable
    ([0.20, 0.05, 0.05, 0.05, 0.05, 0.60], 1.0, "unknown", None, "unknown", 0.20),
    # unknown: confident, but far from every training crop (score over 5.0); the score wins over the name
    ([0.00, 0.00, 0.99, 0.00, 0.01, 0.00], 7.5, "unknown", None, "unknown", 0.99),
    # at the unknown threshold exactly: still known
    ([0.00, 0.00, 0.99, 0.00, 0.01, 0.00], 5.0, "Vespa velutina", "species", "named", 0.99),
])
def test_every_reason(probs, unknown_score, taxon, rank, reason, probability):
    d = decide(probabilities=probs, unknown_score=unknown_score, **FULL)
    assert (d["taxon"], d["rank"], d["reason"]) == (taxon, rank, reason)
    assert d["probability"] == pytest.approx(probability)
    assert d["accepted"] is (reason in ("named", "rolled_up"))
    assert d["unknown_score"] == unknown_score
    # best guesses are organisms only, never the background or look-alike class
    assert not {t["taxon"] for t in d["top"]} & {"no organism", "other insect"}


def test_rollup_off_and_without_lineage():
    probs = [0.01, 0.50, 0.47, 0.00, 0.01, 0.01]
    assert decide(probabilities=probs, rollup=False, **FULL)["reason"] == "uncertain"
    assert decide(probabilities=probs, **{**FULL, "lineages": None})["reason"] == "uncertain"


def test_per_class_threshold_blocks_the_name_but_not_a_rollup_of_two():
    probs = [0.00, 0.03, 0.95, 0.00, 0.01, 0.01]
    d = decide(probabilities=probs, class_thresholds={"Vespa velutina": 0.97}, **FULL)
    # velutina's own 0.97 is not reached; Vespa (velutina 0.95 + crabro 0.03 = 0.98) reaches the global 0.94
    assert (d["taxon"], d["reason"], d["threshold"]) == ("Vespa", "rolled_up", 0.94)


def test_no_unknown_check_without_a_threshold():
    d = decide(probabilities=[0.00, 0.00, 0.99, 0.00, 0.01, 0.00], unknown_score=99.0,
               **{**FULL, "unknown_threshold": None})
    assert d["reason"] == "named" and d["unknown_score"] == 99.0


# an ensemble asking its members to agree: the blend's probabilities, then each member's own
BLEND = [0.00, 0.02, 0.96, 0.00, 0.01, 0.01]


@pytest.mark.parametrize("members,thresholds,taxon,reason", [
    # every member gives V. velutina at least 0.94: named
    ([[0.00, 0.01, 0.97, 0.00, 0.01, 0.01], [0.00, 0.03, 0.94, 0.01, 0.01, 0.01]], None, "Vespa velutina", "named"),
    # one member is not sure which hornet: the genus, which every hornet answer holds (0.96 + 0.02)
    ([[0.00, 0.01, 0.97, 0.00, 0.01, 0.01], [0.00, 0.40, 0.58, 0.00, 0.01, 0.01]], None, "Vespa", "rolled_up"),
    # one member sees a honey bee: still the genus from the blend, never the member's own name
    ([[0.00, 0.01, 0.98, 0.00, 0.01, 0.00], [0.95, 0.01, 0.02, 0.00, 0.01, 0.01]], None, "Vespa", "rolled_up"),
    # the member must reach the threshold that applies to the class: its per-class 0.95, not the global 0.94
    ([[0.00, 0.00, 0.99, 0.00, 0.01, 0.00], [0.00, 0.04, 0.945, 0.00, 0.01, 0.005]], {"Vespa velutina": 0.95},
     "Vespa", "rolled_up"),
    # no agreement asked (one network)
    (None, None, "Vespa velutina", "named"),
])
def test_an_ensemble_names_only_what_every_member_names(members, thresholds, taxon, reason):
    d = decide(probabilities=BLEND, member_probabilities=members, class_thresholds=thresholds, **FULL)
    assert (d["taxon"], d["reason"]) == (taxon, reason)
    assert d["probability"] == pytest.approx(0.98 if reason == "rolled_up" else 0.96)
