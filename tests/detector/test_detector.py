import json

import numpy as np
import pytest
import torch

from annotations.coco import load_coco
from core.crops import crop_box, crop_region
from core.io import read_image
from core.modelfile import ModelFileError, load_model_file
from detector import train
from detector.data import CocoDetectionDataset, build_augmentation
from detector.evaluate import coco_metrics, found_and_false
from detector.predict import Detector

TINY = ["--arch", "fasterrcnn_mobilenet_v3_large_fpn", "--weights", "none", "--min-size", "96", "--max-size", "96",
        "--batch-size", "4", "--lr", "0.01", "--warmup-iters", "2", "--workers", "0", "--device", "cpu",
        "--augment", "flip"]


def _results_from_gt(gt, drop=0, score=0.9):
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": score}
            for a in gt["annotations"][drop:]]


def test_cocoeval_exact_boxes_give_ap_1(tiny_coco):
    gt = load_coco(tiny_coco)
    m = coco_metrics(gt, _results_from_gt(gt))
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0) and m["AR100"] == pytest.approx(1.0)
    assert m["per_class_AP"] == {"wasp": pytest.approx(1.0), "bee": pytest.approx(1.0)}


def test_cocoeval_missing_box_lowers_recall(tiny_coco):
    gt = load_coco(tiny_coco)
    n = len(gt["annotations"])  # 18 boxes; drop the first wasp
    m = coco_metrics(gt, _results_from_gt(gt, drop=1))
    assert m["AR100"] < 1.0
    # wasps: 11 of 12 found (recall 11/12), bees all found; AR averages the two classes
    assert m["AR100"] == pytest.approx((11 / 12 + 1.0) / 2, abs=1e-6)
    t = found_and_false(gt, _results_from_gt(gt, drop=1), score_threshold=0.5)
    assert t["found"] == n - 1 and t["false_boxes"] == 0
    extra = _results_from_gt(gt) + [{"image_id": 13, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.8}]
    t = found_and_false(gt, extra, score_threshold=0.5)
    assert t["found_share"] == 1.0 and t["false_boxes"] == 1 and t["false_boxes_per_photo"] == pytest.approx(1 / 13)
    assert found_and_false(gt, extra, score_threshold=0.95)["found"] == 0
    assert coco_metrics(gt, [])["AP"] == 0.0


def test_dataset_boxes_follow_augmentation(tiny_coco):
    gt = load_coco(tiny_coco)
    ds = CocoDetectionDataset(gt, build_augmentation("standard", seed=0))
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape[0] == 3 and image.dtype == torch.float32
        b = target["boxes"]
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (b[:, 2] <= image.shape[2]).all() and (b[:, 3] <= image.shape[1]).all()
    assert ds.class_names == ["wasp", "bee"]
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        build_augmentation("fancy")


def test_training_lowers_the_loss_and_release_round_trips(tiny_coco, tmp_path):
    out = tmp_path / "det"
    summary = train.main(["--train", str(tiny_coco), "--val", str(tiny_coco), "--out", str(out), "--epochs", "3",
                          *TINY])
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"]
    assert "AP50" in summary["metrics"] and (out / "eval" / "pr_curve.png").is_file()
    raw = torch.load(out / "model.pt", weights_only=True)
    assert raw["kind"] == "detector" and raw["class_names"] == ["wasp", "bee"] and raw["min_size"] == 96
    assert raw["metrics"]["AP50"] == summary["metrics"]["AP50"]
    # no --score-threshold: the F1-best operating point on --val is the model's threshold, measured there
    assert raw["score_threshold"] == raw["operating_point"]["score_threshold"] == raw["metrics"]["score_threshold"]
    assert raw["operating_point"]["method"] == "f1" and raw["suppression"] == {"iou": 0.5, "containment": 0.7}
    assert (out / "eval" / "thresholds.csv").is_file() and (out / "eval" / "thresholds.png").is_file()
    det = Detector.from_file(out / "model.pt")
    gt = load_coco(tiny_coco)
    photo = read_image(tiny_coco.parent / gt["images"][0]["file_name"])
    res = det.predict(photo, score_threshold=0.0)
    assert res["boxes"].shape[1] == 4 and len(res["scores"]) == len(res["labels"])
    with pytest.raises(ModelFileError, match="classifier model file is needed"):
        load_model_file(out / "model.pt", "classifier")
    # resume: a longer run picks up after epoch 3
    train.main(["--train", str(tiny_coco), "--out", str(out), "--epochs", "4", "--no-eval", *TINY])
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2, 3, 4]


