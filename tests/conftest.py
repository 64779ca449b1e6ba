"""Shared fixtures: tiny generated photos, and the real photos in ../shared/data where present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classifier.models import Preprocessing, build_classifier
from core.modelfile import save_model_file
from detector.models import IMAGENET_MEAN, IMAGENET_STD, build_detector

SHARED_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


def shared(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real photos not available: {path} is missing (see ../shared/data/README.md)")
    return path


def make_photo(path: Path, colour: tuple[int, int, int], size: int = 32, seed: int = 0) -> Path:
    """A small JPEG: a coloured square on noise, so classes differ but no two photos are the same."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    q = size // 4
    arr[q:3 * q, q:3 * q] = np.clip(np.array(colour) + rng.integers(-20, 20, 3), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=90)
    return path


COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 220, 30)}


@pytest.fixture
def tiny_classes(tmp_path: Path) -> Path:
    """``root/<class>/*.jpg``: three colour classes, 12 photos each, in groups of three (obs<k>_<i>.jpg)."""
    root = tmp_path / "tiny"
    for c, (name, colour) in enumerate(COLOURS.items()):
        for i in range(12):
            make_photo(root / name / f"obs{c}{i // 3}_{i % 3}.jpg", colour, seed=100 * c + i)
    return root


def make_scene(path: Path, boxes: list[tuple[int, int, int, int]], size: tuple[int, int] = (96, 80),
               seed: int = 0) -> Path:
    """A photo of noise with a bright rectangle (an 'organism') at each ``(x, y, w, h)``."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 70, (h, w, 3), dtype=np.uint8)
    for i, (x, y, bw, bh) in enumerate(boxes):
        arr[y:y + bh, x:x + bw] = (230, 200 - 60 * (i % 2), 40)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95)
    return path


@pytest.fixture
def tiny_coco(tmp_path: Path) -> Path:
    """A canonical COCO file of 12 generated photos, 1-2 organisms each, two classes, plus one empty photo."""
    import json

    images, annotations = [], []
    for i in range(13):
        boxes = [] if i == 12 else [(8 + 3 * i, 10 + 2 * i, 30, 24)] + ([(60, 40, 20, 28)] if i % 2 else [])
        make_scene(tmp_path / "photos" / f"scene{i:02d}.jpg", boxes, seed=i)
        images.append({"id": i + 1, "file_name": f"photos/scene{i:02d}.jpg", "width": 96, "height": 80})
        for j, (x, y, w, h) in enumerate(boxes):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1 + j,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "wasp", "supercategory": "organism"},
                           {"id": 2, "name": "bee", "supercategory": "organism"}]}
    (tmp_path / "tiny.json").write_text(json.dumps(coco))
    return tmp_path / "tiny.json"


# Tiny release files built without training (random weights): fast, and enough to test the plumbing.
CLASSES = ["Apis mellifera", "Formicidae", "Vespa velutina"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> tuple[Path, Path]:
    """``(detector.pt, classifier.pt)``: a MobileNet Faster R-CNN at 96-128 px and a ResNet18 at 32 px."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    det = build_detector("fasterrcnn_mobilenet_v3_large_fpn", 1, "none", min_size=96, max_size=128)
    save_model_file(root / "detector.pt", kind="detector", state_dict=det.state_dict(),
                    meta={"architecture": "fasterrcnn_mobilenet_v3_large_fpn", "class_names": ["organism"],
                          "class_agnostic": True, "min_size": 96, "max_size": 128, "mean": list(IMAGENET_MEAN),
                          "std": list(IMAGENET_STD), "score_threshold": 0.0, "metrics": {}})
    clf, _ = build_classifier("resnet18", len(CLASSES), "none")
    save_model_file(root / "classifier.pt", kind="classifier", state_dict=clf.state_dict(),
                    meta={"architecture": "resnet18", "class_names": CLASSES,
                          "preprocessing": Preprocessing(input_size=32, resize_size=36).to_dict(), "threshold": 0.94,
                          "class_thresholds": {}, "taxonomy": {}, "metrics": {}})
    return root / "detector.pt", root / "classifier.pt"
