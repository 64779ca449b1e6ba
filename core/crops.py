"""The one crop function: what the classifier sees of a detected (or annotated) organism.

Training crops (``annotations crops``) and inference crops (the pipeline) both come from
:func:`crop_box`, so the classifier sees at inference exactly the kind of crop it was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from core.defaults import CROP_PADDING


def crop_region(box_xywh: Sequence[float], width: int, height: int,
                padding: float = CROP_PADDING) -> tuple[int, int, int, int]:
    """Pixel rectangle ``(x0, y0, x1, y1)`` of a box grown by ``padding`` of its size on every side.

    The box is widened by ``padding * w`` left and right and ``padding * h`` above and below, so the
    classifier sees a little context, then clipped to the photo. At least one pixel is kept.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    x0 = max(0, math.floor(x - padding * w))
    y0 = max(0, math.floor(y - padding * h))
    x1 = min(width, math.ceil(x + w + padding * w))
    y1 = min(height, math.ceil(y + h + padding * h))
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def crop_box(image: np.ndarray, box_xywh: Sequence[float], padding: float = CROP_PADDING) -> np.ndarray:
    """The padded crop of ``box_xywh`` (pixels, x/y/width/height) from an ``HxWx3`` photo."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = crop_region(box_xywh, w, h, padding)
    return np.ascontiguousarray(image[y0:y1, x0:x1])
