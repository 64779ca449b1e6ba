"""Records keep what was dropped and why; summaries and exports carry rank, reason and unknown score."""

import csv

from pipeline.exports import megadetector, write_csv
from pipeline.records import make_record, summarize_records


def _det(taxon, reason, rank=None, score=0.9, unknown=0.3):
    return {"box": [1, 2, 10, 12], "detector_score": score, "detector_label": "organism", "source": "detector",
            "taxon": taxon, "rank": rank, "reason": reason, "probability": 0.97, "accepted": reason in ("named",
            "rolled_up"), "threshold": 0.94, "unknown_score": unknown,
            "top": [{"taxon": "Vespa velutina", "probability": 0.5}, {"taxon": "Vespa crabro", "probability": 0.47}]}


def test_dropped_boxes_are_kept_apart_and_counted(tmp_path):
    dets = [_det("Vespa", "rolled_up", "genus"), _det("no organism", "no_organism"), _det("unknown", "unknown")]
    r = make_record("a.jpg", (40, 30), dets, "d+c")
    assert [d["reason"] for d in r["detections"]] == ["rolled_up", "unknown"]
    assert [d["reason"] for d in r["dropped"]] == ["no_organism"] and r["result"] == "organisms found"
    only_dish = make_record("b.jpg", (40, 30), [_det("no organism", "no_organism")], "d+c")
    assert only_dish["result"] == "no organism found" and len(only_dish["dropped"]) == 1
    s = summarize_records([r, only_dish, make_record("c.jpg", None, None, "d+c", failure="empty file")])
    assert s["organisms_per_reason"] == {"named": 0, "rolled_up": 1, "uncertain": 0, "unknown": 1}
    assert (s["organisms_per_taxon"], s["unknown"], s["dropped_no_organism"]) == ({"Vespa": 1}, 1, 2)
    assert (s["no_organism"], s["failures"]) == (1, 1)

    write_csv([r, only_dish], tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(x["file"], x["taxon"], x["rank"], x["reason"]) for x in rows] == [
        ("a.jpg", "Vespa", "genus", "rolled_up"), ("a.jpg", "unknown", "", "unknown"),
        ("a.jpg", "no organism", "", "no_organism"), ("b.jpg", "no organism", "", "no_organism")]
    assert rows[0]["unknown_score"] == "0.3" and rows[0]["threshold"] == "0.94"

    info = {"detector": {"model_version": "d"}, "classifier": {"model_version": "c"},
            "resolved_settings": {"score_threshold": 0.85, "threshold": 0.94, "unknown_threshold": 0.6, "rollup": True}}
    md = megadetector([r], info, ["organism"], ["Vespa crabro", "Vespa velutina"])
    answers = [d["taxolens_answer"] for d in md["images"][0]["detections"]]
    assert answers[0] == {"taxon": "Vespa", "rank": "genus", "reason": "rolled_up", "probability": 0.97,
                          "unknown_score": 0.3}
    assert md["info"]["classifier_metadata"]["unknown_label"] == "unknown"
    assert md["info"]["classifier_metadata"]["unknown_threshold"] == 0.6
