"""Classification metrics as the study reported them, from a confusion matrix.

Rows of a confusion matrix are the true class, columns the predicted class.
"""

from __future__ import annotations

import numpy as np

from core.defaults import THRESHOLD

SWEEP_THRESHOLDS = tuple(round(0.50 + 0.01 * i, 2) for i in range(50))  # 0.50 .. 0.99


def accepts(probability: float | np.ndarray, threshold: float) -> np.ndarray:
    """Whether a probability counts as an answer: at least the threshold.

    Both are compared in float32, the precision the network computes in, so a softmax output that
    prints as 0.94 is accepted at a 0.94 threshold rather than lost to float64 rounding.
    """
    return np.asarray(np.float32(probability) >= np.float32(threshold))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``num_classes x num_classes`` counts, rows true, columns predicted."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    return cm


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def cohen_kappa(cm: np.ndarray) -> float | None:
    """Cohen's kappa: agreement beyond chance. ``None`` for an empty matrix; 0 where chance is perfect."""
    n = cm.sum()
    if n == 0:
        return None
    po = np.trace(cm) / n
    pe = float((cm.sum(0) * cm.sum(1)).sum()) / (n * n)
    if pe == 1.0:
        return 1.0 if po == 1.0 else 0.0
    return float((po - pe) / (1 - pe))


def per_class(cm: np.ndarray, class_names: list[str]) -> list[dict]:
    """Sensitivity, specificity, fall-out, precision and F1 per class (one against the rest)."""
    n = cm.sum()
    rows = []
    for i, name in enumerate(class_names):
        tp = int(cm[i, i])
        fn = int(cm[i].sum() - tp)
        fp = int(cm[:, i].sum() - tp)
        tn = int(n - tp - fn - fp)
        sens, prec = _ratio(tp, tp + fn), _ratio(tp, tp + fp)
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        rows.append({"class": name, "support": tp + fn, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                     "sensitivity": sens, "specificity": _ratio(tn, tn + fp), "fallout": _ratio(fp, fp + tn),
                     "precision": prec, "f1": f1})
    return rows


def confusion_summary(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, kappa, per-class figures and the confusion matrix of one set of predictions."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    n = int(cm.sum())
    return {"n": n, "accuracy": _ratio(np.trace(cm), n), "kappa": cohen_kappa(cm),
            "per_class": per_class(cm, class_names), "confusion_matrix": cm.tolist()}


def evaluate_probabilities(probs: np.ndarray, y_true: np.ndarray, class_names: list[str],
                           threshold: float = THRESHOLD) -> dict:
    """Everything the evaluation report needs from softmax outputs.

    Returns:
        ``all`` (every prediction), ``thresholded`` (only those with top probability at least
        ``threshold``, with ``kept``, the share kept), ``majority_baseline``, ``sweep`` (0.50 to 0.99)
        and ``knee``.
    """
    probs = np.asarray(probs, dtype=np.float32)
    y_true = np.asarray(y_true, dtype=int)
    y_pred = probs.argmax(1)
    top = probs.max(1)
    keep = accepts(top, threshold)
    thresholded = confusion_summary(y_true[keep], y_pred[keep], class_names)
    thresholded["kept"] = float(keep.mean()) if len(keep) else None
    thresholded["threshold"] = threshold
    counts = np.bincount(y_true, minlength=len(class_names))
    majority = int(counts.argmax()) if len(y_true) else 0
    baseline = {"class": class_names[majority], "accuracy": _ratio(counts[majority], len(y_true)), "kappa": 0.0}
    sweep = threshold_sweep(probs, y_true, len(class_names))
    return {"all": confusion_summary(y_true, y_pred, class_names), "thresholded": thresholded,
            "majority_baseline": baseline, "sweep": sweep, "knee": knee(sweep)}


def threshold_sweep(probs: np.ndarray, y_true: np.ndarray, num_classes: int,
                    thresholds: tuple[float, ...] = SWEEP_THRESHOLDS) -> list[dict]:
    """Kappa, accuracy and discard rate of the predictions kept at each threshold."""
    y_pred = probs.argmax(1)
    top = probs.max(1)
    rows = []
    for t in thresholds:
        keep = accepts(top, t)
        cm = confusion_matrix(y_true[keep], y_pred[keep], num_classes)
        rows.append({"threshold": t, "kappa": cohen_kappa(cm), "accuracy": _ratio(np.trace(cm), cm.sum()),
                     "discarded": float(1 - keep.mean()) if len(keep) else None})
    return rows


def knee(sweep: list[dict]) -> dict | None:
    """The threshold past which kappa gains little for the photos given up (the Kneedle method).

    Kappa and the discard rate are each scaled to 0..1 over the sweep; the knee is the threshold where
    scaled kappa exceeds the scaled discard rate the most. The study read its 0.94 off such a curve.
    """
    pts = [(r["threshold"], r["kappa"], r["discarded"]) for r in sweep if r["kappa"] is not None]
    if len(pts) < 3:
        return None
    t, k, d = (np.array(x, dtype=float) for x in zip(*pts))
    k_span, d_span = k.max() - k.min(), d.max() - d.min()
    if k_span == 0 or d_span == 0:
        return None
    gain = (k - k.min()) / k_span - (d - d.min()) / d_span
    i = int(gain.argmax())
    return {"threshold": float(t[i]), "kappa": float(k[i]), "discarded": float(d[i]),
            "method": "kneedle: max of scaled kappa minus scaled discard rate"}
