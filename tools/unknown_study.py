"""``taxolens unknown-study``: which unknown score tells a never-seen taxon apart, measured by leaving it out.

Launch::

    taxolens unknown-study runs/demo/data/crops --leave-out "Vespa crabro" Formicidae --out runs/unknown-study \
        --config demo-classifier --input-size 160 --epochs 3

For each class left out, a classifier is trained on the other class folders (any ``classifier train``
option after the study's own), then shown the left-out crops, which it has never seen. For every unknown
score (msp, energy, max logit, centroid, kNN) the report gives the AUROC of telling the left-out crops
from the known validation crops, the share of left-out crops flagged unknown at the threshold that lets
95 % of known validation crops pass, and, through the whole decision (calibration, thresholds, rollup),
the share of left-out crops given a wrong name. ``report.md`` and ``report.json`` go into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from classifier import train
from classifier.calibration import UNKNOWN_METHODS, auroc, fit_reference, pass_threshold, softmax, unknown_scores
from classifier.data import load_class_data
from classifier.fit import collect
from classifier.predict import Classifier
from core.answers import ROLLED_UP
from core.io import atomic_write_json, atomic_write_text, list_images
from core.taxonomy import is_right
from pipeline.decision import decide

LOGGER = logging.getLogger(__name__)


def _farm(crops: Path, dest: Path, leave_out: str) -> list[Path]:
    """``dest`` holds links to every class folder's crops but ``leave_out``'s; returns the left-out crops."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for folder in sorted(p for p in crops.iterdir() if p.is_dir()):
        if folder.name == leave_out:
            continue
        (dest / folder.name).mkdir()
        for photo in list_images(folder):
            (dest / folder.name / photo.name).symlink_to(photo.resolve())
    if (crops / "crops.json").is_file():
        shutil.copy(crops / "crops.json", dest / "crops.json")
    return list_images(crops / leave_out)


def _named_wrongly(answers: list[dict], truth: str, lineages: dict) -> float:
    """Share of answers that name the left-out class as something it is not.

    A rollup to a taxon that truly holds it (Vespa for V. crabro) is right, not wrong: the one lineage check.
    """
    wrong = [a for a in answers if a["accepted"] and not (a["reason"] == ROLLED_UP
                                                           and is_right(a["taxon"], truth, lineages))]
    return len(wrong) / len(answers)


def study_one(crops: Path, leave_out: str, out: Path, base: train.TrainSettings) -> dict:
    """Train without ``leave_out`` and measure every unknown score on its crops."""
    held_out = _farm(crops, out / "data", leave_out)
    if not held_out:
        raise ValueError(f"{crops / leave_out}: no crops to leave out")
    train.train(replace(base, data=str(out / "data"), out=str(out / "model"), no_eval=True))
    clf = Classifier.from_file(out / "model" / "model.pt", base.device)
    data = load_class_data(out / "data", val_fraction=base.val_fraction, seed=base.seed, group_regex=base.group_regex)
    table = score_table(clf, data.train, data.val, held_out, truth=leave_out, pass_rate=base.unknown_pass_rate,
                        seed=base.seed, workers=base.workers)
    return {"left_out": leave_out, **table}


