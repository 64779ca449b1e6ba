"""``taxolens classifier refit``: the honesty entries fitted again on the recorded split, the weights untouched."""

import shutil

import pytest
import torch

from classifier import train
from core.modelfile import load_model_file
from tests.classifier.test_train import FAST
from tools.cli import main as cli


def test_refit_applies_a_new_required_precision_without_training_again(tiny_classes, tmp_path):
    train.main(["--data", str(tiny_classes), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-eval", *FAST])
    model = tmp_path / "run" / "model.pt"
    before = load_model_file(model, "classifier")
    assert before["class_thresholds"] == {}
    species = tmp_path / "species.yaml"
    species.write_text("red:\n  rank: species\n  lineage: {kingdom: Animalia, species: red}\n"
                       "  required_precision: 0.99\n")
    assert cli(["classifier", "refit", "--model", str(model), "--out", str(tmp_path / "refit.pt"),
                "--species-file", str(species)]) == 0
    after = load_model_file(tmp_path / "refit.pt", "classifier")
    assert after["weights_sha256"] == before["weights_sha256"]
    assert set(after["class_thresholds"]) == {"red"} and after["class_thresholds"]["red"] >= 0.94
    assert after["class_thresholds_fit"]["per_class"]["red"]["target"] == 0.99
    assert after["refit"]["model_version"] == before["model_version"]
    assert after["training_data"] == before["training_data"] and after["class_names"] == before["class_names"]
    state = torch.load(tmp_path / "refit.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(state[k], before["state_dict"][k]) for k in state)
    # the training crops moved away: said, naming the model file; --data finds them
    moved = shutil.move(str(tiny_classes), str(tmp_path / "moved"))
    with pytest.raises(FileNotFoundError, match="its training crops"):
        from classifier.refit import refit

        refit(model, tmp_path / "x.pt")
    assert cli(["classifier", "refit", "--model", str(model), "--out", str(tmp_path / "y.pt"), "--data", moved]) == 0
