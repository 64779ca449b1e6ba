"""Lineages from species.yaml and the one lineage check, on literal tables."""

import pytest

from core.taxonomy import is_right, lineage_of, lineages, normalise_name, species_index

TABLE = {"Vespa velutina": [["kingdom", "Animalia"], ["order", "Hymenoptera"], ["family", "Vespidae"],
                            ["genus", "Vespa"], ["species", "Vespa velutina"]],
         "Apis mellifera": [["kingdom", "Animalia"], ["order", "Hymenoptera"], ["family", "Apidae"],
                            ["genus", "Apis"], ["species", "Apis mellifera"]]}


def test_lineages_come_from_species_yaml_by_name_or_alias():
    velutina = lineage_of("Vespa_velutina")
    assert velutina[0] == ["kingdom", "Animalia"] and velutina[-1] == ["species", "Vespa velutina"]
    assert ["genus", "Vespa"] in velutina
    assert lineage_of("no such taxon") == []
    assert set(lineages(["Vespa velutina", "no such taxon"])) == {"Vespa velutina"}
    assert normalise_name(" Vespa_velutina ") == "vespa velutina"
    assert "vespa velutina" in species_index()


@pytest.mark.parametrize("answer,truth,right", [
    ("Vespa velutina", "Vespa velutina", True),
    ("Vespa", "Vespa velutina", True),            # rolled up: right, less precise
    ("Hymenoptera", "Vespa velutina", True),
    ("Vespa velutina", "Vespa", True),            # a species in a genus folder
    ("Vespa_velutina", "vespa velutina", True),   # folder spelling
    ("Apis mellifera", "Vespa velutina", False),  # a wrong name
    ("Apidae", "Vespa velutina", False),          # a wrong family
    ("Vespa velutina", "Vespa crabro", False),    # a sibling species
])
def test_is_right_by_lineage(answer, truth, right):
    assert is_right(answer, truth, TABLE) is right
