"""An ensemble of fine-tunes on one split: the mean of its members' logits, one release file, every engine."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from classifier.models import Ensemble, combine_embeddings
from classifier.onnx import OnnxClassifier, export_onnx
from classifier.predict import Classifier
from classifier.soup import ensemble, soup
from core.modelfile import load_model_file
from tests.classifier.test_soup import _two_members
from tools.cli import main as cli


class _Fixed(nn.Module):
    """A 'network' whose logits are one literal row for every input."""

    def __init__(self, row):
        super().__init__()
        self.row = torch.tensor(row)

    def forward(self, x):
        return self.row.expand(len(x), -1)


def test_the_ensemble_answers_the_mean_of_literal_logits():
    ens = Ensemble([_Fixed([2.0, 0.0, -1.0]), _Fixed([0.0, 4.0, 1.0]), _Fixed([1.0, -1.0, 3.0])])
    out = ens(torch.zeros(2, 3, 4, 4))
    assert torch.allclose(out, torch.tensor([[1.0, 1.0, 1.0]] * 2))
    with pytest.raises(ValueError, match="at least two members"):
        Ensemble([_Fixed([1.0])])


def test_combined_embeddings_compare_as_the_mean_of_the_members_cosines():
    single = torch.tensor([[3.0, 4.0]])
    assert torch.equal(combine_embeddings([single]), single)  # one network: as it is
    a = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # member 1: two crops
    b = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 5.0]])  # member 2: other width and scale
    both = combine_embeddings([a, b])
    assert both.shape == (2, 5)
    assert torch.allclose(both.norm(dim=1), torch.ones(2))
    cos_a, cos_b = 3 / 5, 0.0  # the two crops' cosine similarity in each member
    assert math.isclose(float(both[0] @ both[1]), (cos_a + cos_b) / 2, abs_tol=1e-6)


def test_an_ensemble_of_two_seeds_on_one_split(tiny_classes, tmp_path):
    runs = _two_members(tiny_classes, tmp_path)
    a, b = (load_model_file(r, "classifier") for r in runs)
    out = tmp_path / "ensemble.pt"
    assert cli(["classifier", "ensemble", *map(str, runs), "--out", str(out)]) == 0
    e = load_model_file(out, "classifier")
    assert e["ensemble"]["members"] == [a["model_version"], b["model_version"]]
    assert e["metrics"]["epoch_policy"] == "ensemble" and e["metrics"]["val_accuracy"] is not None
    # each member keeps its own weights, batch-norm statistics included
    for i, m in enumerate((a, b)):
        for key in ("fc.weight", "bn1.running_mean"):
            assert torch.equal(e["state_dict"][f"members.{i}.{key}"], m["state_dict"][key])
    assert "temperature" in e["calibration"] and e["unknown"]["method"]

    members = [Classifier.from_file(r) for r in runs]
    clf = Classifier.from_file(out)
    batch = torch.rand(4, 3, 32, 32)
    (la, ea), (lb, eb) = (m.outputs_tensor(batch) for m in members)
    logits, emb = clf.outputs_tensor(batch)
    assert np.allclose(logits, (la + lb) / 2, atol=1e-5)
    expected = combine_embeddings([torch.from_numpy(ea), torch.from_numpy(eb)]).numpy()
    assert emb.shape == (4, ea.shape[1] + eb.shape[1]) and np.allclose(emb, expected, atol=1e-5)
    analysis = clf.analyse_tensor(batch)
    assert analysis.unknown_scores is not None and np.allclose(analysis.probabilities.sum(1), 1.0)

    # the exported network gives the same logits and embeddings
    onnx_clf = OnnxClassifier.from_onnx(out, export_onnx(out, tmp_path / "ensemble.onnx"))
    o_logits, o_emb = onnx_clf.outputs_tensor(batch)
    assert np.allclose(o_logits, logits, atol=1e-4) and np.allclose(o_emb, emb, atol=1e-4)

    # an ensemble is not a member; one file is not an ensemble; nor is a soup of ensembles made
    with pytest.raises(ValueError, match="is an ensemble already"):
        ensemble([out, runs[0]], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="is an ensemble already"):
        soup([runs[0], out], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="at least two"):
        ensemble(runs[:1], tmp_path / "x.pt")
