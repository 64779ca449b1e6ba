"""``taxolens evaluate``: how far to trust the models, measured as a user meets them.

Launch::

    taxolens evaluate PHOTOS --detector D --classifier C --out DIR [--unknown Bombus]

``PHOTOS`` holds a folder per taxon (``Vespa_velutina/``, ``Apis mellifera/``, ``Bombus/``...). A folder
whose taxon is no class of the model, holds none of its classes, or is listed with ``--unknown``, is a
taxon **unknown to the model**: there the honest answers are ``unknown`` and ``uncertain``, and a name is
a confident wrong answer. Every photo goes through the whole pipeline (detector, suppression, crops,
classifier, decision); per folder the report gives photos, boxes per photo, the share of organisms named,
rolled up, uncertain, unknown and dropped as no organism, how many answers are right, and the confusion
of folders against answers. The operating point is stated as SpeciesNet states it ("83 % answered, 94.5 %
of those right"), and ``coverage_accuracy.png`` shows what other thresholds would trade.

An answer is **right** when it is the folder's taxon, lies under it (``Vespa velutina`` in a ``Vespa``
folder) or above it (``Vespa``, rolled up, in a ``Vespa_velutina`` folder: right, less precise), by the
lineages of the model file and ``configs/species.yaml``.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from core.answers import (
    ANSWERED,
    NAMED,
    REASON_NO_ORGANISM,
    REASON_UNCERTAIN,
    REASON_UNKNOWN,
    ROLLED_UP,
)
from core.config import check_settings
from core.io import atomic_write_csv, atomic_write_json, atomic_write_text, list_images, saved_figure
from core.runtime import WorkerInit
from core.taxonomy import is_right, lineage_of, normalise_name, species_index
from pipeline.decision import decide
from pipeline.predictor import Pipeline
from pipeline.run import PhotoDataset, collate_list
from pipeline.settings import InferenceSettings

LOGGER = logging.getLogger(__name__)
CURVE_THRESHOLDS = tuple(sorted({round(float(t), 3) for t in np.concatenate(
    [np.arange(0.30, 0.90, 0.05), np.arange(0.90, 0.995, 0.01), [0.995, 0.999]])}))


def folder_taxon(folder: str) -> str:
    """A folder's name as a taxon: underscores are spaces, an alias in species.yaml gives its scientific name."""
    entry = species_index().get(normalise_name(folder))
    return str(entry["scientific_name"]) if entry else folder.replace("_", " ").strip()


def is_known(truth: str, class_names: Sequence[str], lineages: Mapping[str, Sequence[Sequence[str]]]) -> bool:
    """Whether a folder's taxon is one the model can name: a class, a taxon holding one, or one under a class.

    A ``Vespa`` class names a ``Vespa_velutina`` folder, less precisely.
    """
    return any(is_right(c, truth, lineages) for c in class_names)


def summarize_folder(records: Sequence[dict], truth: str, known: bool,
                     lineages: Mapping[str, Sequence[Sequence[str]]]) -> dict:
    """The figures of one folder from its photos' records (see the module docstring)."""
    ok = [r for r in records if r["status"] == "ok"]
    dets = [d for r in ok for d in r["detections"]]
    dropped = sum(len(r.get("dropped", [])) for r in ok)
    reasons = Counter(d["reason"] for d in dets)
    answered = [d for d in dets if d["reason"] in ANSWERED]
    right = [d for d in answered if is_right(d["taxon"], truth, lineages)]
    named = [d for d in dets if d["reason"] == NAMED]
    n = len(dets)

    def share(k: int) -> float | None:
        return k / n if n else None

    row = {"folder_taxon": truth, "known": known, "photos": len(records), "failed": len(records) - len(ok),
           "photos_with_organism": sum(bool(r["detections"]) for r in ok),
           "organisms": n, "boxes_per_photo": n / len(ok) if ok else None, "dropped_no_organism": dropped,
           "named": share(reasons[NAMED]), "rolled_up": share(reasons[ROLLED_UP]),
           "uncertain": share(reasons[REASON_UNCERTAIN]), "unknown": share(reasons[REASON_UNKNOWN]),
           "answered": share(len(answered)),
           "answers_right": len(right) / len(answered) if answered else None,
           "named_right": sum(is_right(d["taxon"], truth, lineages) for d in named) / len(named) if named else None,
           "answers": dict(Counter(d["taxon"] for d in dets).most_common())}
    # right but coarse: a higher taxon that truly holds the folder's (Vespa for a giant hornet, Hymenoptera for a
    # bumblebee), told apart from a wrong name; and how many are answered as precisely as a species
    above = {normalise_name(n) for _, n in (lineages.get(truth) or lineage_of(truth))} - {normalise_name(truth)}
    coarse = [d for d in right if normalise_name(d["taxon"]) in above]
    wrong = [d for d in answered if not is_right(d["taxon"], truth, lineages)]
    row |= {"right_but_coarse": share(len(coarse)), "named_wrongly": share(len(wrong)),
            "at_species": share(sum(d.get("rank") == "species" for d in answered))}
    if not known:
        # a taxon the model never saw: every answer is a confident wrong name unless it is a higher taxon that
        # truly holds it (Hymenoptera for a bumblebee)
        row["confidently_wrong"] = share(len(wrong))
        row["honest"] = share(reasons[REASON_UNKNOWN] + reasons[REASON_UNCERTAIN] + len(answered) - len(wrong))
    return row


