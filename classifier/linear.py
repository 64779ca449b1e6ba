"""The ``linear`` recipe: the ImageNet network kept as it is, only its last layer fitted, on cached features.

Each training crop is run through the frozen network once per view (the evaluation crop, its mirror image and
``views - 2`` augmented copies, the field and lighting augmentation of the fine-tune), the features before the
last layer are kept in memory, and the last layer is fitted to them by L-BFGS on the whole set at once: a
convex problem with one solution, so a training seed changes only which augmented copies are drawn. The
release file is the same network with that layer in place: inference, calibration, thresholds and the unknown
score work as for a fine-tuned model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from classifier.data import FolderDataset
from classifier.hierarchy import HierarchicalLoss
from classifier.models import head_of
from classifier.predict import Classifier
from core.runtime import WorkerInit

LOGGER = logging.getLogger(__name__)


def features(clf: Classifier, items: list[tuple[str, int]], transform: A.Compose, *, batch_size: int = 32,
             workers: int = 0, desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """The embeddings (the last layer's input) of ``(path, label)`` items under ``transform``, and the labels."""
    loader = DataLoader(FolderDataset(items, transform), batch_size=batch_size, num_workers=workers,
                        worker_init_fn=WorkerInit(seed=True))
    emb, labels = [], []
    for x, y in tqdm(loader, desc=desc, unit="batch"):
        emb.append(clf.outputs_tensor(x)[1])
        labels.append(y.numpy())
    if not emb:
        return np.zeros((0, 0), np.float32), np.zeros(0, int)
    return np.concatenate(emb).astype(np.float32), np.concatenate(labels)


def cached_features(cache: Path | None, key: dict, compute: Callable[[], tuple[np.ndarray, np.ndarray]],
                    items: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``compute()``'s features, kept in ``cache`` for the next run on the same crops, network and view.

    The file is named by a digest of ``key`` and of each item's path, label, size and modification time.
    """
    if cache is None:
        return compute()
    stats = []
    for path, label in items:
        st = os.stat(path)
        stats.append([str(path), label, st.st_size, st.st_mtime_ns])
    digest = hashlib.sha256(json.dumps([key, stats], sort_keys=True).encode()).hexdigest()[:24]
    file = cache / f"features-{digest}.npz"
    if file.is_file():
        try:
            with np.load(file) as d:
                LOGGER.info("features read from %s", file)
                return d["x"], d["y"]
        except (OSError, ValueError, KeyError) as exc:
            LOGGER.warning("%s: unreadable (%s); computing the features again", file, exc)
    x, y = compute()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".partial.npz")
    np.savez(tmp, x=x, y=y)
    os.replace(tmp, file)
    return x, y


def fit_head(x: np.ndarray, y: np.ndarray, num_classes: int, *, loss: HierarchicalLoss, l2: float = 1e-3,
             max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear layer ``x @ W.T + b`` minimising ``loss`` plus ``l2 * |W|^2`` by full-batch L-BFGS.

    The features are standardised for the fit and the scaling folded back into ``W`` and ``b``, so the layer
    takes the raw features. Returns ``(W, b)`` (``num_classes x D``, ``num_classes``).
    """
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    mean, std = xt.mean(0), xt.std(0).clamp_min(1e-6)
    z = (xt - mean) / std
    w = torch.zeros(num_classes, z.shape[1], requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss(z @ w.T + b, yt) + l2 * (w * w).sum()
        value.backward()
        return value

    opt.step(closure)
    with torch.no_grad():
        w_raw = w / std
        b_raw = b - (w_raw * mean).sum(1)
    return w_raw.detach(), b_raw.detach()


def set_head(model: torch.nn.Module, arch: str, w: torch.Tensor, b: torch.Tensor) -> None:
    """Put a fitted ``(W, b)`` into the network's last layer."""
    head = head_of(model, arch)
    if not isinstance(head, torch.nn.Linear):
        raise TypeError(f"{arch}: the last layer is {type(head).__name__}, not a linear layer")
    with torch.no_grad():
        head.weight.copy_(w.to(head.weight))
        head.bias.copy_(b.to(head.bias))


def view_transforms(base_eval: A.Compose, augmented: A.Compose, views: int) -> list[A.Compose]:
    """The evaluation crop, its mirror image, then ``views - 2`` augmented copies (``views`` >= 1)."""
    if views < 1:
        raise ValueError(f"--views {views}: at least 1 (the evaluation crop)")
    steps = list(base_eval.transforms)
    mirror = A.Compose([*steps[:-2], A.HorizontalFlip(p=1.0), *steps[-2:]])
    return [base_eval, mirror, *([augmented] * (views - 2))][:views]


def accuracy(w: torch.Tensor, b: torch.Tensor, x: np.ndarray, y: np.ndarray) -> float | None:
    """Share of ``x`` whose highest score under ``(W, b)`` is its label."""
    if not len(y):
        return None
    pred = (torch.from_numpy(x).float() @ w.T + b).argmax(1).numpy()
    return float((pred == y).mean())


def stack_views(per_view: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """All views' features and labels, one after the other."""
    return np.concatenate([f for f, _ in per_view]), np.concatenate([lab for _, lab in per_view])
