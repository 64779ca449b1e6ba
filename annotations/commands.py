"""``taxolens annotations import|validate|split|stats|crops``.

Launch::

    taxolens annotations import --format yolo ../shared/data/bees-hornets/train --out runs/bh/train.json
    taxolens annotations validate runs/bh/train.json
    taxolens annotations split runs/bh/all.json --out runs/bh --group-regex '^(.*?)_jpg'
    taxolens annotations stats runs/bh/train.json
    taxolens annotations crops runs/bh/train.json --out runs/bh/crops
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from annotations.coco import (
    IMPORTERS,
    Problem,
    coco_reference_problems,
    image_path,
    import_annotations,
    load_coco,
    make_class_agnostic,
    problems_summary,
    save_subset,
)
from annotations.split import group_split
from core.config import check_settings
from core.crops import crop_box
from core.defaults import CROP_PADDING
from core.io import ImageReadError, atomic_write_json, image_size, read_image

LOGGER = logging.getLogger(__name__)


def _print_problems(problems: list[Problem]) -> None:
    for p in problems:
        print(f"  {p}")
    counts = problems_summary(problems)
    print("problems: " + (", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) if counts else "none"))


def import_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens annotations import``."""
    p = argparse.ArgumentParser(prog="taxolens annotations import",
                                description="Convert YOLO / Pascal VOC / CSV / COCO annotations to one canonical COCO "
                                            "JSON (file names relative to the JSON's folder).")
    p.add_argument("--format", required=True, choices=sorted(IMPORTERS))
    p.add_argument("src", help="folder (yolo, voc) or file (csv, coco)")
    p.add_argument("--out", required=True, help="COCO JSON to write")
    p.add_argument("--class-agnostic", action="store_true", help="every class becomes one: organism")
    p.add_argument("--images", default=None, help="yolo: the photos' folder, where it is not SRC (e.g. JPEGImages)")
    p.add_argument("--labels", default=None, help="yolo: the label files' folder, where they are not beside the "
                                                   "photos or in the labels/ twin of images/ (e.g. txt_label)")
    p.add_argument("--names", default=None, help="yolo: the class names file (data.yaml or classes.txt), where it "
                                                  "is not in SRC, the two folders above it, or --labels")
    args = check_settings(p.parse_args(argv))
    coco, problems = import_annotations(args.format, args.src, args.out, args.class_agnostic,
                                        images=Path(args.images) if args.images else None,
                                        labels=Path(args.labels) if args.labels else None,
                                        names_file=Path(args.names) if args.names else None)
    empty = len({im["id"] for im in coco["images"]} - {a["image_id"] for a in coco["annotations"]})
    print(f"{args.out}: {len(coco['images'])} images ({empty} with no organism), {len(coco['annotations'])} boxes, "
          f"categories {[c['name'] for c in coco['categories']]}")
    _print_problems(problems)
    return 0


def validate(coco_path: str | Path) -> list[Problem]:
    """Every problem of a COCO file.

    Missing or unreadable photos, sizes that differ from the recorded ones, unknown categories,
    duplicate ids, degenerate boxes and boxes outside the photo.
    """
    coco = load_coco(coco_path, strict=False)
    src = str(coco_path)
    problems = [Problem(q.kind, src, q.message) for q in coco_reference_problems(coco)]
    images = {im["id"]: im for im in coco["images"]}
    for im in tqdm(coco["images"], desc="validate", unit="photo", leave=False):
        path = image_path(coco, im)
        try:
            w, h = image_size(path)
        except ImageReadError as exc:
            problems.append(Problem("missing or unreadable image", str(path), f"image id {im['id']}: {exc.reason}"))
            continue
        if (w, h) != (im.get("width"), im.get("height")):
            problems.append(Problem("size mismatch", str(path), f"image id {im['id']}: recorded "
                                    f"{im.get('width')}x{im.get('height')}, photo is {w}x{h}"))
    for a in coco["annotations"]:
        im = images.get(a["image_id"])
        if im is None:
            continue
        x, y, w, h = a["bbox"]
        if w <= 0 or h <= 0:
            problems.append(Problem("degenerate box", src, f"annotation id {a['id']}: width {w}, height {h}"))
        elif x < 0 or y < 0 or x + w > im["width"] + 0.5 or y + h > im["height"] + 0.5:
            problems.append(Problem("box outside image", src, f"annotation id {a['id']}: {a['bbox']} in "
                                    f"{im['width']}x{im['height']}"))
    return problems


