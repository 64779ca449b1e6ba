"""Inference with a classifier release file: everything is rebuilt from the file alone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from classifier.data import build_transform
from classifier.models import Preprocessing, rebuild_classifier
from core.defaults import THRESHOLD
from core.modelfile import load_model_file
from core.runtime import pick_device


@dataclass
class Classifier:
    """A loaded classifier: ``preprocess`` one crop, ``batch_predict`` many."""

    model: torch.nn.Module
    class_names: list[str]
    preprocessing: Preprocessing
    threshold: float
    info: dict[str, Any]
    device: torch.device

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> Classifier:
        """Load a release file (``weights_only=True``) and rebuild the network and its preprocessing."""
        mf = load_model_file(path, "classifier")
        dev = device if isinstance(device, torch.device) else pick_device(device)
        model = rebuild_classifier(mf["architecture"], len(mf["class_names"]))
        model.load_state_dict(mf["state_dict"])
        model.eval().to(dev)
        if dev.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        info = {k: v for k, v in mf.items() if k != "state_dict"}
        return cls(model, list(mf["class_names"]), Preprocessing.from_dict(mf["preprocessing"]),
                   float(mf.get("threshold", THRESHOLD)), info, dev)

    def __post_init__(self) -> None:
        self.transform = build_transform(self.preprocessing, train=False)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """One RGB crop to the network's input tensor."""
        return self.transform(image=image)["image"]

    @torch.inference_mode()
    def predict_tensor(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (``N x classes``) for a preprocessed batch."""
        if batch.shape[0] == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        x = batch.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.to(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.float16):
                logits = self.model(x)
        else:
            logits = self.model(x)
        return logits.float().softmax(1).cpu().numpy()

    def batch_predict(self, images: list[np.ndarray]) -> np.ndarray:
        """Softmax probabilities for a list of RGB crops, classified as one batch."""
        if not images:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self.predict_tensor(torch.stack([self.preprocess(im) for im in images]))

    def predict(self, image: np.ndarray) -> np.ndarray:
        """Softmax probabilities of one RGB crop."""
        return self.batch_predict([image])[0]
