"""What the classifier's numbers are worth: calibration, thresholds measured on data, and unknown scores.

All fitted on validation outputs after training and stored in the model file, so inference applies them
without reading any data:

- **Temperature scaling** (Guo et al. 2017): one temperature ``T`` divides the logits; fitted by minimising
  the negative log-likelihood of the validation labels. It changes no ranking, only how sure the
  probabilities claim to be; expected calibration error (ECE) and reliability diagrams show the effect.
- **Per-class thresholds**: for each class, the lowest probability at which the validation predictions of
  that class reach a target precision.
- **Unknown scores**: how unlike the training classes a crop is, by one of :data:`UNKNOWN_METHODS`; the
  threshold lets a chosen share of known validation crops pass (95 % by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

#: maximum softmax probability, energy, maximum logit, cosine distance to the nearest class centroid,
#: cosine distance to the k-th nearest training crop
UNKNOWN_METHODS = ("msp", "energy", "maxlogit", "centroid", "knn")
KNN_K = 5
#: at most this many training embeddings are kept in the model file for ``knn`` (a seeded sample)
KNN_BANK = 2000


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    t = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / temperature
    return float(torch.nn.functional.cross_entropy(t, torch.as_tensor(np.asarray(labels), dtype=torch.long)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature that minimises the validation NLL (log-parametrised, so it stays positive)."""
    if len(labels) == 0:
        return 1.0
    x = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    # a degenerate fit (all validation crops right with huge margins) must not blow the logits up or flatten them
    return float(np.clip(t, 0.05, 20.0))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error and the reliability table (confidence against accuracy per bin)."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(labels) == 0:
        return {"ece": None, "bins": []}
    conf = probs.max(1)
    right = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if not sel.any():
            continue
        acc, mean_conf = float(right[sel].mean()), float(conf[sel].mean())
        ece += sel.mean() * abs(acc - mean_conf)
        rows.append({"low": float(lo), "high": float(hi), "count": int(sel.sum()), "confidence": mean_conf,
                     "accuracy": acc})
    return {"ece": float(ece), "bins": rows}


def thresholds_for_precision(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                             target: float, skip: Sequence[str] = (), minimum: float = 0.5) -> dict[str, dict]:
    """Per class: the lowest threshold at which its predictions reach ``target`` precision on these data.

    A prediction of class ``c`` at threshold ``t`` is a crop whose best class is ``c`` with probability at
    least ``t``. Thresholds are searched from ``minimum`` up over the probabilities that occur; where no
    threshold reaches the target (or the class is never predicted), the class gets 1.0 plus a little, so
    it is never named on its own (a rollup may still answer), and ``reached`` is false.

    Returns:
        per class in ``class_names`` (less ``skip``): ``threshold``, ``precision``, ``predicted`` (how many
        predictions pass it) and ``reached``.
    """
    probs = np.asarray(probs, dtype=np.float32)
    labels = np.asarray(labels)
    best = probs.argmax(1) if len(probs) else np.zeros(0, int)
    conf = probs.max(1) if len(probs) else np.zeros(0, np.float32)
    out: dict[str, dict] = {}
    for c, name in enumerate(class_names):
        if name in skip:
            continue
        mine = best == c
        candidates = sorted({float(minimum), *[float(v) for v in conf[mine] if v >= minimum]})
        chosen = None
        for t in candidates:
            kept = mine & (conf >= np.float32(t))
            if kept.sum() == 0:
                break
            precision = float((labels[kept] == c).mean())
            if precision >= target:
                chosen = {"threshold": t, "precision": precision, "predicted": int(kept.sum()),
                          "reached": True}
                break
        out[name] = chosen or {"threshold": 1.000001, "precision": None, "predicted": 0, "reached": False}
    return out


