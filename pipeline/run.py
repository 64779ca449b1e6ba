"""``taxolens run``: every organism in every photo of a folder, resumable, with standard outputs.

Launch::

    taxolens run PHOTOS --detector runs/demo/detector/model.pt --classifier runs/demo/classifier/model.pt \
        --out runs/results --format csv coco megadetector --save-annotated

Each photo's record is appended to ``OUT/results.jsonl`` and flushed as soon as it is done: a run
killed at any moment resumes with the same command, skipping finished photos and never writing one
twice. At the end ``OUT/results.json`` (written atomically) holds the run's info and one record per
photo. Bad files (empty, truncated, not an image, too large, unreadable) become records with a
``failure`` reason and the run goes on; the exit code is 0 unless ``--strict``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.config import add_config_arg, parse_with_config
from core.crops import crop_box
from core.defaults import MAX_PIXELS
from core.io import atomic_save_image, atomic_write_json, list_images, read_jsonl, sha256_file
from core.modelfile import taxolens_version
from detector.evaluate import add_suppression_args
from pipeline.exports import write_exports
from pipeline.predictor import Pipeline, load_photo
from pipeline.records import summarize_records
from pipeline.render import draw_detections

LOGGER = logging.getLogger(__name__)
FORMATS = ("csv", "coco", "megadetector")


class PhotoDataset(Dataset):
    """Decodes photos (and shrinks them for the detector) in loader workers; a bad file becomes a failure."""

    def __init__(self, root: Path, files: list[str], min_size: int, max_size: int, max_pixels: int) -> None:
        self.root, self.files = root, files
        self.min_size, self.max_size, self.max_pixels = min_size, max_size, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        return load_photo(self.root / self.files[i], self.files[i], self.min_size, self.max_size, self.max_pixels)


def collate_list(batch: list) -> list:
    """DataLoader ``collate_fn`` that keeps a batch as the list of its items (photos differ in size)."""
    return batch


def _repair_and_read(jsonl: Path) -> dict[str, dict]:
    """Finished records by file; a torn last line (killed mid-write) is cut off so appends stay valid."""
    if not jsonl.is_file():
        return {}
    data = jsonl.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(jsonl, "r+b") as fh:
            fh.truncate(cut)
        LOGGER.warning("%s: removed a half-written last line (the previous run was killed mid-write)", jsonl)
    done: dict[str, dict] = {}
    for r in read_jsonl(jsonl):
        done.setdefault(r["file"], r)
    return done


def model_info(path: str | Path, info: dict) -> dict:
    """What results.json says about a model file."""
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path), "model_version": info["model_version"],
            "architecture": info["architecture"], "class_names": info["class_names"],
            "weights_sha256": info["weights_sha256"]}


def _save_extras(out: Path, rel: str, image, detections: list[dict], annotated: bool, crops: bool,
                 padding: float) -> None:
    stem = Path(rel).with_suffix("")
    if annotated:
        atomic_save_image(draw_detections(image, detections), out / "annotated" / f"{stem}.jpg", quality=90)
    if crops:
        for i, d in enumerate(detections, start=1):
            dest = out / "crops" / d["taxon"] / f"{str(stem).replace('/', '__')}_{i}.jpg"
            atomic_save_image(crop_box(image, d["box"], padding), dest, quality=95)


def run_folder(pipe: Pipeline, folder: str | Path, out: str | Path, *, batch_size: int = 4, workers: int = 1,
               formats: Sequence[str] = (), save_annotated: bool = False, save_crops: bool = False,
               max_pixels: int = MAX_PIXELS, coco_gt: dict | None = None,
               model_paths: tuple[str, str] | None = None) -> dict:
    """Run the pipeline over every photo under ``folder`` into ``out``; returns results.json's content."""
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    files = [p.relative_to(folder).as_posix() for p in list_images(folder)]
    if not files:
        raise ValueError(f"{folder}: no photos found (JPEG, PNG, TIFF, WebP or BMP, searched recursively)")
    out.mkdir(parents=True, exist_ok=True)
    det_path, clf_path = model_paths or (pipe.detector.info["path"], pipe.classifier.info["path"])
    info: dict[str, Any] = {"taxolens_version": taxolens_version(), "folder": str(folder.resolve()),
            "detector": model_info(det_path, pipe.detector.info),
            "classifier": model_info(clf_path, pipe.classifier.info), "settings": pipe.settings}
    run_json = out / "run.json"
    identity = {k: info[k] for k in ("folder", "settings")} | {
        "detector": info["detector"]["sha256"], "classifier": info["classifier"]["sha256"]}
    if run_json.is_file() and json.loads(run_json.read_text()) != identity:
        raise ValueError(f"{out}: holds a run with other models, folder or settings ({run_json}); "
                         "use another --out, or delete that folder to start again")
    atomic_write_json(run_json, identity)

    jsonl = out / "results.jsonl"
    done = _repair_and_read(jsonl)
    todo = [f for f in files if f not in done]
    if done:
        LOGGER.info("resuming: %d of %d photos already done", len(files) - len(todo), len(files))
    ds = PhotoDataset(folder, todo, pipe.detector.info["min_size"], pipe.detector.info["max_size"], max_pixels)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_list,
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    start = time.perf_counter()
    padding = pipe.classifier.preprocessing.crop_padding
    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc="photos", unit="photo", smoothing=0.1)
    with open(jsonl, "a", encoding="utf-8") as fh:
        for batch in loader:
            for item, record in zip(batch, pipe.process_items(batch)):
                if "failure" in item:
                    LOGGER.warning("%s: %s", folder / item["file"], item["failure"])
                elif save_annotated or save_crops:
                    _save_extras(out, item["file"], item["image"], record["detections"], save_annotated,
                                 save_crops, padding)
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
            bar.update(len(batch))
        os.fsync(fh.fileno())
    bar.close()
    elapsed = time.perf_counter() - start
    done = _repair_and_read(jsonl)
    records = [done[f] for f in files if f in done]
    info["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    info["timings"] = {"seconds_this_run": round(elapsed, 2), "photos_this_run": len(todo),
                       "photos_per_second": round(len(todo) / elapsed, 3) if elapsed and todo else None}
    info["summary"] = summarize_records(records)
    result = {"info": info, "images": records}
    atomic_write_json(out / "results.json", result, indent=1)
    write_exports(list(formats), records, info, out, pipe.detector.class_names, pipe.classifier.class_names, coco_gt)
    return result


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens run``."""
    p = argparse.ArgumentParser(prog="taxolens run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(p, "pipeline")
    p.add_argument("folder", help="photos, searched recursively (JPEG, PNG, TIFF, WebP, BMP)")
    p.add_argument("--detector", required=True, help="detector release file")
    p.add_argument("--classifier", required=True, help="classifier release file")
    p.add_argument("--out", required=True, help="results folder (an unfinished run there is resumed)")
    p.add_argument("--format", dest="formats", nargs="*", default=[], choices=FORMATS,
                   help="extra exports: csv (a row per detection), coco (COCO results), megadetector")
    p.add_argument("--coco-gt", default=None, help="COCO ground truth whose image and category ids the COCO "
                                                   "export should use (to score it with COCOeval)")
    p.add_argument("--save-annotated", action="store_true", help="photos with boxes and labels in OUT/annotated/")
    p.add_argument("--save-crops", action="store_true", help="crops by taxon in OUT/crops/<taxon>/")
    p.add_argument("--score-threshold", type=float, default=None, help="detector score; default: the model file's")
    p.add_argument("--threshold", type=float, default=None, help="classifier probability; default: the model file's")
    p.add_argument("--no-rollup", action="store_true", help="never answer with a higher taxon (genus, family...)")
    add_suppression_args(p)
    p.add_argument("--classify-whole-photo", action="store_true",
                   help="where no organism is found, classify the whole photo (marked source=whole_photo)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any photo failed")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--batch-size", type=int, default=1, help="photos per detector batch (1 on a CPU, 8 on a GPU)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--proposals", type=int, default=0,
                   help="region proposals per photo (0: the model's 1000); fewer is faster but misses organisms "
                        "in crowded photos")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: one per core)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens run``."""
    args = parse_with_config(get_args_parser(), argv, default="pipeline")
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = Pipeline.from_files(args.detector, args.classifier, device=args.device,
                               score_threshold=args.score_threshold, threshold=args.threshold,
                               classify_whole_photo=args.classify_whole_photo, proposals=args.proposals,
                               rollup=not args.no_rollup, suppress_iou=args.suppress_iou,
                               suppress_containment=args.suppress_containment)
    gt = None
    if args.coco_gt:
        from annotations.coco import load_coco

        gt = load_coco(args.coco_gt)
    result = run_folder(pipe, args.folder, args.out, batch_size=args.batch_size, workers=args.workers,
                        formats=args.formats, save_annotated=args.save_annotated, save_crops=args.save_crops,
                        max_pixels=args.max_pixels, coco_gt=gt, model_paths=(args.detector, args.classifier))
    s = result["info"]["summary"]
    print(f"{s['photos']} photos: {s['organisms']} organisms {s['organisms_per_taxon']}, {s['uncertain']} uncertain, "
          f"{s['unknown']} unknown, {s['no_organism']} with no organism, {s['dropped_no_organism']} boxes dropped "
          f"as no organism, {s['failures']} failed -> {Path(args.out) / 'results.json'}")
    return 1 if args.strict and s["failures"] else 0
