"""Every default that more than one module needs, stated once.

A YAML profile in ``configs/`` that states one of these again is tested equal to it
(``tests/core/test_defaults.py``), so the two cannot drift apart.
"""

from __future__ import annotations

from core.answers import NO_ORGANISM

#: A classifier probability at least this counts as an answer (the study's choice, read off its Figure 2).
THRESHOLD = 0.94
#: Share of a box's width (height) added left and right (above and below) before the crop is classified.
CROP_PADDING = 0.15
#: Detector boxes scoring below this are not passed to the classifier, unless the model file says otherwise.
DETECTOR_SCORE_THRESHOLD = 0.5
#: Photos with more pixels than this are refused before decoding: far above any camera, far below a bomb.
MAX_PIXELS = 100_000_000
#: Class-agnostic suppression: a box is dropped when it overlaps a higher-scoring box by this IoU or more ...
SUPPRESS_IOU = 0.5
#: ... or when this share of its own area (intersection over the smaller box) lies inside a higher-scoring box.
SUPPRESS_CONTAINMENT = 0.7
#: Folder (and class) name of crops with no organism in them: a box around a dish or a leaf.
BACKGROUND_CLASS = NO_ORGANISM
#: Share of known validation crops that the unknown-score threshold lets pass as known.
UNKNOWN_PASS_RATE = 0.95
