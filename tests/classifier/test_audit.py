import json
import shutil

import numpy as np
import pytest

from classifier.audit import label_issues, out_of_fold_probabilities, parse_rule, quarantined
from tests.conftest import COLOURS, make_photo
from tools.cli import main as cli

NAMES = ["Apis mellifera", "no organism", "other insect"]


def test_quarantine_rules_on_a_literal_table():
    rules = [parse_rule("no organism", NAMES), parse_rule("other insect=Apis mellifera", NAMES)]
    assert rules == [("no organism", None), ("other insect", "Apis mellifera")]
    table = [  # given, suggested, moved?
        ("no organism", "Apis mellifera", True),
        ("no organism", "other insect", True),
        ("other insect", "Apis mellifera", True),
        ("other insect", "no organism", False),  # a wasp the frozen features cannot place stays a look-alike
        ("Apis mellifera", "no organism", False),  # no rule for the target class: reported, never moved
    ]
    for given, suggested, moved in table:
        assert quarantined({"given": given, "suggested": suggested}, rules) is moved, (given, suggested)
    with pytest.raises(ValueError, match="'Vespa' is no class of the crops"):
        parse_rule("other insect=Vespa", NAMES)


def test_swapped_labels_of_literal_features_are_flagged_with_their_true_class():
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8) * 6
    y_true = np.repeat(np.arange(3), 30)
    x = centres[y_true] + rng.normal(0, 1, (90, 8))
    y = y_true.copy()
    swapped = {4: 2, 40: 0, 75: 1}  # item -> the wrong folder it was put in
    for i, wrong in swapped.items():
        y[i] = wrong
    groups = [f"g{i // 2}" for i in range(90)]  # pairs of near-duplicates: one fold holds both
    probs = out_of_fold_probabilities(x, y, groups, folds=5)
    assert probs.shape == (90, 3) and np.allclose(probs.sum(1), 1)
    issues = label_issues(y, probs, NAMES)
    flagged = {i["index"]: i for i in issues}
    assert set(swapped) <= set(flagged)
    for i in swapped:
        assert flagged[i]["given"] == NAMES[y[i]] and flagged[i]["suggested"] == NAMES[y_true[i]]
        assert flagged[i]["p_given"] < 0.5 < flagged[i]["p_suggested"]
    assert len(issues) <= 6  # the clean blobs are not flagged wholesale
    with pytest.raises(ValueError, match="3 source groups: the audit needs at least 5"):
        out_of_fold_probabilities(x, y, ["a", "b", "c"] * 30, folds=5)


def test_each_probability_comes_from_a_fit_that_saw_neither_the_item_nor_its_group():
    rng = np.random.default_rng(1)
    x = np.repeat(np.eye(3, 4) * 4, 12, axis=0) + rng.normal(0, 1, (36, 4))
    y = np.repeat(np.arange(3), 12)
    groups = [f"g{i // 3}" for i in range(36)]  # twelve groups of three
    before = out_of_fold_probabilities(x, y, groups, folds=4)
    y2 = y.copy()
    y2[0] = 2  # relabel one item of group g0
    after = out_of_fold_probabilities(x, y2, groups, folds=4)
    assert np.allclose(after[:3], before[:3])  # the item itself and its group-mates: fitted without it
    assert not np.allclose(after[3:], before[3:])  # other folds trained on the new label


def test_audit_moves_out_only_the_flags_a_rule_names(tmp_path, capsys):
    root = tmp_path / "crops"
    for c, (name, colour) in enumerate(COLOURS.items()):
        for i in range(15):
            make_photo(root / name / f"obs{c}{i // 3}_jpg_{i % 3}.jpg", colour, size=48, seed=100 * c + i)
    wrong_blue = [make_photo(root / "blue" / f"odd{k}_jpg_0.jpg", COLOURS["red"], size=48, seed=900 + k)
                  for k in range(2)]
    wrong_green = make_photo(root / "green" / "odd9_jpg_0.jpg", COLOURS["blue"], size=48, seed=999)
    out = tmp_path / "audit"
    assert cli(["classifier", "audit", "--data", str(root), "--out", str(out), "--quarantine", "blue",
                "--input-size", "64"]) == 0
    report = json.loads((out / "audit.json").read_text())
    flags = {i["file"]: i for i in report["issues"]}
    for photo in wrong_blue:
        issue = flags[f"blue/{photo.name}"]
        assert issue["suggested"] == "red" and issue["moved_to"] == str(out / "quarantine" / "blue" / photo.name)
        assert not photo.exists() and (out / "quarantine" / "blue" / photo.name).is_file()
    issue = flags[f"green/{wrong_green.name}"]
    assert issue["suggested"] == "blue" and "moved_to" not in issue and wrong_green.is_file()  # no rule for green
    moved = {i["file"] for i in report["issues"] if i.get("moved_to")}
    assert moved == {f for f, i in flags.items() if i["given"] == "blue"}
    assert {r["class"]: r["moved"] for r in report["classes"]}["blue"] == len(moved)
    assert (out / "issues.png").is_file() and "| blue | red |" in (out / "audit.md").read_text()
    # a quarantine inside the crops would be read as a class: refused before any work
    capsys.readouterr()
    assert cli(["classifier", "audit", "--data", str(root), "--out", str(root / "audit")]) != 0
    assert "must lie outside the crops" in capsys.readouterr().err and not (root / "audit").exists()
    split = tmp_path / "split"
    shutil.copytree(root / "red", split / "train" / "red")
    shutil.copytree(root / "red", split / "val" / "red")
    assert cli(["classifier", "audit", "--data", str(split), "--out", str(tmp_path / "a2")]) != 0
    assert "already split into train/ and val/" in capsys.readouterr().err  # not read as classes train and val
    shutil.rmtree(out)
