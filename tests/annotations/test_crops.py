"""The one crop function: crops cut for training are the crops the pipeline classifies."""

import json

import numpy as np
from PIL import Image

from annotations.coco import load_coco
from annotations.commands import export_crops
from classifier import train
from classifier.predict import Classifier
from core.crops import crop_box
from core.io import read_image
from pipeline.predictor import Pipeline
from pipeline.settings import InferenceSettings


def test_training_crops_are_the_pipelines_crops(tiny_coco, tmp_path):
    manifest = export_crops(tiny_coco, tmp_path / "crops", padding=0.3)
    gt = load_coco(tiny_coco)
    assert manifest["padding"] == 0.3 and sum(manifest["crops_per_class"].values()) == len(gt["annotations"])
    images = {im["id"]: im for im in gt["images"]}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for a in gt["annotations"]:
        im = images[a["image_id"]]
        saved = np.asarray(Image.open(tmp_path / "crops" / names[a["category_id"]] /
                                      f"{im['file_name'].split('/')[-1][:-4]}_{a['id']}.png"))
        photo = read_image(tiny_coco.parent / im["file_name"])
        assert np.array_equal(saved, crop_box(photo, a["bbox"], 0.3))
        assert not np.array_equal(saved.shape, crop_box(photo, a["bbox"], 0.0).shape)


def test_crop_padding_travels_from_crops_json_to_the_pipeline(tiny_coco, tiny_models, tmp_path):
    export_crops(tiny_coco, tmp_path / "crops", padding=0.3)
    assert json.loads((tmp_path / "crops" / "crops.json").read_text())["padding"] == 0.3
    train.main(["--data", str(tmp_path / "crops"), "--out", str(tmp_path / "clf"), "--arch", "resnet18",
                "--weights", "none", "--epochs", "1", "--input-size", "32", "--batch-size", "8", "--workers", "0",
                "--device", "cpu", "--val-fraction", "0.3", "--no-eval"])
    assert Classifier.from_file(tmp_path / "clf" / "model.pt").preprocessing.crop_padding == 0.3
    pipe = Pipeline.from_files(tiny_models[0], tmp_path / "clf" / "model.pt", InferenceSettings(device="cpu"))
    assert pipe.resolved()["crop_padding"] == 0.3
