"""Inference with a classifier release file: everything is rebuilt from the file alone.

Besides the network, the file carries what its numbers are worth (see :mod:`classifier.calibration`): the
temperature that calibrates its probabilities, per-class thresholds, the unknown score's method, reference
and threshold, background and outlier classes, and each class's lineage. :meth:`Classifier.analyse`
returns calibrated probabilities and unknown scores; :attr:`Classifier.decision_settings` is what the
decision needs besides them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import albumentations as A
import numpy as np
import torch

from classifier.calibration import softmax, unknown_scores
from classifier.data import build_transform
from classifier.models import (
    Preprocessing,
    average_views,
    combine_embeddings,
    heads_of,
    rebuild_classifier,
    split_members,
)
from core.defaults import THRESHOLD
from core.modelfile import ModelFileError, load_model_file, load_weights
from core.runtime import pick_device


def ensemble_size(mf: dict) -> int:
    """How many networks a release file holds: its ``ensemble``'s members (1: a single network)."""
    return len((mf.get("ensemble") or {}).get("members") or [None])


@dataclass
class Analysis:
    """The classifier's outputs for a batch of crops."""

    logits: np.ndarray
    embeddings: np.ndarray
    probabilities: np.ndarray  # calibrated
    unknown_scores: np.ndarray | None  # None when the model file has no unknown score
    #: an ensemble asking its members to agree: each member's calibrated probabilities, ``N x members x classes``
    member_probabilities: np.ndarray | None = None


