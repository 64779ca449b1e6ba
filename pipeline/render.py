"""Photos with their boxes and labels drawn, for ``--save-annotated`` and the web app."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.answers import REASON_UNKNOWN, ROLLED_UP, UNCERTAIN, UNKNOWN

ACCEPTED_COLOUR = (46, 204, 64)
UNCERTAIN_COLOUR = (255, 165, 0)


def _two_decimals(p: float) -> str:
    # rounded down: 0.9396 printed as 0.94 beside "uncertain" would contradict the 0.94 threshold
    return f"{math.floor(p * 100) / 100:.2f}"


def label_of(detection: dict) -> str:
    """``taxon 0.97``, ``Vespa (genus) 0.97``, ``uncertain (best guess 0.71)`` or ``unknown``."""
    if detection["taxon"] == UNCERTAIN:
        best = detection["top"][0]
        return f"uncertain ({best['taxon']} {_two_decimals(best['probability'])})"
    if detection.get("reason") == REASON_UNKNOWN:
        return UNKNOWN
    rank = f" ({detection['rank']})" if detection.get("reason") == ROLLED_UP and detection.get("rank") else ""
    return f"{detection['taxon']}{rank} {_two_decimals(detection['probability'])}"


def draw_detections(image: np.ndarray, detections: list[dict], labels: list[str] | None = None,
                    scale: float = 1.0) -> np.ndarray:
    """A copy of ``image`` with each detection's box and label (numbered from 1).

    ``scale``: how many of the photo's pixels (the boxes') one pixel of ``image`` stands for, where the photo was
    decoded at a reduced scale.
    """
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 300))
    try:
        font = ImageFont.load_default(size=max(12, round(max(canvas.size) / 45)))
    except TypeError:  # pragma: no cover - Pillow < 10.1
        font = ImageFont.load_default()
    for i, d in enumerate(detections):
        x, y, w, h = (v / scale for v in d["box"])
        colour = ACCEPTED_COLOUR if d["accepted"] else UNCERTAIN_COLOUR
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=width)
        text = f"{i + 1}. {labels[i] if labels else label_of(d)}"
        tx, ty = x + width, y - getattr(font, "size", 11) - 6
        if ty < 0:  # no room above the box: write inside it
            ty = y + width
        bbox = draw.textbbox((tx, ty), text, font=font)
        draw.rectangle([bbox[0] - 2, bbox[1] - 2, bbox[2] + 2, bbox[3] + 2], fill=colour)
        draw.text((tx, ty), text, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)
