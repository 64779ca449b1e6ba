"""Grey-world colour constancy: a crop's colour cast taken out, in training and inference alike."""

import numpy as np

from classifier.data import build_transform, grey_world
from classifier.models import Preprocessing


def test_grey_world_on_a_literal_image():
    im = np.zeros((4, 4, 3), np.uint8)
    im[..., 0], im[..., 1], im[..., 2] = 50, 200, 50  # means 50, 200, 50 -> all 100
    assert (grey_world(im) == 100).all()


def test_a_green_cast_is_taken_out_before_the_network_sees_the_crop():
    rng = np.random.default_rng(0)
    neutral = rng.integers(40, 160, (48, 48, 3)).astype(np.uint8)
    green = np.clip(neutral * np.array([0.6, 1.5, 0.6]), 0, 255).astype(np.uint8)
    pre = Preprocessing(input_size=32, resize_size=36, colour="grey_world")
    assert Preprocessing.from_dict(pre.to_dict()).colour == "grey_world"  # stored in the model file
    with_gw = build_transform(pre, train=False)
    as_is = build_transform(Preprocessing(input_size=32, resize_size=36), train=False)
    gap_as_is = (as_is(image=green)["image"] - as_is(image=neutral)["image"]).abs().mean().item()
    gap_gw = (with_gw(image=green)["image"] - with_gw(image=neutral)["image"]).abs().mean().item()
    assert gap_gw < 0.3 * gap_as_is  # what is left: the brightness the cast changed, and clipping
