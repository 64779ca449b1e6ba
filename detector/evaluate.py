"""COCO evaluation of a detector with pycocotools, and the figures the pipeline cares about.

Launch::

    taxolens detector evaluate --model runs/det/model.pt --coco runs/bh/valid.json --out runs/det/eval

Writes ``metrics.json`` and ``metrics.md``: AP, AP50, AP75, AP small/medium/large, AR@1/10/100 (COCOeval),
AP per class, and at the model's score threshold the share of organisms found (a detection of any
class with IoU >= 0.5) and false boxes per photo; ``pr_curve.png`` is precision against recall at IoU 0.5.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou
from tqdm import tqdm

from annotations.coco import load_coco
from core.config import check_settings
from core.io import atomic_write_csv, atomic_write_json, atomic_write_text, saved_figure

STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100",
              "AR_small", "AR_medium", "AR_large")


def coco_api(coco: dict) -> COCO:
    """A pycocotools COCO object from a dict (no file needed)."""
    api = COCO()
    api.dataset = {k: coco[k] for k in ("images", "annotations", "categories")}
    api.dataset["annotations"] = [{**a, "area": a.get("area", a["bbox"][2] * a["bbox"][3]),
                                   "iscrowd": a.get("iscrowd", 0)} for a in api.dataset["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        api.createIndex()
    return api


def coco_metrics(gt: dict, results: list[dict]) -> dict:
    """COCOeval bbox metrics of ``results`` (COCO results: image_id, category_id, bbox xywh, score) on ``gt``.

    Returns the twelve standard figures, AP per class, and the precision-recall curve per class at IoU 0.5.
    """
    api = coco_api(gt)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    if not results:
        return {**dict.fromkeys(STAT_NAMES, 0.0), "per_class_AP": dict.fromkeys(names.values(), 0.0),
                "per_class_AP50": dict.fromkeys(names.values(), 0.0), "pr_curve": {}}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = api.loadRes([dict(r) for r in results])
        ev = COCOeval(api, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = {n: float(max(v, 0.0)) for n, v in zip(STAT_NAMES, ev.stats)}
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, categories, areas, max dets]
    per_ap, per_ap50, curves = {}, {}, {}
    for k, cid in enumerate(ev.params.catIds):
        p_all = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        per_ap[names[cid]] = float(p_all[p_all > -1].mean()) if (p_all > -1).any() else 0.0
        per_ap50[names[cid]] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0
        curves[names[cid]] = {"recall": ev.params.recThrs.tolist(), "precision": np.maximum(p50, 0).tolist()}
    return {**stats, "per_class_AP": per_ap, "per_class_AP50": per_ap50, "pr_curve": curves}


#: a box counts as covering only part of an organism when at least this share of it lies inside the annotation
PART_INSIDE = 0.8


def partial_boxes(dets: np.ndarray, gts: np.ndarray, iou: float = 0.5, inside: float = PART_INSIDE) -> list[bool]:
    """Per detection (corners ``x1 y1 x2 y2``): whether it boxes only part of an organism.

    That is: no annotation matches it (IoU below ``iou`` with every one), yet it lies inside one (at least
    ``inside`` of its own area): a box around the striped abdomen of a hoverfly, or half a hornet. Pure, on
    arrays, so that it is tested on literal boxes.
    """
    dets, gts = np.asarray(dets, np.float64).reshape(-1, 4), np.asarray(gts, np.float64).reshape(-1, 4)
    if not len(dets):
        return []
    if not len(gts):
        return [False] * len(dets)
    x1 = np.maximum(dets[:, None, 0], gts[None, :, 0])
    y1 = np.maximum(dets[:, None, 1], gts[None, :, 1])
    x2 = np.minimum(dets[:, None, 2], gts[None, :, 2])
    y2 = np.minimum(dets[:, None, 3], gts[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_d = ((dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]))[:, None]
    area_g = ((gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]))[None, :]
    ious = inter / np.maximum(area_d + area_g - inter, 1e-12)
    within = inter / np.maximum(area_d, 1e-12)
    return [bool((ious[i] < iou).all() and (within[i] >= inside).any()) for i in range(len(dets))]


def found_and_false(gt: dict, results: list[dict], score_threshold: float, iou: float = 0.5) -> dict:
    """At a score threshold: share of organisms found, and false boxes per photo.

    An organism is found by a detection of any class with IoU >= ``iou``; each detection finds one at most.
    A detection that overlaps an organism already found (and no other) is a duplicate: a false box that
    boxes the same organism again.
    """
    import torch

    by_image_gt: dict[int, list] = {}
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        by_image_gt.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    by_image_dt: dict[int, list] = {}
    for r in results:
        if r["score"] >= score_threshold:
            x, y, w, h = r["bbox"]
            by_image_dt.setdefault(r["image_id"], []).append((r["score"], [x, y, x + w, y + h]))
    found = false = duplicates = partial = 0
    for im in gt["images"]:
        g = by_image_gt.get(im["id"], [])
        d = [b for _, b in sorted(by_image_dt.get(im["id"], []), key=lambda t: -t[0])]
        if not d:
            continue
        partial += sum(partial_boxes(np.array(d), np.array(g).reshape(-1, 4), iou))
        if not g:
            false += len(d)
            continue
        ious = box_iou(torch.tensor(d, dtype=torch.float32), torch.tensor(g, dtype=torch.float32)).numpy()
        taken: set[int] = set()
        for i in range(len(d)):
            candidates = [(ious[i, j], j) for j in range(len(g)) if j not in taken and ious[i, j] >= iou]
            if candidates:
                taken.add(max(candidates)[1])
            else:
                false += 1
                duplicates += bool((ious[i] >= iou).any())
        found += len(taken)
    n_gt = len(gt["annotations"])
    boxes = found + false
    precision = found / boxes if boxes else None
    recall = found / n_gt if n_gt else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    return {"score_threshold": score_threshold, "organisms": n_gt, "found": found,
            "found_share": recall, "false_boxes": false,
            "false_boxes_per_photo": false / max(len(gt["images"]), 1), "duplicate_boxes": duplicates,
            "duplicates_per_organism": duplicates / found if found else None,
            "partial_boxes": partial, "partial_share": partial / (found + false) if found + false else None,
            "precision": precision, "recall": recall, "f1": f1}


SCORE_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 .. 0.95


def threshold_table(gt: dict, results: list[dict], thresholds: Sequence[float] = SCORE_THRESHOLDS) -> list[dict]:
    """:func:`found_and_false` at each score threshold: precision, recall, F1, false and duplicate boxes."""
    return [found_and_false(gt, results, t) for t in thresholds]


def choose_operating_point(table: list[dict], target_precision: float | None = None) -> dict:
    """The score threshold to use: F1-best, or the lowest that reaches ``target_precision``.

    The lowest threshold reaching a precision finds the most organisms at that precision. Where no
    threshold reaches it, the most precise one is taken and ``reached`` is false.
    """
    if not table:
        raise ValueError("no thresholds to choose from")
    if target_precision is None:
        row = max(table, key=lambda r: (r["f1"], -r["score_threshold"]))
        return {"method": "f1", **row}
    reaching = [r for r in table if r["precision"] is not None and r["precision"] >= target_precision]
    if reaching:
        return {"method": f"precision>={target_precision}", "reached": True,
                **min(reaching, key=lambda r: r["score_threshold"])}
    row = max(table, key=lambda r: (r["precision"] or 0.0, -r["score_threshold"]))
    return {"method": f"precision>={target_precision}", "reached": False, **row}


def predict_coco(detector, gt: dict, batch_size: int = 2, class_agnostic: bool = False) -> list[dict]:
    """COCO results for every photo of ``gt`` at the lowest score (0.001), for COCOeval."""
    from annotations.coco import image_path
    from core.io import read_image

    cat_of = {c["name"]: c["id"] for c in gt["categories"]}
    results = []
    images = gt["images"]
    for start in tqdm(range(0, len(images), batch_size), desc="detect", unit="batch", leave=False):
        chunk = images[start:start + batch_size]
        outs = detector.batch_predict([read_image(image_path(gt, im)) for im in chunk], score_threshold=0.001)
        for im, out in zip(chunk, outs):
            for box, score, label in zip(out["boxes"], out["scores"], out["labels"]):
                cid = gt["categories"][0]["id"] if class_agnostic else cat_of.get(label)
                if cid is None:
                    continue
                results.append({"image_id": im["id"], "category_id": cid,
                                "bbox": [round(float(v), 2) for v in box], "score": round(float(score), 5)})
    return results


def plot_pr(curves: dict, path: Path) -> None:
    """Precision against recall at IoU 0.5, one line per class."""
    with saved_figure(path, (6, 4.5)) as (fig, ax):
        for name, c in curves.items():
            ax.plot(c["recall"], c["precision"], label=name)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title("Precision-recall at IoU 0.5")
        if curves:
            ax.legend()


def evaluate_detector(model_path: str | Path, coco_path: str | Path, out: str | Path, device: str = "cpu",
                      score_threshold: float | None = None, target_precision: float | None = None,
                      suppress_iou: float | None = None, suppress_containment: float | None = None,
                      at_operating_point: bool = False) -> dict:
    """Evaluate a detector release file on a COCO file; write the report into ``out``.

    Besides COCOeval's figures: precision, recall, F1, false and duplicate boxes over score thresholds,
    the operating point chosen from them (F1-best, or the lowest threshold reaching ``target_precision``),
    and the figures at ``score_threshold`` (default: the model file's; with ``at_operating_point``, the
    chosen one).
    """
    from annotations.coco import make_class_agnostic
    from detector.predict import Detector

    det = Detector.from_file(model_path, device, suppress_iou=suppress_iou,
                             suppress_containment=suppress_containment)
    gt = load_coco(coco_path)
    agnostic = bool(det.info.get("class_agnostic"))
    if agnostic:
        gt = {**make_class_agnostic(gt), "image_root": gt["image_root"]}
    results = predict_coco(det, gt, class_agnostic=agnostic)
    metrics = coco_metrics(gt, results)
    metrics["thresholds"] = threshold_table(gt, results)
    metrics["operating_point"] = choose_operating_point(metrics["thresholds"], target_precision)
    thr = det.score_threshold if score_threshold is None else score_threshold
    if at_operating_point:
        thr = metrics["operating_point"]["score_threshold"]
    metrics["at_threshold"] = found_and_false(gt, results, thr)
    metrics["suppression"] = det.suppression
    metrics["images"] = len(gt["images"])
    write_detector_report(metrics, out, f"{Path(model_path).name} on {Path(coco_path).name}")
    return metrics


def write_detector_report(metrics: dict, out: str | Path, title: str) -> None:
    """``metrics.json``, ``metrics.md`` and ``pr_curve.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", {k: v for k, v in metrics.items() if k != "pr_curve"})
    t = metrics.get("at_threshold", {})
    lines = [f"# Detector evaluation: {title}", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {n} | {metrics[n]:.4f} |" for n in STAT_NAMES]
    lines += ["", "| class | AP | AP50 |", "|---|---:|---:|"]
    lines += [f"| {c} | {metrics['per_class_AP'][c]:.4f} | {metrics['per_class_AP50'][c]:.4f} |"
              for c in metrics["per_class_AP"]]
    if t:
        share = "n/a" if t["found_share"] is None else f"{t['found_share']:.3f}"
        lines += ["", f"At score threshold {t['score_threshold']}: {t['found']} of {t['organisms']} organisms "
                      f"found ({share}), {t['false_boxes_per_photo']:.3f} false boxes per photo, "
                      f"{t['duplicate_boxes']} duplicate boxes."]
    if metrics.get("suppression"):
        s = metrics["suppression"]
        lines += ["", f"Boxes suppressed class-agnostically at IoU >= {s['iou']} or >= {s['containment']} of a "
                      "box inside a better one."]
    op = metrics.get("operating_point")
    if op:
        lines += ["", f"Operating point ({op['method']}{'' if op.get('reached', True) else ', not reached'}): "
                      f"score {op['score_threshold']}, precision {_num(op['precision'])}, recall {_num(op['recall'])}, "
                      f"F1 {_num(op['f1'])}, {op['false_boxes_per_photo']:.3f} false boxes per photo, "
                      f"duplicates per organism found {_num(op['duplicates_per_organism'])}, "
                      f"{_num(op.get('partial_share'))} of boxes around only part of an organism.", "",
                  "| score | precision | recall | F1 | false boxes / photo | duplicates / organism | "
                  "part of an organism |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['score_threshold']:.2f} | {_num(r['precision'])} | {_num(r['recall'])} | {_num(r['f1'])} | "
                  f"{r['false_boxes_per_photo']:.3f} | {_num(r['duplicates_per_organism'])} | "
                  f"{_num(r.get('partial_share'))} |" for r in metrics["thresholds"]]
        atomic_write_csv(out / "thresholds.csv", list(metrics["thresholds"][0]), metrics["thresholds"])
        plot_thresholds(metrics["thresholds"], op, out / "thresholds.png")
    atomic_write_text(out / "metrics.md", "\n".join(lines) + "\n")
    plot_pr(metrics.get("pr_curve", {}), out / "pr_curve.png")


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def plot_thresholds(table: list[dict], op: dict, path: Path) -> None:
    """Precision, recall and F1 against the score threshold, the operating point marked."""
    with saved_figure(path, (6.5, 4.2)) as (fig, ax):
        t = [r["score_threshold"] for r in table]
        for key in ("precision", "recall", "f1"):
            ax.plot(t, [np.nan if r[key] is None else r[key] for r in table], marker=".", label=key)
        ax.axvline(op["score_threshold"], color="grey", linestyle="--", label=f"chosen ({op['method']})")
        ax.set_xlabel("detector score threshold")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left")
        ax.set_title("Detector operating point (IoU 0.5, any class)")


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens detector evaluate``."""
    p = argparse.ArgumentParser(prog="taxolens detector evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="detector release file")
    p.add_argument("--coco", required=True, help="ground truth, canonical COCO JSON")
    p.add_argument("--out", required=True)
    p.add_argument("--score-threshold", type=float, default=None, help="default: the model file's")
    p.add_argument("--target-precision", type=float, default=None,
                   help="choose the operating point as the lowest score reaching this precision (default: F1-best)")
    add_suppression_args(p)
    p.add_argument("--device", default="cpu")
    return p


def add_suppression_args(p: argparse._ActionsContainer) -> None:
    """``--suppress-iou`` and ``--suppress-containment``, shared by every command that runs a detector."""
    p.add_argument("--suppress-iou", type=float, default=None,
                   help="drop a box overlapping a better one by this IoU (default: the model file's, else 0.5)")
    p.add_argument("--suppress-containment", type=float, default=None,
                   help="drop a box with this share of its area inside a better one (default: the model "
                        "file's, else 0.7; 1.01 turns it off)")


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens detector evaluate``."""
    args = check_settings(get_args_parser().parse_args(argv))
    m = evaluate_detector(args.model, args.coco, args.out, args.device, args.score_threshold, args.target_precision,
                          args.suppress_iou, args.suppress_containment)
    print(json.dumps({k: m[k] for k in ("AP", "AP50", "AP75", "AR100", "per_class_AP", "at_threshold",
                                        "operating_point")}, indent=2))
    return m
