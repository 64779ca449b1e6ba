"""One canonical COCO JSON from YOLO, Pascal VOC, CSV or COCO exports.

The canonical file is what pycocotools loads: ``images`` (``id``, ``file_name``, ``width``,
``height``), ``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox`` as x, y, width, height
in pixels, ``area``, ``iscrowd``) and ``categories`` (``id`` from 1, ``name``, ``supercategory``).
``file_name`` is relative to the folder of the JSON file itself, so the file and its photos move together.

Real exports have quirks; each is handled and reported as a :class:`Problem` naming file and line:
a YOLO polygon becomes its extent; an empty label file is a photo with no organism; categories that
share a name are merged; a box outside the photo is clipped; a box of zero or negative size is dropped.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.io import ImageReadError, atomic_write_json, image_size, is_image_file, list_images

LOGGER = logging.getLogger(__name__)
AGNOSTIC_NAME = "organism"


@dataclass
class Problem:
    """Something wrong in the input, where it is, and what was done about it."""

    kind: str
    file: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        return f"{where}: {self.message} [{self.kind}]"


class CocoBuilder:
    """Accumulates images, categories and boxes; boxes are clipped and checked in one place."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir.resolve()
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.categories: dict[str, int] = {}
        self.problems: list[Problem] = []

    def problem(self, kind: str, file: str | Path, message: str, line: int | None = None) -> None:
        """Record (and log) a problem."""
        p = Problem(kind, str(file), message, line)
        LOGGER.warning("%s", p)
        self.problems.append(p)

    def category(self, name: str) -> int:
        """Id of a category by name; names that repeat are one category."""
        name = str(name).strip()
        if name not in self.categories:
            self.categories[name] = len(self.categories) + 1
        return self.categories[name]

    def add_image(self, path: Path, width: Any = None, height: Any = None, source: str | Path | None = None
                  ) -> dict | None:
        """Add a photo with its size read from the file's header; ``None`` if unreadable.

        A size the annotation file records (``width``, ``height``) that differs is reported, and the
        photo's own size is used: boxes are never clipped or dropped against a wrong recorded size.
        """
        try:
            real_w, real_h = image_size(path)
        except ImageReadError as exc:
            self.problem("unreadable image", path, exc.reason)
            return None
        if width is not None and height is not None and (width, height) != (real_w, real_h):
            self.problem("size mismatch", source or path, f"{path.name}: records {width}x{height}, the photo is "
                         f"{real_w}x{real_h}; the photo's size is used")
        image = {"id": len(self.images) + 1, "file_name": os.path.relpath(path.resolve(), self.out_dir),
                 "width": int(real_w), "height": int(real_h)}
        self.images.append(image)
        return image

    def add_box(self, image: dict, category: str, xyxy: tuple[float, float, float, float], file: str | Path,
                line: int | None = None, **extra: Any) -> dict | None:
        """Add a box given as corners in pixels: clipped to the photo, dropped if it has no area.

        ``extra`` fields (a detector's ``score``) are stored with it. Returns the annotation, or ``None``
        when it was dropped.
        """
        x0, y0, x1, y1 = xyxy
        if not all(math.isfinite(v) for v in xyxy):
            self.problem("bad box", file, f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not four finite numbers; "
                         "skipped", line)
            return None
        W, H = image["width"], image["height"]
        cx0, cy0, cx1, cy1 = max(0.0, x0), max(0.0, y0), min(float(W), x1), min(float(H), y1)
        if x1 - x0 <= 0 or y1 - y0 <= 0 or cx1 - cx0 <= 0 or cy1 - cy0 <= 0:
            self.problem("degenerate box", file, f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area inside the "
                         f"{W}x{H} photo; dropped", line)
            return None
        if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
            self.problem("box outside image", file, f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) clipped to the "
                         f"{W}x{H} photo", line)
        w, h = cx1 - cx0, cy1 - cy0
        annotation = {"id": len(self.annotations) + 1, "image_id": image["id"], "category_id": self.category(category),
                      "bbox": [cx0, cy0, w, h], "area": w * h, "iscrowd": 0, **extra}
        self.annotations.append(annotation)
        return annotation

    def to_coco(self, source: str) -> dict:
        """The canonical COCO dict."""
        return {"info": {"description": f"taxolens import of {source}", "version": "1"},
                "images": self.images, "annotations": self.annotations,
                "categories": [{"id": i, "name": n, "supercategory": "organism"} for n, i in self.categories.items()]}


