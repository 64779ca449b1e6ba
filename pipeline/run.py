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
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from core.config import add_config_arg, parse_with_config
from core.crops import crop_box
from core.io import (
    atomic_save_image,
    atomic_write_json,
    atomic_write_text,
    check_jsonl,
    folder_lock,
    scan_images,
    sha256_file,
    to_json,
)
from core.modelfile import taxolens_version
from core.runtime import WorkerInit
from pipeline.exports import write_exports
from pipeline.predictor import Pipeline, load_photo, photo_scale
from pipeline.records import STATUS_OK, summarize_records
from pipeline.render import draw_detections
from pipeline.settings import InferenceSettings, settings_id
from review.store import add_record, open_store, stored_photos

LOGGER = logging.getLogger(__name__)
FORMATS = ("csv", "coco", "megadetector")


@dataclass(frozen=True)
class RayOptions:
    """Where ``--engine ray`` runs: an existing cluster (``address``) or a local Ray with ``cpus`` CPUs."""

    address: str | None = None
    actors: int = 0
    cpus: int = 0
    gpus: float = 0


@dataclass(frozen=True)
class FolderRun:
    """What a folder run does besides answering photos (the answers are the pipeline's settings).

    Attributes:
        batch_size: photos per detector batch.
        workers: photo-decoding processes beside the models.
        formats: extra exports (:data:`FORMATS`).
        save_annotated: photos with boxes and labels in ``OUT/annotated/``.
        save_crops: crops by taxon in ``OUT/crops/<taxon>/``.
        coco_gt: COCO ground truth whose ids the COCO export uses.
        store_url: also keep every record in this store (``review/store.py``).
        ray: run the models as Ray Data actors instead of in this process.
    """

    batch_size: int = 4
    workers: int = 1
    formats: tuple[str, ...] = ()
    save_annotated: bool = False
    save_crops: bool = False
    coco_gt: dict | None = None
    store_url: str | None = None
    ray: RayOptions | None = None


class PhotoDataset(Dataset):
    """Decodes photos (and shrinks them for the detector) in loader workers; a bad file becomes a failure."""

    def __init__(self, root: Path, files: list[str], min_size: int, max_size: int, max_pixels: int,
                 decode_side: int = 0) -> None:
        self.root, self.files = root, files
        self.min_size, self.max_size, self.max_pixels, self.decode_side = min_size, max_size, max_pixels, decode_side

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        return load_photo(self.root / self.files[i], self.files[i], self.min_size, self.max_size, self.max_pixels,
                          self.decode_side)


def collate_list(batch: list) -> list:
    """DataLoader ``collate_fn`` that keeps a batch as the list of its items (photos differ in size)."""
    return batch


class ResumeError(ValueError):
    """An output folder whose records cannot be resumed with this run's models and settings."""


def _repair_and_read(jsonl: Path) -> dict[str, dict]:
    """Finished records by file; broken lines are reported, moved aside, and their photos done again.

    A broken line (a torn last line from a kill, a line edited by hand, bytes that are not UTF-8) is logged
    with its line number and moved to ``results.broken.jsonl``.
    """
    if not jsonl.is_file():
        return {}
    records, broken = check_jsonl(jsonl)
    kept = [(n, r) for n, r in records if isinstance(r.get("file"), str)]
    broken += [(n, to_json(r).encode() + b"\n", "a record without a file name") for n, r in records
               if not isinstance(r.get("file"), str)]
    if broken:
        aside = jsonl.with_name("results.broken.jsonl")
        with open(aside, "ab") as fh:
            for n, raw, reason in sorted(broken):
                LOGGER.warning("%s line %d: %s; moved to %s (that photo is done again)", jsonl, n, reason, aside.name)
                fh.write(raw if raw.endswith(b"\n") else raw + b"\n")
        atomic_write_text(jsonl, "".join(to_json(r) + "\n" for _, r in kept))
    done: dict[str, dict] = {}
    for _, r in kept:
        done.setdefault(r["file"], r)
    return done