def validate_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens annotations validate``: exit 1 when there is any problem."""
    p = argparse.ArgumentParser(prog="taxolens annotations validate", description=validate.__doc__)
    p.add_argument("coco", help="COCO JSON")
    args = check_settings(p.parse_args(argv))
    problems = validate(args.coco)
    _print_problems(problems)
    return 1 if problems else 0


def split_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens annotations split``: train.json and val.json, stratified by class, no group on both sides."""
    p = argparse.ArgumentParser(prog="taxolens annotations split",
                                description="Split a COCO file by group (a regex on file names), stratified by "
                                            "class, reproducibly; no group is ever on both sides.")
    p.add_argument("coco")
    p.add_argument("--out", required=True, help="folder for train.json and val.json")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--group-regex", default=None, help=r"e.g. '^(.*?)_jpg' for Roboflow video frames")
    args = check_settings(p.parse_args(argv))
    coco = load_coco(args.coco)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    labels: dict[int, list[str]] = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        labels[a["image_id"]].append(names[a["category_id"]])
    ids = [im["id"] for im in coco["images"]]
    tr, va = group_split([im["file_name"] for im in coco["images"]], [labels[i] for i in ids],
                         val_fraction=args.val_fraction, seed=args.seed, group_regex=args.group_regex)
    out = Path(args.out)
    for name, idx in (("train", tr), ("val", va)):
        subset = save_subset(coco, {ids[i] for i in idx}, out / f"{name}.json")
        print(f"{out / name}.json: {len(subset['images'])} images, {len(subset['annotations'])} boxes")
    return 0


def stats(coco: dict) -> dict:
    """Images, boxes per class, photos with none, box sizes relative to the photo."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    images = {im["id"]: im for im in coco["images"]}
    per_class = Counter(names.get(a["category_id"], "?") for a in coco["annotations"])
    rel = np.array([np.sqrt(a["bbox"][2] * a["bbox"][3] / (images[a["image_id"]]["width"] *
                                                           images[a["image_id"]]["height"]))
                    for a in coco["annotations"] if a["image_id"] in images])
    areas = np.array([a["bbox"][2] * a["bbox"][3] for a in coco["annotations"]])
    with_boxes = {a["image_id"] for a in coco["annotations"]}
    return {
        "images": len(images), "boxes": len(coco["annotations"]), "boxes_per_class": dict(per_class),
        "images_without_boxes": len(set(images) - with_boxes),
        "boxes_per_image_max": max(Counter(a["image_id"] for a in coco["annotations"]).values(), default=0),
        "relative_box_size_percentiles": {f"p{q}": round(float(np.percentile(rel, q)), 4) for q in (5, 25, 50, 75, 95)}
        if len(rel) else {},
        "coco_size": {"small (<32^2 px)": int((areas < 32 ** 2).sum()),
                      "medium": int(((areas >= 32 ** 2) & (areas < 96 ** 2)).sum()),
                      "large (>=96^2 px)": int((areas >= 96 ** 2).sum())},
    }


def stats_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens annotations stats``."""
    p = argparse.ArgumentParser(prog="taxolens annotations stats", description=stats.__doc__)
    p.add_argument("coco")
    args = check_settings(p.parse_args(argv))
    print(json.dumps(stats(load_coco(args.coco)), indent=2))
    return 0


def export_crops(coco_path: str | Path, out: str | Path, padding: float = CROP_PADDING,
                 class_agnostic: bool = False, rename: dict[str, str] | None = None) -> dict:
    """Cut every box out with ``padding`` into ``out/<class>/`` through the pipeline's crop function.

    ``out/crops.json`` records the padding, which ``classifier train`` stores in the model file so
    the pipeline crops the same way.
    """
    coco = load_coco(coco_path)
    if class_agnostic:
        coco = make_class_agnostic(coco)
    names = {c["id"]: (rename or {}).get(c["name"], c["name"]) for c in coco["categories"]}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    out = Path(out)
    counts: Counter[str] = Counter()
    failures = []
    for im in tqdm(coco["images"], desc="crops", unit="photo"):
        if im["id"] not in by_image:
            continue
        try:
            photo = read_image(image_path(coco, im))
        except ImageReadError as exc:
            LOGGER.warning("skipping %s: %s", exc.path, exc.reason)
            failures.append({"path": exc.path, "reason": exc.reason})
            continue
        for a in by_image[im["id"]]:
            cls = names[a["category_id"]]
            dest = out / cls / f"{Path(im['file_name']).stem}_{a['id']}.png"
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(crop_box(photo, a["bbox"], padding)).save(dest)
            counts[cls] += 1
    manifest = {"source": str(Path(coco_path).resolve()), "padding": padding, "crops_per_class": dict(counts),
                "failures": failures}
    atomic_write_json(out / "crops.json", manifest)
    return manifest


def crops_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens annotations crops``."""
    p = argparse.ArgumentParser(prog="taxolens annotations crops", description=export_crops.__doc__)
    p.add_argument("coco")
    p.add_argument("--out", required=True)
    p.add_argument("--padding", type=float, default=CROP_PADDING, help="share of box size added on each side")
    p.add_argument("--class-agnostic", action="store_true")
    p.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW",
                   help="class folder names, e.g. Bees='Apis mellifera' Hornets=Vespa")
    args = check_settings(p.parse_args(argv))
    try:
        rename = dict(r.split("=", 1) for r in args.rename)
    except ValueError:
        p.error("--rename takes OLD=NEW pairs")
    m = export_crops(args.coco, args.out, args.padding, args.class_agnostic, rename)
    print(json.dumps({k: m[k] for k in ("padding", "crops_per_class")}) + f"; {len(m['failures'])} failure(s)")
    return 0
