import json

from classifier.experiments import compare_main, report_data_main, sweep_main

TINY = ["--weights", "none", "--epochs", "1", "--input-size", "32", "--batch-size", "8", "--workers", "0",
        "--device", "cpu"]


def test_compare_writes_table_2(tiny_classes, tmp_path):
    rows = compare_main(["--data", str(tiny_classes), "--out", str(tmp_path), "--archs", "resnet18",
                         "efficientnet_lite0", *TINY])
    assert [r["arch"] for r in rows] == ["resnet18", "efficientnet_lite0"]
    r18 = rows[0]
    assert r18["trainable_parameters"] == 11178051 and r18["file_mb"] > 40 and r18["seconds_per_epoch"] > 0
    assert rows[1]["file_mb"] < r18["file_mb"]
    assert "| resnet18 |" in (tmp_path / "compare.md").read_text()


def test_sweep_writes_figure_1(tiny_classes, tmp_path):
    rows = sweep_main(["--data", str(tiny_classes), "--out", str(tmp_path), "--arch", "resnet18", "--lrs", "0.001",
                       "0.01", "--momenta", "0.5", "0.9", *TINY])
    assert [(r["varied"], r["lr"], r["momentum"]) for r in rows] == [
        ("lr", 0.001, 0.99), ("lr", 0.01, 0.99), ("momentum", 0.0005, 0.5), ("momentum", 0.0005, 0.9)]
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert len(json.loads((tmp_path / "sweep.json").read_text())["rows"]) == 4


def test_report_data(tiny_classes, capsys):
    report = report_data_main(["--data", str(tiny_classes), "--val-fraction", "0.25"])
    assert report["total"] == 36 and "| red |" in capsys.readouterr().out
