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


def _insect_on_leaves(seed=0):
    """A padded crop (padding 0.15): a dark elongated body in the box, on a busy green background."""
    rng = np.random.default_rng(seed)
    crop = (rng.normal(0, 40, (130, 130, 3)) + np.array([60, 160, 60])).clip(0, 255).astype(np.uint8)
    import cv2

    cv2.ellipse(crop, (65, 65), (38, 16), 30, 0, 360, (30, 20, 10), -1)
    cv2.ellipse(crop, (65, 65), (20, 9), 30, 0, 360, (220, 180, 30), -1)
    return crop


def test_plain_background_keeps_the_organism_and_flattens_the_rest():
    from classifier.data import plain_background

    crop = _insect_on_leaves()
    out = plain_background(crop, 0.15, np.random.default_rng(1))
    border = np.ones(crop.shape[:2], bool)
    border[20:110, 20:110] = False
    # the background around the box is now one colour (or fine sand), much flatter than the leaves were
    assert out[border].std(0).mean() < 0.6 * crop[border].std(0).mean()
    assert np.abs(out[60:70, 60:70].astype(int) - crop[60:70, 60:70].astype(int)).mean() < 10  # the body kept


def test_the_dataset_pastes_only_organism_classes(tmp_path):
    from PIL import Image

    from classifier.data import FolderDataset

    paths = []
    for i in range(2):
        p = tmp_path / f"c{i}.png"
        Image.fromarray(_insect_on_leaves(i)).save(p)
        paths.append(str(p))
    pre = Preprocessing(input_size=64, resize_size=64)
    tf = build_transform(pre, train=False)
    plain = FolderDataset([(paths[0], 0), (paths[1], 1)], tf)
    pasted = FolderDataset([(paths[0], 0), (paths[1], 1)], tf, paste=(1.0, frozenset({0}), 0.15))
    np.random.seed(0)
    assert not np.allclose(pasted[0][0].numpy(), plain[0][0].numpy())  # class 0: an organism class, pasted
    assert np.allclose(pasted[1][0].numpy(), plain[1][0].numpy())  # class 1 (background): untouched


def test_lighting_gives_each_crop_one_strong_change_of_light_and_only_when_asked():
    """``--lighting 1``: each training crop is grey, tinted, channel-swapped or darkened; ``0``: no such step."""
    import albumentations as A

    pre = Preprocessing(input_size=32, resize_size=36)
    crop = _insect_on_leaves()
    seen = {"grey": 0, "darker": 0, "colours moved": 0}

    def outcome(tf) -> str:
        # the same crop and geometry, no other colour change: only the lighting step can alter the pixels
        im = tf(image=crop)["image"].astype(float)
        if np.allclose(im[..., 0], im[..., 1]) and np.allclose(im[..., 1], im[..., 2]):
            return "grey"
        if im.mean() < 0.9 * crop.mean():
            return "darker"
        return "colours moved" if np.abs(im.mean((0, 1)) - crop.mean((0, 1))).max() > 10 else "unchanged"

    for seed in range(60):
        steps = build_transform(pre, train=True, scale=(1.0, 1.0), lighting=1.0).transforms[-3]
        assert isinstance(steps, A.OneOf)
        what = outcome(A.Compose([steps], seed=seed))
        seen[what] = seen.get(what, 0) + 1
    # "unchanged": a channel shuffle that drew the same order, or a tint close to white light
    assert seen.get("unchanged", 0) <= 6 and all(seen[k] >= 5 for k in ("grey", "darker", "colours moved")), seen
    assert not any(isinstance(t, A.OneOf) for t in build_transform(pre, train=True, lighting=0.0).transforms)