def coverage_accuracy(boxes: Sequence[dict], settings: Mapping, thresholds: Sequence[float] = CURVE_THRESHOLDS
                      ) -> list[dict]:
    """Answered share and right share of known folders' organisms, deciding again at each global threshold.

    Each box carries ``probabilities``, ``unknown_score``, ``truth`` (and an agreeing ensemble's
    ``member_probabilities``); ``settings`` are the decision's
    other arguments (per-class thresholds stay as the model file has them). Boxes the decision drops as no
    organism (at any threshold: that answer does not depend on it) are not organisms.
    """
    decisions = [[decide(probabilities=b["probabilities"], threshold=float(t), unknown_score=b["unknown_score"],
                         member_probabilities=b.get("member_probabilities"), **settings) for b in boxes]
                 for t in thresholds]
    total = sum(d["reason"] != REASON_NO_ORGANISM for d in decisions[0]) if decisions else 0
    rows = []
    for t, row in zip(thresholds, decisions):
        answered = [(d, b) for d, b in zip(row, boxes) if d["reason"] in ANSWERED]
        right = sum(is_right(d["taxon"], b["truth"], settings["lineages"]) for d, b in answered)
        answered_n = len(answered)
        rows.append({"threshold": float(t), "coverage": answered_n / total if total else None,
                     "accuracy": right / answered_n if answered_n else None})
    return rows


def evaluate_folders(pipe: Pipeline, photos: str | Path, out: str | Path, *, unknown: Sequence[str] = (),
                     workers: int = 1, batch_size: int = 1,
                     folder_lineages: Mapping[str, Sequence[Sequence[str]]] | None = None) -> dict:
    """Run the pipeline over ``photos/<taxon>/...`` and write the report into ``out``; returns it.

    ``folder_lineages`` gives the lineage of a folder's taxon that neither the model nor ``species.yaml``
    knows (``{"Vespula germanica": [["family", "Vespidae"], ["genus", "Vespula"], ...]}``), so that an answer
    above it is counted right but coarse, not wrong.
    """
    photos, out = Path(photos), Path(out)
    folders = sorted(p for p in photos.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if photos.is_dir() else []
    if not folders:
        raise ValueError(f"{photos}: expected one folder per taxon (PHOTOS/<taxon>/*.jpg), found none")
    settings = pipe.decision_settings
    lineages = {**settings["lineages"], **{folder_taxon(k): [list(p) for p in v]
                                           for k, v in (folder_lineages or {}).items()}}
    organisms = [n for n in pipe.classifier.class_names
                 if n not in settings["background_classes"] and n not in settings["outlier_classes"]]
    forced = {normalise_name(u) for u in unknown}
    per_folder, boxes, all_records = [], [], []
    start = time.perf_counter()
    for folder in folders:
        truth = folder_taxon(folder.name)
        known = normalise_name(folder.name) not in forced and normalise_name(truth) not in forced and is_known(
            truth, organisms, lineages)
        files = [p.relative_to(photos).as_posix() for p in list_images(folder)]
        ds = PhotoDataset(photos, files, pipe.detector.info["min_size"], pipe.detector.info["max_size"],
                          pipe.settings.max_pixels, pipe.settings.decode_side)
        loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_list,
                            worker_init_fn=WorkerInit())
        records = []
        for batch in tqdm(loader, desc=folder.name, unit="photo", leave=False):
            for record in pipe.process_items(batch, keep_probabilities=True):
                for d in [*record["detections"], *record.get("dropped", [])]:
                    if known:
                        boxes.append({"probabilities": d["probabilities"], "unknown_score": d["unknown_score"],
                                      "member_probabilities": d.get("member_probabilities"), "truth": truth})
                    del d["probabilities"]
                    d.pop("member_probabilities", None)
                records.append({**record, "folder": folder.name})
        per_folder.append({"folder": folder.name, **summarize_folder(records, truth, known, lineages)})
        all_records += records
    seconds = time.perf_counter() - start  # decoding and answering the photos, not writing the report
    report = {"photos": str(photos.resolve()), "model_version": pipe.model_version, "settings": pipe.settings.as_dict(),
              "seconds": round(seconds, 3),
              "photos_per_second": round(len(all_records) / seconds, 3) if seconds else None,
              "resolved_settings": pipe.resolved(),
              "folders": per_folder, "overall": overall(per_folder), "curve": coverage_accuracy(boxes, settings)}
    write_report(report, all_records, out)
    return report


