"""Classifier data: a folder per class, the split, the dataset report and the augmentations.

Layouts accepted: ``root/<class>/*.jpg`` (split here, reproducibly, by group where a regex says how
file names group) or ``root/train/<class>/`` with ``root/val/<class>/`` (split as given).

Unreadable files: every photo is decoded once when the dataset is gathered; a corrupt, truncated,
empty or non-image file is skipped with a warning that names it and says why, and is listed under
``skipped`` in the dataset report. Training goes on with the rest.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset

from annotations.split import group_split
from classifier.models import Preprocessing
from core.io import ImageReadError, atomic_write_json, atomic_write_text, check_image, list_images, read_image

LOGGER = logging.getLogger(__name__)

INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC,
                  "area": cv2.INTER_AREA}


@dataclass
class ClassData:
    """The photos of a classification dataset, split, with the class names in index order."""

    class_names: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    root: str
    split: str  # "given" or "generated"
    skipped: list[dict] = field(default_factory=list)

    def report(self) -> dict:
        """The study's Table 1: train, val, total and imbalance (largest total / class total) per class."""
        n_train = Counter(c for _, c in self.train)
        n_val = Counter(c for _, c in self.val)
        totals = {i: n_train[i] + n_val[i] for i in range(len(self.class_names))}
        largest = max(totals.values()) if totals else 0
        rows = [{"class": name, "train": n_train[i], "val": n_val[i], "total": totals[i],
                 "imbalance": round(largest / totals[i], 2) if totals[i] else None}
                for i, name in enumerate(self.class_names)]
        return {"root": self.root, "split": self.split, "classes": rows,
                "train": len(self.train), "val": len(self.val), "total": len(self.train) + len(self.val),
                "skipped": self.skipped}


def dataset_markdown(report: dict) -> str:
    """The dataset report as a Markdown table."""
    lines = [f"Dataset `{report['root']}` (split {report['split']})", "",
             "| class | train | val | total | imbalance |", "|---|---:|---:|---:|---:|"]
    for r in report["classes"]:
        lines.append(f"| {r['class']} | {r['train']} | {r['val']} | {r['total']} | {r['imbalance']} |")
    lines.append(f"| **all** | {report['train']} | {report['val']} | {report['total']} | |")
    if report["skipped"]:
        lines += ["", f"Skipped {len(report['skipped'])} unreadable file(s):"]
        lines += [f"- `{s['path']}`: {s['reason']}" for s in report["skipped"]]
    return "\n".join(lines) + "\n"


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _gather(folder: Path, class_names: list[str], skipped: list[dict]) -> list[tuple[str, int]]:
    items = []
    for idx, name in enumerate(class_names):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        for path in list_images(class_dir):
            try:
                check_image(path)
            except ImageReadError as exc:
                LOGGER.warning("skipping %s: %s", exc.path, exc.reason)
                skipped.append({"path": exc.path, "reason": exc.reason})
                continue
            items.append((str(path), idx))
    return items


def _dataset_root(root: str | Path) -> tuple[Path, bool]:
    """The dataset folder, and whether it is already split into ``train/`` and ``val/``."""
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: dataset folder not found")
    return path, (path / "train").is_dir() and (path / "val").is_dir()


