"""The pipeline: photo -> detector -> every box above its score threshold -> padded crop -> classifier -> decision.

Built from the two release files alone. ``process_batch`` takes several photos: the detector runs on
them as one batch and all their crops are classified as one batch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from classifier.predict import Classifier
from core.crops import crop_box
from core.defaults import MAX_PIXELS
from core.io import ImageReadError, read_image
from core.modelfile import load_model_file
from core.onnxrt import onnx_path
from core.runtime import pick_device
from detector.predict import Detector
from pipeline.decision import decide
from pipeline.records import SOURCE_DETECTOR, SOURCE_WHOLE_PHOTO, make_record

#: how the networks run: PyTorch, or ONNX Runtime on the exported files (float, or dynamic int8)
ENGINES = ("torch", "onnx", "onnx-int8")
#: shortest side, in pixels, a photo may have once shrunk to the detector's input (a 20000x20 strip has none)
MIN_DETECTOR_SIDE = 8


class PhotoTooNarrow(ValueError):
    """A photo the detector cannot look at: shrunk to its input size, it would be a line of pixels."""


def detector_input(image: np.ndarray, min_size: int, max_size: int) -> tuple[torch.Tensor, float]:
    """A photo as the detector's input tensor, already shrunk as the detector would shrink it.

    Done here so that DataLoader workers can do it while the models run: the same bilinear
    interpolation as torchvision's GeneralizedRCNNTransform, so the detections are those of the
    full photo. Returns the tensor and the scale that maps its boxes back to the photo.

    Raises:
        PhotoTooNarrow: the photo's short side would shrink below :data:`MIN_DETECTOR_SIDE` pixels.
    """
    h, w = image.shape[:2]
    scale = min(min_size / min(h, w), max_size / max(h, w))
    if min(h, w) * min(scale, 1.0) < MIN_DETECTOR_SIDE:
        shown = min(scale, 1.0)
        raise PhotoTooNarrow(f"photo too narrow: {w}x{h} px would be {w * shown:.0f}x{h * shown:.0f} px at the "
                             f"detector's input (its short side must keep {MIN_DETECTOR_SIDE} px)")
    t = torch.from_numpy(image).permute(2, 0, 1).float().div_(255)
    if scale >= 1.0:
        return t, 1.0
    resized = F.interpolate(t[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
                            align_corners=False)[0]
    return resized, resized.shape[2] / w


def load_photo(path: str | os.PathLike, name: str, min_size: int, max_size: int,
               max_pixels: int = MAX_PIXELS) -> dict:
    """A photo ready for :meth:`Pipeline.process_items`: ``{file, image, input}``, or ``{file, failure}``.

    Never raises for a bad photo: a run of thousands goes on, and the failure becomes that photo's record.
    """
    try:
        image = read_image(path, max_pixels=max_pixels)
        return {"file": name, "image": image, "input": detector_input(image, min_size, max_size)}
    except ImageReadError as exc:
        return {"file": name, "failure": exc.reason}
    except PhotoTooNarrow as exc:
        return {"file": name, "failure": str(exc)}
    except Exception as exc:  # a decoder bug must not stop a run of thousands of photos
        return {"file": name, "failure": f"could not decode ({exc.__class__.__name__}: {exc})"}


@dataclass
class Pipeline:
    """Detector and classifier with the settings that decide what is reported."""

    detector: Detector
    classifier: Classifier
    score_threshold: float
    threshold: float
    classify_whole_photo: bool = False
    proposals: int = 0
    settings: dict = field(default_factory=dict)
    rollup: bool = True
    #: the arguments of :meth:`from_files` that built it: another process (a Ray actor) builds the same
    origin: dict = field(default_factory=dict)

    @classmethod
    def from_files(cls, detector: str | os.PathLike, classifier: str | os.PathLike, *, device: str = "auto",
                   score_threshold: float | None = None, threshold: float | None = None,
                   classify_whole_photo: bool = False, proposals: int = 0,
                   min_score_threshold: float | None = None, rollup: bool = True,
                   suppress_iou: float | None = None, suppress_containment: float | None = None,
                   engine: str = "torch", threads: int = 0) -> Pipeline:
        """Load both release files; thresholds default to the ones the model files carry.

        Only boxes at or above the score threshold are reported, so the detector drops the rest itself
        (down to ``min_score_threshold`` where a caller such as the web app lowers the score per call): the
        same boxes, less work. ``proposals`` (0: the model's 1000) caps the region proposals per photo;
        fewer is faster but not the same: at 300, crowded photos lose organisms (see BENCHMARKS.md).
        ``rollup`` off never answers with a higher taxon; the suppression settings override the detector
        file's. ``engine`` ``onnx`` (``onnx-int8``) runs both networks in ONNX Runtime from the ``.onnx``
        (``.int8.onnx``) files ``taxolens export`` wrote beside the release files, with ``threads`` threads.
        """
        if engine not in ENGINES:
            raise ValueError(f"--engine {engine}: choose one of {', '.join(ENGINES)}")
        det_file = load_model_file(detector, "detector")
        score = float(det_file["score_threshold"]) if score_threshold is None else score_threshold
        if engine == "torch":
            dev = pick_device(device)
            clf = Classifier.from_file(classifier, dev)
            floor = max(0.0, score if min_score_threshold is None else min(score, min_score_threshold))
            det = Detector.from_loaded(det_file, dev, proposals=proposals, score_floor=floor,
                                       suppress_iou=suppress_iou, suppress_containment=suppress_containment)
        else:
            from classifier.onnx import OnnxClassifier
            from detector.onnx import OnnxDetector

            if proposals:
                raise ValueError("--proposals: the ONNX detector keeps the model's own number of proposals")
            variant = "int8" if engine == "onnx-int8" else ""
            clf = OnnxClassifier.from_onnx(classifier, onnx_path(classifier, variant), threads=threads)
            det = OnnxDetector.from_onnx(det_file, onnx_path(detector, variant), threads=threads,
                                         suppress_iou=suppress_iou, suppress_containment=suppress_containment)
        thr = clf.threshold if threshold is None else threshold
        unknown = clf.info.get("unknown") or {}
        return cls(det, clf, score, thr, classify_whole_photo, proposals,
                   {"score_threshold": score, "threshold": thr, "class_thresholds": clf.info.get("class_thresholds")
                    or {}, "rollup": rollup, "unknown_method": unknown.get("method"),
                    "unknown_threshold": unknown.get("threshold"), "temperature": clf.temperature,
                    "suppression": det.suppression, "classify_whole_photo": classify_whole_photo,
                    "proposals": proposals, "crop_padding": clf.preprocessing.crop_padding,
                    "detector_min_size": det.info["min_size"], "detector_max_size": det.info["max_size"],
                    "engine": engine},
                   rollup,
                   {"detector": str(detector), "classifier": str(classifier), "device": device,
                    "score_threshold": score_threshold, "threshold": threshold,
                    "classify_whole_photo": classify_whole_photo, "proposals": proposals,
                    "min_score_threshold": min_score_threshold, "rollup": rollup, "suppress_iou": suppress_iou,
                    "suppress_containment": suppress_containment, "engine": engine, "threads": threads})

    @property
    def decision_settings(self) -> dict:
        """The decision's keyword arguments from the model file, with this pipeline's rollup setting."""
        settings = self.classifier.decision_settings
        return {**settings, "rollup": self.rollup and settings["rollup"]}

    @property
    def model_version(self) -> str:
        """Both models' versions, stamped on every record."""
        return f"{self.detector.info['model_version']}+{self.classifier.info['model_version']}"

    def detector_input(self, image: np.ndarray) -> tuple[torch.Tensor, float]:
        """The photo resized as the detector would resize it (see :func:`detector_input`)."""
        return detector_input(image, self.detector.info["min_size"], self.detector.info["max_size"])

    def load(self, path: str | os.PathLike, name: str | None = None, max_pixels: int = MAX_PIXELS) -> dict:
        """:func:`load_photo` with this pipeline's detector sizes."""
        return load_photo(path, name or Path(path).name, self.detector.info["min_size"],
                          self.detector.info["max_size"], max_pixels)

    def process_batch(self, images: list[np.ndarray], inputs: list[tuple[torch.Tensor, float]] | None = None,
                      score_threshold: float | None = None, threshold: float | None = None,
                      keep_probabilities: bool = False) -> list[list[dict]]:
        """Detections with decisions for several photos: one detector batch, one classifier batch.

        Args:
            images: RGB photos at full resolution (crops are cut from these).
            inputs: their :meth:`detector_input`, when a loader already made them.
            score_threshold: override of the detector score threshold for this call.
            threshold: override of the classifier threshold for this call.
            keep_probabilities: add every class's calibrated probability to each detection
                (``probabilities``), for measuring other thresholds.
        """
        if not images:
            return []
        thr = self.threshold if threshold is None else threshold
        score_thr = self.score_threshold if score_threshold is None else score_threshold
        inputs = inputs or [self.detector_input(im) for im in images]
        dets = self.detector.batch_predict_tensors([t for t, _ in inputs], score_thr)
        crops, sources = [], []
        for image, det, (_, scale) in zip(images, dets, inputs):
            det["boxes"] = det["boxes"] / scale
            if not (np.isfinite(det["boxes"]).all() and np.isfinite(det["scores"]).all()):
                raise ValueError(f"{self.detector.info.get('path', 'detector')}: the detector's output is not "
                                 "finite (NaN or infinite boxes or scores)")
            source = SOURCE_DETECTOR
            if not len(det["boxes"]) and self.classify_whole_photo:
                h, w = image.shape[:2]
                det.update(boxes=np.array([[0, 0, w, h]], np.float32), scores=np.array([np.nan]), labels=[None])
                source = SOURCE_WHOLE_PHOTO
            sources.append(source)
            crops += [crop_box(image, box, self.classifier.preprocessing.crop_padding) for box in det["boxes"]]
        analysis = self.classifier.analyse(crops)
        settings = self.decision_settings
        results: list[list[dict]] = [[] for _ in images]
        k = 0
        for i, det in enumerate(dets):
            h, w = images[i].shape[:2]
            for box, box_score, label in zip(det["boxes"], det["scores"], det["labels"]):
                x, y, bw, bh = (float(v) for v in box)
                x, y = max(0.0, x), max(0.0, y)
                unknown = None if analysis.unknown_scores is None else float(analysis.unknown_scores[k])
                decision = decide(probabilities=analysis.probabilities[k], threshold=thr, unknown_score=unknown,
                                  **settings)
                box_xywh = [round(x, 1), round(y, 1), round(min(bw, w - x), 1), round(min(bh, h - y), 1)]
                results[i].append({"box": box_xywh,
                                   "detector_score": None if np.isnan(box_score) else round(float(box_score), 4),
                                   "detector_label": label, "source": sources[i], **decision})
                if keep_probabilities:
                    results[i][-1]["probabilities"] = [float(v) for v in analysis.probabilities[k]]
                k += 1
        return results

    def process(self, image: np.ndarray, score_threshold: float | None = None,
                threshold: float | None = None) -> list[dict]:
        """Detections with decisions for one photo."""
        return self.process_batch([image], None, score_threshold, threshold)[0]

    def process_items(self, items: list[dict], score_threshold: float | None = None,
                      threshold: float | None = None, keep_probabilities: bool = False) -> list[dict]:
        """Records for photos from :func:`load_photo` (failures included), in order: the one record maker."""
        t0 = time.perf_counter()
        ok = [it for it in items if "failure" not in it]
        args = (score_threshold, threshold, keep_probabilities)
        by_file: dict[str, list[dict] | str] = {}
        try:
            found = self.process_batch([it["image"] for it in ok], [it["input"] for it in ok], *args) if ok else []
            by_file = {it["file"]: dets for it, dets in zip(ok, found)}
        except Exception:  # one photo must not cost the others their answers: each on its own, failures kept
            for it in ok:
                try:
                    by_file[it["file"]] = self.process_batch([it["image"]], [it["input"]], *args)[0]
                except Exception as exc:
                    by_file[it["file"]] = f"could not process ({exc.__class__.__name__}: {exc})"
        per_photo = (time.perf_counter() - t0) / max(len(ok), 1)
        records = []
        for it in items:
            found_or_failure = by_file.get(it["file"])
            failure = it.get("failure") or (found_or_failure if isinstance(found_or_failure, str) else None)
            if failure is not None:
                records.append(make_record(it["file"], None, None, self.model_version, failure=failure))
            else:
                h, w = it["image"].shape[:2]
                dets = by_file[it["file"]]
                assert isinstance(dets, list)
                records.append(make_record(it["file"], (w, h), dets, self.model_version, seconds=per_photo))
        return records

    def process_file(self, path: str | os.PathLike, name: str | None = None, max_pixels: int = MAX_PIXELS,
                     score_threshold: float | None = None,
                     threshold: float | None = None) -> tuple[dict, np.ndarray | None]:
        """One photo file to its record (a failure record for a bad file), and the decoded photo if any."""
        item = self.load(path, name, max_pixels)
        return self.process_items([item], score_threshold, threshold)[0], item.get("image")
