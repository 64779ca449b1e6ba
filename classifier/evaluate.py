"""Evaluate a classifier release file: the study's Tables 3 and 4 and its Figure 2.

Launch::

    taxolens classifier evaluate --model runs/cls/model.pt --data ../shared/data/hymenoptera --out runs/cls/eval

Writes ``report.md`` and ``report.json`` (accuracy; sensitivity, specificity, fall-out, precision, F1
per class; Cohen's kappa; without and with the threshold, with the share kept; the majority-class
baseline), ``confusion_all.csv/png`` and ``confusion_thresholded.csv/png``, and ``sweep.csv/png``
(kappa, accuracy and discard rate from 0.50 to 0.99, with the knee marked).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from classifier.calibration import nll, reliability, softmax
from classifier.data import load_class_data, load_eval_data
from classifier.fit import collect
from classifier.metrics import evaluate_probabilities
from classifier.predict import Classifier
from core.config import check_settings
from core.defaults import THRESHOLD
from core.io import atomic_write_csv, atomic_write_json, atomic_write_text, saved_figure

LOGGER = logging.getLogger(__name__)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _table(summary: dict) -> list[str]:
    lines = ["| class | support | sensitivity | specificity | fall-out | precision | F1 |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary["per_class"]:
        lines.append(f"| {r['class']} | {r['support']} | {_fmt(r['sensitivity'])} | {_fmt(r['specificity'])} | "
                     f"{_fmt(r['fallout'])} | {_fmt(r['precision'])} | {_fmt(r['f1'])} |")
    return lines


def _confusion_lines(cm: list[list[int]], names: list[str]) -> list[str]:
    lines = ["| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {names[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
    return lines


def evaluation_markdown(result: dict, class_names: list[str], title: str) -> str:
    """The evaluation report as Markdown."""
    a, t, b = result["all"], result["thresholded"], result["majority_baseline"]
    knee = result["knee"]
    lines = [f"# {title}", "", f"Photos evaluated: {a['n']}", "",
             "| | accuracy | kappa | photos kept |", "|---|---:|---:|---:|",
             f"| all predictions | {_fmt(a['accuracy'])} | {_fmt(a['kappa'])} | 1.0000 |",
             f"| probability >= {t['threshold']} | {_fmt(t['accuracy'])} | {_fmt(t['kappa'])} | {_fmt(t['kept'])} |",
             f"| majority class ({b['class']}) | {_fmt(b['accuracy'])} | 0.0000 | 1.0000 |", "",
             "## Per class, all predictions (the study's Table 3)", "", *_table(a), "",
             *_confusion_lines(a["confusion_matrix"], class_names), "",
             f"## Per class, probability >= {t['threshold']} (the study's Table 4)", "", *_table(t), "",
             *_confusion_lines(t["confusion_matrix"], class_names), "",
             "## Threshold sweep (the study's Figure 2: sweep.png, sweep.csv)", ""]
    if knee:
        lines.append(f"Knee of kappa against discard rate ({knee['method']}): threshold {knee['threshold']:.2f} "
                     f"(kappa {knee['kappa']:.4f}, {knee['discarded']:.1%} discarded). "
                     f"The study read {THRESHOLD} off the same curve; it stays the default.")
    else:
        lines.append("No knee: kappa or the discard rate does not vary over the sweep.")
    cal = result.get("calibration")
    if cal and cal.get("ece_before") is not None:
        lines += ["", "## Calibration (reliability.png)", "",
                  f"Temperature {cal['temperature']:.3f}: expected calibration error {cal['ece_before']:.4f} before, "
                  f"{cal['ece_after']:.4f} after; negative log-likelihood {cal['nll_before']:.4f} before, "
                  f"{cal['nll_after']:.4f} after. Every probability in this report is the calibrated one."]
    lines += ["", "| threshold | kappa | accuracy | discarded |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['threshold']:.2f} | {_fmt(r['kappa'])} | {_fmt(r['accuracy'])} | {_fmt(r['discarded'])} |"
              for r in result["sweep"]]
    return "\n".join(lines) + "\n"


def _plot_confusion(cm: list[list[int]], names: list[str], title: str, path: Path) -> None:
    arr = np.array(cm)
    with saved_figure(path, (1.2 * len(names) + 2.5, 1.2 * len(names) + 2)) as (fig, ax):
        ax.imshow(arr, cmap="Blues")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                ax.text(j, i, str(arr[i, j]), ha="center", va="center",
                        color="white" if arr[i, j] > arr.max() / 2 else "black")


def _plot_sweep(result: dict, path: Path) -> None:
    sweep = result["sweep"]
    t = [r["threshold"] for r in sweep]
    with saved_figure(path, (7, 4.5)) as (fig, ax):
        ax.plot(t, [np.nan if r["kappa"] is None else r["kappa"] for r in sweep], label="kappa", marker=".")
        ax.plot(t, [np.nan if r["accuracy"] is None else r["accuracy"] for r in sweep], label="accuracy", marker=".")
        ax.plot(t, [r["discarded"] for r in sweep], label="discard rate", marker=".")
        ax.axvline(THRESHOLD, color="grey", linestyle="--", label=f"study's choice {THRESHOLD}")
        if result["knee"]:
            ax.axvline(result["knee"]["threshold"], color="red", linestyle=":",
                       label=f"knee here {result['knee']['threshold']:.2f}")
        ax.set_xlabel("probability threshold")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left")
        ax.set_title("Kappa, accuracy and discard rate by threshold")


def write_evaluation(result: dict, class_names: list[str], out_dir: str | Path, title: str) -> None:
    """Write the Markdown and JSON report, the confusion matrices (CSV, PNG) and the sweep (CSV, PNG)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", {"class_names": class_names, **result})
    atomic_write_text(out / "report.md", evaluation_markdown(result, class_names, title))
    for key in ("all", "thresholded"):
        cm = result[key]["confusion_matrix"]
        atomic_write_csv(out / f"confusion_{key}.csv", ["true\\predicted", *class_names],
                         [[class_names[i], *row] for i, row in enumerate(cm)])
        label = "all predictions" if key == "all" else f"probability >= {result['thresholded']['threshold']}"
        _plot_confusion(cm, class_names, f"Confusion matrix, {label}", out / f"confusion_{key}.png")
    atomic_write_csv(out / "sweep.csv", ["threshold", "kappa", "accuracy", "discarded"], result["sweep"])
    _plot_sweep(result, out / "sweep.png")
    if result.get("calibration"):
        _plot_reliability(result["calibration"], out / "reliability.png")


