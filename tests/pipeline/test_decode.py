"""JPEGs decoded at a reduced scale (``--decode-side``): the records keep the photo's own pixels."""

import json

import numpy as np
import pytest
from PIL import Image

from core.crops import crop_box
from core.io import read_photo
from pipeline.predictor import Pipeline
from pipeline.settings import InferenceSettings
from tools.cli import main as cli


def _jpeg(path, size=(1024, 768), orientation=None, fmt="JPEG"):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    pixels[size[1] // 4: size[1] // 2, size[0] // 4: size[0] // 2] = (250, 200, 0)  # something to box
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, fmt, **({"exif": exif} if fmt == "JPEG" else {}))
    return path


@pytest.mark.parametrize(("short_side", "orientation", "fmt", "decoded", "size"), [
    (0, None, "JPEG", (768, 1024), (1024, 768)),       # every pixel
    (300, None, "JPEG", (384, 512), (1024, 768)),      # 1/2: 1/4 would give 192 < 300
    (180, None, "JPEG", (192, 256), (1024, 768)),      # 1/4
    (90, None, "JPEG", (96, 128), (1024, 768)),        # 1/8, the smallest libjpeg gives
    (500, None, "JPEG", (768, 1024), (1024, 768)),     # not twice as large: every pixel
    (300, 6, "JPEG", (512, 384), (768, 1024)),         # stood upright by its EXIF, facts upright too
    (300, None, "PNG", (768, 1024), (1024, 768)),      # only JPEGs have reduced scales
])
def test_a_large_jpeg_is_decoded_at_a_reduced_scale_and_its_facts_stay_its_own(tmp_path, short_side, orientation,
                                                                               fmt, decoded, size):
    path = _jpeg(tmp_path / f"photo.{fmt.lower()}", orientation=orientation, fmt=fmt)
    pixels, facts = read_photo(path, short_side=short_side)
    assert pixels.shape[:2] == decoded
    assert (facts["width"], facts["height"]) == size
    full, full_facts = read_photo(path)
    assert facts["sha256"] == full_facts["sha256"]
    # the same picture: the reduced pixels are the full ones shrunk (the orange patch where it was)
    shrunk = np.asarray(Image.fromarray(full).resize((decoded[1], decoded[0]), Image.BILINEAR), dtype=float)
    assert np.abs(shrunk - pixels).mean() < 40


def test_records_boxes_are_in_the_photos_own_pixels(tiny_models, tmp_path):
    det, clf = tiny_models
    path = _jpeg(tmp_path / "big.jpg")
    pipe = Pipeline.from_files(det, clf, InferenceSettings(device="cpu", score_threshold=0.0, decode_side=200))
    item = pipe.load(path)
    assert item["image"].shape[:2] == (384, 512)  # 1/2: the short side kept at or above 200
    found = pipe.process_batch([item["image"]], [item["input"]])[0]
    record = pipe.process_items([item])[0]
    assert (record["width"], record["height"]) == (1024, 768)
    assert len(record["detections"]) + len(record["dropped"]) == len(found) > 0
    decoded = sorted(tuple(d["box"]) for d in found)
    recorded = sorted(tuple(d["box"]) for d in record["detections"] + record["dropped"])
    for small, big in zip(decoded, recorded, strict=True):
        assert big == pytest.approx([2 * v for v in small], abs=0.25)
        x, y, w, h = big
        assert 0 <= x and 0 <= y and x + w <= 1024.01 and y + h <= 768.01
    # the setting decides answers: it is part of the run's identity
    assert InferenceSettings(decode_side=200).identity() != InferenceSettings().identity()


def test_a_folder_run_with_decode_side_writes_annotated_photos_and_crops_at_the_decoded_size(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = tmp_path / "photos"
    folder.mkdir()
    _jpeg(folder / "big.jpg")
    out = tmp_path / "out"
    assert cli(["run", str(folder), "--detector", str(det), "--classifier", str(clf), "--out", str(out),
                "--score-threshold", "0", "--decode-side", "200", "--save-annotated", "--save-crops",
                "--workers", "0"]) == 0
    record = json.loads((out / "results.json").read_text())["images"][0]
    assert (record["width"], record["height"]) == (1024, 768)
    assert json.loads((out / "results.json").read_text())["info"]["settings"]["decode_side"] == 200
    with Image.open(out / "annotated" / "big.jpg") as annotated:
        assert annotated.size == (512, 384)
    # the crops cut from the decoded pixels, where the records' boxes (in the photo's pixels) fall on them
    pipe = Pipeline.from_files(det, clf, InferenceSettings(device="cpu"))
    pixels, _ = read_photo(folder / "big.jpg", short_side=200)
    padding = pipe.classifier.preprocessing.crop_padding
    expected = sorted(crop_box(pixels, [v / 2 for v in d["box"]], padding).shape[:2] for d in record["detections"])
    written = sorted(np.asarray(Image.open(p)).shape[:2] for p in (out / "crops").rglob("*.jpg"))
    assert written == expected and len(written) > 0
