"""Inference with a detector release file: the network is rebuilt from the file alone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.models.detection.faster_rcnn import FasterRCNN

from core.modelfile import load_model_file
from core.runtime import pick_device
from detector.models import BOX_SCORE_FLOOR, build_detector


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
    score_floor: float = BOX_SCORE_FLOOR

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", *, proposals: int = 0,
                  score_floor: float = BOX_SCORE_FLOOR) -> Detector:
        """Load a release file (``weights_only=True``).

        Args:
            path: the detector's release file.
            device: ``auto``, ``cpu``, ``cuda``, ``mps`` or a torch device.
            proposals: region proposals kept per photo (0: the model's 1000); fewer is faster but
                crowded photos lose organisms.
            score_floor: boxes scoring below this are dropped inside the model (less work); no call can
                ask for boxes below it.
        """
        return cls.from_loaded(load_model_file(path, "detector"), device, proposals=proposals,
                               score_floor=score_floor)

    @classmethod
    def from_loaded(cls, mf: dict[str, Any], device: str | torch.device = "cpu", *, proposals: int = 0,
                    score_floor: float = BOX_SCORE_FLOOR) -> Detector:
        """Build from a release file already read with :func:`core.modelfile.load_model_file`."""
        dev = pick_device(device) if isinstance(device, str) else device
        model = build_detector(mf["architecture"], len(mf["class_names"]), "none", min_size=mf["min_size"],
                               max_size=mf["max_size"], mean=tuple(mf["mean"]), std=tuple(mf["std"]),
                               head_size=mf.get("head_size", 1024), proposals=proposals,
                               box_score_thresh=score_floor)
        model.load_state_dict(mf["state_dict"])
        model.eval().to(dev)
        info = {k: v for k, v in mf.items() if k != "state_dict"}
        return cls(model, list(mf["class_names"]), float(mf["score_threshold"]), info, dev, score_floor)

    @torch.inference_mode()
    def batch_predict_tensors(self, images: list[torch.Tensor], score_threshold: float | None = None) -> list[dict]:
        """Detections for ``3xHxW`` tensors: ``boxes`` (N x 4 xywh), ``scores``, ``labels`` (class names)."""
        thr = self.score_threshold if score_threshold is None else score_threshold
        if thr < self.score_floor and self.score_floor > BOX_SCORE_FLOOR:
            raise ValueError(f"score threshold {thr} is below {self.score_floor}, the lowest this detector was "
                             "loaded for (score_floor)")
        if not images:
            return []
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            outputs = self.model([im.to(self.device, non_blocking=True) for im in images])
        results = []
        for out in outputs:
            keep = out["scores"] >= thr
            b = out["boxes"][keep].float().cpu().numpy()
            xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1) if len(b) else np.zeros((0, 4))
            results.append({"boxes": xywh.astype(np.float32), "scores": out["scores"][keep].float().cpu().numpy(),
                            "labels": [self.class_names[i - 1] for i in out["labels"][keep].cpu().tolist()]})
        return results

    def batch_predict(self, images: list[np.ndarray], score_threshold: float | None = None) -> list[dict]:
        """Detections for RGB arrays."""
        return self.batch_predict_tensors([to_tensor(im) for im in images], score_threshold)

    def predict(self, image: np.ndarray, score_threshold: float | None = None) -> dict:
        """Detections for one RGB array."""
        return self.batch_predict([image], score_threshold)[0]
