"""Detection data from a canonical COCO file, with named bbox-aware augmentation presets."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from annotations.coco import image_path
from core.io import read_image


def _presets() -> dict[str, list]:
    return {
        "none": [],
        "flip": [A.HorizontalFlip(p=0.5)],
        # flip, scale and crop that keep every box, and colour
        "standard": [A.HorizontalFlip(p=0.5),
                     A.Affine(scale=(0.75, 1.25), p=0.5),
                     A.BBoxSafeRandomCrop(erosion_rate=0.0, p=0.3),
                     A.RandomBrightnessContrast(p=0.3), A.HueSaturationValue(p=0.2)],
        "strong": [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.2),
                   A.Affine(scale=(0.6, 1.4), rotate=(-15, 15), p=0.6),
                   A.BBoxSafeRandomCrop(erosion_rate=0.0, p=0.4),
                   A.RandomBrightnessContrast(p=0.4), A.HueSaturationValue(p=0.3), A.GaussNoise(p=0.1)],
    }


PRESETS = tuple(_presets())


def build_augmentation(name: str, seed: int | None = None) -> A.Compose:
    """A named preset; boxes follow the photo, boxes pushed mostly out are dropped. Unknown names raise."""
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown augmentation preset {name!r}; choose one of {', '.join(presets)}")
    return A.Compose(presets[name], seed=seed,
                     bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.3,
                                              clip=True, filter_invalid_bboxes=True))


def category_labels(coco: dict, class_agnostic: bool = False) -> tuple[list[str], dict[int, int]]:
    """Class names (label 1 is the first) and the COCO category id -> label map."""
    if class_agnostic:
        return ["organism"], {c["id"]: 1 for c in coco["categories"]}
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    return [c["name"] for c in cats], {c["id"]: i + 1 for i, c in enumerate(cats)}


class CocoDetectionDataset(Dataset):
    """``(image tensor 3xHxW in 0..1, target)`` pairs; target boxes are x0, y0, x1, y1 in pixels."""

    def __init__(self, coco: dict, transform: A.Compose | None = None, class_agnostic: bool = False) -> None:
        self.coco = coco
        self.transform = transform
        self.class_names, self.label_of = category_labels(coco, class_agnostic)
        self.images = coco["images"]
        self.boxes: dict[int, list[dict]] = {}
        for a in coco["annotations"]:
            self.boxes.setdefault(a["image_id"], []).append(a)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        im = self.images[i]
        photo = read_image(image_path(self.coco, im))
        h, w = photo.shape[:2]
        boxes, labels = [], []
        for a in self.boxes.get(im["id"], []):
            x, y, bw, bh = a["bbox"]
            # xywh -> xyxy, clamped to the photo, degenerate ones dropped: the one place this happens
            x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                boxes.append([x0, y0, x1, y1])
                labels.append(self.label_of[a["category_id"]])
        if self.transform is not None:
            out = self.transform(image=photo, bboxes=np.array(boxes, dtype=np.float32).reshape(-1, 4), labels=labels)
            photo, boxes, labels = out["image"], out["bboxes"], list(out["labels"])
        tensor = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1).float().div_(255)
        target = {"boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
                  "labels": torch.as_tensor(labels, dtype=torch.int64), "image_id": im["id"]}
        return tensor, target


def collate(batch: list) -> tuple:
    """Detection batches are lists: photos differ in size."""
    return tuple(zip(*batch))