def score_table(clf: Classifier, train_items: list[tuple[str, int]], val_items: list[tuple[str, int]],
                new_crops: list[Path], *, truth: str, pass_rate: float, seed: int = 0, workers: int = 0,
                known_crops: Sequence[Path] = ()) -> dict:
    """Every unknown score on ``new_crops`` (of the taxon ``truth``, which the classifier never saw).

    Per score: the AUROC against the known validation crops, the share of new crops flagged at the threshold
    that lets ``pass_rate`` of the known validation crops pass, the share named wrongly through the whole
    decision, and, with ``known_crops`` (crops of known taxa from photos no model trained on), the share of
    those flagged: what the score costs where it matters.
    """
    settings = clf.decision_settings
    organisms = clf.organism_indices
    _, train_emb, train_labels = collect(clf, train_items, workers=workers, desc="training embeddings")
    val_logits, val_emb, val_labels = collect(clf, val_items, workers=workers, desc="known validation")
    new_logits, new_emb, _ = collect(clf, [(str(p), 0) for p in new_crops], workers=workers, desc=truth)
    other_logits, other_emb, _ = collect(clf, [(str(p), 0) for p in known_crops], workers=workers,
                                         desc="known, held out")
    known = np.isin(val_labels, organisms)
    rows = {}
    for method in UNKNOWN_METHODS:
        ref = fit_reference(method, train_emb, train_labels, organisms, seed)
        s_known = unknown_scores(method, val_logits, val_emb, ref, clf.temperature, organisms)[known]
        s_new = unknown_scores(method, new_logits, new_emb, ref, clf.temperature, organisms)
        thr = pass_threshold(s_known, pass_rate)
        probs = softmax(new_logits, clf.temperature)
        answers = [decide(probabilities=p, threshold=clf.threshold, unknown_score=float(s),
                          **{**settings, "unknown_threshold": thr}) for p, s in zip(probs, s_new)]
        rows[method] = {"auroc": auroc(s_known, s_new), "flagged_unknown": float((s_new > thr).mean()),
                        "named_wrongly": _named_wrongly(answers, truth, settings["lineages"] or {}),
                        "known_val_passing": float((s_known <= thr).mean())}
        if len(other_logits):
            s_other = unknown_scores(method, other_logits, other_emb, ref, clf.temperature, organisms)
            rows[method]["known_held_out_flagged"] = float((s_other > thr).mean())
    no_score = [decide(probabilities=p, threshold=clf.threshold, **{**settings, "unknown_threshold": None})
                for p in softmax(new_logits, clf.temperature)]
    named_without = _named_wrongly(no_score, truth, settings["lineages"] or {})
    return {"crops": len(new_crops), "known_val_crops": int(known.sum()), "temperature": clf.temperature,
            "named_wrongly_without_unknown_score": named_without, "methods": rows}


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens unknown-study`` (and, after them, any option of ``classifier train``)."""
    p = argparse.ArgumentParser(prog="taxolens unknown-study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("crops", help="class folders of crops (as classifier train takes them)")
    p.add_argument("--leave-out", nargs="+", required=True, help="class folders to leave out, one study each")
    p.add_argument("--out", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens unknown-study``."""
    args, rest = get_args_parser().parse_known_args(argv)
    out = Path(args.out)
    base = train.parse_settings([*rest, "--data", args.crops, "--out", str(out)])
    results = [study_one(Path(args.crops), name, out / name.replace(" ", "_"), base) for name in args.leave_out]
    lines = ["# Unknown scores, measured by leaving a class out of training", "",
             f"Crops `{args.crops}`; {base.arch}, input {base.input_size}, {base.epochs} epochs; threshold at "
             f"{base.unknown_pass_rate:.0%} of known validation crops passing.", "",
             "| left out | crops | method | AUROC | flagged unknown | named wrongly | known passing |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['left_out']} | {r['crops']} | (no unknown score) | | | "
                     f"{r['named_wrongly_without_unknown_score']:.1%} | |")
        for m, row in r["methods"].items():
            au = "n/a" if row["auroc"] is None else f"{row['auroc']:.3f}"
            lines.append(f"| {r['left_out']} | {r['crops']} | {m} | {au} | {row['flagged_unknown']:.1%} | "
                         f"{row['named_wrongly']:.1%} | {row['known_val_passing']:.1%} |")
    mean = {m: float(np.mean([r["methods"][m]["auroc"] or 0 for r in results])) for m in UNKNOWN_METHODS}
    best = max(mean, key=lambda m: mean[m])
    lines += ["", f"Best mean AUROC: **{best}** ({mean[best]:.3f})."]
    report = {"settings": {k: v for k, v in vars(base).items()}, "results": results, "mean_auroc": mean,
              "best": best}
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return json.loads(json.dumps(report))
