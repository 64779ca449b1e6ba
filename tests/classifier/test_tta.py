import numpy as np
import pytest
import torch

from classifier import train
from classifier.models import Preprocessing, average_views
from classifier.predict import Classifier
from core.modelfile import ModelFileError, load_model_file, save_model_file
from tests.classifier.test_train import FAST
from tools.cli import main as cli


def test_average_of_views_on_literal_logits():
    # two crops, three classes; the first copy of the batch, then the second (mirrored)
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0],
                       [0.0, 2.0, -1.0], [0.0, 3.0, 2.0]], np.float32)
    emb = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 2.0], [0.0, 4.0]], np.float32)
    mean_logits, mean_emb = average_views(logits, emb, 2)
    np.testing.assert_allclose(mean_logits, [[1.0, 1.0, -1.0], [0.0, 2.0, 1.0]])
    np.testing.assert_allclose(mean_emb, [[2.0, 1.0], [0.0, 2.0]])
    # one view: unchanged
    assert average_views(logits, emb, 1)[0] is logits


def test_mirror_tta_averages_the_crop_and_its_mirror(tiny_classes, tmp_path):
    train.main(["--data", str(tiny_classes), "--out", str(tmp_path / "run"), "--epochs", "1", "--no-eval",
                "--tta", "mirror", *FAST])
    mf = load_model_file(tmp_path / "run" / "model.pt", "classifier")
    assert mf["preprocessing"]["tta"] == "mirror"
    clf = Classifier.from_file(tmp_path / "run" / "model.pt")
    x = torch.rand(3, 3, 32, 32)
    plain, plain_emb = clf.outputs_tensor(x)
    mirrored, mirrored_emb = clf.outputs_tensor(x.flip(-1))
    logits, emb = clf.outputs(x)
    np.testing.assert_allclose(logits, (plain + mirrored) / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(emb, (plain_emb + mirrored_emb) / 2, rtol=1e-5, atol=1e-5)
    assert not np.allclose(plain, mirrored)  # the mirror image is another input: the average is not one view
    np.testing.assert_allclose(clf.analyse_tensor(x).logits, logits, rtol=1e-6)
    # refit turns it off (or on) and fits the honesty entries on what the setting gives
    assert cli(["classifier", "refit", "--model", str(tmp_path / "run" / "model.pt"), "--out",
                str(tmp_path / "plain.pt"), "--tta", "none"]) == 0
    assert Classifier.from_file(tmp_path / "plain.pt").preprocessing.tta == "none"
    # an unknown setting in a model file is named
    bad = {k: v for k, v in mf.items() if k not in ("format", "format_version", "kind", "taxolens_version", "created",
                                                     "weights_sha256", "model_version", "path", "state_dict")}
    bad["preprocessing"] = {**mf["preprocessing"], "tta": "rotate"}
    save_model_file(tmp_path / "bad.pt", kind="classifier", state_dict=mf["state_dict"], meta=bad)
    with pytest.raises(ModelFileError, match="rotate"):
        Classifier.from_file(tmp_path / "bad.pt")
    assert Preprocessing().tta == "none"
