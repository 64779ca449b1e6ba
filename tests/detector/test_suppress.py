"""Class-agnostic suppression on literal box tables."""

import numpy as np
import pytest

from detector.suppress import suppress


@pytest.mark.parametrize("boxes,scores,kept", [
    # separate insects: both stay
    ([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1]),
    # a wing inside the insect's box (IoU 0.25, all of it inside): the nested box goes
    ([[0, 0, 20, 20], [0, 0, 10, 10]], [0.9, 0.8], [0]),
    # nested but the inner box scores higher: the inner one is kept, the outer one (mostly the dish) goes
    ([[0, 0, 40, 40], [10, 10, 30, 30]], [0.6, 0.9], [1]),
    # overlapping by IoU 0.6 (10x10 boxes shifted by 2.5 px): the lower one goes
    ([[0, 0, 10, 10], [2.5, 0, 12.5, 10]], [0.9, 0.8], [0]),
    # two insects touching: IoU 0.14, 25 % of either inside the other: both stay
    ([[0, 0, 10, 10], [7.5, 0, 17.5, 10]], [0.9, 0.8], [0, 1]),
    # a chain: B is inside A, C is separate, D overlaps C: kept A and C, best first
    ([[0, 0, 20, 20], [2, 2, 12, 12], [50, 50, 60, 60], [51, 50, 61, 60]], [0.7, 0.95, 0.8, 0.6], [1, 2]),
    ([], [], []),
])
def test_suppression_table(boxes, scores, kept):
    assert suppress(np.array(boxes, dtype=np.float32), np.array(scores)).tolist() == kept


def test_settings_turn_tests_off():
    boxes, scores = np.array([[0, 0, 20, 20], [0, 0, 10, 10]]), np.array([0.9, 0.8])
    assert suppress(boxes, scores, containment=1.01).tolist() == [0, 1]  # IoU 0.25: kept without the containment test
    assert suppress(boxes, scores, iou=0.2, containment=1.01).tolist() == [0]
