"""The demo's data: non-targets (issue 19; hive bees grouped by video frame, trap insects as look-alikes), crops."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.io import read_image
from tests.conftest import make_scene, shared


def test_add_non_targets_adds_hive_bees_and_trap_insects_grouped_for_the_split(tmp_path):
    from tools import demo

    shared("hive-bees")
    shared("yellow-traps")
    crops = tmp_path / "data" / "crops"
    (crops / "Apis mellifera").mkdir(parents=True)
    added = demo.add_non_targets(tmp_path, crops, hive_bees=30, trap_photos=1)
    bees = sorted(p.name for p in (crops / "Apis mellifera").iterdir())
    traps = list((crops / demo.OUTLIER_CLASS).iterdir())
    assert added == {"Apis mellifera": 30, demo.OUTLIER_CLASS: len(traps)} and len(bees) == 30 and traps
    # the group split keeps the crops of one video frame together: the group is hive-<frame>
    groups = {re.match(demo.GROUP_REGEX, b).group(1) for b in bees}
    assert all(g.startswith("hive-") and g[5:].isdigit() for g in groups)
    assert all(re.match(demo.GROUP_REGEX, t.name) for t in traps)  # trap crops: grouped by their photo


def test_each_profile_names_settings_that_parse():
    # a profile naming a missing YAML profile or an option that no longer exists fails here, not after training
    from classifier.train import parse_settings as classifier_settings
    from detector.train import parse_settings as detector_settings
    from tools import demo

    for profile in demo.PROFILES.values():
        det = detector_settings(["--config", profile.detector_config, "--train", "t.json", "--out", "o"])
        clf = classifier_settings([*profile.classifier_options, "--data", "d", "--out", "o"])
        assert det.epochs > 0 and clf.epochs > 0
    long, short = demo.PROFILES["long"], demo.PROFILES["demo"]
    assert classifier_settings([*long.classifier_options, "--data", "d", "--out", "o"]).input_size > \
        classifier_settings([*short.classifier_options, "--data", "d", "--out", "o"]).input_size


def test_giant_hornet_train_joins_the_detector_set_and_val_stays_out(tmp_path, tiny_coco):
    from dataclasses import replace
    from pathlib import Path

    from annotations.coco import load_coco, save_subset
    from tools import demo

    giant = shared("giant-hornet") / "annotated_dataset"
    splits = demo.giant_hornet_splits(tmp_path)
    train, val = (load_coco(splits[s]) for s in ("train", "val"))
    stems = {s: {Path(im["file_name"]).stem for im in c["images"]} for s, c in (("train", train), ("val", val))}
    assert stems["val"] <= set((giant / "ImageSets" / "Main" / "val.txt").read_text().split())
    assert len(stems["val"]) >= 100
    assert not stems["train"] & stems["val"] and len(stems["train"]) > 200 and train["annotations"]
    save_subset(load_coco(tiny_coco), {1, 2, 3}, tmp_path / "data" / "bh-train.json")
    assert demo.detector_training_set(tmp_path, demo.PROFILES["demo"]) == tmp_path / "data" / "bh-train.json"
    merged = load_coco(demo.detector_training_set(tmp_path, replace(demo.PROFILES["demo"], giant_hornets=True)))
    assert len(merged["images"]) == 3 + len(train["images"])
    assert len(merged["annotations"]) == sum(a["image_id"] <= 3 for a in load_coco(tiny_coco)["annotations"]) + len(
        train["annotations"])
    assert not {Path(im["file_name"]).stem for im in merged["images"]} & stems["val"]


def test_the_demo_cuts_its_crops_with_the_detector_on_openvino_and_the_same_boxes(tiny_models, tmp_path):
    from core.onnxrt import onnx_path
    from detector.predict import Detector
    from tools.demo import crop_detector

    pytest.importorskip("openvino")
    det = Path(shutil.copy(tiny_models[0], tmp_path / "detector.pt"))
    fast = crop_detector(det)
    assert fast.info["engine"] == "openvino" and onnx_path(det).is_file()
    exported_at = onnx_path(det).stat().st_mtime_ns
    assert crop_detector(det).info["engine"] == "openvino"
    assert onnx_path(det).stat().st_mtime_ns == exported_at  # up to date: not exported again
    reference = Detector.from_file(det)
    compared = 0
    for i in range(3):  # the boxes the demo keeps (score 0.3 and up, as it mines and proposes)
        photo = read_image(make_scene(tmp_path / f"p{i}.jpg", [(8, 8, 30, 24), (55, 40, 30, 30)], seed=i))
        a, b = reference.predict(photo, 0.3), fast.predict(photo, 0.3)
        assert len(a["boxes"]) == len(b["boxes"])
        if len(a["boxes"]):
            assert np.abs(np.asarray(a["boxes"]) - np.asarray(b["boxes"])).max() <= 1.0
        compared += len(a["boxes"])
    assert compared > 0


def test_the_demo_profile_trains_a_fine_tune_and_a_linear_member_on_one_split_and_joins_them(tiny_classes, tmp_path):
    from dataclasses import replace

    from core.modelfile import load_model_file
    from tests.classifier.test_train import FAST
    from tests.conftest import make_photo
    from tools import demo

    for i in range(9):  # the demo's outlier class (look-alikes)
        make_photo(tiny_classes / demo.OUTLIER_CLASS / f"obs9{i // 3}_{i % 3}.jpg", (200, 200, 30), seed=900 + i)
    profile = replace(demo.PROFILES["demo"], classifier_options=("--epochs", "1", *FAST))  # the demo's members
    model = demo.train_classifier(tmp_path, tiny_classes, profile)
    assert model == tmp_path / "classifier" / "model.pt"
    members = [load_model_file(tmp_path / "classifier-members" / name / "model.pt", "classifier")
               for name in ("finetune-seed0", "linear-seed10")]
    assert [m["training"]["recipe"] for m in members] == ["finetune", "linear"]
    assert members[0]["training_data"]["split_settings"] == members[1]["training_data"]["split_settings"]
    joined = load_model_file(model, "classifier")
    assert joined["ensemble"]["members"] == [m["model_version"] for m in members]
    assert joined["ensemble"]["agreement"] is True
    # found the next time: nothing trained again
    stamp = model.stat().st_mtime_ns
    assert demo.train_classifier(tmp_path, tiny_classes, profile) == model and model.stat().st_mtime_ns == stamp
