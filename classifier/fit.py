"""After training: fit what the classifier's numbers are worth on validation crops, for the model file.

:func:`collect` runs a network over ``(path, label)`` items (the evaluation preprocessing) and returns
logits, embeddings and labels; :func:`fit_extras` turns validation (and training) outputs into the
model file's ``calibration``, ``class_thresholds``, ``unknown`` and ``taxonomy`` entries. The same
validation crops also chose the best epoch: the figures are optimistic by that much, which is why
``taxolens evaluate`` measures on photos no model trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from torch.utils.data import DataLoader
from tqdm import tqdm

from classifier.calibration import (
    UNKNOWN_METHODS,
    auroc,
    class_thresholds,
    fit_reference,
    fit_temperature,
    nll,
    pass_threshold,
    reliability,
    softmax,
    unknown_scores,
)
from classifier.data import FolderDataset
from classifier.predict import Classifier
from core.runtime import WorkerInit
from core.taxonomy import lineages, required_precisions, whole_photo_taxa

LOGGER = logging.getLogger(__name__)
#: the unknown score used where no look-alike crops are at hand to choose one (see BENCHMARKS.md: the
#: leave-one-class-out measurement)
DEFAULT_UNKNOWN_METHOD = "knn"


def collect(clf: Classifier, items: list[tuple[str, int]], batch_size: int = 32, workers: int = 0,
            desc: str = "outputs") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, embeddings and labels of ``(path, label)`` items, with the classifier's own preprocessing."""
    loader = DataLoader(FolderDataset(items, clf.transform), batch_size=batch_size, num_workers=workers,
                        worker_init_fn=WorkerInit())
    logits, embeddings, labels = [], [], []
    for x, y in tqdm(loader, desc=desc, unit="batch", leave=False):
        lg, emb = clf.outputs(x)
        logits.append(lg)
        embeddings.append(emb)
        labels.append(y.numpy())
    if not logits:
        n = len(clf.class_names)
        return np.zeros((0, n), np.float32), np.zeros((0, 0), np.float32), np.zeros(0, int)
    return np.concatenate(logits), np.concatenate(embeddings), np.concatenate(labels)


def fit_extras(clf: Classifier, train_items: list[tuple[str, int]], val_items: list[tuple[str, int]], *,
               background: Sequence[str], outliers: Sequence[str], calibrate: bool = True,
               target_precision: float | None = None, unknown_method: str = "auto", pass_rate: float = 0.95,
               species_file: str | None = None, workers: int = 0, seed: int = 0) -> dict:
    """The model file's honesty entries, fitted on validation crops (training crops for the unknown reference).

    Args:
        clf: the trained classifier (uncalibrated).
        train_items: training ``(path, label)`` items (the unknown score's reference).
        val_items: validation items: calibration, thresholds, the unknown threshold.
        background: background class names (never named, no unknown score).
        outliers: look-alike class names (answered ``unknown``); every unknown score is measured on their
            validation crops and recorded (``measured``).
        calibrate: fit a temperature (else 1.0).
        target_precision: fit per-class thresholds reaching this precision (``None``: none).
        unknown_method: one of :data:`~classifier.calibration.UNKNOWN_METHODS`, ``auto``
            (:data:`DEFAULT_UNKNOWN_METHOD`, measured best by leaving classes out of training) or ``none``.
        pass_rate: share of known validation crops the unknown threshold lets pass.
        species_file: where lineages come from (default: the packaged species.yaml).
        workers: loader processes.
        seed: for the knn bank's sample.
    """
    names = clf.class_names
    organisms = [i for i, n in enumerate(names) if n not in background and n not in outliers]
    logits, emb, labels = collect(clf, val_items, workers=workers, desc="validation outputs")
    extras: dict = {"background_classes": list(background), "outlier_classes": list(outliers),
                    "taxonomy": lineages([names[i] for i in organisms], species_file),
                    "whole_photo_classes": whole_photo_taxa([names[i] for i in organisms], species_file)}
    t = fit_temperature(logits, labels) if calibrate and len(labels) else 1.0
    before, after = reliability(softmax(logits), labels), reliability(softmax(logits, t), labels)
    extras["calibration"] = {"method": "temperature" if calibrate else "none", "temperature": t,
                             "val_crops": int(len(labels)),
                             "nll_before": nll(logits, labels) if len(labels) else None,
                             "nll_after": nll(logits, labels, t) if len(labels) else None,
                             "ece_before": before["ece"], "ece_after": after["ece"]}
    probs = softmax(logits, t) if len(labels) else logits
    extras["class_thresholds"] = {}
    required = required_precisions([names[i] for i in organisms], species_file)
    targets = {**({names[i]: target_precision for i in organisms} if target_precision is not None else {}),
               **required}
    if targets and len(labels):
        table = class_thresholds(probs, labels, names, targets=targets,
                                 floors=dict.fromkeys(required, float(clf.threshold)))
        extras["class_thresholds"] = {n: r["threshold"] for n, r in table.items()}
        extras["class_thresholds_fit"] = {"target_precision": target_precision, "required_precision": required,
                                          "per_class": table}
        for n, r in table.items():
            LOGGER.info("%s: threshold %.4f (precision %s on %d validation predictions; target %.3f%s)", n,
                        r["threshold"], "n/a" if r["precision"] is None else f"{r['precision']:.3f}",
                        r["predicted"], r["target"], "" if r["reached"] else ", NOT reached: never named alone")
    extras["unknown"] = _fit_unknown(clf, train_items, logits, emb, labels, organisms, outliers, t, unknown_method,
                                     pass_rate, workers, seed)
    return extras


def _fit_unknown(clf: Classifier, train_items: list[tuple[str, int]], logits: np.ndarray, emb: np.ndarray,
                 labels: np.ndarray, organisms: list[int], outliers: Sequence[str], temperature: float,
                 method: str, pass_rate: float, workers: int, seed: int) -> dict:
    if method == "none" or not len(labels):
        return {}
    names = clf.class_names
    known = np.isin(labels, organisms)
    outlier_idx = [names.index(n) for n in outliers]
    look_alikes = np.isin(labels, outlier_idx)
    _, train_emb, train_labels = collect(clf, train_items, workers=workers, desc="training embeddings")
    candidates = UNKNOWN_METHODS if method == "auto" else (method,)
    measured: dict[str, dict] = {}
    references: dict[str, dict] = {}
    for m in candidates:
        references[m] = fit_reference(m, train_emb, train_labels, organisms, seed)
        scores = unknown_scores(m, logits, emb, references[m], temperature, organisms)
        thr = pass_threshold(scores[known], pass_rate)
        measured[m] = {"threshold": thr,
                       "auroc_look_alikes": auroc(scores[known], scores[look_alikes]) if look_alikes.any() else None,
                       "look_alikes_flagged": float((scores[look_alikes] > thr).mean()) if look_alikes.any()
                       else None}
    if method == "auto":
        # not the best on the look-alike crops: those were trained (as an outlier class), which favours the
        # logit-based scores; kNN measured best on classes truly left out of training (BENCHMARKS.md)
        method = DEFAULT_UNKNOWN_METHOD
    LOGGER.info("unknown score: %s (threshold %.4f lets %.0f%% of known validation crops pass)", method,
                measured[method]["threshold"], 100 * pass_rate)
    return {"method": method, "threshold": measured[method]["threshold"], "pass_rate": pass_rate,
            "reference": references[method], "known_val_crops": int(known.sum()),
            "look_alike_val_crops": int(look_alikes.sum()), "measured": measured}
