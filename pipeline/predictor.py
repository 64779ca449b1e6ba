"""The pipeline: photo -> detector -> every box above its score threshold -> padded crop -> classifier -> decision.

Built from the two release files alone. ``process_batch`` takes several photos: the detector runs on
them as one batch and all their crops are classified as one batch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from classifier.predict import Classifier
from core.crops import crop_box
from core.defaults import MAX_PIXELS
from core.io import ImageReadError, read_photo
from core.modelfile import load_model_file
from core.onnxrt import onnx_path
from core.runtime import one_blas_thread, pick_device
from detector.predict import Detector, PhotoTooNarrow, preprocess
from pipeline.decision import decide
from pipeline.records import SOURCE_DETECTOR, SOURCE_WHOLE_PHOTO, make_record
from pipeline.settings import EXPORTED_ENGINES, InferenceSettings


def load_photo(path: str | os.PathLike, name: str, min_size: int, max_size: int,
               max_pixels: int = MAX_PIXELS, decode_side: int = 0) -> dict:
    """A photo ready for :meth:`Pipeline.process_items`: ``{file, image, input, facts}``, or ``{file, failure}``.

    ``input`` is the detector's :func:`detector.predict.preprocess` of it; ``facts`` (sha256, upright size,
    EXIF time and GPS) come from the same bytes the models see (:func:`core.io.read_photo`). With
    ``decode_side`` a large JPEG is decoded at a reduced scale keeping that short side, and never less than the
    detector's input (``min_size`` and ``max_size``): ``image`` is then smaller than ``facts``' size says, and the
    records map their boxes back to the photo's own pixels. Never raises for a bad photo: a run of thousands
    goes on, and the failure becomes that photo's record.
    """
    try:
        short = max(decode_side, min_size, max_size) if decode_side else 0
        image, facts = read_photo(path, max_pixels=max_pixels, short_side=short)
        return {"file": name, "image": image, "input": preprocess(image, min_size, max_size), "facts": facts}
    except ImageReadError as exc:
        return {"file": name, "failure": exc.reason}
    except PhotoTooNarrow as exc:
        return {"file": name, "failure": str(exc)}
    except Exception as exc:  # a decoder bug must not stop a run of thousands of photos
        return {"file": name, "failure": f"could not decode ({exc.__class__.__name__}: {exc})"}


def photo_scale(item: dict) -> tuple[tuple[int, int], float]:
    """A loaded photo's own size (width, height) and how many of its pixels one decoded pixel stands for."""
    h, w = item["image"].shape[:2]
    facts = item.get("facts") or {}
    if not facts.get("width"):
        return (w, h), 1.0
    return (int(facts["width"]), int(facts["height"])), float(facts["width"]) / w


def _scaled_box(box: list[float], scale: float, size: tuple[int, int]) -> list[float]:
    x, y, bw, bh = (v * scale for v in box)
    return [round(x, 1), round(y, 1), round(min(bw, size[0] - x), 1), round(min(bh, size[1] - y), 1)]