def _component(name: str, limit: int = 200) -> str:
    """A file-name part short enough for any file system (255 bytes), kept unique by a digest of the whole."""
    raw = os.fsencode(name)  # the name's bytes as the file system has them (not UTF-8 on some cameras)
    if len(raw) <= limit:
        return name
    suffix = Path(name).suffix if len(Path(name).suffix) <= 10 else ""
    digest = hashlib.sha256(raw).hexdigest()[:12]
    keep = limit - 13 - len(os.fsencode(suffix))
    return os.fsdecode(raw[:keep]) + "-" + digest + suffix


def _file_sha256(path: Path) -> str | None:
    """A photo's sha256, for records written before records carried it; None if it cannot be read now."""
    try:
        return sha256_file(path)
    except OSError:
        return None


def output_path(base: Path, rel: str, suffix: str = "") -> Path:
    """Where a photo's output goes under ``base``: its own relative path, plus ``suffix``.

    Folders are kept and the photo's extension too, so two photos never share an output; each part is
    shortened where a file system would refuse it.
    """
    parts = Path(rel).parts
    return base.joinpath(*(_component(p) for p in parts[:-1]), _component(parts[-1] + suffix))


def model_info(path: str | Path, info: dict) -> dict:
    """What results.json says about a model file."""
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path), "model_version": info["model_version"],
            "architecture": info["architecture"], "class_names": info["class_names"],
            "weights_sha256": info["weights_sha256"]}


def _save_extras(out: Path, rel: str, image, detections: list[dict], annotated: bool, crops: bool,
                 padding: float, scale: float = 1.0) -> list[str]:
    """The annotated photo (same name and format as the photo) and the crops; what could not be written.

    ``scale``: how many of the photo's pixels one of ``image`` stands for (``--decode-side``): the annotated photo
    and the crops are written at the size the photo was decoded at.
    """
    problems = []
    if annotated:
        dest = output_path(out / "annotated", rel)
        params = {"quality": 90} if dest.suffix.lower() in (".jpg", ".jpeg") else {}
        try:
            atomic_save_image(draw_detections(image, detections, scale=scale), dest, **params)
        except (OSError, ValueError) as exc:
            problems.append(f"annotated photo not written ({exc})")
    if crops:
        for i, d in enumerate(detections, start=1):
            dest = output_path(out / "crops" / _component(d["taxon"]), rel, f"_{i}.jpg")
            try:
                atomic_save_image(crop_box(image, [v / scale for v in d["box"]], padding), dest, quality=95)
            except (OSError, ValueError) as exc:
                problems.append(f"crop {i} not written ({exc})")
    return problems


def _local_records(pipe: Pipeline, folder: Path, todo: list[str], batch_size: int, workers: int
                   ) -> Iterator[tuple[dict, dict]]:
    """(loaded photo, record) for each photo: decoded by DataLoader workers, the models in this process."""
    ds = PhotoDataset(folder, todo, pipe.detector.info["min_size"], pipe.detector.info["max_size"],
                      pipe.settings.max_pixels, pipe.settings.decode_side)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_list,
                        prefetch_factor=4 if workers else None, persistent_workers=False,
                        worker_init_fn=WorkerInit())
    for batch in loader:
        yield from zip(batch, pipe.process_items(batch))


class RayWorker:
    """A Ray Data actor: the same :class:`Pipeline`, built once from the same files and settings."""

    def __init__(self, detector: str, classifier: str, settings: dict, root: str) -> None:
        inference = InferenceSettings.from_dict(settings)
        torch.set_num_threads(max(1, inference.threads or 1))
        self.pipe = Pipeline.from_files(detector, classifier, inference)
        self.root = Path(root)

    def __call__(self, batch: dict) -> dict:
        """Records (as JSON text) for a batch of relative file names."""
        items = [self.pipe.load(self.root / f, str(f)) for f in batch["file"]]
        return {"record": [to_json(r) for r in self.pipe.process_items(items)]}


