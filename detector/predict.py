"""Inference with a detector release file: the network is rebuilt from the file alone."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection.faster_rcnn import FasterRCNN

from core.defaults import SUPPRESS_CONTAINMENT, SUPPRESS_IOU
from core.modelfile import ModelFileError, load_model_file, load_weights
from core.runtime import pick_device
from detector.models import build_detector
from detector.suppress import suppress

#: shortest side, in pixels, a photo may have once shrunk to the detector's input (a 20000x20 strip has none)
MIN_DETECTOR_SIDE = 8


class PhotoTooNarrow(ValueError):
    """A photo the detector cannot look at: shrunk to its input size, it would be a line of pixels."""


def preprocess(image: np.ndarray, min_size: int, max_size: int) -> tuple[torch.Tensor, float]:
    """A photo as the detector's input tensor, already shrunk as the detector would shrink it.

    The one way into the detector: folder runs (in DataLoader workers, while the models run), the app,
    ``detector evaluate``, training's evaluation, ``propose`` and the ONNX engine all shrink photos here,
    so the operating point is measured on the path runs take. The same bilinear interpolation as
    torchvision's GeneralizedRCNNTransform, so the detections are those of the full photo. Returns the
    tensor (``3xHxW``, 0..1; the detector normalizes inside) and the scale that maps its boxes back to
    the photo.

    Raises:
        PhotoTooNarrow: the photo's short side would shrink below :data:`MIN_DETECTOR_SIDE` pixels.
    """
    h, w = image.shape[:2]
    scale = min(min_size / min(h, w), max_size / max(h, w))
    if min(h, w) * min(scale, 1.0) < MIN_DETECTOR_SIDE:
        shown = min(scale, 1.0)
        raise PhotoTooNarrow(f"photo too narrow: {w}x{h} px would be {w * shown:.0f}x{h * shown:.0f} px at the "
                             f"detector's input (its short side must keep {MIN_DETECTOR_SIDE} px)")
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    if scale >= 1.0:
        return t, 1.0
    resized = F.interpolate(t[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                            align_corners=False)[0]
    return resized, resized.shape[2] / w


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
        """Detections for :meth:`preprocess`'d tensors: ``boxes`` (N x 4 xywh, input pixels), ``scores``, ``labels``."""
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

    @torch.inference_mode()
    def raw_outputs(self, images: list[torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The network's own output per photo: boxes (N x 4 corners), scores, label indices (from 1).

        The one place the network runs; another engine (ONNX Runtime, OpenVINO) replaces only this. On a CPU each
        photo goes through alone, as those engines take it: torchvision pads a batch to its largest photo, which
        costs a CPU more than it saves and makes a photo's boxes depend on the photos beside it in the batch.
        """
        if self.device.type == "cpu" and len(images) > 1:
            return [out for im in images for out in self.raw_outputs([im])]
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            outputs = self.model([im.to(self.device, non_blocking=True) for im in images])
        return [(out["boxes"].float().cpu().numpy(), out["scores"].float().cpu().numpy(), out["labels"].cpu().numpy())
                for out in outputs]

    def preprocess(self, image: np.ndarray) -> tuple[torch.Tensor, float]:
        """The photo shrunk as this detector's input, and the scale back (see :func:`preprocess`)."""
        return preprocess(image, int(self.info["min_size"]), int(self.info["max_size"]))

    def batch_predict(self, images: list[np.ndarray], score_threshold: float | None = None) -> list[dict]:
        """Detections for RGB arrays, boxes in the photos' pixels: :meth:`preprocess`, then the network."""
        inputs = [self.preprocess(im) for im in images]
        dets = self.batch_predict_tensors([t for t, _ in inputs], score_threshold)
        for det, (_, scale) in zip(dets, inputs):
            det["boxes"] = det["boxes"] / scale
        return dets

    def predict(self, image: np.ndarray, score_threshold: float | None = None) -> dict:
        """Detections for one RGB array."""
        return self.batch_predict([image], score_threshold)[0]
