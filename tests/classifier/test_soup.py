import pytest
import torch

from classifier import train
from classifier.predict import Classifier
from classifier.soup import average_states, soup
from core.modelfile import load_model_file
from tests.classifier.test_train import FAST
from tools.cli import main as cli


def _two_members(data, out):
    """Two one-epoch trainings on one split (--split-seed 0) with seeds 1 and 2; their release files."""
    for seed in (1, 2):
        train.main(["--data", str(data), "--out", str(out / f"s{seed}"), "--epochs", "1", "--no-eval",
                    "--split-seed", "0", "--seed", str(seed), *FAST])
    return [out / f"s{seed}" / "model.pt" for seed in (1, 2)]


def test_average_of_literal_weights():
    a = {"w": torch.tensor([1.0, 2.0]), "bn.num_batches_tracked": torch.tensor(7)}
    b = {"w": torch.tensor([3.0, -2.0]), "bn.num_batches_tracked": torch.tensor(9)}
    avg = average_states([a, b])
    assert torch.equal(avg["w"], torch.tensor([2.0, 0.0]))
    assert avg["bn.num_batches_tracked"].item() == 7 and avg["bn.num_batches_tracked"].dtype == torch.int64
    with pytest.raises(ValueError, match="model 2: its tensors"):
        average_states([a, {"w": torch.zeros(3), "bn.num_batches_tracked": torch.tensor(1)}])


def test_soup_of_two_seeds_on_one_split(tiny_classes, tmp_path):
    runs = _two_members(tiny_classes, tmp_path)
    a, b = (load_model_file(r, "classifier") for r in runs)
    assert a["training_data"]["split"] == b["training_data"]["split"]  # one split, two trainings
    assert not torch.equal(a["state_dict"]["fc.weight"], b["state_dict"]["fc.weight"])
    assert cli(["classifier", "soup", *map(str, runs), "--out", str(tmp_path / "soup.pt"), "--no-batch-norm"]) == 0
    s = load_model_file(tmp_path / "soup.pt", "classifier")
    assert s["soup"]["members"] == [a["model_version"], b["model_version"]]
    mean_fc = (a["state_dict"]["fc.weight"] + b["state_dict"]["fc.weight"]) / 2
    assert torch.allclose(s["state_dict"]["fc.weight"], mean_fc)
    # --no-batch-norm keeps the averaged statistics (fitting the honesty entries does not move them)
    mean_bn = (a["state_dict"]["bn1.running_mean"] + b["state_dict"]["bn1.running_mean"]) / 2
    assert torch.allclose(s["state_dict"]["bn1.running_mean"], mean_bn)
    assert s["metrics"]["val_accuracy"] is not None and "temperature" in s["calibration"]
    assert "best_epoch" not in s["metrics"]  # the first member's epoch is not the soup's
    Classifier.from_file(tmp_path / "soup.pt")  # loads as any release file
    # batch-norm statistics measured again over the training crops with the averaged weights
    meta = soup(runs, tmp_path / "soup-bn.pt")
    bn = load_model_file(tmp_path / "soup-bn.pt", "classifier")["state_dict"]["bn1.running_mean"]
    assert meta["soup"]["batch_norm_layers_recalibrated"] > 0
    assert not torch.allclose(bn, (a["state_dict"]["bn1.running_mean"] + b["state_dict"]["bn1.running_mean"]) / 2)
    # another split: refused, naming the file
    train.main(["--data", str(tiny_classes), "--out", str(tmp_path / "other"), "--epochs", "1", "--no-eval",
                "--seed", "5", *FAST])
    with pytest.raises(ValueError, match="another train/validation split"):
        soup([runs[0], tmp_path / "other" / "model.pt"], tmp_path / "x.pt")


def test_soup_members_written_before_a_preprocessing_setting_existed(tiny_classes, tmp_path):
    # a file from before test-time augmentation has no "tta" in its preprocessing: the default, not a difference
    runs = _two_members(tiny_classes, tmp_path)
    raw = torch.load(runs[0], weights_only=True)
    del raw["preprocessing"]["tta"]
    torch.save(raw, runs[0])
    soup(runs, tmp_path / "soup.pt", batch_norm=False)
    with pytest.raises(ValueError, match="its preprocessing differs"):
        raw["preprocessing"]["tta"] = "mirror"
        torch.save(raw, runs[0])
        soup(runs, tmp_path / "soup2.pt", batch_norm=False)
