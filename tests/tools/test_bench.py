"""``taxolens bench``: modes parsed, the rule applied to literal figures, records checked, and a whole run."""

import json
import math
import shutil

import pytest

from pipeline.records import make_record, record_problems
from tests.conftest import make_scene
from tools.bench import compare_figures, parse_mode
from tools.cli import main as cli


def test_modes_are_an_engine_and_its_settings():
    assert parse_mode("torch") == {"name": "torch", "engine": "torch", "settings": {},
                                   "run": {"batch_size": 4, "workers": 1}}
    assert parse_mode("pipeline")["engine"] == "torch"
    m = parse_mode("openvino-int8:proposals=300,threads=2,decode-side=540,workers=0,batch-size=8")
    assert m["engine"] == "openvino-int8" and m["settings"] == {"proposals": 300, "threads": 2, "decode_side": 540}
    assert m["run"] == {"batch_size": 8, "workers": 0}
    assert parse_mode("naive")["engine"] is None
    with pytest.raises(ValueError, match="'tensorrt' is no engine"):
        parse_mode("tensorrt")
    with pytest.raises(ValueError, match="unknown setting 'score'"):
        parse_mode("torch:score=3")
    with pytest.raises(ValueError, match="proposals='many' is not a whole number"):
        parse_mode("torch:proposals=many")


REFERENCE = {"frames": {"Vespa_velutina": {"answered": 0.50, "answers_right": 0.90, "named_wrongly": 0.05,
                                           "boxes_per_photo": 1.00},
                        "Bombus": {"answered": 0.0, "answers_right": None, "named_wrongly": 0.0,
                                   "boxes_per_photo": 2.00}}}


@pytest.mark.parametrize("change, within, largest", [
    ({}, True, 0.0),
    ({("Vespa_velutina", "answered"): 0.509}, True, 0.9),           # 0.9 points: within one
    ({("Vespa_velutina", "answered"): 0.52}, False, 2.0),           # 2 points: beyond
    ({("Vespa_velutina", "boxes_per_photo"): 1.01}, True, 1.0),     # 1 % of the reference's boxes per photo
    ({("Bombus", "boxes_per_photo"): 2.05}, False, 2.5),            # 2.5 %
    ({("Vespa_velutina", "named_wrongly"): 0.041}, True, 0.9),
    ({("Bombus", "answers_right"): 1.0}, False, math.inf),          # an answer where the reference had none
])
def test_the_rule_compares_every_figure_within_one_point(change, within, largest):
    other = json.loads(json.dumps(REFERENCE))
    for (folder, figure), value in change.items():
        other["frames"][folder][figure] = value
    result = compare_figures(REFERENCE, other)
    assert result["within"] is within
    assert result["largest"]["difference"] == pytest.approx(largest, abs=1e-6)
    assert bool(result["beyond"]) is not within


def test_a_folder_missing_from_a_mode_is_beyond_the_rule():
    result = compare_figures(REFERENCE, {"frames": {"Bombus": REFERENCE["frames"]["Bombus"]}})
    assert not result["within"] and {d["folder"] for d in result["beyond"]} == {"Vespa_velutina"}


def _detection(**changes):
    d = {"box": [10.0, 10.0, 30.0, 20.0], "detector_score": 0.9, "source": "detector", "taxon": "Vespa velutina",
         "probability": 0.97, "reason": "named", "accepted": True}
    return d | changes


@pytest.mark.parametrize("detection, problem", [
    (_detection(), None),
    (_detection(box=[90.0, 10.0, 30.0, 20.0]), "outside the 100x80 photo"),
    (_detection(probability=1.5), "probability 1.5"),
    (_detection(detector_score=-0.1), "detector score -0.1"),
    (_detection(reason="maybe", accepted=False), "reason 'maybe'"),
    (_detection(accepted=False), "accepted False with reason 'named'"),
    ({k: v for k, v in _detection().items() if k != "taxon"}, "missing taxon"),
])
def test_record_checks_on_literal_records(detection, problem):
    record = make_record("a.jpg", (100, 80), [detection], "d1+c1", seconds=0.1, sha256="0" * 64)
    found = record_problems(record)
    assert found == [] if problem is None else (len(found) == 1 and problem in found[0])
    assert record_problems(make_record("b.jpg", None, None, "d1+c1", failure="empty file (0 bytes)")) == []
    assert "missing width" in record_problems({k: v for k, v in record.items() if k != "width"})[0]


def test_bench_runs_every_mode_on_a_held_out_set_and_applies_the_rule(tiny_models, tmp_path, capsys):
    det, clf = (shutil.copy(p, tmp_path / p.name) for p in tiny_models)
    assert cli(["export", "--format", "onnx", "--detector", str(det), "--classifier", str(clf)]) == 0
    held_out = tmp_path / "held-out"
    for i in range(3):
        make_scene(held_out / "Vespa_velutina" / f"v{i}.jpg", [(8, 8, 30, 24)], seed=i)
        make_scene(held_out / "Bombus" / f"b{i}.jpg", [(40, 30, 30, 24)], seed=10 + i)
    out = tmp_path / "bench.json"
    assert cli(["bench", str(held_out), "--detector", str(det), "--classifier", str(clf), "--workers", "0",
                "--modes", "naive", "torch", "onnx", "torch:proposals=5", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert report["photos"] == 6 and report["reference"] == "torch" and set(rows) == {
        "naive", "torch", "onnx", "torch:proposals=5"}
    assert rows["naive"]["same_as_reference"]["same"]
    assert rows["onnx"]["rule"]["accepted"] and rows["onnx"]["rule"]["largest"]["difference"] <= 1
    assert rows["torch:proposals=5"]["settings"]["proposals"] == 5
    for name in ("torch", "onnx"):
        assert rows[name]["photos_per_second"] > 0 and rows[name]["peak_memory_mb"] > 0
        assert set(rows[name]["figures"]["held-out"]) == {"Bombus", "Vespa_velutina"}
        assert rows[name]["problems"] == []
    printed = capsys.readouterr().out
    assert "| held-out / Vespa_velutina | answered |" in printed and "accepted" in printed


def test_bench_app_reads_a_process_cpu_seconds_as_they_grow():
    import os
    import time

    from tools.bench_app import _cpu_s

    before = _cpu_s(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:  # 0.3 s of this process's CPU
        pass
    after = _cpu_s(os.getpid())
    assert before is not None and after is not None and 0.2 <= after - before <= 1.0
    assert _cpu_s(2**22 + 12345) is None  # no such process
