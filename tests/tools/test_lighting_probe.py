"""``taxolens lighting-probe``: a classifier that names taxa by colour is caught when only the light changes."""

import json

import numpy as np

from tools.lighting_probe import LIGHTINGS, dark, green_backlit, grey, main, probe

NAMES = ["Formicidae", "Vespa velutina"]
SETTINGS = {"class_names": NAMES, "lineages": {}, "rollup": False, "class_thresholds": {}}


def _orange_hornets(n=4):
    crops = []
    for i in range(n):
        im = np.full((40, 40, 3), (230, 150, 40), np.uint8)
        im[10:30, 15 + i:25 + i] = (40, 25, 10)  # a dark body
        crops.append(im)
    return crops


def _by_colour(images):
    """A classifier that learned a colour: green-lit crops are ants, anything else a hornet (literal)."""
    probs = []
    for im in images:
        r, g = im[..., 0].mean(), im[..., 1].mean()
        probs.append([0.99, 0.01] if g > 1.3 * r else [0.02, 0.98])
    return np.array(probs), None


def test_the_lightings_on_literal_pixels():
    crop = np.full((2, 2, 3), (200, 100, 50), np.uint8)
    assert (grey(crop)[..., 0] == grey(crop)[..., 2]).all()
    g = green_backlit(crop)[0, 0]
    assert g[1] > g[0] > g[2] or g[1] > g[2] > g[0]
    assert dark(crop).mean() < 0.5 * crop.mean() and dark(np.full((1, 1, 3), 255, np.uint8)).max() == 255
    assert list(LIGHTINGS) == ["as is", "grey", "green backlit", "dark"]


def test_a_colour_shortcut_shows_as_wrong_names_under_green_light_only():
    rows = {r["lighting"]: r for r in probe({"Vespa velutina": _orange_hornets()}, _by_colour, SETTINGS, 0.94,
                                            batch=3)}
    assert rows["as is"]["answered_right"] == 1.0 and rows["as is"]["named_wrongly"] == 0.0
    assert rows["grey"]["named_wrongly"] == 0.0 and rows["dark"]["named_wrongly"] == 0.0
    green = rows["green backlit"]
    assert green["named_wrongly"] == 1.0 and green["best_guess_right"] == 0.0
    assert green["wrong_names"] == {"Formicidae": 4} and green["crops"] == 4


def test_the_command_on_a_real_model_file(tiny_models, tiny_classes, tmp_path):
    (tiny_classes / "red" / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    rows = main([str(tiny_classes), "--classifier", str(tiny_models[1]), "--out", str(tmp_path / "probe"),
                 "--device", "cpu"])
    assert len(rows) == 3 * len(LIGHTINGS) and {r["crops"] for r in rows} == {12}
    report = json.loads((tmp_path / "probe" / "report.json").read_text())
    assert report["rows"] == rows and "| green backlit |" in (tmp_path / "probe" / "report.md").read_text()
    (skipped,) = report["skipped"]  # the bad crop is named, the rest measured
    assert "broken.jpg" in skipped


def test_an_answer_under_the_folder_taxon_is_right_not_wrong():
    """A folder named for the genus: the species named is right, by lineage, as taxolens evaluate counts it."""
    lineages = {"Vespa velutina": [["genus", "Vespa"], ["species", "Vespa velutina"]],
                "Formicidae": [["family", "Formicidae"]]}
    rows = {r["lighting"]: r for r in probe({"Vespa": _orange_hornets(2)}, _by_colour,
                                            {**SETTINGS, "lineages": lineages}, 0.94)}
    assert rows["as is"]["answered_right"] == 1.0 and rows["as is"]["best_guess_right"] == 1.0
    assert rows["green backlit"]["named_wrongly"] == 1.0 and rows["green backlit"]["wrong_names"] == {"Formicidae": 2}