def class_thresholds(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str], *,
                     targets: Mapping[str, float], floors: Mapping[str, float] | None = None) -> dict[str, dict]:
    """Per-class thresholds, each class fitted to its own required precision on validation crops.

    ``targets`` gives each class's precision (``species.yaml``'s ``required_precision`` for taxa whose mistakes
    cost more, else ``--target-precision``); ``floors`` the lowest threshold a class may get (for a costly
    taxon, the global threshold: a stricter requirement never makes its answers easier to give). A class
    that never reaches its target gets a threshold above 1 (:func:`thresholds_for_precision`). Returns, per
    class in ``targets``, ``threshold``, ``target``, ``precision``, ``predicted`` and ``reached``.
    """
    out: dict[str, dict] = {}
    for name, target in targets.items():
        if name not in class_names:
            continue
        row = thresholds_for_precision(probs, labels, class_names, target,
                                       skip=[n for n in class_names if n != name])[name]
        floor = (floors or {}).get(name)
        if floor is not None and row["threshold"] < floor:
            kept = (np.asarray(probs).argmax(1) == class_names.index(name)) & (
                np.asarray(probs, np.float32).max(1) >= np.float32(floor)) if len(probs) else np.zeros(0, bool)
            precision = float((np.asarray(labels)[kept] == class_names.index(name)).mean()) if kept.any() else None
            row = {"threshold": float(floor), "precision": precision, "predicted": int(kept.sum()),
                   "reached": row["reached"]}
        out[name] = {**row, "target": float(target)}
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_reference(method: str, embeddings: np.ndarray, labels: np.ndarray, organism_classes: Sequence[int],
                  seed: int = 0) -> dict:
    """What a method needs from the training crops: class centroids (``centroid``) or a bank (``knn``)."""
    if method not in UNKNOWN_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(UNKNOWN_METHODS)}")
    emb = _normalise(embeddings)
    labels = np.asarray(labels)
    keep = np.isin(labels, list(organism_classes))
    if method == "centroid":
        centroids = [_normalise(emb[labels == c].mean(0, keepdims=True))[0] for c in organism_classes
                     if (labels == c).any()]
        return {"centroids": torch.as_tensor(np.stack(centroids))}
    if method == "knn":
        bank = emb[keep]
        if len(bank) > KNN_BANK:
            bank = bank[np.random.default_rng(seed).choice(len(bank), KNN_BANK, replace=False)]
        return {"bank": torch.as_tensor(bank).half(), "k": KNN_K}
    return {}


def unknown_scores(method: str, logits: np.ndarray, embeddings: np.ndarray | None, reference: dict,
                   temperature: float = 1.0, organism_classes: Sequence[int] | None = None) -> np.ndarray:
    """How unlike the training classes each crop is: higher is more unlike.

    Args:
        method: one of :data:`UNKNOWN_METHODS`.
        logits: ``N x classes``.
        embeddings: ``N x D`` (the input of the last layer), for ``centroid`` and ``knn``.
        reference: from :func:`fit_reference`.
        temperature: the calibration temperature (``msp`` and ``energy`` use it).
        organism_classes: class indices that are organisms (background and outlier classes left out of
            ``msp``, ``energy`` and ``maxlogit``); all when ``None``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    cols = list(range(logits.shape[1])) if organism_classes is None else list(organism_classes)
    if method == "msp":
        return (1.0 - softmax(logits, temperature)[:, cols].max(1)).astype(np.float32)
    if method == "energy":
        z = logits[:, cols] / temperature
        m = z.max(1)
        return (-(temperature * (m + np.log(np.exp(z - m[:, None]).sum(1))))).astype(np.float32)
    if method == "maxlogit":
        return (-logits[:, cols].max(1)).astype(np.float32)
    if embeddings is None:
        raise ValueError(f"the {method} score needs the crops' embeddings")
    emb = _normalise(embeddings)
    if method == "centroid":
        centroids = np.asarray(reference["centroids"], dtype=np.float32)
        return (1.0 - (emb @ centroids.T).max(1)).astype(np.float32)
    if method == "knn":
        bank = np.asarray(reference["bank"], dtype=np.float32)
        k = min(int(reference.get("k", KNN_K)), len(bank))
        sims = emb @ bank.T
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
        return (1.0 - kth).astype(np.float32)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(UNKNOWN_METHODS)}")


def pass_threshold(known_scores: np.ndarray, pass_rate: float) -> float:
    """The score under which ``pass_rate`` of known crops fall (they pass as known)."""
    if not 0.0 < pass_rate <= 1.0:
        raise ValueError(f"pass rate must be in (0, 1], got {pass_rate}")
    if len(known_scores) == 0:
        return float("inf")
    return float(np.quantile(np.asarray(known_scores, dtype=np.float64), pass_rate, method="higher"))


def auroc(known: np.ndarray, unknown: np.ndarray) -> float | None:
    """Area under the ROC curve of telling unknown crops (positives, higher scores) from known ones."""
    known, unknown = np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)
    if not len(known) or not len(unknown):
        return None
    # Mann-Whitney U: the chance that an unknown crop scores above a known one (ties count half)
    scores = np.concatenate([known, unknown])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for v in np.unique(scores):  # average ranks over ties
        tie = scores == v
        ranks[tie] = ranks[tie].mean()
    u = ranks[len(known):].sum() - len(unknown) * (len(unknown) + 1) / 2
    return float(u / (len(known) * len(unknown)))
