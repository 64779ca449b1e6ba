"""Long runs on real photos and GPU checks: not in the default run (``pytest -m slow``, ``pytest -m gpu``)."""

import json

import pytest
import torch

from tests.conftest import shared


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """The whole demo without the web app: detector, proposals, crops, classifier, folder run (~20 min on 2 cores)."""
    from tools import demo

    shared("bees-hornets")
    assert demo.main(["--out", str(tmp_path / "demo"), "--no-app"]) == 0
    result = json.loads((tmp_path / "demo" / "results" / "results.json").read_text())
    assert result["info"]["summary"]["photos"] == 20 and result["info"]["summary"]["failures"] == 0
    assert result["info"]["summary"]["organisms"] > 0
    det = json.loads((tmp_path / "demo" / "detector" / "summary.json").read_text())
    assert det["metrics"]["AP50"] > 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_training_on_cuda_uses_amp(tiny_classes, tiny_coco, tmp_path):
    from classifier import train as ctrain
    from detector import train as dtrain

    s = ctrain.main(["--data", str(tiny_classes), "--out", str(tmp_path / "c"), "--arch", "resnet50", "--weights",
                     "none", "--epochs", "2", "--input-size", "64", "--batch-size", "8", "--device", "cuda"])
    assert s["eval"]["accuracy"] is not None
    d = dtrain.main(["--train", str(tiny_coco), "--val", str(tiny_coco), "--out", str(tmp_path / "d"), "--arch",
                     "fasterrcnn_resnet50_fpn_v2", "--weights", "none", "--epochs", "1", "--device", "cuda",
                     "--min-size", "128", "--max-size", "128"])
    assert d["history"]["images_per_second"] > 0
    # AMP ran: each checkpoint holds the state of a gradient scaler that scaled the losses
    for run in ("c", "d"):
        scaler = torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["scaler"]
        assert scaler is not None and scaler["scale"] > 0 and scaler["_growth_tracker"] >= 0