def test_class_agnostic_training_has_one_class(tiny_coco, tmp_path):
    train.main(["--train", str(tiny_coco), "--out", str(tmp_path / "a"), "--epochs", "1", "--no-eval",
                "--class-agnostic", *TINY])
    raw = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    assert raw["class_names"] == ["organism"] and raw["class_agnostic"] is True


def test_crop_geometry_pads_and_clips():
    photo = np.arange(80 * 96 * 3, dtype=np.uint8).reshape(80, 96, 3)
    # 20 % of a 30 x 20 box: 6 px left and right, 4 px above and below
    assert crop_region([10, 10, 30, 20], 96, 80, 0.2) == (4, 6, 46, 34)
    assert crop_region([0, 70, 30, 20], 96, 80, 0.2) == (0, 66, 36, 80)  # clipped at the photo's edges
    assert crop_box(photo, [10, 10, 30, 20], 0.2).shape == (28, 42, 3)
    assert crop_region([95.5, 79.5, 0.1, 0.1], 96, 80, 0.0) == (95, 79, 96, 80)  # at least one pixel


def test_duplicates_and_operating_point(tiny_coco):
    from detector.evaluate import choose_operating_point, threshold_table

    gt = load_coco(tiny_coco)
    exact = _results_from_gt(gt, score=0.9)
    # each organism boxed again, a little off (IoU about 0.8), at a lower score: a duplicate box
    again = [{**r, "bbox": [r["bbox"][0] + 1, r["bbox"][1] + 1, r["bbox"][2], r["bbox"][3]], "score": 0.4}
             for r in exact]
    stray = [{"image_id": 13, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.7}]
    t = found_and_false(gt, exact + again + stray, score_threshold=0.3)
    n = len(gt["annotations"])
    assert (t["found"], t["false_boxes"], t["duplicate_boxes"]) == (n, n + 1, n)
    assert t["duplicates_per_organism"] == 1.0 and t["precision"] == pytest.approx(n / (2 * n + 1))
    table = threshold_table(gt, exact + again + stray, thresholds=(0.3, 0.5, 0.8, 0.95))
    # F1: 0.3 keeps the duplicates, 0.5 only the stray box, 0.8 nothing false, 0.95 nothing at all
    assert [r["found"] for r in table] == [n, n, n, 0]
    assert choose_operating_point(table)["score_threshold"] == 0.8
    assert choose_operating_point(table, target_precision=0.9)["score_threshold"] == 0.5  # 18/19 = 0.947
    unreachable = choose_operating_point(table[:1], target_precision=0.99)
    assert unreachable["reached"] is False and unreachable["score_threshold"] == 0.3


def test_anchor_sizes_follow_the_boxes():
    from detector.models import DEFAULT_ANCHOR_SIZES, anchor_sizes_from_boxes

    # 200 x 100 photos, boxes with sides 10..80 px, seen at min_size 50 (the photo halved)
    images = [{"id": 1, "width": 200, "height": 100}]
    boxes = [{"image_id": 1, "bbox": [0, 0, s, s]} for s in range(10, 81, 2)]
    sizes = anchor_sizes_from_boxes({"images": images, "annotations": boxes}, 50, 1000)
    flat = [v for level in sizes for v in level]
    assert len(sizes) == 4 and flat == sorted(flat) and len(set(flat)) == 8
    assert flat[0] == 8 and 38 <= flat[-1] <= 40  # halved: 5..40 px, and never under 8 px
    assert anchor_sizes_from_boxes({"images": images, "annotations": boxes[:3]}, 50, 1000) == DEFAULT_ANCHOR_SIZES


