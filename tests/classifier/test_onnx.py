"""The classifier exported to ONNX gives the logits and embeddings of the PyTorch network."""

import numpy as np
import pytest
import torch

from classifier.onnx import OnnxClassifier, export_onnx
from classifier.predict import Classifier
from core.modelfile import ModelFileError


def test_onnx_classifier_outputs_equal_pytorch_for_any_batch(tiny_models, tmp_path):
    _, clf_file = tiny_models
    onnx_file = export_onnx(clf_file, tmp_path / "classifier.onnx")
    torch_clf = Classifier.from_file(clf_file, "cpu")
    onnx_clf = OnnxClassifier.from_onnx(clf_file, onnx_file)
    for n in (1, 5):  # exported with a dynamic batch axis
        batch = torch.rand(n, 3, 32, 32)
        (a_logits, a_emb), (b_logits, b_emb) = torch_clf.outputs_tensor(batch), onnx_clf.outputs_tensor(batch)
        assert b_logits.shape == (n, 3) and np.allclose(a_logits, b_logits, atol=1e-4)
        assert np.allclose(a_emb, b_emb, atol=1e-4)
    assert onnx_clf.outputs_tensor(torch.zeros(0, 3, 32, 32))[0].shape == (0, 3)
    assert onnx_clf.info["engine"] == "onnx"


def test_a_missing_onnx_file_is_named(tiny_models, tmp_path):
    with pytest.raises(ModelFileError, match="no ONNX file"):
        OnnxClassifier.from_onnx(tiny_models[1], tmp_path / "absent.onnx")
