"""Every default that more than one module needs, stated once.

A YAML profile in ``configs/`` that states one of these again is tested equal to it
(``tests/core/test_defaults.py``), so the two cannot drift apart.
"""

from __future__ import annotations

#: A classifier probability at least this counts as an answer (the study's choice, read off its Figure 2).
THRESHOLD = 0.94
#: Share of a box's width (height) added left and right (above and below) before the crop is classified.
CROP_PADDING = 0.15
#: Detector boxes scoring below this are not passed to the classifier, unless the model file says otherwise.
DETECTOR_SCORE_THRESHOLD = 0.5
#: Photos with more pixels than this are refused before decoding: far above any camera, far below a bomb.
MAX_PIXELS = 100_000_000
