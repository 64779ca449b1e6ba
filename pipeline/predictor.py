"""The pipeline: photo -> detector -> every box above its score threshold -> padded crop -> classifier -> decision.

Built from the two release files alone. ``process_batch`` takes several photos: the detector runs on
them as one batch and all their crops are classified as one batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from annotations.crops import crop_box
from annotations.runtime import pick_device
from classifier.predict import Classifier
from detector.predict import Detector
from pipeline.decision import decide


def detector_input(image: np.ndarray, min_size: int, max_size: int) -> tuple[torch.Tensor, float]:
    """A photo as the detector's input tensor, already shrunk as the detector would shrink it.

    Done here so that DataLoader workers can do it while the models run: the same bilinear
    interpolation as torchvision's GeneralizedRCNNTransform, so the detections are those of the
    full photo. Returns the tensor and the scale that maps its boxes back to the photo.
    """
    t = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
    h, w = t.shape[1:]
    scale = min(min_size / min(h, w), max_size / max(h, w))
    if scale >= 1.0:
        return t, 1.0
    resized = F.interpolate(t[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                            align_corners=False)[0]
    return resized, resized.shape[2] / w


@dataclass
class Pipeline:
    """Detector and classifier with the settings that decide what is reported."""

    detector: Detector
    classifier: Classifier
    score_threshold: float
    threshold: float
    classify_whole_photo: bool = False
    proposals: int = 0
    min_score_threshold: float | None = None
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_files(cls, detector: str | os.PathLike, classifier: str | os.PathLike, *, device: str = "auto",
                   score_threshold: float | None = None, threshold: float | None = None,
                   classify_whole_photo: bool = False, proposals: int = 0,
                   min_score_threshold: float | None = None) -> Pipeline:
        """Load both release files; thresholds default to the ones the model files carry."""
        dev = pick_device(device)
        det = Detector.from_file(detector, dev)
        clf = Classifier.from_file(classifier, dev)
        pipe = cls(det, clf, det.score_threshold if score_threshold is None else score_threshold,
                   clf.threshold if threshold is None else threshold, classify_whole_photo, proposals,
                   min_score_threshold)
        pipe.configure()
        return pipe

    def configure(self) -> None:
        """Speed settings that leave every reported box unchanged.

        Only boxes at or above the score threshold are reported, so the detector drops the rest itself
        (down to ``min_score_threshold`` where a caller such as the web app lowers the score per call): the
        same boxes, less work. ``proposals`` (0: the model's 1000) caps the region proposals per photo;
        fewer is faster but not the same: at 300, crowded photos lose organisms (see BENCHMARKS.md).
        """
        rpn, heads = self.detector.model.rpn, self.detector.model.roi_heads
        if self.proposals:
            rpn._pre_nms_top_n["testing"] = max(self.proposals, 2 * self.proposals)
            rpn._post_nms_top_n["testing"] = self.proposals
        floor = self.score_threshold if self.min_score_threshold is None else self.min_score_threshold
        heads.score_thresh = max(min(floor, self.score_threshold), 0.0)
        self.settings = {"score_threshold": self.score_threshold, "threshold": self.threshold,
                         "classify_whole_photo": self.classify_whole_photo, "proposals": self.proposals,
                         "crop_padding": self.classifier.preprocessing.crop_padding,
                         "detector_min_size": self.detector.info["min_size"],
                         "detector_max_size": self.detector.info["max_size"]}

    @property
    def model_version(self) -> str:
        """Both models' versions, stamped on every record."""
        return f"{self.detector.info['model_version']}+{self.classifier.info['model_version']}"

    def detector_input(self, image: np.ndarray) -> tuple[torch.Tensor, float]:
        """The photo resized as the detector would resize it (see :func:`detector_input`)."""
        return detector_input(image, self.detector.info["min_size"], self.detector.info["max_size"])

    def process_batch(self, images: list[np.ndarray], inputs: list[tuple[torch.Tensor, float]] | None = None,
                      score_threshold: float | None = None, threshold: float | None = None) -> list[list[dict]]:
        """Detections with decisions for several photos: one detector batch, one classifier batch.

        Args:
            images: RGB photos at full resolution (crops are cut from these).
            inputs: their :meth:`detector_input`, when a loader already made them.
            score_threshold: override of the detector score threshold for this call.
            threshold: override of the classifier threshold for this call.
        """
        if not images:
            return []
        thr = self.threshold if threshold is None else threshold
        score = self.score_threshold if score_threshold is None else score_threshold
        if score < self.detector.model.roi_heads.score_thresh:
            raise ValueError(f"score threshold {score} is below {self.detector.model.roi_heads.score_thresh}, "
                             "the lowest this pipeline was configured for (min_score_threshold)")
        inputs = inputs or [self.detector_input(im) for im in images]
        dets = self.detector.batch_predict_tensors([t for t, _ in inputs], score)
        crops, owners = [], []
        for i, (image, det, (_, scale)) in enumerate(zip(images, dets, inputs)):
            det["boxes"] = det["boxes"] / scale
            det["source"] = "detector"
            if not len(det["boxes"]) and self.classify_whole_photo:
                h, w = image.shape[:2]
                det.update(boxes=np.array([[0, 0, w, h]], np.float32), scores=np.array([np.nan]), labels=[None],
                           source="whole_photo")
            for box in det["boxes"]:
                crops.append(crop_box(image, box, self.classifier.preprocessing.crop_padding))
                owners.append(i)
        probs = self.classifier.batch_predict(crops)
        results: list[list[dict]] = [[] for _ in images]
        k = 0
        for i, det in enumerate(dets):
            h, w = images[i].shape[:2]
            for box, score, label in zip(det["boxes"], det["scores"], det["labels"]):
                x, y, bw, bh = (float(v) for v in box)
                x, y = max(0.0, x), max(0.0, y)
                decision = decide(probabilities=probs[k], class_names=self.classifier.class_names, threshold=thr,
                                  class_thresholds=self.classifier.info.get("class_thresholds"))
                box_xywh = [round(x, 1), round(y, 1), round(min(bw, w - x), 1), round(min(bh, h - y), 1)]
                results[i].append({"box": box_xywh,
                                   "detector_score": None if np.isnan(score) else round(float(score), 4),
                                   "detector_label": label, "source": det["source"], **decision})
                k += 1
        return results

    def process(self, image: np.ndarray, **overrides: float | None) -> list[dict]:
        """Detections with decisions for one photo."""
        return self.process_batch([image], **overrides)[0]
