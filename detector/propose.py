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

from tqdm import tqdm

from annotations.coco import CocoBuilder
from core.io import ImageReadError, atomic_write_json, list_images, read_image
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
    args = p.parse_args(argv)
    coco = propose(Detector.from_file(args.detector, args.device), args.folder, args.out,
                   score_threshold=args.score_threshold, max_per_photo=args.max_per_photo)
    print(f"{args.out}: {len(coco['images'])} photos, {len(coco['annotations'])} boxes")
    return 0
