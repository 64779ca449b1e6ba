"""One organism, one box: class-agnostic suppression of boxes that overlap, or sit mostly inside, a better box.

torchvision's Faster R-CNN suppresses overlaps within each class only, by IoU. On photos unlike its training
photos a detector also boxes parts of an insect (a wing, the abdomen) or the insect together with what it
sits on: boxes nested inside a higher-scoring box, whose IoU with it is small. Intersection over the
*smaller* box catches those. Applied in one place, :class:`detector.predict.Detector`, so the pipeline,
``detector evaluate``, ``annotations propose`` and the app all see the same boxes.
"""

from __future__ import annotations

import numpy as np

from core.defaults import SUPPRESS_CONTAINMENT, SUPPRESS_IOU


def suppress(boxes_xyxy: np.ndarray, scores: np.ndarray, *, iou: float = SUPPRESS_IOU,
             containment: float = SUPPRESS_CONTAINMENT) -> np.ndarray:
    """Indices of the boxes kept, best score first.

    Greedy, whatever the boxes' classes: a box is dropped when a kept (higher-scoring) box overlaps it
    with IoU at least ``iou``, or covers at least ``containment`` of its own area. A setting of 1.0 or
    more turns that test off.

    Args:
        boxes_xyxy: ``N x 4`` corners ``x0, y0, x1, y1``.
        scores: ``N`` detector scores.
        iou: intersection over union at which the lower-scoring box goes.
        containment: intersection over the smaller box's area at which the lower-scoring box goes.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.array(kept)
            w = np.clip(np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0]), 0, None)
            h = np.clip(np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1]), 0, None)
            inter = w * h
            union = areas[k] + areas[i] - inter
            with np.errstate(divide="ignore", invalid="ignore"):
                overlap = np.where(union > 0, inter / union, 0.0)
                inside = np.where(np.minimum(areas[k], areas[i]) > 0, inter / np.minimum(areas[k], areas[i]), 0.0)
            if (overlap >= iou).any() or (inside >= containment).any():
                continue
        kept.append(int(i))
    return np.array(kept, dtype=np.int64)
