"""The model against the experts, in the layout of the study's tables.

Agreement, Cohen's kappa, the confusion matrix and per-taxon sensitivity and precision.
"""

from __future__ import annotations

import numpy as np

from classifier.metrics import confusion_summary
from core.answers import ANSWERED, NEEDS_A_LOOK, NO_ORGANISM, REASON_NO_ORGANISM
from review.store import detection_rows


def model_label(row: dict) -> str:
    """What the model answered for a box: its taxon when named or rolled up, else its reason."""
    if row["dropped"]:
        return NO_ORGANISM
    return row["taxon"] if row["reason"] in ANSWERED else row["reason"]


def expert_label(row: dict) -> str:
    """What the expert in force answered: the taxon, or ``no organism``."""
    return NO_ORGANISM if row["review_action"] == REASON_NO_ORGANISM else row["review_taxon"]


def agreement_report(engine) -> dict:
    """Figures over every reviewed detection (the latest review of each)."""
    rows = [r for r in detection_rows(engine) if r.get("review_action") is not None]
    truth = [expert_label(r) for r in rows]
    guess = [model_label(r) for r in rows]
    classes = sorted(set(truth) | set(guess))
    index = {c: i for i, c in enumerate(classes)}
    summary = confusion_summary(np.array([index[t] for t in truth], int), np.array([index[g] for g in guess], int),
                                classes) if rows else {"n": 0, "accuracy": None, "kappa": None, "per_class": [],
                                                       "confusion_matrix": []}
    answered = [i for i, g in enumerate(guess) if g not in NEEDS_A_LOOK]
    right = sum(guess[i] == truth[i] for i in answered)
    return {"reviewed": len(rows), "classes": classes, "agreement": summary["accuracy"], "kappa": summary["kappa"],
            "answered_by_model": len(answered) / len(rows) if rows else None,
            "right_when_answered": right / len(answered) if answered else None,
            "reviewers": sorted({r["review_reviewer"] for r in rows}),
            "per_class": summary["per_class"], "confusion_matrix": summary["confusion_matrix"]}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def report_markdown(report: dict) -> str:
    """The report as Markdown tables (rows: the expert's answer; columns: the model's)."""
    kappa = "n/a" if report["kappa"] is None else f"{report['kappa']:.4f}"
    lines = ["# The model against the experts", "",
             f"{report['reviewed']} reviewed detections, reviewers: {', '.join(report['reviewers']) or 'none'}.", "",
             f"Agreement {_pct(report['agreement'])} %, Cohen's kappa "
             f"{kappa}; the model answered "
             f"{_pct(report['answered_by_model'])} % of them and was right on {_pct(report['right_when_answered'])} % "
             "of those.", "", "## Per taxon (one against the rest)", "",
             "| taxon | support | sensitivity | specificity | precision | F1 |", "|---|---:|---:|---:|---:|---:|"]
    for r in report["per_class"]:
        lines.append(f"| {r['class']} | {r['support']} | {_pct(r['sensitivity'])} | {_pct(r['specificity'])} | "
                     f"{_pct(r['precision'])} | {_pct(r['f1'])} |")
    lines += ["", "## Confusion matrix (rows: expert, columns: model)", "",
              "| expert \\ model | " + " | ".join(report["classes"]) + " |",
              "|---|" + "---:|" * len(report["classes"])]
    for name, row in zip(report["classes"], report["confusion_matrix"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