def _ray_records(pipe: Pipeline, folder: Path, todo: list[str], batch_size: int,
                 options: RayOptions) -> Iterator[tuple[dict, dict]]:
    """({file}, record) for each photo, from Ray Data actors (``map_batches``) on a local or existing cluster.

    Records stream back as actors finish them, and are written at once: a killed run resumes like a local one.
    """
    try:
        import ray
    except ImportError as exc:
        raise ValueError("--engine ray needs Ray: pip install 'ray[data]'") from exc

    if not todo:
        return
    address = options.address or None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address or not options.cpus else options.cpus,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        actors = options.actors or max(1, int(ray.available_resources().get("CPU", 1)))
        settings = pipe.settings.replace(device="cuda" if options.gpus else "cpu").as_dict()
        ds = ray.data.from_items([{"file": f} for f in todo], override_num_blocks=max(1, min(len(todo), actors * 4)))
        results = ds.map_batches(RayWorker, fn_constructor_kwargs={
                                     "detector": str(pipe.detector.info["path"]),
                                     "classifier": str(pipe.classifier.info["path"]), "settings": settings,
                                     "root": str(folder.resolve())},
                                 batch_size=batch_size, concurrency=actors, num_cpus=1,
                                 num_gpus=options.gpus or None)
        for row in results.iter_rows():
            record = json.loads(row["record"])
            yield {"file": record["file"]}, record
    finally:
        if started:
            ray.shutdown()


def run_folder(pipe: Pipeline, folder: str | Path, out: str | Path, run: FolderRun | None = None) -> dict:
    """Run the pipeline over every photo under ``folder`` into ``out``; returns results.json's content.

    With ``run.ray`` the models run as Ray Data actors instead of in this process (same records, same
    resume). With ``run.store_url``, every photo's record also goes to the store of predictions
    (``review/store.py``) for expert review: each photo in one transaction, none twice, and photos a killed
    run had finished are stored when it resumes.
    """
    run = run or FolderRun()
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: is a file, not a folder; name a folder for the results")
    out.mkdir(parents=True, exist_ok=True)
    photos, unlisted = scan_images(folder, exclude=[out])  # an --out inside the folder is never read as input
    for problem in unlisted:
        LOGGER.warning("%s", problem)
    files = [p.relative_to(folder).as_posix() for p in photos]
    if not files:
        raise ValueError(f"{folder}: no photos found (JPEG, PNG, TIFF, WebP or BMP, searched recursively)"
                         + (f"; {len(unlisted)} folder(s) could not be listed" if unlisted else ""))
    with folder_lock(out, "taxolens run"):
        return _run_locked(pipe, folder, out, files, unlisted, run)


def _run_locked(pipe: Pipeline, folder: Path, out: Path, files: list[str], unlisted: list[str], run: FolderRun
                ) -> dict:
    if run.ray is not None and (run.save_annotated or run.save_crops):
        raise ValueError("--save-annotated and --save-crops need the photos in this process: not with --engine ray")
    info, run_id = _check_resume(pipe, folder, out)
    jsonl = out / "results.jsonl"
    done = _repair_and_read(jsonl)
    if run.save_annotated or run.save_crops:
        done = _redo_extras(out, folder, jsonl, done, run, pipe.classifier.preprocessing.crop_padding)
    todo = [f for f in files if f not in done]
    if done:
        LOGGER.info("resuming: %d of %d photos already done", len(files) - len(todo), len(files))
    engine = open_store(run.store_url) if run.store_url else None
    try:
        start = time.perf_counter()
        _answer(pipe, folder, out, files, todo, run, run_id, jsonl, engine)
        elapsed = time.perf_counter() - start
        done = _repair_and_read(jsonl)
        records = [done[f] for f in files if f in done]
        if engine is not None:
            _store_catch_up(engine, records, folder, run_id, pipe.model_version)
            info["store"] = run.store_url
    finally:
        if engine is not None:
            engine.dispose()
    info["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    info["timings"] = {"seconds_this_run": round(elapsed, 2), "photos_this_run": len(todo),
                       "photos_per_second": round(len(todo) / elapsed, 3) if elapsed and todo else None}
    info["summary"] = summarize_records(records)
    info["unlisted_folders"] = unlisted
    result = {"info": info, "images": records}
    atomic_write_json(out / "results.json", result, indent=1)
    write_exports(list(run.formats), records, info, out, pipe.detector.class_names, pipe.classifier.class_names,
                  run.coco_gt)
    return result


