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


def test_background_crops_are_boxes_that_match_no_organism(tmp_path):
    import json as _json

    from detector.propose import mine_background

    make_scene(tmp_path / "a.jpg", [(10, 10, 20, 20)], size=(96, 80))
    make_scene(tmp_path / "empty.jpg", [], size=(96, 80), seed=3)
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 96, "height": 80},
                       {"id": 2, "file_name": "empty.jpg", "width": 96, "height": 80}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]}],
            "categories": [{"id": 1, "name": "wasp"}]}
    (tmp_path / "gt.json").write_text(_json.dumps(coco))
    # the organism itself, a part of it, a box holding it, and two boxes away from it
    det = FixedDetector([[10, 10, 20, 20], [12, 12, 8, 8], [0, 0, 60, 60], [60, 40, 20, 20], [50, 5, 10, 10]],
                        [0.9, 0.8, 0.7, 0.6, 0.5])
    m = mine_background(det, tmp_path / "gt.json", tmp_path / "bg", padding=0.15, per_photo=5, random_per_empty=3)
    # photo a: only the two boxes away from the wasp; the empty photo (the fixed detector answers the same on
    # every photo): all five boxes, and 3 random ones
    assert m["crops"] == {"detector": 2 + 5, "random": 3}
    assert len(list((tmp_path / "bg").glob("a_bg*.png"))) == 2
    assert len(list((tmp_path / "bg").glob("*.png"))) == 10
    assert _json.loads((tmp_path / "bg" / "background.json").read_text())["padding"] == 0.15