@dataclass
class Pipeline:
    """Detector and classifier, built from their files with one :class:`InferenceSettings`."""

    detector: Detector
    classifier: Classifier
    settings: InferenceSettings

    def __post_init__(self) -> None:
        one_blas_thread()  # NumPy's small products between the networks must not hold the cores they need

    @classmethod
    def from_files(cls, detector: str | os.PathLike, classifier: str | os.PathLike,
                   settings: InferenceSettings | None = None) -> Pipeline:
        """Load both release files; thresholds the settings leave at ``None`` are the model files'.

        Only boxes at or above the score threshold are reported, so the detector drops the rest itself
        (down to ``min_score_threshold`` where a caller such as the web app lowers the score per call): the
        same boxes, less work. With engine ``onnx`` (``onnx-int8``) both networks run in ONNX Runtime from the
        ``.onnx`` (``.int8.onnx``) files ``taxolens export`` wrote beside the release files; with ``openvino``
        (``openvino-int8``) in OpenVINO from the ``.onnx`` (``.static-int8.onnx``) files.
        """
        s = settings or InferenceSettings()
        det_file = load_model_file(detector, "detector")
        if s.threads and s.engine == "torch":  # the exported engines take theirs per session
            torch.set_num_threads(s.threads)
        if s.engine == "torch":
            dev = pick_device(s.device)
            clf = Classifier.from_file(classifier, dev)
            score = float(det_file["score_threshold"]) if s.score_threshold is None else s.score_threshold
            floor = max(0.0, score if s.min_score_threshold is None else min(score, s.min_score_threshold))
            det = Detector.from_loaded(det_file, dev, proposals=s.proposals, score_floor=floor,
                                       suppress_iou=s.suppress_iou, suppress_containment=s.suppress_containment)
        else:
            from classifier.onnx import OnnxClassifier
            from detector.onnx import OnnxDetector

            runtime, variant = EXPORTED_ENGINES[s.engine]
            clf = OnnxClassifier.from_onnx(classifier, onnx_path(classifier, variant), threads=s.threads,
                                           runtime=runtime)
            det = OnnxDetector.from_onnx(det_file, onnx_path(detector, variant, s.proposals), threads=s.threads,
                                         runtime=runtime,
                                         proposals=s.proposals, suppress_iou=s.suppress_iou,
                                         suppress_containment=s.suppress_containment)
        return cls(det, clf, s)

    @property
    def score_threshold(self) -> float:
        """The detector score a box needs: the settings', else the detector file's."""
        s = self.settings.score_threshold
        return self.detector.score_threshold if s is None else s

    @property
    def threshold(self) -> float:
        """The classifier probability that counts as an answer: the settings', else the classifier file's."""
        s = self.settings.threshold
        return self.classifier.threshold if s is None else s

    def resolved(self) -> dict:
        """What the models made of the settings: every threshold and size in force (``results.json``)."""
        unknown = self.classifier.info.get("unknown") or {}
        return {"score_threshold": self.score_threshold, "threshold": self.threshold,
                "class_thresholds": self.classifier.info.get("class_thresholds") or {},
                "rollup": self.decision_settings["rollup"], "unknown_method": unknown.get("method"),
                "unknown_threshold": unknown.get("threshold"), "temperature": self.classifier.temperature,
                "suppression": self.detector.suppression, "crop_padding": self.classifier.preprocessing.crop_padding,
                "detector_min_size": self.detector.info["min_size"],
                "detector_max_size": self.detector.info["max_size"]}

    @property
    def decision_settings(self) -> dict:
        """The decision's keyword arguments from the model file, with this pipeline's rollup setting."""
        settings = self.classifier.decision_settings
        return {**settings, "rollup": self.settings.rollup and settings["rollup"]}

    @property
    def model_version(self) -> str:
        """Both models' versions, stamped on every record."""
        return f"{self.detector.info['model_version']}+{self.classifier.info['model_version']}"

    def load(self, path: str | os.PathLike, name: str | None = None) -> dict:
        """:func:`load_photo` with this pipeline's detector sizes and pixel limit."""
        return load_photo(path, name or Path(path).name, self.detector.info["min_size"],
                          self.detector.info["max_size"], self.settings.max_pixels, self.settings.decode_side)

    def process_batch(self, images: list[np.ndarray], inputs: list[tuple[torch.Tensor, float]] | None = None,
                      score_threshold: float | None = None, threshold: float | None = None,
                      keep_probabilities: bool = False) -> list[list[dict]]:
        """Detections with decisions for several photos: one detector batch, one classifier batch.

        Args:
            images: RGB photos at full resolution (crops are cut from these).
            inputs: their detector :meth:`~detector.predict.Detector.preprocess`, when a loader made them.
            score_threshold: override of the detector score threshold for this call.
            threshold: override of the classifier threshold for this call.
            keep_probabilities: add every class's calibrated probability to each detection
                (``probabilities``), for measuring other thresholds.
        """
        if not images:
            return []
        thr = self.threshold if threshold is None else threshold
        score_thr = self.score_threshold if score_threshold is None else score_threshold
        inputs = inputs or [self.detector.preprocess(im) for im in images]
        dets = self.detector.batch_predict_tensors([t for t, _ in inputs], score_thr)
        crops, sources = [], []
        # taxa judged from the whole photo (species.yaml's framing: a tree, a branch, flowers)
        whole_taxa = set(self.classifier.info.get("whole_photo_classes") or [])
        for image, det, (_, scale) in zip(images, dets, inputs):
            det["boxes"] = det["boxes"] / scale
            if not (np.isfinite(det["boxes"]).all() and np.isfinite(det["scores"]).all()):
                raise ValueError(f"{self.detector.info.get('path', 'detector')}: the detector's output is not "
                                 "finite (NaN or infinite boxes or scores)")
            source = SOURCE_DETECTOR
            if not len(det["boxes"]) and self.settings.classify_whole_photo:
                h, w = image.shape[:2]
                det.update(boxes=np.array([[0, 0, w, h]], np.float32), scores=np.array([np.nan]), labels=[None])
                source = SOURCE_WHOLE_PHOTO
            sources.append(source)
            crops += [crop_box(image, box, self.classifier.preprocessing.crop_padding) for box in det["boxes"]]
            if whole_taxa and source == SOURCE_DETECTOR:  # the whole photo too, through the same crop function
                h, w = image.shape[:2]
                crops.append(crop_box(image, [0.0, 0.0, float(w), float(h)],
                                      self.classifier.preprocessing.crop_padding))
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
                members = None if analysis.member_probabilities is None else analysis.member_probabilities[k]
                decision = decide(probabilities=analysis.probabilities[k], threshold=thr, unknown_score=unknown,
                                  member_probabilities=members, **settings)
                box_xywh = [round(x, 1), round(y, 1), round(min(bw, w - x), 1), round(min(bh, h - y), 1)]
                results[i].append({"box": box_xywh,
                                   "detector_score": None if np.isnan(box_score) else round(float(box_score), 4),
                                   "detector_label": label, "source": sources[i], **decision})
                if keep_probabilities:
                    results[i][-1]["probabilities"] = [float(v) for v in analysis.probabilities[k]]
                    if members is not None:
                        results[i][-1]["member_probabilities"] = members.tolist()
                k += 1
            if whole_taxa and sources[i] == SOURCE_DETECTOR:
                unknown = None if analysis.unknown_scores is None else float(analysis.unknown_scores[k])
                members = None if analysis.member_probabilities is None else analysis.member_probabilities[k]
                decision = decide(probabilities=analysis.probabilities[k], threshold=thr, unknown_score=unknown,
                                  member_probabilities=members, **settings)
                if decision["accepted"] and decision["taxon"] in whole_taxa:
                    # the photo shows that plant: its answer is the whole photo's, and boxes named as it were
                    # parts of it (a branch, a flower head), not organisms of their own
                    results[i] = [d for d in results[i] if d["taxon"] not in whole_taxa]
                    results[i].append({"box": [0.0, 0.0, float(w), float(h)], "detector_score": None,
                                       "detector_label": None, "source": SOURCE_WHOLE_PHOTO, **decision})
                    if keep_probabilities:
                        results[i][-1]["probabilities"] = [float(v) for v in analysis.probabilities[k]]
                        if members is not None:
                            results[i][-1]["member_probabilities"] = members.tolist()
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
                dets = by_file[it["file"]]
                assert isinstance(dets, list)
                size, scale = photo_scale(it)
                if scale != 1.0:  # decoded at a reduced scale: boxes in the photo's own pixels
                    dets = [{**d, "box": _scaled_box(d["box"], scale, size)} for d in dets]
                records.append(make_record(it["file"], size, dets, self.model_version, seconds=per_photo,
                                           sha256=it["facts"]["sha256"] if "facts" in it else None))
        return records

    def process_file(self, path: str | os.PathLike, name: str | None = None, score_threshold: float | None = None,
                     threshold: float | None = None) -> tuple[dict, np.ndarray | None]:
        """One photo file to its record (a failure record for a bad file), and the decoded photo if any."""
        item = self.load(path, name)
        return self.process_items([item], score_threshold, threshold)[0], item.get("image")
