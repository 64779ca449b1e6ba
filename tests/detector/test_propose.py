"""``annotations propose``: detector boxes for photos sorted by class."""

import json

import numpy as np
import pytest

from detector.predict import Detector
from detector.propose import propose
from tests.conftest import make_scene


class FixedDetector(Detector):
    """A detector whose answer is given: propose's own logic is what is tested."""

    def __init__(self, boxes, scores):
        self.boxes, self.scores, self.info = np.array(boxes, np.float32), np.array(scores, np.float32), {}

    def predict(self, image, score_threshold=None):
        return {"boxes": self.boxes, "scores": self.scores, "labels": ["organism"] * len(self.scores)}


def test_scores_stay_with_their_boxes_when_a_box_is_dropped(tmp_path):
    make_scene(tmp_path / "photos" / "wasp" / "a.jpg", [(8, 8, 30, 24)])
    (tmp_path / "photos" / "wasp" / "broken.jpg").write_text("not a photo")
    # the best box has no area and is dropped; the other two keep their own scores
    det = FixedDetector([[10, 10, 0, 0], [5, 6, 20, 10], [40, 30, 10, 10]], [0.9, 0.8, 0.3])
    coco = propose(det, tmp_path / "photos", tmp_path / "out.json")
    boxes = {tuple(a["bbox"]): a["score"] for a in coco["annotations"]}
    assert boxes == {(5.0, 6.0, 20.0, 10.0): pytest.approx(0.8), (40.0, 30.0, 10.0, 10.0): pytest.approx(0.3)}
    assert [c["name"] for c in coco["categories"]] == ["wasp"]
    assert len(coco["images"]) == 1  # the unreadable photo is skipped
    assert json.loads((tmp_path / "out.json").read_text())["annotations"] == coco["annotations"]
    best = propose(det, tmp_path / "photos", tmp_path / "one.json", max_per_photo=2)
    assert [a["score"] for a in best["annotations"]] == [pytest.approx(0.8)]  # 2 best: one of them was degenerate


def test_propose_needs_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="one folder per class"):
        propose(FixedDetector([], []), tmp_path / "flat", tmp_path / "x.json")
