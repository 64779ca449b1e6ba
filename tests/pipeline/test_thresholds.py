"""The threshold a model file carries is the one the pipeline applies."""

import pytest
import torch

from classifier.models import Preprocessing, build_classifier
from core.defaults import THRESHOLD
from core.io import read_image
from core.modelfile import save_model_file
from pipeline.predictor import Pipeline
from pipeline.settings import InferenceSettings
from tests.conftest import CLASSES, make_scene


def _classifier_file(path, threshold, class_thresholds=None):
    """A classifier whose answer is fixed: softmax of logits (2, 0, 0) = 0.787 for the first class."""
    model, _ = build_classifier("resnet18", len(CLASSES), "none")
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    save_model_file(path, kind="classifier", state_dict=model.state_dict(),
                    meta={"architecture": "resnet18", "class_names": CLASSES,
                          "preprocessing": Preprocessing(input_size=32, resize_size=36).to_dict(),
                          "threshold": threshold, "class_thresholds": class_thresholds or {}, "taxonomy": {},
                          "metrics": {}})
    return path


@pytest.mark.parametrize(("threshold", "class_thresholds", "accepted", "applied"), [
    (0.5, {}, True, 0.5),            # the file's 0.5, not the 0.94 default: 0.787 is an answer
    (THRESHOLD, {}, False, THRESHOLD),
    (0.5, {CLASSES[0]: 0.8}, False, 0.8),  # a per-class threshold in the file wins over the global one
])
def test_model_files_threshold_is_applied(tiny_models, tmp_path, threshold, class_thresholds, accepted, applied):
    clf = _classifier_file(tmp_path / "c.pt", threshold, class_thresholds)
    pipe = Pipeline.from_files(tiny_models[0], clf, InferenceSettings(device="cpu"))
    assert pipe.threshold == threshold
    photo = read_image(make_scene(tmp_path / "p.jpg", [(8, 8, 30, 24)]))
    dets = pipe.process(photo)
    assert dets, "the tiny detector at score 0 always finds boxes"
    for d in dets:
        assert d["top"][0]["taxon"] == CLASSES[0] and d["probability"] == pytest.approx(0.787, abs=1e-3)
        assert d["accepted"] is accepted and d["threshold"] == applied
        assert d["taxon"] == (CLASSES[0] if accepted else "uncertain")


def test_a_pipeline_holds_numpys_blas_to_one_thread(tiny_models, tmp_path):
    from threadpoolctl import threadpool_info, threadpool_limits

    clf = _classifier_file(tmp_path / "c.pt", 0.5)
    def blas_threads():
        return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):
        pipe = Pipeline.from_files(tiny_models[0], clf, InferenceSettings(device="cpu"))
        assert blas_threads() == {1}
    with threadpool_limits(2, user_api="blas"):  # built from its parts too
        Pipeline(pipe.detector, pipe.classifier, pipe.settings)
        assert blas_threads() == {1}
