"""One record per photo, and the summary of many: the words every output uses, stated once.

Both the folder run (``pipeline/run.py``) and the web app make their records here, through
:meth:`pipeline.predictor.Pipeline.process_items`; the README documents every field.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from core.answers import (
    NAMED,
    REASON_NO_ORGANISM,
    REASON_UNCERTAIN,
    REASON_UNKNOWN,
    ROLLED_UP,
)

STATUS_OK = "ok"
STATUS_FAILED = "failed"
RESULT_ORGANISMS = "organisms found"
RESULT_NO_ORGANISM = "no organism found"
RESULT_WHOLE_PHOTO = "whole photo classified"
SOURCE_DETECTOR = "detector"
SOURCE_WHOLE_PHOTO = "whole_photo"


def make_record(file: str, image_size: tuple[int, int] | None, detections: Sequence[dict] | None,
                model_version: str, failure: str | None = None, seconds: float | None = None,
                sha256: str | None = None) -> dict:
    """One photo's record: its stable id ``file``, what was found, and the models' versions.

    ``sha256`` is that of the bytes the models saw (the store files the answer under it).

    Boxes the classifier answered ``no organism`` for are not organisms: they go to ``dropped`` (with the
    decision, so a reviewer sees what was dropped and why), the rest to ``detections``.
    """
    if failure is not None:
        return {"file": file, "status": STATUS_FAILED, "failure": failure, "detections": [], "dropped": [],
                "model_version": model_version}
    assert image_size is not None, "a record that is not a failure needs the photo's size"
    dets = [d for d in detections or [] if d["reason"] != REASON_NO_ORGANISM]
    dropped = [d for d in detections or [] if d["reason"] == REASON_NO_ORGANISM]
    whole = bool(dets) and dets[0]["source"] == SOURCE_WHOLE_PHOTO
    result = RESULT_NO_ORGANISM if not dets else (RESULT_WHOLE_PHOTO if whole else RESULT_ORGANISMS)
    return {"file": file, "status": STATUS_OK, "width": image_size[0], "height": image_size[1], "result": result,
            "detections": dets, "dropped": dropped, "model_version": model_version,
            "seconds": None if seconds is None else round(seconds, 4), "sha256": sha256}


def summarize_records(records: Sequence[dict]) -> dict:
    """Photos, failures, organisms per answered taxon, organisms per reason, photos with no organism."""
    dets = [d for r in records for d in r.get("detections", [])]
    taxa = Counter(d["taxon"] for d in dets if d.get("accepted"))
    reasons = Counter(d["reason"] for d in dets)
    return {"photos": len(records), "ok": sum(r["status"] == STATUS_OK for r in records),
            "failures": sum(r["status"] == STATUS_FAILED for r in records),
            "organisms": len(dets), "organisms_per_taxon": dict(sorted(taxa.items())),
            "organisms_per_reason": {k: reasons.get(k, 0) for k in (NAMED, ROLLED_UP, REASON_UNCERTAIN,
                                                                    REASON_UNKNOWN)},
            "uncertain": reasons.get(REASON_UNCERTAIN, 0), "unknown": reasons.get(REASON_UNKNOWN, 0),
            "dropped_no_organism": sum(len(r.get("dropped", [])) for r in records),
            "no_organism": sum(r.get("result") == RESULT_NO_ORGANISM for r in records)}


#: the keys every record of a photo that was answered holds, and every detection in it
OK_RECORD_KEYS = frozenset({"file", "status", "width", "height", "result", "detections", "dropped", "model_version",
                            "seconds", "sha256"})
DETECTION_KEYS = frozenset({"box", "detector_score", "source", "taxon", "probability", "reason", "accepted"})


def record_problems(record: dict) -> list[str]:
    """What is wrong with a record (empty when it holds what :func:`make_record` promises).

    The checks every engine's records must pass: the keys, the photo's size, boxes inside the photo, every
    probability and score in 0..1, a known reason, the answer accepted exactly when it is named or rolled up.
    """
    name = record.get("file", "?")
    if record.get("status") == STATUS_FAILED:
        return [] if isinstance(record.get("failure"), str) and record["failure"] else [f"{name}: failure unsaid"]
    problems = [f"{name}: missing {k}" for k in sorted(OK_RECORD_KEYS - set(record))]
    if problems:
        return problems
    w, h = record["width"], record["height"]
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        return [f"{name}: size {w}x{h}"]
    reasons = {NAMED, ROLLED_UP, REASON_UNCERTAIN, REASON_UNKNOWN}
    for part, expected in (("detections", reasons), ("dropped", {REASON_NO_ORGANISM})):
        for i, d in enumerate(record[part]):
            where = f"{name} {part}[{i}]"
            missing = sorted(DETECTION_KEYS - set(d))
            if missing:
                problems.append(f"{where}: missing {', '.join(missing)}")
                continue
            x, y, bw, bh = (float(v) for v in d["box"])
            if not (bw > 0 and bh > 0 and x >= 0 and y >= 0 and x + bw <= w + 1 and y + bh <= h + 1):
                problems.append(f"{where}: box {d['box']} outside the {w}x{h} photo")
            score = d["detector_score"]
            if score is not None and not 0 <= score <= 1:
                problems.append(f"{where}: detector score {score}")
            if d["probability"] is not None and not 0 <= d["probability"] <= 1:
                problems.append(f"{where}: probability {d['probability']}")
            if d["reason"] not in expected:
                problems.append(f"{where}: reason {d['reason']!r}")
            if bool(d["accepted"]) != (d["reason"] in (NAMED, ROLLED_UP)):
                problems.append(f"{where}: accepted {d['accepted']} with reason {d['reason']!r}")
    return problems