@dataclass
class Classifier:
    """A loaded classifier: ``preprocess`` one crop, ``analyse`` or ``batch_predict`` many."""

    model: torch.nn.Module
    class_names: list[str]
    preprocessing: Preprocessing
    threshold: float
    info: dict[str, Any]
    device: torch.device
    transform: A.Compose = field(init=False)
    #: the unknown score's reference as float32 arrays, made on first use (:meth:`unknown_reference`)
    _reference: dict[str, Any] | None = field(init=False, default=None, repr=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Classifier:
        """Load a release file (``weights_only=True``) and rebuild the network and its preprocessing."""
        mf = load_model_file(path, "classifier")
        dev = device if isinstance(device, torch.device) else pick_device(device)
        try:
            model = rebuild_classifier(mf["architecture"], len(mf["class_names"]), ensemble_size(mf))
            preprocessing = Preprocessing.from_dict(mf["preprocessing"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{mf['path']}: classifier settings missing or wrong "
                                 f"({exc.__class__.__name__}: {exc})") from exc
        load_weights(model, mf)
        ens = mf.get("ensemble") or {}
        if ens.get("agreement") and len(ens.get("member_temperatures") or []) != ensemble_size(mf):
            raise ModelFileError(f"{mf['path']}: an ensemble asking its members to agree needs one calibration "
                                 f"temperature per member (ensemble.member_temperatures); make it again with "
                                 "taxolens classifier ensemble")
        model.eval().to(dev)
        if dev.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        info = {k: v for k, v in mf.items() if k != "state_dict"}
        return cls(model, list(mf["class_names"]), preprocessing,
                   float(mf.get("threshold", THRESHOLD)), info, dev)

    def __post_init__(self) -> None:
        self.transform = build_transform(self.preprocessing, train=False)
        self._embedding: list[torch.Tensor] = []
        arch = self.info.get("architecture")
        self._heads = heads_of(self.model, arch) if arch else []
        for head in self._heads:
            head.register_forward_hook(lambda _m, inputs, _o: self._embedding.append(inputs[0]))

    def last_embedding(self) -> torch.Tensor | None:
        """The embedding of the last forward pass (the members' combined, for an ensemble), or None."""
        if not self._heads or len(self._embedding) < len(self._heads):
            return None
        return combine_embeddings(self._embedding[-len(self._heads):])

    def unknown_reference(self) -> dict[str, Any]:
        """The unknown score's reference (centroids or a bank of training embeddings), its tensors as float32 arrays.

        Converted once per loaded classifier: the k-nearest-neighbour bank is stored in half precision, and
        converting it for every batch took longer than the classifier's own network (BENCHMARKS.md, issue 20).
        """
        if self._reference is None:
            raw = (self.info.get("unknown") or {}).get("reference") or {}
            self._reference = {k: v.detach().cpu().float().numpy() if isinstance(v, torch.Tensor) else v
                               for k, v in raw.items()}
        return self._reference

    @property
    def temperature(self) -> float:
        """The calibration temperature (1.0: uncalibrated)."""
        return float((self.info.get("calibration") or {}).get("temperature", 1.0))

    @property
    def member_temperatures(self) -> list[float] | None:
        """An ensemble whose names need its members' agreement: each member's calibration temperature; else None."""
        ens = self.info.get("ensemble") or {}
        if not ens.get("agreement"):
            return None
        return [float(t) for t in ens["member_temperatures"]]

    @property
    def organism_indices(self) -> list[int]:
        """Indices of the classes that are organisms (not background, not outliers)."""
        other = set(self.info.get("background_classes") or []) | set(self.info.get("outlier_classes") or [])
        return [i for i, n in enumerate(self.class_names) if n not in other]

    @property
    def decision_settings(self) -> dict:
        """The decision's keyword arguments that come from the model file (all but probabilities and scores)."""
        unknown = self.info.get("unknown") or {}
        return {"class_names": self.class_names, "class_thresholds": self.info.get("class_thresholds") or {},
                "lineages": self.info.get("taxonomy") or {}, "rollup": True,
                "background_classes": list(self.info.get("background_classes") or []),
                "outlier_classes": list(self.info.get("outlier_classes") or []),
                "unknown_threshold": unknown.get("threshold")}

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One RGB crop to the network's input tensor."""
        return self.transform(image=image)["image"]

    @torch.inference_mode()
    def outputs_tensor(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The network's logits and embeddings (``N x D``) for a preprocessed batch.

        Logits are ``N x classes``; an ensemble's hold each member's beside them (:class:`~classifier.models.Ensemble`).
        """
        if batch.shape[0] == 0:
            return np.zeros((0, len(self.class_names)), np.float32), np.zeros((0, 0), np.float32)
        x = batch.to(self.device, non_blocking=True)
        self._embedding.clear()
        if self.device.type == "cuda":
            x = x.to(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.float16):
                logits = self.model(x)
        else:
            logits = self.model(x)
        last = self.last_embedding()
        emb = last.float().cpu().numpy() if last is not None else np.zeros((len(x), 0))
        self._embedding.clear()
        out = logits.float().cpu().numpy()
        if not np.isfinite(out).all():
            raise ValueError(f"{self.info.get('path', 'classifier')}: the classifier's output is not finite "
                             "(NaN or infinite); no answer is given")
        return out, emb

    def outputs_with_members(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`outputs_tensor` with the model file's test-time augmentation, an ensemble's members split off.

        ``mirror``: the crop and its mirror image, averaged by :func:`~classifier.models.average_views`.
        Returns the logits the classifier answers with (``N x classes``), the embeddings, and an ensemble's
        members' logits (``N x members x classes``; None for one network).
        """
        if self.preprocessing.tta == "mirror" and batch.shape[0]:
            wide, emb = average_views(*self.outputs_tensor(torch.cat([batch, batch.flip(-1)])), 2)
        else:
            wide, emb = self.outputs_tensor(batch)
        logits, members = split_members(wide, len(self.class_names))
        return logits, emb, members

    def outputs(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The logits the classifier answers with (``N x classes``) and the embeddings, test-time augmented."""
        logits, emb, _ = self.outputs_with_members(batch)
        return logits, emb

    def analyse_tensor(self, batch: torch.Tensor) -> Analysis:
        """Calibrated probabilities and unknown scores for a preprocessed batch."""
        logits, emb, members = self.outputs_with_members(batch)
        unknown = self.info.get("unknown") or {}
        scores = None
        if unknown.get("method") and len(logits):
            scores = unknown_scores(unknown["method"], logits, emb, self.unknown_reference(),
                                    self.temperature, self.organism_indices)
        member_probs = None
        temperatures = self.member_temperatures
        if temperatures is not None and members is not None and len(logits):
            member_probs = np.stack([softmax(members[:, m], t) for m, t in enumerate(temperatures)], 1)
        return Analysis(logits, emb, softmax(logits, self.temperature) if len(logits) else logits, scores,
                        member_probs)

    def analyse(self, images: list[np.ndarray]) -> Analysis:
        """:meth:`analyse_tensor` for a list of RGB crops, classified as one batch."""
        if not images:
            return self.analyse_tensor(torch.zeros((0, 3, 1, 1)))
        return self.analyse_tensor(torch.stack([self.preprocess(im) for im in images]))

    def batch_predict(self, images: list[np.ndarray]) -> np.ndarray:
        """Calibrated softmax probabilities for a list of RGB crops, classified as one batch."""
        return self.analyse(images).probabilities

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Calibrated softmax probabilities of one RGB crop."""
        return self.batch_predict([image])[0]
