"""An ensemble of fine-tunes on one split: the mean of its members' logits, one release file, every engine."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from classifier.models import Ensemble, Preprocessing, build_classifier, combine_embeddings, split_members
from classifier.onnx import OnnxClassifier, export_onnx
from classifier.predict import Classifier
from classifier.soup import ensemble, soup
from core.io import read_image
from core.modelfile import ModelFileError, load_model_file, save_model_file
from pipeline.predictor import Pipeline
from pipeline.settings import InferenceSettings
from tests.classifier.test_soup import _two_members
from tests.conftest import CLASSES, make_scene
from tools.cli import main as cli


class _Fixed(nn.Module):
    """A 'network' whose logits are one literal row for every input."""

    def __init__(self, row):
        super().__init__()
        self.row = torch.tensor(row)

    def forward(self, x):
        return self.row.expand(len(x), -1)


def test_the_ensemble_answers_the_mean_of_literal_logits():
    rows = [[2.0, 0.0, -1.0], [0.0, 4.0, 1.0], [1.0, -1.0, 3.0]]
    ens = Ensemble([_Fixed(r) for r in rows])
    out = ens(torch.zeros(2, 3, 4, 4)).numpy()
    # the mean first, then each member's logits beside it
    assert np.allclose(out, [[1.0, 1.0, 1.0, *rows[0], *rows[1], *rows[2]]] * 2)
    logits, members = split_members(out, 3)
    assert np.allclose(logits, [[1.0, 1.0, 1.0]] * 2) and members.shape == (2, 3, 3)
    assert np.allclose(members[1], rows)
    one, none = split_members(np.ones((2, 3)), 3)  # one network: no members
    assert one.shape == (2, 3) and none is None
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
    assert e["ensemble"]["agreement"] is True
    assert e["ensemble"]["member_temperatures"] == [m["calibration"]["temperature"] for m in (a, b)]

    members = [Classifier.from_file(r) for r in runs]
    clf = Classifier.from_file(out)
    batch = torch.rand(4, 3, 32, 32)
    (la, ea), (lb, eb) = (m.outputs(batch) for m in members)
    logits, emb, member_logits = clf.outputs_with_members(batch)
    assert np.allclose(logits, (la + lb) / 2, atol=1e-5)
    assert np.allclose(member_logits[:, 0], la, atol=1e-5) and np.allclose(member_logits[:, 1], lb, atol=1e-5)
    expected = combine_embeddings([torch.from_numpy(ea), torch.from_numpy(eb)]).numpy()
    assert emb.shape == (4, ea.shape[1] + eb.shape[1]) and np.allclose(emb, expected, atol=1e-5)
    analysis = clf.analyse_tensor(batch)
    assert analysis.unknown_scores is not None and np.allclose(analysis.probabilities.sum(1), 1.0)
    # each member calibrated by its own temperature, as the member file alone would
    for i, m in enumerate(members):
        assert np.allclose(analysis.member_probabilities[:, i], m.analyse_tensor(batch).probabilities, atol=1e-5)

    # the exported network gives the same logits, members' and embeddings
    onnx_clf = OnnxClassifier.from_onnx(out, export_onnx(out, tmp_path / "ensemble.onnx"))
    o_logits, o_emb, o_members = onnx_clf.outputs_with_members(batch)
    assert np.allclose(o_logits, logits, atol=1e-4) and np.allclose(o_emb, emb, atol=1e-4)
    assert np.allclose(o_members, member_logits, atol=1e-4)

    # without agreement (--no-agreement writes false): the blend alone decides
    raw = torch.load(out, weights_only=True)
    raw["ensemble"]["agreement"] = False
    torch.save(raw, tmp_path / "blend.pt")
    assert Classifier.from_file(tmp_path / "blend.pt").analyse_tensor(batch).member_probabilities is None
    # agreement asked without the members' temperatures: refused at load, naming the file
    raw["ensemble"].update(agreement=True, member_temperatures=[1.0])
    torch.save(raw, tmp_path / "broken.pt")
    with pytest.raises(ModelFileError, match="broken.pt: an ensemble asking its members to agree"):
        Classifier.from_file(tmp_path / "broken.pt")

    # an ensemble is not a member; one file is not an ensemble; nor is a soup of ensembles made
    with pytest.raises(ValueError, match="is an ensemble already"):
        ensemble([out, runs[0]], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="is an ensemble already"):
        soup([runs[0], out], tmp_path / "x.pt")
    with pytest.raises(ValueError, match="at least two"):
        ensemble(runs[:1], tmp_path / "x.pt")


def _fixed_member(bias):
    """A ResNet18 whose logits are ``bias`` for every crop."""
    model, _ = build_classifier("resnet18", len(CLASSES), "none")
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor(bias))
    return model


@pytest.mark.parametrize(("agreement", "taxon"), [(True, "uncertain"), (False, CLASSES[0])])
def test_the_pipeline_names_only_what_every_member_names(tiny_models, tmp_path, agreement, taxon):
    # members sure 0.964 (logits 4, 0, 0) and 0.787 (2, 0, 0); the blend (3, 0, 0) 0.910; threshold 0.8
    ens = Ensemble([_fixed_member([4.0, 0.0, 0.0]), _fixed_member([2.0, 0.0, 0.0])])
    save_model_file(tmp_path / "e.pt", kind="classifier", state_dict=ens.state_dict(),
                    meta={"architecture": "resnet18", "class_names": CLASSES,
                          "preprocessing": Preprocessing(input_size=32, resize_size=36).to_dict(), "threshold": 0.8,
                          "taxonomy": {}, "metrics": {},
                          "ensemble": {"members": ["a", "b"], "agreement": agreement,
                                       "member_temperatures": [1.0, 1.0]}})
    pipe = Pipeline.from_files(tiny_models[0], tmp_path / "e.pt", InferenceSettings(device="cpu"))
    dets = pipe.process(read_image(make_scene(tmp_path / "p.jpg", [(8, 8, 30, 24)])))
    assert dets, "the tiny detector at score 0 always finds boxes"
    for d in dets:
        assert d["probability"] == pytest.approx(0.910, abs=1e-3) and d["taxon"] == taxon
