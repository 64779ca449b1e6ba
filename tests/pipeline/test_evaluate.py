"""``taxolens evaluate``: figures computed by hand on literal records, then on tiny generated folders."""

import json

import pytest
import torch

from classifier.models import Preprocessing, build_classifier
from core.modelfile import save_model_file
from pipeline.evaluate import folder_taxon, is_known, is_right, summarize_folder
from tests.conftest import make_scene
from tools.cli import main as cli

LINEAGES = {"Vespa velutina": [["family", "Vespidae"], ["genus", "Vespa"], ["species", "Vespa velutina"]],
            "Vespa crabro": [["family", "Vespidae"], ["genus", "Vespa"], ["species", "Vespa crabro"]],
            "Apis mellifera": [["family", "Apidae"], ["genus", "Apis"], ["species", "Apis mellifera"]]}


def _det(taxon, reason):
    return {"taxon": taxon, "reason": reason}


def test_rightness_by_lineage():
    assert is_right("Vespa velutina", "Vespa velutina", LINEAGES)
    assert is_right("Vespa", "Vespa velutina", LINEAGES)           # rolled up: right, less precise
    assert is_right("Vespa velutina", "Vespa", LINEAGES)           # more precise than the folder
    assert not is_right("Vespa crabro", "Vespa velutina", LINEAGES)
    assert not is_right("Apis mellifera", "Vespa", LINEAGES)
    assert is_known("Vespa", ["Vespa velutina"], LINEAGES) and not is_known("Bombus", ["Vespa velutina"], LINEAGES)
    assert is_known("Vespa velutina", ["Vespa", "Apis mellifera"], LINEAGES)  # a genus class names its species
    assert folder_taxon("Vespa_velutina") == "Vespa velutina" and folder_taxon("bees") == "Apis mellifera"


def test_folder_figures_by_hand():
    records = [
        {"status": "ok", "detections": [_det("Vespa velutina", "named"), _det("Vespa crabro", "named")],
         "dropped": [_det("no organism", "no_organism")]},
        {"status": "ok", "detections": [_det("Vespa", "rolled_up"), _det("uncertain", "uncertain")], "dropped": []},
        {"status": "ok", "detections": [], "dropped": []},
        {"status": "failed", "detections": [], "dropped": []},
    ]
    f = summarize_folder(records, "Vespa velutina", True, LINEAGES)
    # 4 organisms on 3 readable photos; 2 named (1 right), 1 rolled up (right), 1 uncertain
    assert (f["photos"], f["failed"], f["organisms"], f["photos_with_organism"]) == (4, 1, 4, 2)
    assert f["boxes_per_photo"] == pytest.approx(4 / 3)
    assert (f["named"], f["rolled_up"], f["uncertain"], f["unknown"]) == (0.5, 0.25, 0.25, 0.0)
    assert f["answered"] == 0.75 and f["answers_right"] == pytest.approx(2 / 3) and f["named_right"] == 0.5
    assert f["dropped_no_organism"] == 1 and "confidently_wrong" not in f


def test_unknown_folder_counts_names_as_wrong():
    records = [{"status": "ok", "detections": [_det("Apis mellifera", "named"), _det("unknown", "unknown"),
                                               _det("uncertain", "uncertain"), _det("Apidae", "rolled_up")],
                "dropped": []}]
    lineages = {**LINEAGES, "Bombus": [["family", "Apidae"], ["genus", "Bombus"]]}
    f = summarize_folder(records, "Bombus", False, lineages)
    # a bumblebee named Apis is wrong; rolled up to Apidae is right (Bombus is an Apidae)
    assert f["confidently_wrong"] == 0.25 and f["honest"] == 0.75 and f["unknown"] == 0.25


def test_a_never_seen_hornet_is_judged_by_its_lineage_coarse_apart_from_wrong():
    """giant-hornet val as the demo answered it before: Vespa and Hymenoptera are right (coarse), V. velutina is
    wrong. Its lineage comes from species.yaml (Vespa mandarinia has an entry) or from --lineage."""
    from pipeline.evaluate import parse_lineages

    answers = [_det("Vespa", "rolled_up")] * 21 + [_det("Hymenoptera", "rolled_up")] * 53 + [
        _det("Vespa velutina", "named")] * 10 + [_det("uncertain", "uncertain")] * 16
    for d in answers:
        d["rank"] = {"Vespa": "genus", "Hymenoptera": "order", "Vespa velutina": "species"}.get(d["taxon"])
    records = [{"status": "ok", "detections": answers, "dropped": []}]
    f = summarize_folder(records, folder_taxon("Vespa_mandarinia"), False, LINEAGES)
    assert folder_taxon("asian_giant_hornet") == "Vespa mandarinia"
    assert f["right_but_coarse"] == pytest.approx(0.74) and f["named_wrongly"] == pytest.approx(0.10)
    assert f["confidently_wrong"] == pytest.approx(0.10) and f["at_species"] == pytest.approx(0.10)
    # a taxon species.yaml does not know: without its lineage every name is wrong, with --lineage it is coarse
    wasp = [{"status": "ok", "detections": [{**_det("Vespidae", "rolled_up"), "rank": "family"}], "dropped": []}]
    assert summarize_folder(wasp, "Polistes dominula", False, LINEAGES)["named_wrongly"] == 1.0
    given = parse_lineages(["Polistes_dominula=order:Hymenoptera,family:Vespidae,genus:Polistes"])
    table = {**LINEAGES, "Polistes dominula": given["Polistes_dominula"]}
    f = summarize_folder(wasp, "Polistes dominula", False, table)
    assert f["right_but_coarse"] == 1.0 and f["named_wrongly"] == 0.0
    with pytest.raises(ValueError, match="expected FOLDER=rank:Name"):
        parse_lineages(["Polistes=Vespidae"])


