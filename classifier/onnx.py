"""The classifier as ONNX, run by ONNX Runtime: the same network, calibration and unknown score.

``export_onnx`` writes the network with two outputs, the logits and the embedding the unknown score
measures (the input of the last layer). Calibration (the model file's temperature), the unknown score (its
reference embeddings) and the decision run after it in the same numpy code as the PyTorch engine
(:meth:`classifier.predict.Classifier.analyse_tensor`). ``quantize`` makes a dynamic int8 copy.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from classifier.predict import Classifier
from core.modelfile import load_model_file
from core.onnxrt import session, stamp


class _LogitsAndEmbedding(nn.Module):
    def __init__(self, clf: Classifier) -> None:
        super().__init__()
        self.clf = clf
        self.model = clf.model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.clf._embedding.clear()
        logits = self.model(x)
        emb = self.clf.last_embedding()
        assert emb is not None, "a classifier with a known architecture has an embedding"
        return logits, emb


def export_onnx(model_file: str | os.PathLike, out: str | os.PathLike, opset: int = 17) -> Path:
    """Export a classifier release file to ONNX at ``out`` (any batch size); returns ``out``."""
    clf = Classifier.from_file(model_file, "cpu")
    size = clf.preprocessing.input_size
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_LogitsAndEmbedding(clf).eval(), (torch.rand(2, 3, size, size),), str(tmp),
                          opset_version=opset, input_names=["crops"], output_names=["logits", "embedding"],
                          dynamic_axes={"crops": {0: "n"}, "logits": {0: "n"}, "embedding": {0: "n"}}, dynamo=False)
    stamp(tmp, load_model_file(model_file, "classifier"))
    os.replace(tmp, out)
    return out


class OnnxClassifier(Classifier):
    """:class:`Classifier` whose network runs in ONNX Runtime.

    Preprocessing, calibration, the unknown score and the decision are the same code as the PyTorch engine's.
    """

    sess: Any = None

    @classmethod
    def from_onnx(cls, model_file: str | os.PathLike, onnx_file: str | os.PathLike, *,
                  threads: int = 0, runtime: str = "onnxruntime") -> OnnxClassifier:
        """The release file's classes, preprocessing, thresholds and calibration; the exported file's network.

        ``runtime`` runs it: ONNX Runtime or OpenVINO.
        """
        clf = cast(OnnxClassifier, cls.from_file(model_file, "cpu"))
        clf.sess = session(onnx_file, clf.info, threads, runtime)  # the header read once, by from_file
        clf.info = {**clf.info, "engine": "onnx" if runtime == "onnxruntime" else runtime, "onnx_path": str(onnx_file)}
        return clf

    def outputs_tensor(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Logits and embeddings from ONNX Runtime."""
        if batch.shape[0] == 0:
            return np.zeros((0, len(self.class_names)), np.float32), np.zeros((0, 0), np.float32)
        logits, emb = self.sess.run(None, {"crops": batch.detach().cpu().float().numpy()})
        if not np.isfinite(logits).all():
            raise ValueError(f"{self.info.get('onnx_path')}: the classifier's output is not finite; no answer")
        return logits.astype(np.float32), emb.astype(np.float32)