def _flat_classes(root: Path, skipped: list[dict]) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and readable photos of ``root/<class>/*``."""
    class_names = [p.name for p in _class_folders(root)]
    if not class_names:
        raise ValueError(f"{root}: expected one folder per class (root/<class>/*.jpg), found none")
    return class_names, _gather(root, class_names, skipped)


def load_class_data(root: str | Path, *, val_fraction: float = 0.2, seed: int = 0,
                    group_regex: str | None = None) -> ClassData:
    """Find the classes and photos under ``root`` and split them.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no class folders or no photos.
    """
    root, given = _dataset_root(root)
    skipped: list[dict] = []
    if given:
        class_names = sorted({p.name for sub in ("train", "val") for p in _class_folders(root / sub)})
        if not class_names:
            raise ValueError(f"{root}: train/ and val/ hold no class folders")
        train = _gather(root / "train", class_names, skipped)
        val = _gather(root / "val", class_names, skipped)
        split = "given"
    else:
        class_names, items = _flat_classes(root, skipped)
        names = [Path(p).name for p, _ in items]
        labels = [class_names[c] for _, c in items]
        tr, va = group_split(names, labels, val_fraction=val_fraction, seed=seed, group_regex=group_regex)
        train, val = [items[i] for i in tr], [items[i] for i in va]
        split = f"generated (val_fraction={val_fraction}, seed={seed}, group_regex={group_regex!r})"
    if not train:
        raise ValueError(f"{root}: no readable photos for training")
    empty = [n for i, n in enumerate(class_names) if not any(c == i for _, c in train)]
    if empty:
        raise ValueError(f"{root}: class folder(s) with no readable training photo: {', '.join(empty)}")
    return ClassData(class_names, train, val, str(root), split, skipped)


AUGMENTATIONS = ("study", "field")
COLOURS = ("as_is", "grey_world")


def grey_world(image: np.ndarray, **_: object) -> np.ndarray:
    """Grey-world colour constancy: each channel scaled so that its mean is the mean of all three."""
    pixels = image.astype(np.float32)
    means = pixels.reshape(-1, 3).mean(0)
    gains = means.mean() / np.maximum(means, 1.0)
    return np.clip(pixels * gains, 0, 255).astype(np.uint8)


def load_eval_data(root: str | Path) -> ClassData:
    """Photos to evaluate: the ``val/`` part of ``root/train`` + ``root/val``, else every photo of ``root/<class>/``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: no class folders or no photos.
    """
    root, given = _dataset_root(root)
    skipped: list[dict] = []
    if given:
        class_names = sorted(p.name for p in _class_folders(root / "val"))
        return ClassData(class_names, [], _gather(root / "val", class_names, skipped), str(root), "given", skipped)
    class_names, items = _flat_classes(root, skipped)
    if not items:
        raise ValueError(f"{root}: no readable photos")
    return ClassData(class_names, [], items, str(root), "all photos", skipped)


def build_transform(pre: Preprocessing, *, train: bool, rotations: tuple[float, ...] = (),
                    scale: tuple[float, float] = (0.08, 1.0), augment: str = "study",
                    lighting: float = 0.0) -> A.Compose:
    """Albumentations pipeline: the study's crop and flip for training, resize and centre crop for evaluation.

    ``rotations``, when given, rotates each training photo by one of these angles
    (the SPIPOLL challenge used 0, 30, 90 and 135 degrees). ``augment="field"`` adds what changes between
    a training photo and a field photo: colour (hue, saturation, brightness; sometimes grey), the colour
    cast of a background (a green bait station lights the insect green), blur and low resolution (small,
    out-of-focus insects), and any rotation (seen from above). ``lighting``: the share of training crops given
    one strong change of light (grey, a strong coloured light, colours swapped, or backlit and dark).
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose one of {', '.join(AUGMENTATIONS)}")
    if pre.colour not in COLOURS:
        raise ValueError(f"unknown colour handling {pre.colour!r}; choose one of {', '.join(COLOURS)}")
    interp = INTERPOLATIONS[pre.interpolation]
    size = pre.input_size
    first: list = [A.Lambda(image=grey_world, name="grey_world")] if pre.colour == "grey_world" else []
    if train:
        steps: list = [*first, A.RandomResizedCrop(size=(size, size), scale=scale, interpolation=interp),
                       A.HorizontalFlip(p=0.5)]
        if augment == "field":
            # mild on purpose: at 0.8 / 0.4 / 0.3 probabilities a 4-epoch demo classifier stayed at 0.54 validation
            # accuracy (BENCHMARKS.md)
            steps += [A.VerticalFlip(p=0.5),
                      A.RandomRotate90(p=0.5),
                      A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.3, hue=0.05, p=0.5),
                      # a tint over the whole crop, as a coloured background casts it
                      A.RGBShift(r_shift_limit=20, g_shift_limit=20, b_shift_limit=20, p=0.2),
                      A.ToGray(p=0.05),
                      A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=0.15),
                      A.Downscale(scale_range=(0.4, 0.8), p=0.15)]
        if lighting:
            # one strong change of light, so that an insect's colour and brightness cannot name it: a dark hornet
            # lit green at a bait station was "Formicidae" at 0.99 because the only dark insects in training were
            # ants (BENCHMARKS.md, "Lighting")
            steps.append(A.OneOf([A.ToGray(p=1.0),  # no colour
                                  A.MultiplicativeNoise(multiplier=(0.3, 1.4), per_channel=True, p=1.0),  # tinted
                                  A.ChannelShuffle(p=1.0),  # colours swapped
                                  A.RandomGamma(gamma_limit=(150, 350), p=1.0)],  # backlit: a dark insect
                                 p=lighting))
        if rotations:
            steps.append(A.OneOf([A.Rotate(limit=(a, a), border_mode=cv2.BORDER_REFLECT_101, p=1.0)
                                  for a in rotations], p=1.0))
    else:
        steps = [*first, A.SmallestMaxSize(max_size=pre.resize_size, interpolation=interp),
                 A.CenterCrop(height=size, width=size)]
    steps += [A.Normalize(mean=pre.mean, std=pre.std), ToTensorV2()]
    return A.Compose(steps)



def plain_background(image: np.ndarray, padding: float, rng: np.random.Generator) -> np.ndarray:
    """The organism of a padded crop cut out (GrabCut from its box) and put on a plain or sandy background.

    A crop is its box plus ``padding`` of the box's size on each side, so the box is known inside it. What the
    training photos lack and bait stations and traps show: an insect on a plain dish, not on a flower.
    """
    h, w = image.shape[:2]
    if min(h, w) < 16:
        return image
    scale = min(1.0, 96 / max(h, w))  # the cut-out is found on a small copy: GrabCut is slow on big crops
    small = cv2.resize(image, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    f = padding / (1 + 2 * padding)
    rect = (int(sw * f), int(sh * f), max(1, int(sw * (1 - 2 * f))), max(1, int(sh * (1 - 2 * f))))
    mask = np.zeros((sh, sw), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, rect, bgd, fgd, 3, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return image
    fg = cv2.resize(np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8), (w, h),
                    interpolation=cv2.INTER_NEAREST).astype(bool)
    if fg.mean() < 0.05:  # nothing found: leave the crop as it is
        return image
    colour = rng.integers(60, 256, 3).astype(np.float32)
    background = np.broadcast_to(colour, image.shape).astype(np.float32)
    if rng.random() < 0.5:  # sand, sawdust, a textured dish
        grain = cv2.GaussianBlur(rng.normal(0, 25, (h, w)).astype(np.float32), (0, 0), max(1.0, 1 / scale))
        background = background * rng.uniform(0.5, 0.9) + grain[..., None]
    soft = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), max(1.0, 0.5 / scale))[..., None]
    return np.clip(image * soft + background * (1 - soft), 0, 255).astype(np.uint8)


class FolderDataset(Dataset):
    """``(tensor, class index)`` pairs from a list of ``(path, class index)``.

    ``paste``: with probability ``paste[0]``, crops of the classes ``paste[1]`` are put on a plain background
    first (:func:`plain_background`, with the crops' padding ``paste[2]``); training only.
    """

    def __init__(self, items: list[tuple[str, int]], transform: A.Compose,
                 paste: tuple[float, frozenset[int], float] | None = None) -> None:
        self.items = items
        self.transform = transform
        self.paste = paste

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        image = read_image(path)  # files were checked when gathered; a change since raises with its name
        if self.paste is not None and label in self.paste[1]:
            rng = np.random.default_rng(np.random.randint(2**31))  # seeded per epoch and worker (seed_worker)
            if rng.random() < self.paste[0]:
                image = plain_background(image, self.paste[2], rng)
        return self.transform(image=image)["image"], label


def write_dataset_report(data: ClassData, out_dir: str | Path) -> dict:
    """Write ``dataset.md`` and ``dataset.json`` into ``out_dir``; return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = data.report()
    atomic_write_json(out / "dataset.json", report)
    atomic_write_text(out / "dataset.md", dataset_markdown(report))
    return report
