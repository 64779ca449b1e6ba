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
