"""Long runs on real photos and GPU checks: not in the default run (``pytest -m slow``, ``pytest -m gpu``)."""

import json

import pytest
import torch

from tests.conftest import shared

# hornets per bait-station frame, counted by eye: three European hornets (two of them overlapping) in every
# Vespa_crabro frame, two Asian hornets (one on the dish, one below it) in every Vespa_velutina frame
HORNETS_PER_FRAME = {"Vespa_crabro": 3, "Vespa_velutina": 2}


def check_hornet_frames(detector, classifier) -> list[str]:
    """What goes wrong on the bait-station frames (never used in training); empty when every hornet is answered
    honestly: boxed once at most, named as its own species, rolled up to Vespa, uncertain or unknown, never
    an ant or a bee."""
    from core.io import list_images
    from pipeline.predictor import Pipeline

    pipe = Pipeline.from_files(detector, classifier, device="cpu")
    problems = []
    for species, hornets in HORNETS_PER_FRAME.items():
        truth = species.replace("_", " ")
        for photo in list_images(shared("hornet-frames", species)):
            record, _ = pipe.process_file(photo)
            dets = record["detections"]
            if not dets:
                problems.append(f"{species}/{photo.name}: no hornet boxed")
            if len(dets) > hornets:
                problems.append(f"{species}/{photo.name}: {len(dets)} boxes for {hornets} hornets")
            for d in dets:
                if d["reason"] in ("named", "rolled_up") and d["taxon"] not in (truth, "Vespa", "Vespidae"):
                    problems.append(f"{species}/{photo.name}: a hornet answered {d['taxon']} ({d['reason']}, "
                                    f"{d['probability']:.2f})")
    return problems


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """The whole demo without the web app, then its answers on the bait-station frames (~15 min on 2 cores)."""
    from tools import demo

    shared("bees-hornets")
    assert demo.main(["--out", str(tmp_path / "demo"), "--no-app"]) == 0
    result = json.loads((tmp_path / "demo" / "results" / "results.json").read_text())
    assert result["info"]["summary"]["photos"] == 20 and result["info"]["summary"]["failures"] == 0
    assert result["info"]["summary"]["organisms"] > 0
    det = json.loads((tmp_path / "demo" / "detector" / "summary.json").read_text())
    assert det["metrics"]["AP50"] > 0.5
    assert check_hornet_frames(tmp_path / "demo" / "detector" / "model.pt",
                               tmp_path / "demo" / "classifier" / "model.pt") == []


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
