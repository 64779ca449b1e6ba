"""``taxolens annotations propose``: boxes for photos sorted into class folders, from a detector.

The study's photos came from iNaturalist sorted by taxon, with no boxes. A (class-agnostic) detector
proposes the boxes; the class comes from the folder. The COCO file it writes is ready to review
(``annotations validate``, any COCO editor) and to cut into classifier crops (``annotations crops``).

Launch::

    taxolens annotations propose --detector runs/det/model.pt ../shared/data/hymenoptera/train \
        --out runs/hym-boxes.json --max-per-photo 1
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from annotations.coco import CocoBuilder, image_path, load_coco
from core.config import check_settings
from core.crops import crop_box
from core.defaults import CROP_PADDING
from core.io import ImageReadError, atomic_save_image, atomic_write_json, list_images, read_image
from detector.evaluate import add_suppression_args
from detector.predict import Detector

LOGGER = logging.getLogger(__name__)


def propose(detector: Detector, folder: str | Path, out: str | Path, *, score_threshold: float | None = None,
            max_per_photo: int = 0) -> dict:
    """Detector boxes for ``folder/<class>/*`` as a COCO file at ``out``; the class is the folder's name.

    Photos where nothing is found are kept with no box (a reviewer sees them); unreadable photos are
    skipped with a warning that names them.
    """
    folder, out = Path(folder), Path(out)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{folder}: expected one folder per class (folder/<class>/*.jpg), found none")
    b = CocoBuilder(out.parent)
    for cls in classes:
        b.category(cls)
    photos = [(cls, p) for cls in classes for p in list_images(folder / cls)]
    found = empty = 0
    for cls, path in tqdm(photos, desc="propose", unit="photo"):
        try:
            photo = read_image(path)
        except ImageReadError as exc:
            b.problem("unreadable image", path, exc.reason)
            continue
        image = b.add_image(path, photo.shape[1], photo.shape[0])
        assert image is not None, "a decoded photo with its size is always added"
        det = detector.predict(photo, score_threshold)
        order = det["scores"].argsort()[::-1]
        if max_per_photo:
            order = order[:max_per_photo]
        kept = 0
        for i in order:
            x, y, w, h = (float(v) for v in det["boxes"][i])
            if b.add_box(image, cls, (x, y, x + w, y + h), path, score=round(float(det["scores"][i]), 4)):
                kept += 1
        found += kept
        empty += not kept
    coco = b.to_coco(f"propose:{folder} with {detector.info.get('model_version')}")
    atomic_write_json(out, coco, indent=None)
    LOGGER.info("%s: %d photos, %d boxes, %d photos with none", out, len(coco["images"]), found, empty)
    return coco


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens annotations propose``."""
    p = argparse.ArgumentParser(prog="taxolens annotations propose", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="photos sorted by class: folder/<class>/*.jpg")
    p.add_argument("--detector", required=True, help="detector release file")
    p.add_argument("--out", required=True, help="COCO JSON to write")
    p.add_argument("--score-threshold", type=float, default=None, help="default: the detector file's")
    p.add_argument("--max-per-photo", type=int, default=0, help="keep the N best boxes per photo (0: all)")
    p.add_argument("--device", default="auto")
    add_suppression_args(p)
    args = check_settings(p.parse_args(argv))
    detector = Detector.from_file(args.detector, args.device, suppress_iou=args.suppress_iou,
                                  suppress_containment=args.suppress_containment)
    coco = propose(detector, args.folder, args.out,
                   score_threshold=args.score_threshold, max_per_photo=args.max_per_photo)
    print(f"{args.out}: {len(coco['images'])} photos, {len(coco['annotations'])} boxes")
    return 0


def _overlaps(box: np.ndarray, gts: np.ndarray) -> tuple[float, float, float]:
    """How much ``box`` touches the ground truth: the largest IoU, ground-truth share inside it, its share inside.

    All boxes are ``x0, y0, x1, y1``.
    """
    if not len(gts):
        return 0.0, 0.0, 0.0
    w = np.clip(np.minimum(gts[:, 2], box[2]) - np.maximum(gts[:, 0], box[0]), 0, None)
    h = np.clip(np.minimum(gts[:, 3], box[3]) - np.maximum(gts[:, 1], box[1]), 0, None)
    inter = w * h
    area_g = (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1])
    area_b = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return (float((inter / (area_g + area_b - inter)).max()), float((inter / np.maximum(area_g, 1e-9)).max()),
            float((inter / area_b).max()))


def mine_background(detector: Detector, coco_path: str | Path, out: str | Path, *, padding: float,
                    per_photo: int = 2, min_score: float = 0.2, max_overlap: float = 0.2,
                    random_per_empty: int = 2, seed: int = 0) -> dict:
    """Crops of what is no organism, for the classifier's background class, into ``out`` (one folder).

    Two sources, both from annotated photos: the detector's boxes (score at least ``min_score``, the best
    ``per_photo`` of each photo) that match no annotated organism: IoU, share of an organism inside the
    box and share of the box inside an organism all under ``max_overlap``; and, on photos with no
    organism, ``random_per_empty`` random boxes of the sizes organisms have. Annotations must be complete
    for this: an organism left unannotated would be taught as background. Crops are cut by the one crop
    function with the classifier's ``padding``.
    """
    coco = load_coco(coco_path)
    out = Path(out)
    rng = np.random.default_rng(seed)
    by_image: dict[int, list[list[float]]] = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        by_image.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    shapes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
    sizes = [(a["bbox"][2] / shapes[a["image_id"]][0], a["bbox"][3] / shapes[a["image_id"]][1])
             for a in coco["annotations"] if a["image_id"] in shapes] or [(0.2, 0.2)]
    counts = {"detector": 0, "random": 0}
    failures = []
    for im in tqdm(coco["images"], desc="background", unit="photo"):
        try:
            photo = read_image(image_path(coco, im))
        except ImageReadError as exc:
            failures.append({"path": exc.path, "reason": exc.reason})
            continue
        gts = np.array(by_image.get(im["id"], []), dtype=np.float64).reshape(-1, 4)
        det = detector.predict(photo, min_score)
        boxes = []
        for (x, y, w, h), _score in zip(det["boxes"], det["scores"]):
            if max(_overlaps(np.array([x, y, x + w, y + h]), gts)) < max_overlap:
                boxes.append(("detector", [float(x), float(y), float(w), float(h)]))
            if len(boxes) >= per_photo:
                break
        if not len(gts):
            H, W = photo.shape[:2]
            for _ in range(random_per_empty):
                fw, fh = sizes[int(rng.integers(len(sizes)))]
                w, h = max(8.0, fw * W), max(8.0, fh * H)
                boxes.append(("random", [float(rng.uniform(0, max(W - w, 1))), float(rng.uniform(0, max(H - h, 1))),
                                         w, h]))
        stem = Path(im["file_name"]).stem
        for k, (source, box) in enumerate(boxes):
            atomic_save_image(crop_box(photo, box, padding), out / f"{stem}_bg{k}.png")
            counts[source] += 1
    manifest = {"source": str(Path(coco_path).resolve()), "detector": detector.info.get("model_version"),
                "padding": padding, "crops": counts, "failures": failures,
                "settings": {"per_photo": per_photo, "min_score": min_score, "max_overlap": max_overlap,
                             "random_per_empty": random_per_empty, "seed": seed}}
    atomic_write_json(out / "background.json", manifest)
    return manifest


def background_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens annotations background``."""
    p = argparse.ArgumentParser(prog="taxolens annotations background", description=mine_background.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("coco", help="annotated photos (canonical COCO JSON); every organism in them annotated")
    p.add_argument("--detector", required=True, help="detector release file")
    p.add_argument("--out", required=True, help="folder for the crops, e.g. crops/'no organism'")
    p.add_argument("--padding", type=float, default=CROP_PADDING, help="as the classifier's crops")
    p.add_argument("--per-photo", type=int, default=2)
    p.add_argument("--min-score", type=float, default=0.2)
    p.add_argument("--max-overlap", type=float, default=0.2)
    p.add_argument("--random-per-empty", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    add_suppression_args(p)
    args = check_settings(p.parse_args(argv))
    detector = Detector.from_file(args.detector, args.device, suppress_iou=args.suppress_iou,
                                  suppress_containment=args.suppress_containment)
    m = mine_background(detector, args.coco, args.out, padding=args.padding,
                        per_photo=args.per_photo, min_score=args.min_score, max_overlap=args.max_overlap,
                        random_per_empty=args.random_per_empty, seed=args.seed)
    print(f"{args.out}: {m['crops']['detector']} detector boxes and {m['crops']['random']} random boxes that are "
          f"no organism; {len(m['failures'])} unreadable photo(s)")
    return 0
