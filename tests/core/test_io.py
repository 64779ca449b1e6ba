import numpy as np
import pytest
from PIL import Image

from core.io import ImageReadError, atomic_write_json, list_images, read_image, read_jsonl


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)  # wide photo...
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # ...that the camera says to rotate 90 degrees
    img.save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (40, 20, 3)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "I;16", "CMYK"])
def test_odd_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (10, 8), (200, 100, 50))
    if mode == "I;16":
        img = Image.fromarray(np.full((8, 10), 40000, np.uint16))
        path = tmp_path / "x.png"
    else:
        img = img.convert(mode)
        path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    img.save(path)
    arr = read_image(path)
    assert arr.shape == (8, 10, 3) and arr.dtype == np.uint8
    if mode == "I;16":
        assert 150 < arr[0, 0, 0] < 160  # 40000 / 65535 * 255, not clipped to white


def test_transparent_pixels_on_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "t.png")
    assert (read_image(tmp_path / "t.png") == 255).all()


@pytest.mark.parametrize("kind,reason", [("empty", "empty file"), ("text", "not an image"),
                                         ("truncated", "corrupt or truncated"), ("missing", "cannot read")])
def test_bad_files_name_file_and_reason(tmp_path, kind, reason):
    path = tmp_path / f"{kind}.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a photo")
    elif kind == "truncated":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_pixel_limit(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="too large"):
        read_image(tmp_path / "big.png", max_pixels=5000)


def test_list_images_stable_and_filtered(tmp_path):
    for name in ["b/2.JPG", "a/1.png", "a/notes.txt", ".hidden/x.jpg", "c.webp"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a/1.png", "b/2.JPG", "c.webp"]


def test_jsonl_ignores_torn_last_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert [r["a"] for r in read_jsonl(p)] == [1, 2]
    atomic_write_json(tmp_path / "x.json", {"k": "v"})
    assert (tmp_path / "x.json").read_text().strip() == '{\n  "k": "v"\n}'
