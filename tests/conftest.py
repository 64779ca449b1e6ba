"""Shared fixtures: tiny generated photos, and the real photos in ../shared/data where present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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
