"""The look-alikes shown beside a hornet answer, in three languages (issue 19)."""

import pytest

from pipeline.species import look_alikes
from webapp.cards import card_html


def _det(taxon, reason, top, accepted=None):
    return {"taxon": taxon, "reason": reason, "rank": None, "probability": 0.97,
            "accepted": reason in ("named", "rolled_up") if accepted is None else accepted, "threshold": 0.94,
            "top": [{"taxon": t, "probability": p} for t, p in top], "unknown_score": 0.1, "source": "detector"}


HORNET = [("Vespa velutina", 0.6), ("Vespa crabro", 0.3), ("Apis mellifera", 0.1)]
ANT = [("Formicidae", 0.7), ("Apis mellifera", 0.2), ("Vespa velutina", 0.1)]


@pytest.mark.parametrize("detection,first,shown", [
    (_det("Vespa velutina", "named", HORNET), "Vespa velutina",
     ["Vespa velutina", "Vespa crabro", "Vespula", "Syrphidae", "Vespa mandarinia"]),
    (_det("Vespa crabro", "named", [("Vespa crabro", 0.99)]), "Vespa crabro",
     ["Vespa crabro", "Vespa velutina", "Vespula", "Syrphidae", "Vespa mandarinia"]),
    (_det("Vespa", "rolled_up", HORNET), "Vespa velutina",  # the genus has no how-to-tell of its own
     ["Vespa velutina", "Vespa crabro", "Vespula", "Syrphidae", "Vespa mandarinia"]),
    (_det("Vespidae", "rolled_up", HORNET), "Vespa velutina",
     ["Vespa velutina", "Vespa crabro", "Vespula", "Syrphidae", "Vespa mandarinia"]),
    (_det("Hymenoptera", "rolled_up", HORNET), "Vespa velutina",  # coarse, a hornet among the guesses
     ["Vespa velutina", "Vespa crabro", "Vespula", "Syrphidae", "Vespa mandarinia"]),
    (_det("uncertain", "uncertain", HORNET), "Vespa velutina",
     ["Vespa velutina", "Vespa crabro", "Vespula", "Syrphidae", "Vespa mandarinia"]),
    (_det("uncertain", "uncertain", ANT), "Vespa velutina",  # a hornet is third: still worth a look
     ["Vespa velutina", "Vespa crabro", "Vespula", "Syrphidae", "Vespa mandarinia"]),
    (_det("Formicidae", "named", [("Formicidae", 0.99), ("Apis mellifera", 0.01)]), None, []),
    (_det("Hymenoptera", "rolled_up", [("Formicidae", 0.6), ("Apis mellifera", 0.35)]), None, []),
])
def test_which_look_alikes_an_answer_shows(detection, first, shown):
    items = look_alikes(detection, "en")
    assert [i["scientific_name"] for i in items] == shown
    assert all(i["how_to_tell"] for i in items)


@pytest.mark.parametrize("lang,title,words", [
    ("en", "How to tell it from its look-alikes", ["one pair of wings", "yellow ends", "Not in Europe"]),
    ("es", "Cómo distinguirlo de sus parecidos", ["un solo par de alas", "extremos amarillos", "No está en Europa"]),
    ("gl", "Como distinguilo dos seus parecidos", ["un só par de ás", "extremos amarelos", "Non está en Europa"]),
])
def test_the_look_alike_card_in_three_languages(lang, title, words):
    html = card_html(_det("Vespa velutina", "named", HORNET), 1, lang)
    assert 'data-testid="look-alikes"' in html and title in html
    for w in words:
        assert w in html, w
    plain = card_html(_det("Apis mellifera", "named", [("Apis mellifera", 0.99)]), 1, lang)
    assert "look-alikes" not in plain
