"""Taxa judged from the whole photo (species.yaml's framing: whole_photo): a tree, a branch, flowers."""

import numpy as np
import pytest
import torch

from classifier.models import Preprocessing, build_classifier
from core.modelfile import save_model_file
from core.taxonomy import whole_photo_taxa
from pipeline.predictor import Pipeline
from pipeline.records import RESULT_WHOLE_PHOTO, SOURCE_DETECTOR, SOURCE_WHOLE_PHOTO
from pipeline.settings import InferenceSettings

CLASSES = ["Acacia dealbata", "Apis mellifera", "Vespa velutina"]


def _classifier(path, favoured: str):
    """A classifier whose every answer is ``favoured`` (p ~ 1): the decision's input is known exactly."""
    model, _ = build_classifier("resnet18", len(CLASSES), "none")
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([20.0 if c == favoured else 0.0 for c in CLASSES]))
    save_model_file(path, kind="classifier", state_dict=model.state_dict(),
                    meta={"architecture": "resnet18", "class_names": CLASSES,
                          "preprocessing": Preprocessing(input_size=32, resize_size=36).to_dict(), "threshold": 0.94,
                          "class_thresholds": {}, "taxonomy": {}, "metrics": {},
                          "whole_photo_classes": whole_photo_taxa(CLASSES)})
    return path


def test_species_yaml_says_which_taxa_are_judged_from_the_whole_photo(tmp_path):
    assert whole_photo_taxa(CLASSES + ["Acacia melanoxylon"]) == ["Acacia dealbata", "Acacia melanoxylon"]
    bad = tmp_path / "species.yaml"
    bad.write_text("Apis mellifera:\n  rank: species\n  framing: sideways\n")
    with pytest.raises(ValueError, match="framing 'sideways'"):
        whole_photo_taxa(["Apis mellifera"], str(bad))


@pytest.mark.parametrize("favoured", ["Acacia dealbata", "Apis mellifera"])
def test_a_plant_is_answered_for_the_whole_photo_and_its_parts_are_not_organisms(tiny_models, tmp_path, favoured):
    det, _ = tiny_models
    pipe = Pipeline.from_files(det, _classifier(tmp_path / "clf.pt", favoured),
                               InferenceSettings(device="cpu", score_threshold=0.0))
    photo = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    boxes = pipe.detector.batch_predict_tensors([pipe.detector.preprocess(photo)[0]], 0.0)[0]["boxes"]
    assert len(boxes) > 0, "the test needs the tiny detector to box something"
    dets = pipe.process(photo)
    whole = [d for d in dets if d["source"] == SOURCE_WHOLE_PHOTO]
    if favoured == "Acacia dealbata":
        # one answer for the photo, over all of it; the boxes named Acacia were parts of the tree
        assert len(whole) == 1 and whole[0]["taxon"] == "Acacia dealbata" and whole[0]["box"] == [0, 0, 128, 96]
        assert not [d for d in dets if d["source"] == SOURCE_DETECTOR and d["taxon"] == "Acacia dealbata"]
        item = {"file": "tree.jpg", "image": photo, "input": pipe.detector.preprocess(photo)}
        assert pipe.process_items([item])[0]["result"] == RESULT_WHOLE_PHOTO
    else:
        # an insect classifier's answers stand as they are: one per box, none for the whole photo
        assert not whole and len(dets) == len(boxes) and {d["taxon"] for d in dets} == {"Apis mellifera"}
