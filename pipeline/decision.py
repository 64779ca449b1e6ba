"""The decision: what the pipeline says about one detected box, from the classifier's outputs.

One pure, keyword-only function, tested with literal tables. Every caller (folder runs, the web app,
``taxolens evaluate``, exports) goes through it; nothing else compares a probability with a threshold.

In order, the first that applies:

1. ``no_organism``: the most probable class is a background class (a box around a bait dish, a leaf);
   the box is dropped rather than named.
2. ``unknown``: the crop is unlike every training class: its unknown score is above the model's
   threshold, or the most probable class is an outlier class (look-alikes trained so as to be told apart,
   never named).
3. ``named``: the most probable taxon reaches its threshold (its per-class threshold, else the global one),
   and, for an ensemble that asks its members to agree, so does every member's probability of that taxon.
4. ``rolled_up``: no taxon does, but the summed probability of the classes under a higher taxon does
   ("Vespa, genus, 0.97"); the deepest such taxon is the answer. A higher taxon must hold at least two
   classes: over one class it would only restate the probability that just failed its threshold.
5. ``uncertain``: none of the above; the best guesses are still given.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np

from classifier.metrics import accepts
from core.answers import (
    ANSWERED,
    NAMED,
    NO_ORGANISM,
    RANKS,
    REASON_NO_ORGANISM,
    REASON_UNCERTAIN,
    REASON_UNKNOWN,
    ROLLED_UP,
    UNCERTAIN,
    UNKNOWN,
)


def _rank_depth(rank: str | None) -> int:
    return RANKS.index(rank) if rank in RANKS else -1


def decide(*, probabilities: Sequence[float], class_names: Sequence[str], threshold: float,
           class_thresholds: Mapping[str, float] | None = None,
           lineages: Mapping[str, Sequence[Sequence[str]]] | None = None, rollup: bool = True,
           background_classes: Collection[str] = (), outlier_classes: Collection[str] = (),
           unknown_score: float | None = None, unknown_threshold: float | None = None,
           member_probabilities: Sequence[Sequence[float]] | None = None, top_k: int = 3) -> dict:
    """The answer for one crop.

    Args:
        probabilities: the classifier's (calibrated) softmax output, one per class.
        class_names: the classes, in the same order.
        threshold: the probability that counts as an answer (0.94 unless the model file says otherwise);
            a probability exactly equal to it is accepted. Rolled-up answers use it too.
        class_thresholds: per-class thresholds that override ``threshold`` for that class.
        lineages: per class, its lineage as ``[rank, name]`` pairs from the most general to the class itself.
        rollup: whether a higher taxon may answer when no class reaches its threshold.
        background_classes: classes meaning "no organism here".
        outlier_classes: classes of look-alikes that are never named (their answer is ``unknown``).
        unknown_score: how unlike the training classes the crop is (higher: more unlike); ``None`` if not
            measured.
        unknown_threshold: scores above this are ``unknown``; ``None`` turns the check off.
        member_probabilities: an ensemble's members' own (calibrated) probabilities, one row per member: a taxon
            is named only when every member's probability of it reaches the threshold too; otherwise the answer
            is a rolled-up taxon (from ``probabilities``) or uncertain. ``None``: no agreement asked.
        top_k: how many best guesses (organism classes only) to return.

    Returns:
        ``taxon`` (a class, a higher taxon, ``uncertain``, ``unknown`` or ``no organism``), ``rank`` (of the
        taxon, ``None`` when not a taxon or unknown), ``reason`` (one of :data:`REASONS`), ``probability``
        (of the answer: the class's, the summed one for a rollup, the background's for no organism, else the
        best guess's), ``accepted`` (named or rolled up), ``threshold`` (the one applied), ``top`` (best
        guesses, each ``taxon`` and ``probability``) and ``unknown_score``.
    """
    probs = np.asarray(probabilities, dtype=np.float32)
    if probs.ndim != 1 or len(probs) != len(class_names) or len(probs) == 0:
        raise ValueError(f"{len(probs)} probabilities for {len(class_names)} classes")
    names = [str(n) for n in class_names]
    lineages = lineages or {}
    order = [int(i) for i in np.argsort(-probs, kind="stable")]
    organisms = [i for i in order if names[i] not in background_classes and names[i] not in outlier_classes]
    top = [{"taxon": names[i], "probability": round(float(probs[i]), 6)} for i in organisms[:top_k]]
    best_organism = float(probs[organisms[0]]) if organisms else 0.0
    score = None if unknown_score is None else round(float(unknown_score), 6)

    def answer(taxon: str, rank: str | None, reason: str, probability: float, applied: float) -> dict:
        return {"taxon": taxon, "rank": rank, "reason": reason, "probability": round(float(probability), 6),
                "accepted": reason in ANSWERED, "threshold": applied, "top": top, "unknown_score": score}

    best = names[order[0]]
    if best in background_classes:
        return answer(NO_ORGANISM, None, REASON_NO_ORGANISM, probs[order[0]], threshold)
    if best in outlier_classes or (score is not None and unknown_threshold is not None
                                   and score > unknown_threshold):
        return answer(UNKNOWN, None, REASON_UNKNOWN, best_organism, threshold)
    applied = float((class_thresholds or {}).get(best, threshold))
    agreed = member_probabilities is None or all(accepts(float(m[order[0]]), applied) for m in member_probabilities)
    if accepts(probs[order[0]], applied) and agreed:
        lineage = lineages.get(best) or []
        return answer(best, lineage[-1][0] if lineage else None, NAMED, probs[order[0]], applied)
    if rollup and lineages:
        sums: dict[tuple[str, str], float] = {}
        members: dict[tuple[str, str], int] = {}
        for i in organisms:
            for rank, name in list(lineages.get(names[i]) or [])[:-1]:  # the class's own level is not a rollup
                sums[(rank, name)] = sums.get((rank, name), 0.0) + float(probs[i])
                members[(rank, name)] = members.get((rank, name), 0) + 1
        reached = [(_rank_depth(k[0]), p, k) for k, p in sums.items() if members[k] >= 2 and accepts(p, threshold)]
        if reached:
            _, p, (rank, name) = max(reached)
            return answer(name, rank, ROLLED_UP, p, threshold)
    return answer(UNCERTAIN, None, REASON_UNCERTAIN, probs[order[0]], applied)