def _fixed_classifier(path, classes, logits):
    """Every crop gets softmax(logits): the answer is known before the photo is seen."""
    model, _ = build_classifier("resnet18", len(classes), "none")
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor(logits))
    save_model_file(path, kind="classifier", state_dict=model.state_dict(),
                    meta={"architecture": "resnet18", "class_names": classes,
                          "preprocessing": Preprocessing(input_size=32, resize_size=36).to_dict(), "threshold": 0.94,
                          "class_thresholds": {}, "metrics": {}, "background_classes": [], "outlier_classes": [],
                          "taxonomy": {"Vespa velutina": LINEAGES["Vespa velutina"],
                                       "Vespa crabro": LINEAGES["Vespa crabro"]}, "rollup": True})
    return path


def test_evaluate_command_on_tiny_folders(tiny_models, tmp_path):
    # every crop: velutina 0.50, crabro 0.49 -> no species reaches 0.94, the genus Vespa (0.99) does
    clf = _fixed_classifier(tmp_path / "c.pt", ["Vespa crabro", "Vespa velutina", "Apis mellifera"],
                            [3.0, 3.02, -1.5])
    photos = tmp_path / "photos"
    for folder, n in (("Vespa_velutina", 3), ("Apis_mellifera", 2), ("Bombus", 2)):
        for i in range(n):
            make_scene(photos / folder / f"{i}.jpg", [(8, 8, 30, 24)], seed=i)
    out = tmp_path / "out"
    assert cli(["evaluate", str(photos), "--detector", str(tiny_models[0]), "--classifier", str(clf),
                "--out", str(out), "--workers", "0"]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {f["folder"]: f for f in report["folders"]}
    assert {k: rows[k]["known"] for k in rows} == {"Apis_mellifera": True, "Bombus": False, "Vespa_velutina": True}
    for name in rows:
        assert rows[name]["organisms"] > 0 and rows[name]["rolled_up"] == 1.0
        assert set(rows[name]["answers"]) == {"Vespa"}
    assert rows["Vespa_velutina"]["answers_right"] == 1.0 and rows["Apis_mellifera"]["answers_right"] == 0.0
    assert rows["Bombus"]["confidently_wrong"] == 1.0
    n_v, n_a = rows["Vespa_velutina"]["organisms"], rows["Apis_mellifera"]["organisms"]
    assert report["overall"]["answered"] == 1.0
    assert report["overall"]["answers_right"] == pytest.approx(n_v / (n_v + n_a))
    # at a threshold of 0.995 nothing is answered; at 0.5 velutina is named (0.50 >= 0.5)
    curve = {r["threshold"]: r for r in report["curve"]}
    assert curve[0.999]["coverage"] == 0.0 and curve[0.5]["coverage"] == 1.0
    for name in ("report.md", "confusion.csv", "coverage_accuracy.png", "records.json"):
        assert (out / name).is_file(), name
    assert "probabilities" not in json.loads((out / "records.json").read_text())[0]["detections"][0]
    # without rollup the genus cannot answer: every organism is uncertain
    assert cli(["evaluate", str(photos), "--detector", str(tiny_models[0]), "--classifier", str(clf),
                "--out", str(tmp_path / "flat"), "--workers", "0", "--no-rollup"]) == 0
    flat = json.loads((tmp_path / "flat" / "report.json").read_text())
    assert all(f["uncertain"] == 1.0 and f["answered"] == 0.0 for f in flat["folders"])


def test_the_coverage_curve_decides_with_an_ensembles_members():
    from pipeline.evaluate import coverage_accuracy

    settings = {"class_names": ["a", "b"], "lineages": {}, "class_thresholds": {}, "background_classes": [],
                "outlier_classes": [], "unknown_threshold": None, "rollup": True}
    boxes = [{"probabilities": [0.96, 0.04], "unknown_score": None, "truth": "a"},
             {"probabilities": [0.96, 0.04], "unknown_score": None, "truth": "a",
              "member_probabilities": [[0.99, 0.01], [0.70, 0.30]]}]  # one member not sure: not named at 0.94
    rows = {r["threshold"]: r for r in coverage_accuracy(boxes, settings, thresholds=[0.5, 0.94])}
    assert rows[0.5]["coverage"] == 1.0 and rows[0.94]["coverage"] == 0.5