@pytest.mark.parametrize("det,gts,partial", [
    ([10, 10, 30, 20], [[0, 0, 100, 40]], True),     # the striped abdomen of a long insect: inside, IoU 0.05
    ([0, 0, 100, 40], [[0, 0, 100, 40]], False),     # the whole insect
    ([0, 0, 60, 40], [[0, 0, 100, 40]], False),      # IoU 0.6: it matches, not a partial box
    ([0, 0, 45, 40], [[0, 0, 100, 40]], True),       # half a hornet: IoU 0.45, all of it inside
    ([80, 20, 140, 60], [[0, 0, 100, 40]], False),   # overlaps, mostly outside: a poor box, not a part
    ([300, 300, 320, 320], [[0, 0, 100, 40]], False),  # a false box elsewhere
    ([10, 10, 30, 20], [], False),                     # a photo with no organism
    ([10, 10, 30, 20], [[0, 0, 100, 40], [8, 8, 32, 22]], False),  # it matches the smaller organism (IoU 0.6)
])
def test_partial_boxes_on_literal_boxes(det, gts, partial):
    from detector.evaluate import partial_boxes

    assert partial_boxes(np.array([det]), np.array(gts).reshape(-1, 4)) == [partial]


def test_found_and_false_counts_partial_boxes(tiny_coco):
    gt = load_coco(tiny_coco)
    a = gt["annotations"][0]
    x, y, w, h = a["bbox"]
    part = {"image_id": a["image_id"], "category_id": 1, "bbox": [x, y, w / 3, h], "score": 0.9}
    t = found_and_false(gt, _results_from_gt(gt) + [part], score_threshold=0.5)
    assert t["partial_boxes"] == 1 and t["partial_share"] == pytest.approx(1 / (len(gt["annotations"]) + 1))


def test_gather_roi_align_pools_and_back_propagates_as_torchvision():
    """The detector's pooler merges FPN levels by a gather: torchvision's numbers and gradients, every level."""
    from torchvision.ops import MultiScaleRoIAlign

    from detector.models import GatherRoIAlign, build_detector

    torch.manual_seed(0)
    ref = MultiScaleRoIAlign(["0", "1", "2"], 7, 2)
    ours = GatherRoIAlign.like(ref)
    maps = {"0": torch.randn(2, 4, 88, 80), "1": torch.randn(2, 4, 44, 40), "2": torch.randn(2, 4, 22, 20),
            "pool": torch.randn(2, 4, 11, 10)}
    # small boxes pool from level 0, large ones from level 2; the second photo has none on level 1
    sides = [torch.tensor([8.0, 600.0, 260.0, 10.0, 60.0]), torch.tensor([9.0, 580.0, 7.0])]
    boxes = [torch.stack([torch.full_like(s, 5.0), torch.full_like(s, 3.0), 5 + s, 3 + s * 0.8], 1) for s in sides]
    shapes = [(704, 640)] * 2
    ref(maps, boxes, shapes)
    assert ref.map_levels is not None and set(ref.map_levels(boxes).tolist()) == {0, 1, 2}  # every level pooled
    leaves = {k: v.clone().requires_grad_() for k, v in maps.items()}
    a = ref(leaves, boxes, shapes)
    a.square().sum().backward()
    grads = {k: v.grad.clone() for k, v in leaves.items() if v.grad is not None}
    for v in leaves.values():
        v.grad = None
    b = ours(leaves, boxes, shapes)
    b.square().sum().backward()
    assert torch.equal(a, b)
    assert grads and all(torch.equal(grads[k], leaves[k].grad) for k in grads)
    # every architecture's detector pools so
    det = build_detector("fasterrcnn_efficientnet_lite0_fpn", 1, "none", min_size=64, max_size=64)
    assert isinstance(det.roi_heads.box_roi_pool, GatherRoIAlign)