def evaluate_model_file(model: str | Path | Classifier, items: list[tuple[str, int]], out_dir: str | Path,
                        threshold: float | None = None, device: str = "auto", workers: int = 0) -> dict:
    """Evaluate a release file (or a loaded classifier) on ``(path, label)`` items and write the report.

    Probabilities are the calibrated ones the pipeline uses; the report also gives the expected
    calibration error and reliability before and after calibration (``reliability.png``).
    """
    clf = model if isinstance(model, Classifier) else Classifier.from_file(model, device)
    thr = clf.threshold if threshold is None else threshold
    logits, _, labels = collect(clf, items, workers=workers, desc="evaluate")
    t = clf.temperature
    probs = softmax(logits, t) if len(logits) else logits
    result = evaluate_probabilities(probs, labels, clf.class_names, thr)
    before, after = reliability(softmax(logits), labels), reliability(probs, labels)
    result["calibration"] = {"temperature": t, "ece_before": before["ece"], "ece_after": after["ece"],
                             "nll_before": nll(logits, labels) if len(labels) else None,
                             "nll_after": nll(logits, labels, t) if len(labels) else None,
                             "reliability_before": before["bins"], "reliability_after": after["bins"]}
    title = f"Evaluation of {Path(clf.info['path']).name} ({clf.info['model_version']})"
    write_evaluation(result, clf.class_names, out_dir, title)
    return result


def _plot_reliability(calibration: dict, path: Path) -> None:
    with saved_figure(path, (5.2, 5)) as (fig, ax):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
        for key, label in (("reliability_before", "before"), ("reliability_after", "after")):
            rows = calibration[key]
            ece = calibration["ece_" + label]
            ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o",
                    label=f"{label} (ECE {ece:.3f})" if ece is not None else label)
        ax.set_xlabel("confidence (top probability)")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Reliability, temperature {calibration['temperature']:.2f}")
        ax.legend(loc="upper left")


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens classifier evaluate``."""
    p = argparse.ArgumentParser(prog="taxolens classifier evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="classifier release file (model.pt)")
    p.add_argument("--data", required=True,
                   help="folder per class: every photo in it is evaluated (root/<class>/), or the val/ part of "
                        "root/train/ + root/val/")
    p.add_argument("--recorded-split", action="store_true",
                   help="evaluate only the validation part of the split recorded in the model file (for the "
                        "folder the model was trained on)")
    p.add_argument("--out", required=True, help="folder for the report")
    p.add_argument("--threshold", type=float, default=None, help="default: the model file's")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--workers", type=int, default=2)
    return p


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens classifier evaluate``."""
    args = check_settings(get_args_parser().parse_args(argv))
    clf = Classifier.from_file(args.model, args.device)
    if args.recorded_split:
        split = clf.info.get("training_data", {}).get("split_settings", {})
        data = load_class_data(args.data, **split)
    else:
        data = load_eval_data(args.data)
        trained_on = clf.info.get("training_data", {}).get("root")
        if trained_on and Path(trained_on) == Path(args.data).resolve() and data.split != "given":
            LOGGER.warning("%s is the folder %s was trained on: every photo is evaluated, training photos "
                           "included (use --recorded-split for its validation part)", args.data, args.model)
    order = {n: i for i, n in enumerate(clf.class_names)}
    missing = [n for n in data.class_names if n not in order]
    if missing:
        raise ValueError(f"{args.data}: class folder(s) the model does not know: {', '.join(missing)}")
    # the model's class order, whatever order the folders sort in
    items = [(p, order[data.class_names[c]]) for p, c in data.val]
    result = evaluate_model_file(clf, items, args.out, args.threshold, workers=args.workers)
    print(json.dumps({"accuracy": result["all"]["accuracy"], "kappa": result["all"]["kappa"],
                      "thresholded": {k: result["thresholded"][k] for k in ("threshold", "accuracy", "kappa", "kept")},
                      "report": str(Path(args.out) / "report.md")}, indent=2))
    return result