def parse_lineages(items: Sequence[str]) -> dict[str, list[list[str]]]:
    """``FOLDER=rank:Name,rank:Name`` items as lineages by folder; a malformed one is refused, naming it."""
    found: dict[str, list[list[str]]] = {}
    for item in items:
        folder, _, spec = item.partition("=")
        pairs = [p.split(":", 1) for p in spec.split(",") if p.strip()]
        if not folder.strip() or not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
            raise ValueError(f"--lineage {item!r}: expected FOLDER=rank:Name,rank:Name (e.g. "
                             "Vespula_germanica=family:Vespidae,genus:Vespula)")
        found[folder.strip()] = [[r.strip(), n.strip()] for r, n in pairs]
    return found


def overall(folders: Sequence[dict]) -> dict:
    """Known folders pooled: organisms answered and right; unknown folders pooled: named wrongly."""
    known = [f for f in folders if f["known"]]
    unknown = [f for f in folders if not f["known"]]
    n_known = sum(f["organisms"] for f in known)
    answered = sum((f["answered"] or 0) * f["organisms"] for f in known)
    right = sum((f["answers_right"] or 0) * (f["answered"] or 0) * f["organisms"] for f in known)
    n_unknown = sum(f["organisms"] for f in unknown)
    wrong = sum((f["confidently_wrong"] or 0) * f["organisms"] for f in unknown)
    return {"known_organisms": n_known, "answered": answered / n_known if n_known else None,
            "answers_right": right / answered if answered else None,
            "unknown_organisms": n_unknown, "unknown_named_wrongly": wrong / n_unknown if n_unknown else None}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def write_report(report: dict, records: list[dict], out: Path) -> None:
    """``report.md``, ``report.json``, ``confusion.csv``, ``coverage_accuracy.png`` and ``records.json``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report)
    atomic_write_json(out / "records.json", records, indent=None)
    o = report["overall"]
    lines = [f"# How far to trust {report['model_version']}", "", f"Photos: `{report['photos']}`", ""]
    if o["known_organisms"]:
        lines.append(f"**Taxa the models know**: {_pct(o['answered'])} of {o['known_organisms']} organisms answered "
                     f"(named or rolled up), {_pct(o['answers_right'])} of those right.")
    if o["unknown_organisms"]:
        lines.append(f"**Taxa the models never saw**: {_pct(o['unknown_named_wrongly'])} of "
                     f"{o['unknown_organisms']} organisms given a wrong name; the rest answered unknown, uncertain "
                     "or with a higher taxon that holds them.")
    lines += ["", "| folder | known | photos | boxes / photo | named | rolled up | uncertain | unknown | "
                  "answers right | at species | right but coarse | named wrongly | dropped as no organism |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in report["folders"]:
        bpp = "n/a" if f["boxes_per_photo"] is None else f"{f['boxes_per_photo']:.2f}"
        lines.append(f"| {f['folder']} | {'yes' if f['known'] else 'no'} | {f['photos']} | {bpp} | "
                     f"{_pct(f['named'])} | {_pct(f['rolled_up'])} | {_pct(f['uncertain'])} | {_pct(f['unknown'])} | "
                     f"{_pct(f['answers_right'])} | {_pct(f['at_species'])} | {_pct(f['right_but_coarse'])} | "
                     f"{_pct(f['named_wrongly'])} | {f['dropped_no_organism']} |")
    answers = sorted({a for f in report["folders"] for a in f["answers"]})
    lines += ["", "## Folders against answers (organisms)", "", "| folder | " + " | ".join(answers) + " |",
              "|---|" + "---:|" * len(answers)]
    rows = [[f["folder"], *[f["answers"].get(a, 0) for a in answers]] for f in report["folders"]]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    lines += ["", "## Coverage against accuracy (coverage_accuracy.png)", "",
              "| threshold | answered | right |", "|---:|---:|---:|"]
    lines += [f"| {r['threshold']:.3f} | {_pct(r['coverage'])} | {_pct(r['accuracy'])} |" for r in report["curve"]]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    atomic_write_csv(out / "confusion.csv", ["folder", *answers], rows)
    _plot_curve(report["curve"], report["resolved_settings"].get("threshold"), out / "coverage_accuracy.png")


def _plot_curve(curve: list[dict], threshold: float | None, path: Path) -> None:
    pts = [r for r in curve if r["coverage"] is not None and r["accuracy"] is not None]
    with saved_figure(path, (6, 4.5)) as (fig, ax):
        ax.plot([r["coverage"] for r in pts], [r["accuracy"] for r in pts], marker=".")
        marked = [r for r in pts if threshold is not None and abs(r["threshold"] - threshold) < 1e-9]
        for r in marked:
            ax.scatter([r["coverage"]], [r["accuracy"]], color="red", zorder=3, label=f"threshold {threshold}")
        ax.set_xlabel("share of organisms answered (coverage)")
        ax.set_ylabel("share of answers right (accuracy)")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_title("Coverage against accuracy, taxa the models know")
        if marked:
            ax.legend(loc="lower left")


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens evaluate``."""
    p = argparse.ArgumentParser(prog="taxolens evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", help="a folder per taxon: PHOTOS/<taxon>/*.jpg")
    p.add_argument("--detector", required=True, help="detector release file")
    p.add_argument("--classifier", required=True, help="classifier release file")
    p.add_argument("--out", required=True, help="folder for the report")
    p.add_argument("--unknown", nargs="*", default=[], help="folders (taxa) to count as unknown to the model")
    p.add_argument("--lineage", nargs="*", default=[], metavar="FOLDER=RANK:NAME,...",
                   help="the lineage of a folder's taxon that species.yaml does not know, most general first, e.g. "
                        "'Vespula_germanica=order:Hymenoptera,family:Vespidae,genus:Vespula,species:Vespula "
                        "germanica': an answer above it is then right but coarse, not wrong")
    p.add_argument("--workers", type=int, default=1, help="photo-decoding processes beside the models")
    InferenceSettings.add_args(p)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens evaluate``."""
    args = check_settings(get_args_parser().parse_args(argv))
    pipe = Pipeline.from_files(args.detector, args.classifier, InferenceSettings.from_args(args))
    report = evaluate_folders(pipe, args.photos, args.out, unknown=args.unknown, workers=args.workers,
                              folder_lineages=parse_lineages(args.lineage))
    o = report["overall"]
    for f in report["folders"]:
        extra = f", named wrongly {_pct(f.get('confidently_wrong'))}" if not f["known"] else ""
        bpp = "n/a" if f["boxes_per_photo"] is None else f"{f['boxes_per_photo']:.2f}"
        print(f"{f['folder']}: {f['photos']} photos, {bpp} boxes/photo, answered {_pct(f['answered'])}, "
              f"right {_pct(f['answers_right'])}, unknown {_pct(f['unknown'])}{extra}")
    print(f"known taxa: {_pct(o['answered'])} answered, {_pct(o['answers_right'])} of those right; unknown taxa: "
          f"{_pct(o['unknown_named_wrongly'])} named wrongly -> {Path(args.out) / 'report.md'}")
    return report