# ---- YOLO ---------------------------------------------------------------------------------------------

YOLO_NAME_FILES = ("data.yaml", "dataset.yaml", "classes.txt")


def _read_yolo_names(f: Path) -> list[str] | None:
    """Class names from a data.yaml-style file (``names:`` list or mapping) or a classes.txt (one per line)."""
    if f.suffix in (".yaml", ".yml"):
        names = (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("names")
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names, key=int)]
        return [str(n) for n in names] if isinstance(names, list) else None
    return [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _yolo_names(src: Path, labels: Path | None = None) -> tuple[list[str] | None, list[Path]]:
    """Class names, from the first name file found; and the folders searched (for a message that says so)."""
    folders = [src, src.parent, src.parent.parent] + ([labels] if labels is not None else [])
    for folder in folders:
        for name in YOLO_NAME_FILES:
            f = folder / name
            if f.is_file() and (found := _read_yolo_names(f)):
                return found, folders
    return None, folders


def _yolo_label_path(image: Path, images: Path | None = None, labels: Path | None = None) -> Path:
    if images is not None and labels is not None:
        return (labels / image.relative_to(images)).with_suffix(".txt")
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
        return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def import_yolo(src: Path, b: CocoBuilder, *, images: Path | None = None, labels: Path | None = None,
                names_file: Path | None = None) -> None:
    """YOLO txt: ``class cx cy w h`` normalised to 0..1, one file per photo; names from data.yaml or classes.txt.

    By default photos are under ``src`` and each label is beside its photo or in the ``labels/`` twin of an
    ``images/`` folder. Data sets laid out otherwise (``JPEGImages/`` and ``txt_label/`` with ``classes.txt``
    in the labels folder) name the ``images`` folder, the ``labels`` folder and the ``names_file``.
    """
    images = images or (src if labels is not None else None)
    if labels is not None and not labels.is_dir():
        raise FileNotFoundError(f"{labels}: no such labels folder")
    if names_file is not None:
        if not names_file.is_file():
            raise FileNotFoundError(f"{names_file}: no such names file")
        names = _read_yolo_names(names_file)
        if not names:
            raise ValueError(f"{names_file}: holds no class names (a names: list, or one name per line)")
    else:
        names, searched = _yolo_names(src if images is None else images, labels)
        if names is None:
            raise ValueError(f"{src}: no class names found: looked for {', '.join(YOLO_NAME_FILES)} in "
                             f"{', '.join(str(f) for f in searched)}; name the file with --names")
    for path in list_images(images or src):
        image = b.add_image(path)
        if image is None:
            continue
        label = _yolo_label_path(path, images, labels)
        if not label.is_file():
            continue  # YOLO's convention: no label file, no object
        W, H = image["width"], image["height"]
        for n, raw in enumerate(label.read_text().splitlines(), start=1):
            fields = raw.split()
            if not fields:
                continue
            try:
                cls_value, nums = float(fields[0]), [float(v) for v in fields[1:]]
            except ValueError:
                b.problem("bad line", label, f"expected numbers, got {raw.strip()!r}", n)
                continue
            if not cls_value.is_integer():
                b.problem("bad line", label, f"class id {fields[0]!r} is not a whole number", n)
                continue
            cls = int(cls_value)
            if not 0 <= cls < len(names):
                b.problem("unknown category", label, f"class {cls} but only {len(names)} names", n)
                continue
            if len(nums) == 4:
                cx, cy, w, h = nums
                xyxy = ((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H)
            elif len(nums) >= 6 and len(nums) % 2 == 0:
                xs, ys = nums[0::2], nums[1::2]
                xyxy = (min(xs) * W, min(ys) * H, max(xs) * W, max(ys) * H)
                b.problem("polygon", label, f"polygon of {len(xs)} points; its extent is used as the box", n)
            else:
                b.problem("bad line", label, f"expected 5 numbers (class cx cy w h), got {len(fields)}", n)
                continue
            b.add_box(image, names[cls], xyxy, label, n)


# ---- Pascal VOC ---------------------------------------------------------------------------------------

def inside(root: Path, name: str) -> Path | None:
    """``root / name`` if it stays inside ``root`` (no absolute path, no ``..`` out of it), else ``None``.

    Paths in annotation files are data: they must never open a file outside the dataset's folder.
    """
    if not name or Path(name).is_absolute():
        return None
    joined = os.path.normpath(root / name)
    base = os.path.normpath(root)
    return Path(joined) if joined == base or joined.startswith(base + os.sep) else None


def _voc_image(xml: Path, filename: str) -> Path | None:
    for folder in (xml.parent, xml.parent.parent / "JPEGImages", xml.parent.parent / "images"):
        candidate = inside(folder, filename)
        if candidate is not None and candidate.is_file():
            return candidate
    stem_matches = [p for p in xml.parent.glob(Path(filename).stem + ".*") if is_image_file(p)]
    return stem_matches[0] if stem_matches else None


def import_voc(src: Path, b: CocoBuilder) -> None:
    """Pascal VOC XML, one file per photo (``filename``, ``size``, ``object/bndbox``)."""
    xmls = sorted(src.rglob("*.xml")) if src.is_dir() else [src]
    for xml in xmls:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            b.problem("bad file", xml, f"not valid XML ({exc})")
            continue
        filename = (root.findtext("filename") or "").strip() or xml.with_suffix(".jpg").name
        if inside(xml.parent, filename) is None:
            b.problem("unsafe path", xml, f"filename {filename!r} points outside the dataset folder; skipped")
            continue
        path = _voc_image(xml, filename)
        if path is None:
            b.problem("missing image", xml, f"photo {filename!r} not found next to it or in ../JPEGImages")
            continue
        image = b.add_image(path)
        if image is None:
            continue
        size = root.find("size")
        if size is not None and size.findtext("width"):
            w, h = size.findtext("width", "").strip(), size.findtext("height", "").strip()
            if (w, h) != (str(image["width"]), str(image["height"])):
                b.problem("size mismatch", xml, f"records {w}x{h}, the photo is {image['width']}x{image['height']}; "
                          "the photo's size is used")
        for obj in root.iter("object"):
            name, bb = obj.findtext("name"), obj.find("bndbox")
            if not name or bb is None:
                b.problem("bad object", xml, "object without name or bndbox; skipped")
                continue
            try:
                x0, y0, x1, y1 = (float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
                if any(v != v for v in (x0, y0, x1, y1)):  # a missing corner
                    raise ValueError("missing corner")
            except (TypeError, ValueError):
                b.problem("bad object", xml, f"object {name!r}: bndbox is not four numbers; skipped")
                continue
            b.add_box(image, name, (x0, y0, x1, y1), xml)


# ---- CSV ----------------------------------------------------------------------------------------------

CSV_COLUMNS = ("image", "label", "xmin", "ymin", "xmax", "ymax")


def import_csv(src: Path, b: CocoBuilder) -> None:
    """CSV with a header ``image,label,xmin,ymin,xmax,ymax``; a row with no label is a photo with no organism."""
    images: dict[str, dict | None] = {}
    with open(src, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{src}: missing column(s) {', '.join(missing)}; expected {','.join(CSV_COLUMNS)}")
        for n, row in enumerate(reader, start=2):
            name = (row["image"] or "").strip()
            if name not in images:
                path = inside(src.parent, name)
                if path is None:
                    b.problem("unsafe path", src, f"photo {name!r} is outside the CSV's folder; skipped", n)
                    images[name] = None
                elif not path.is_file():
                    b.problem("missing image", src, f"photo {name!r} not found", n)
                    images[name] = None
                else:
                    images[name] = b.add_image(path)
            image = images[name]
            if image is None or not (row["label"] or "").strip():
                continue
            try:
                x0, y0, x1, y1 = (float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                b.problem("bad line", src, "xmin,ymin,xmax,ymax must be numbers", n)
                continue
            b.add_box(image, row["label"], (x0, y0, x1, y1), src, n)


# ---- COCO ---------------------------------------------------------------------------------------------

def read_coco_json(src: Path) -> dict:
    """A COCO JSON file's content, its structure checked.

    Raises:
        ValueError: unreadable, not JSON, nested too deeply, or not shaped like COCO; the message names the
            file and the first problems.
    """
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{src}: annotation file not found") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{src}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{src}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise ValueError(f"{src}: JSON nested too deeply to be a COCO file") from exc
    problems = coco_structure_problems(data)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(f"{src}: not a usable COCO file: {'; '.join(problems[:3])}{more}")
    return data


def _is_id(v: Any) -> bool:
    return isinstance(v, int | str) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def coco_structure_problems(data: Any) -> list[str]:
    """What keeps ``data`` from being read as COCO: the top level, the three lists, the fields each item needs."""
    if not isinstance(data, dict):
        return [f"the top level is a {type(data).__name__}, not an object with images, annotations, categories"]
    problems = [f"no {key!r} list" for key in ("images", "annotations", "categories")
                if not isinstance(data.get(key), list)]
    if problems:
        return problems
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or not _is_id(im.get("id")) or not isinstance(im.get("file_name"), str):
            problems.append(f"images[{i}] needs an id and a file_name")
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or not all(_is_id(a.get(k)) for k in ("image_id", "category_id")):
            problems.append(f"annotations[{i}] needs an image_id and a category_id")
        elif not (isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4 and all(map(_is_number, a["bbox"]))):
            problems.append(f"annotations[{i}] (id {a.get('id')}) needs a bbox of four finite numbers")
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or not _is_id(c.get("id")) or not isinstance(c.get("name"), str):
            problems.append(f"categories[{i}] needs an id and a name")
    return problems


def coco_reference_problems(data: dict) -> list[Problem]:
    """Ids that repeat, and annotations that point to no declared image or category."""
    src = str(data.get("image_root", "COCO file"))
    problems: list[Problem] = []
    for kind, items in (("duplicate image id", data["images"]), ("duplicate annotation id", data["annotations"]),
                        ("duplicate category id", data["categories"])):
        for i, n in Counter(x.get("id") for x in items).items():
            if n > 1:
                problems.append(Problem(kind, src, f"id {i} used {n} times"))
    cats = {c["id"] for c in data["categories"]}
    images = {im["id"] for im in data["images"]}
    for a in data["annotations"]:
        if a["category_id"] not in cats:
            problems.append(Problem("unknown category", src, f"annotation id {a.get('id')}: category "
                                    f"{a['category_id']} is not declared"))
        if a["image_id"] not in images:
            problems.append(Problem("unknown image", src, f"annotation id {a.get('id')}: image {a['image_id']}"))
    return problems


def import_coco(src: Path, b: CocoBuilder) -> None:
    """COCO JSON (Roboflow and CVAT exports included): categories sharing a name are merged.

    Raises:
        ValueError: not shaped like COCO, or image ids that repeat (their boxes would be doubled).
    """
    data = read_coco_json(src)
    dupes_im = [i for i, n in Counter(im["id"] for im in data["images"]).items() if n > 1]
    if dupes_im:
        raise ValueError(f"{src}: image id(s) {dupes_im[:5]} used more than once; their boxes cannot be told "
                         "apart. Fix the file (annotations validate lists every problem)")
    cat_names = {c["id"]: str(c["name"]) for c in data["categories"]}
    dupes = [n for n, k in Counter(cat_names.values()).items() if k > 1]
    for name in dupes:
        ids = sorted(i for i, n in cat_names.items() if n == name)
        b.problem("duplicate category", src, f"categories {ids} are all named {name!r}; merged into one")
    by_image: dict[Any, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    used = {a["category_id"] for a in data["annotations"]}
    for cid in sorted((i for i in cat_names if i in used), key=str):  # skip unused placeholders
        b.category(cat_names[cid])
    for img in data["images"]:
        path = inside(src.parent, img["file_name"])
        if path is None:
            b.problem("unsafe path", src, f"image id {img['id']}: {img['file_name']!r} is outside the COCO "
                      "file's folder; skipped")
            continue
        if not path.is_file():
            b.problem("missing image", src, f"image id {img['id']}: {img['file_name']!r} not found")
            continue
        image = b.add_image(path, img.get("width"), img.get("height"), src)
        if image is None:
            continue
        for a in by_image.get(img["id"], []):
            if a["category_id"] not in cat_names:
                b.problem("unknown category", src, f"annotation id {a.get('id')}: category {a['category_id']}")
                continue
            x, y, w, h = (float(v) for v in a["bbox"])
            b.add_box(image, cat_names[a["category_id"]], (x, y, x + w, y + h), src, None)


IMPORTERS = {"yolo": import_yolo, "voc": import_voc, "csv": import_csv, "coco": import_coco}


def import_annotations(fmt: str, src: str | Path, out: str | Path, class_agnostic: bool = False,
                       **layout: Path | None) -> tuple[dict, list[Problem]]:
    """Convert an export to canonical COCO, write it to ``out`` and return it with the problems found.

    ``layout`` (YOLO only): ``images``, ``labels`` and ``names_file`` where a data set keeps them apart.
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(IMPORTERS)}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: not found")
    layout = {k: v for k, v in layout.items() if v is not None}
    if layout and fmt != "yolo":
        raise ValueError(f"--images, --labels and --names are options of the yolo format, not of {fmt}")
    b = CocoBuilder(out.parent)
    if layout:
        import_yolo(src, b, **layout)
    else:
        IMPORTERS[fmt](src, b)
    coco = b.to_coco(f"{fmt}:{src}")
    if class_agnostic:
        coco = make_class_agnostic(coco)
    atomic_write_json(out, coco, indent=None)
    return coco, b.problems


def make_class_agnostic(coco: dict) -> dict:
    """Every box becomes one category, ``organism``: a detector that only localizes."""
    return {**coco, "annotations": [{**a, "category_id": 1} for a in coco["annotations"]],
            "categories": [{"id": 1, "name": AGNOSTIC_NAME, "supercategory": "organism"}]}


def load_coco(path: str | Path, strict: bool = True) -> dict:
    """Read a canonical COCO file; ``image_root`` is added (the folder file names are relative to).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not JSON or not shaped like COCO; with ``strict`` (what training, splits and crops
            need), also ids that repeat and boxes of undeclared images or categories. ``annotations
            validate`` reads with ``strict=False`` to list every such problem.
    """
    p = Path(path)
    data = read_coco_json(p)
    data["image_root"] = str(p.resolve().parent)
    if strict:
        problems = coco_reference_problems(data)
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ValueError(f"{p}: {'; '.join(f'{q.kind}: {q.message}' for q in problems[:3])}{more}; "
                             "`taxolens annotations validate` lists every problem")
    return data


def image_path(coco: dict, image: dict) -> Path:
    """Where a COCO image's photo is."""
    return Path(coco["image_root"]) / image["file_name"]


def save_subset(coco: dict, image_ids: set[int], out: str | Path) -> dict:
    """Write the images ``image_ids`` (and their boxes) as a COCO file at ``out``; file names re-rooted."""
    out = Path(out)
    root = Path(coco["image_root"])
    images = [{**im, "file_name": os.path.relpath(root / im["file_name"], out.parent.resolve())}
              for im in coco["images"] if im["id"] in image_ids]
    subset = {"info": coco.get("info", {}), "images": images,
              "annotations": [a for a in coco["annotations"] if a["image_id"] in image_ids],
              "categories": coco["categories"]}
    atomic_write_json(out, subset, indent=None)
    return subset


def merge_coco(cocos: list[dict], out: str | Path) -> dict:
    """Several canonical COCO files (as :func:`load_coco` reads them) as one, written to ``out``.

    Image and box ids are numbered afresh, categories that share a name are one, file names are re-rooted at
    ``out``'s folder. A photo that two files list (the same path) is refused: its boxes would be counted twice.
    """
    out = Path(out)
    merged: dict = {"info": {"description": "merged: " + ", ".join(str(c.get("info", {}).get("description", "?"))
                                                                    for c in cocos)},
                    "images": [], "annotations": [], "categories": []}
    categories: dict[str, int] = {}
    seen: dict[Path, int] = {}
    for coco in cocos:
        root = Path(coco["image_root"])
        cat_map = {}
        for c in coco["categories"]:
            if c["name"] not in categories:
                categories[c["name"]] = len(categories) + 1
                merged["categories"].append({**c, "id": categories[c["name"]]})
            cat_map[c["id"]] = categories[c["name"]]
        image_map = {}
        for im in coco["images"]:
            path = (root / im["file_name"]).resolve()
            if path in seen:
                raise ValueError(f"{path}: listed in two of the files being merged")
            seen[path] = image_map[im["id"]] = len(merged["images"]) + 1
            merged["images"].append({**im, "id": image_map[im["id"]],
                                     "file_name": os.path.relpath(path, out.parent.resolve())})
        for a in coco["annotations"]:
            merged["annotations"].append({**a, "id": len(merged["annotations"]) + 1,
                                          "image_id": image_map[a["image_id"]],
                                          "category_id": cat_map[a["category_id"]]})
    atomic_write_json(out, merged, indent=None)
    return merged


def problems_summary(problems: list[Problem]) -> dict[str, int]:
    """Count of problems per kind."""
    return dict(Counter(p.kind for p in problems))

