"""``taxolens unknown-study``: a class left out of training is shown to the model, every score measured."""

import json

from tools.unknown_study import main


def test_leave_one_class_out(tiny_classes, tmp_path):
    report = main([str(tiny_classes), "--leave-out", "green", "--out", str(tmp_path / "study"), "--arch",
                   "resnet18", "--weights", "none", "--epochs", "1", "--input-size", "32", "--batch-size", "8",
                   "--workers", "0", "--device", "cpu", "--val-fraction", "0.34"])
    (result,) = report["results"]
    assert result["left_out"] == "green" and result["crops"] == 12
    # the left-out class never reached training: the model knows two classes
    assert json.loads((tmp_path / "study" / "green" / "model" / "summary.json").read_text())["model"]
    for row in result["methods"].values():
        assert 0.0 <= row["auroc"] <= 1.0 and row["known_val_passing"] >= 0.95
        assert 0.0 <= row["flagged_unknown"] <= 1.0 and 0.0 <= row["named_wrongly"] <= 1.0
    assert report["best"] in result["methods"]
    assert "| green | 12 | knn |" in (tmp_path / "study" / "report.md").read_text()
