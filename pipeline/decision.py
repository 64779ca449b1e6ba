"""The decision: what the pipeline says about one organism, from the classifier's probabilities.

One pure, keyword-only function, tested with literal tables. Every caller (folder runs, the web app,
exports) goes through it; nothing else compares a probability with a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from classifier.metrics import accepts

UNCERTAIN = "uncertain"


def decide(*, probabilities: Sequence[float], class_names: Sequence[str], threshold: float,
           class_thresholds: Mapping[str, float] | None = None, top_k: int = 3) -> dict:
    """Name the taxon when its probability is at least the threshold, else say ``uncertain``.

    Args:
        probabilities: the classifier's softmax output, one per class.
        class_names: the classes, in the same order.
        threshold: the probability that counts as an answer (0.94 by default in model files); a
            probability exactly equal to it is accepted.
        class_thresholds: per-taxon thresholds that override ``threshold`` for that taxon.
        top_k: how many best guesses to return.

    Returns:
        ``taxon`` (a class name, or ``uncertain``), ``probability`` (of the best guess), ``accepted``,
        ``threshold`` (the one applied) and ``top`` (the ``top_k`` best guesses, each ``taxon`` and
        ``probability``, best first).
    """
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.ndim != 1 or len(probs) != len(class_names) or len(probs) == 0:
        raise ValueError(f"{len(probs)} probabilities for {len(class_names)} classes")
    order = np.argsort(-probs, kind="stable")
    best = str(class_names[order[0]])
    applied = float((class_thresholds or {}).get(best, threshold))
    ok = bool(accepts(probs[order[0]], applied))
    top = [{"taxon": str(class_names[i]), "probability": round(float(probs[i]), 6)} for i in order[:top_k]]
    return {"taxon": best if ok else UNCERTAIN, "probability": top[0]["probability"], "accepted": ok,
            "threshold": applied, "top": top}