def _check_resume(pipe: Pipeline, folder: Path, out: Path) -> tuple[dict[str, Any], str]:
    """``results.json``'s info and this run's settings_id; refuses an output folder of another run."""
    info: dict[str, Any] = {"taxolens_version": taxolens_version(), "folder": str(folder.resolve()),
                            "detector": model_info(pipe.detector.info["path"], pipe.detector.info),
                            "classifier": model_info(pipe.classifier.info["path"], pipe.classifier.info),
                            "settings": pipe.settings.as_dict(), "resolved_settings": pipe.resolved()}
    run_json = out / "run.json"
    identity = {"folder": info["folder"], "settings": pipe.settings.identity(),
                "detector": info["detector"]["sha256"], "classifier": info["classifier"]["sha256"]}
    info["settings_id"] = run_id = settings_id(identity)
    if run_json.is_file():
        try:
            previous = json.loads(run_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None  # the records' own settings_id still guard the resume
        if previous is not None and {k: v for k, v in previous.items() if k != "settings_id"} != identity:
            raise ResumeError(f"{out}: holds a run with other models, folder or settings ({run_json}); "
                              "use another --out, or delete that folder to start again")
    jsonl = out / "results.jsonl"
    other = [r["file"] for r in _repair_and_read(jsonl).values() if r.get("settings_id") != run_id]
    if other:
        raise ResumeError(f"{jsonl}: {len(other)} photo(s) (first: {other[0]}) were decided with other models or "
                          "settings (their settings_id differs); use another --out, or delete that folder to "
                          "start again")
    atomic_write_json(run_json, identity | {"settings_id": run_id})
    return info, run_id


def _answer(pipe: Pipeline, folder: Path, out: Path, files: list[str], todo: list[str], run: FolderRun,
            run_id: str, jsonl: Path, engine: Any) -> None:
    """Answer the photos still to do: each record appended to ``results.jsonl`` at once, then stored."""
    padding = pipe.classifier.preprocessing.crop_padding
    stored = stored_photos(engine, pipe.model_version, run_id) if engine is not None else set()
    bar = tqdm(total=len(files), initial=len(files) - len(todo), desc="photos", unit="photo", smoothing=0.1)
    produced = (_ray_records(pipe, folder, todo, run.batch_size, run.ray) if run.ray is not None
                else _local_records(pipe, folder, todo, run.batch_size, run.workers))
    with open(jsonl, "a", encoding="utf-8") as fh:
        for item, record in produced:
            if record["status"] != STATUS_OK:
                LOGGER.warning("%s: %s", folder / item["file"], record["failure"])
            elif run.save_annotated or run.save_crops:
                problems = _save_extras(out, item["file"], item["image"], record["detections"],
                                        run.save_annotated, run.save_crops, padding, photo_scale(item)[1])
                for problem in problems:
                    LOGGER.warning("%s: %s", folder / item["file"], problem)
                if problems:
                    record["warnings"] = problems
            record["settings_id"] = run_id
            try:
                fh.write(to_json(record) + "\n")
                fh.flush()
            except OSError as exc:
                raise OSError(f"{jsonl}: could not be written ({exc.strerror or exc}); free some space and run the "
                              "same command again: it resumes after the last photo written") from None
            if engine is not None and record["status"] == STATUS_OK and record.get("sha256") not in stored:
                add_record(engine, record, folder / item["file"], source="run", settings_id=run_id,
                           facts=item.get("facts"))
                stored.add(record.get("sha256") or "")
            bar.update(1)
        os.fsync(fh.fileno())
    bar.close()


def _store_catch_up(engine: Any, records: list[dict], folder: Path, run_id: str, model_version: str) -> None:
    """Photos a killed run finished before its store write, matched by content (never by relative name)."""
    stored = stored_photos(engine, model_version, run_id)
    for r in records:
        digest = (r.get("sha256") or _file_sha256(folder / r["file"])) if r["status"] == STATUS_OK else None
        if digest is not None and digest not in stored:
            add_record(engine, r, folder / r["file"], source="run", settings_id=run_id)
            stored.add(digest)


def _redo_extras(out: Path, folder: Path, jsonl: Path, done: dict[str, dict], run: FolderRun,
                 padding: float) -> dict[str, dict]:
    """On a resume: annotated photos and crops a full disk (or any write error) kept from being written, again.

    A record whose outputs were not all written carries ``warnings``; they are written now, and the record
    is rewritten without them when they are.
    """
    from core.io import read_image

    fixed = 0
    for name, record in done.items():
        if record.get("status") != STATUS_OK or not record.get("warnings"):
            continue
        try:
            image = read_image(folder / name)
        except Exception as exc:  # the photo is gone or changed: the warnings stay, saying so
            LOGGER.warning("%s: outputs not written again (%s)", folder / name, exc)
            continue
        problems = _save_extras(out, name, image, record["detections"], run.save_annotated, run.save_crops, padding)
        record.pop("warnings")
        if problems:
            record["warnings"] = problems
        else:
            fixed += 1
    if fixed:
        LOGGER.info("resuming: the outputs of %d photo(s) that could not be written before were written now", fixed)
        atomic_write_text(jsonl, "".join(to_json(r) + "\n" for r in done.values()))
    return done


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
    p.add_argument("--store", action="store_true",
                   help="also keep every prediction in the store for expert review (taxolens review ...)")
    p.add_argument("--store-url", default="runs/taxolens-store.sqlite",
                   help="the store: a file path (SQLite) or an SQLAlchemy URL (postgresql://user@host/db)")
    p.add_argument("--strict", action="store_true", help="exit 1 if any photo failed")
    p.add_argument("--batch-size", type=int, default=1, help="photos per detector batch (1 on a CPU, 8 on a GPU)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (ray://host:10001 or auto)")
    p.add_argument("--ray-actors", type=int, default=0, help="pipeline actors (0: one per CPU of the cluster)")
    p.add_argument("--ray-gpus", type=float, default=0, help="GPUs per actor (0: CPU actors)")
    p.add_argument("--ray-cpus", type=int, default=0, help="CPUs of a local Ray instance (0: every core)")
    InferenceSettings.add_args(p, extra_engines=("ray",))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens run``."""
    args = parse_with_config(get_args_parser(), argv, default="pipeline")
    settings = InferenceSettings.from_args(args)
    pipe = Pipeline.from_files(args.detector, args.classifier, settings)  # which applies --threads
    gt = None
    if args.coco_gt:
        from annotations.coco import load_coco

        gt = load_coco(args.coco_gt)
    ray = RayOptions(args.ray_address or os.environ.get("RAY_ADDRESS"), args.ray_actors, args.ray_cpus,
                     args.ray_gpus) if args.engine == "ray" else None
    run = FolderRun(batch_size=args.batch_size, workers=args.workers, formats=tuple(args.formats),
                    save_annotated=args.save_annotated, save_crops=args.save_crops, coco_gt=gt,
                    store_url=args.store_url if args.store else None, ray=ray)
    result = run_folder(pipe, args.folder, args.out, run)
    s = result["info"]["summary"]
    print(f"{s['photos']} photos: {s['organisms']} organisms {s['organisms_per_taxon']}, {s['uncertain']} uncertain, "
          f"{s['unknown']} unknown, {s['no_organism']} with no organism, {s['dropped_no_organism']} boxes dropped "
          f"as no organism, {s['failures']} failed -> {Path(args.out) / 'results.json'}")
    return 1 if args.strict and s["failures"] else 0
