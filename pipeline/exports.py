"""Standard output formats from a run's records: CSV, COCO results, MegaDetector batch output."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.answers import UNCERTAIN, UNKNOWN
from core.io import atomic_write_csv, atomic_write_json

LOGGER = logging.getLogger(__name__)

CSV_FIELDS = ("file", "status", "failure", "width", "height", "detection", "x", "y", "w", "h", "detector_score",
              "source", "taxon", "rank", "reason", "probability", "accepted", "threshold", "unknown_score", "top1",
              "top1_probability", "top2", "top2_probability", "top3", "top3_probability", "model_version")


def write_csv(records: list[dict], path: str | Path) -> None:
    """One row per box; a photo with none (or a failure) has one row with empty box fields.

    Boxes dropped as no organism are rows too, with ``reason`` ``no_organism``, so nothing is hidden.
    """
    rows = []
    for r in records:
        base = {"file": r["file"], "status": r["status"], "failure": r.get("failure", ""), "width": r.get("width"),
                "height": r.get("height"), "model_version": r.get("model_version")}
        boxes = [*r.get("detections", []), *r.get("dropped", [])]
        if not boxes:
            rows.append({**base, "taxon": r.get("result", "")})
        for i, d in enumerate(boxes, start=1):
            row = {**base, "detection": i, "x": d["box"][0], "y": d["box"][1], "w": d["box"][2], "h": d["box"][3],
                   "detector_score": d["detector_score"], "source": d["source"], "taxon": d["taxon"],
                   "rank": d.get("rank"), "reason": d.get("reason"), "probability": d["probability"],
                   "accepted": d["accepted"], "threshold": d.get("threshold"), "unknown_score": d.get("unknown_score")}
            for k, t in enumerate(d["top"][:3], start=1):
                row[f"top{k}"], row[f"top{k}_probability"] = t["taxon"], t["probability"]
            rows.append(row)
    atomic_write_csv(path, CSV_FIELDS, rows)


def coco_results(records: list[dict], class_names: list[str], gt: dict | None = None) -> tuple[list[dict], dict]:
    """COCO detection results (``image_id``, ``category_id``, ``bbox``, ``score``) and the images they refer to.

    The category is the best guess of the classifier (accepted or not) and the score is detector score
    times its probability. With a ground truth ``gt``, image ids are the ground truth's (matched by file
    name) and categories are matched by name; a one-category ground truth (class-agnostic) takes every box.
    """
    if gt is not None:
        by_name = {Path(im["file_name"]).name: im["id"] for im in gt["images"]}
        cat_by_name = {c["name"]: c["id"] for c in gt["categories"]}
        single = gt["categories"][0]["id"] if len(gt["categories"]) == 1 else None
        images = {"images": gt["images"], "categories": gt["categories"]}
    else:
        by_name, single = {}, None
        cat_by_name = {n: i + 1 for i, n in enumerate(class_names)}
        images = {"images": [], "categories": [{"id": i, "name": n} for n, i in cat_by_name.items()]}
    results = []
    for n, r in enumerate(records, start=1):
        image_id: int | None
        if gt is None:
            image_id = n
            images["images"].append({"id": n, "file_name": r["file"], "width": r.get("width"),
                                     "height": r.get("height")})
        else:
            image_id = by_name.get(Path(r["file"]).name)
            if image_id is None:
                continue
        for d in r.get("detections", []):
            best = d["top"][0]
            cid = single or cat_by_name.get(best["taxon"])
            if cid is None:
                continue
            det_score = d["detector_score"] if d["detector_score"] is not None else 1.0
            results.append({"image_id": image_id, "category_id": cid, "bbox": d["box"],
                            "score": round(det_score * best["probability"], 6),
                            # beside COCO's keys (COCOeval ignores them): what the pipeline answered, and why
                            "taxon": d.get("taxon"), "rank": d.get("rank"), "reason": d.get("reason"),
                            "unknown_score": d.get("unknown_score")})
    if gt is not None and not results and any(r.get("detections") for r in records):
        LOGGER.warning("COCO export: no detection matched the ground truth's file names and categories %s",
                       [c["name"] for c in gt["categories"]])
    return results, images


def megadetector(records: list[dict], info: dict, detector_classes: list[str], class_names: list[str]) -> dict:
    """The MegaDetector batch-output format (version 1.4), read by Timelapse and other camera-trap tools.

    Boxes are ``[x_min, y_min, width, height]`` as fractions of the photo; each detection carries the
    classifier's top guesses as ``classifications`` (``[category id, probability]``); failed photos have
    a ``failure`` string.
    """
    det_ids = {n: str(i + 1) for i, n in enumerate(detector_classes)}
    cls_ids = {n: str(i) for i, n in enumerate(class_names)}
    images = []
    for r in records:
        if r["status"] != "ok":
            images.append({"file": r["file"], "failure": r.get("failure", "failed"), "detections": None})
            continue
        W, H = r["width"], r["height"]
        dets: list[dict[str, Any]] = []
        for d in r["detections"]:
            x, y, w, h = d["box"]
            dets.append({"category": det_ids.get(d["detector_label"], "1"),
                         "conf": round(d["detector_score"] if d["detector_score"] is not None else 1.0, 4),
                         "bbox": [round(x / W, 4), round(y / H, 4), round(w / W, 4), round(h / H, 4)],
                         "classifications": [[cls_ids[t["taxon"]], round(t["probability"], 4)] for t in d["top"]],
                         # taxolens's own fields (camera-trap tools ignore unknown keys): the answer and why
                         "taxolens_answer": {"taxon": d.get("taxon"), "rank": d.get("rank"), "reason": d.get("reason"),
                                             "probability": d.get("probability"),
                                             "unknown_score": d.get("unknown_score")}})
        images.append({"file": r["file"], "max_detection_conf": max((float(d["conf"]) for d in dets), default=0.0),
                       "detections": dets})
    used = info["resolved_settings"]  # the thresholds in force, the model files' where the run set none
    return {
        "info": {"format_version": "1.4", "detector": info["detector"]["model_version"],
                 "classifier": info["classifier"]["model_version"],
                 "detection_completion_time": info.get("finished", ""), "classification_completion_time":
                 info.get("finished", ""),
                 "detector_metadata": {"typical_detection_threshold": used["score_threshold"],
                                       "conservative_detection_threshold": used["score_threshold"]},
                 "classifier_metadata": {"threshold": used["threshold"], "uncertain_label": UNCERTAIN,
                                         "unknown_label": UNKNOWN, "class_thresholds": used.get("class_thresholds", {}),
                                         "unknown_threshold": used.get("unknown_threshold"),
                                         "rollup": used.get("rollup")}},
        "detection_categories": {v: k for k, v in det_ids.items()},
        "classification_categories": {v: k for k, v in cls_ids.items()},
        "images": images,
    }


def write_exports(formats: list[str], records: list[dict], info: dict, out: Path, detector_classes: list[str],
                  class_names: list[str], coco_gt: dict | None = None) -> list[Path]:
    """Write the requested formats into ``out``; returns the paths."""
    written = []
    for fmt in formats:
        if fmt == "csv":
            path = out / "results.csv"
            write_csv(records, path)
        elif fmt == "coco":
            results, images = coco_results(records, class_names, coco_gt)
            path = out / "results_coco.json"
            atomic_write_json(path, results, indent=None)
            atomic_write_json(out / "results_coco_images.json", images, indent=None)
        elif fmt == "megadetector":
            path = out / "results_megadetector.json"
            atomic_write_json(path, megadetector(records, info, detector_classes, class_names), indent=1)
        else:
            raise ValueError(f"unknown format {fmt!r}; choose csv, coco or megadetector")
        written.append(path)
    return written


