"""Inference with a detector release file: the network is rebuilt from the file alone."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchvision.models.detection.faster_rcnn import FasterRCNN

from core.defaults import SUPPRESS_CONTAINMENT, SUPPRESS_IOU
from core.modelfile import ModelFileError, load_model_file, load_weights
from core.runtime import pick_device
from detector.models import build_detector
from detector.suppress import suppress


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``HxWx3`` uint8 RGB to a ``3xHxW`` float tensor in 0..1 (the detector normalizes inside)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)


@dataclass
class Detector:
    """A loaded detector: ``batch_predict`` photos into boxes (x, y, width, height in pixels)."""

    model: FasterRCNN
    class_names: list[str]
    score_threshold: float
    info: dict[str, Any]
    device: torch.device
    score_floor: float = 0.0
    suppression: dict[str, float] = field(default_factory=lambda: {"iou": SUPPRESS_IOU,
                                                                    "containment": SUPPRESS_CONTAINMENT})

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", *, proposals: int = 0,
                  score_floor: float = 0.0, suppress_iou: float | None = None,
                  suppress_containment: float | None = None) -> Detector:
        """Load a release file (``weights_only=True``).

        Args:
            path: the detector's release file.
            device: ``auto``, ``cpu``, ``cuda``, ``mps`` or a torch device.
            proposals: region proposals kept per photo (0: the model's 1000); fewer is faster but
                crowded photos lose organisms.
            score_floor: boxes scoring below this are dropped inside the model (less work); no call can
                ask for boxes below it.
            suppress_iou: class-agnostic suppression by IoU (default: the model file's, else 0.5).
            suppress_containment: suppression of boxes mostly inside a better one (default: the model
                file's, else 0.7).
        """
        return cls.from_loaded(load_model_file(path, "detector"), device, proposals=proposals,
                               score_floor=score_floor, suppress_iou=suppress_iou,
                               suppress_containment=suppress_containment)

    @classmethod
    def from_loaded(cls, mf: dict[str, Any], device: str | torch.device = "cpu", *, proposals: int = 0,
                    score_floor: float = 0.0, suppress_iou: float | None = None,
                    suppress_containment: float | None = None) -> Detector:
        """Build from a release file already read with :func:`core.modelfile.load_model_file`."""
        dev = pick_device(device) if isinstance(device, str) else device
        try:
            model = build_detector(mf["architecture"], len(mf["class_names"]), "none", min_size=int(mf["min_size"]),
                                   max_size=int(mf["max_size"]), mean=tuple(mf["mean"]), std=tuple(mf["std"]),
                                   head_size=mf.get("head_size", 1024), proposals=proposals,
                                   box_score_thresh=score_floor, anchor_sizes=mf.get("anchor_sizes"))
            score = float(mf["score_threshold"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{mf.get('path', 'model file')}: detector settings missing or wrong "
                                 f"({exc.__class__.__name__}: {exc})") from exc
        load_weights(model, mf)
        model.eval().to(dev)
        info = {k: v for k, v in mf.items() if k != "state_dict"}
        stored = mf.get("suppression") or {}
        suppression = {"iou": float(suppress_iou if suppress_iou is not None else stored.get("iou", SUPPRESS_IOU)),
                       "containment": float(suppress_containment if suppress_containment is not None
                                            else stored.get("containment", SUPPRESS_CONTAINMENT))}
        return cls(model, list(mf["class_names"]), score, info, dev, score_floor, suppression)

    @torch.inference_mode()
    def batch_predict_tensors(self, images: list[torch.Tensor], score_threshold: float | None = None) -> list[dict]:
        """Detections for ``3xHxW`` tensors: ``boxes`` (N x 4 xywh), ``scores``, ``labels`` (class names)."""
        thr = self.score_threshold if score_threshold is None else score_threshold
        if thr < self.score_floor:
            raise ValueError(f"score threshold {thr} is below {self.score_floor}, the lowest this detector was "
                             "loaded for (score_floor)")
        if not images:
            return []
        results = []
        for boxes, scores, labels in self.raw_outputs(images):
            above = np.flatnonzero(scores >= thr)
            keep = above[suppress(boxes[above], scores[above], **self.suppression)]
            b = boxes[keep]
            xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1) if len(b) else np.zeros((0, 4))
            results.append({"boxes": xywh.astype(np.float32), "scores": scores[keep],
                            "labels": [self.class_names[i - 1] for i in labels[keep].tolist()]})
        return results

    def raw_outputs(self, images: list[torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The network's own output per photo: boxes (N x 4 corners), scores, label indices (from 1).

        The one place the network runs; another engine (ONNX Runtime) replaces only this.
        """
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            outputs = self.model([im.to(self.device, non_blocking=True) for im in images])
        return [(out["boxes"].float().cpu().numpy(), out["scores"].float().cpu().numpy(), out["labels"].cpu().numpy())
                for out in outputs]

    def batch_predict(self, images: list[np.ndarray], score_threshold: float | None = None) -> list[dict]:
        """Detections for RGB arrays."""
        return self.batch_predict_tensors([to_tensor(im) for im in images], score_threshold)

    def predict(self, image: np.ndarray, score_threshold: float | None = None) -> dict:
        """Detections for one RGB array."""
        return self.batch_predict([image], score_threshold)[0]
