import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from annotations.coco import import_annotations, load_coco, make_class_agnostic, merge_coco, save_subset
from annotations.commands import export_crops, split_main, stats, validate
from core.crops import crop_box, crop_region
from core.io import read_image
from tests.conftest import make_scene, shared


def _problem_kinds(problems):
    return sorted(p.kind for p in problems)


def test_yolo_with_quirks(tmp_path):
    src = tmp_path / "yolo"
    (src / "data.yaml").parent.mkdir(parents=True)
    (src / "data.yaml").write_text("names: [bee, hornet]\nnc: 2\n")
    make_scene(src / "images" / "a.jpg", [(10, 10, 20, 20)], size=(100, 50))
    make_scene(src / "images" / "b.jpg", [], size=(100, 50))
    make_scene(src / "images" / "c.jpg", [], size=(100, 50))
    (src / "labels").mkdir()
    (src / "labels" / "a.txt").write_text(
        "0 0.2 0.4 0.2 0.4\n"                       # a box: 20x20 px at (10, 10)
        "1 0.1 0.1 0.3 0.1 0.3 0.5 0.1 0.5\n"       # a polygon: extent (10, 5)-(30, 25)
        "0 0.95 0.5 0.2 0.2\n"                      # sticks out on the right: clipped
        "1 0.5 0.5 0 0.2\n"                          # zero width: dropped
        "0 0.5 0.5\n")                               # too few numbers
    (src / "labels" / "b.txt").write_text("")      # empty: a photo with no organism
    coco, problems = import_annotations("yolo", src, tmp_path / "out" / "c.json")
    assert _problem_kinds(problems) == ["bad line", "box outside image", "degenerate box", "polygon"]
    polygon = next(p for p in problems if p.kind == "polygon")
    assert polygon.file.endswith("a.txt") and polygon.line == 2
    assert "line 5" in str(next(p for p in problems if p.kind == "bad line"))
    assert [c["name"] for c in coco["categories"]] == ["bee", "hornet"]
    boxes = [a["bbox"] for a in coco["annotations"]]
    assert boxes[0] == pytest.approx([10, 10, 20, 20])
    assert boxes[1] == pytest.approx([10, 5, 20, 20])
    assert boxes[2] == pytest.approx([85, 20, 15, 10])  # 85..105 clipped to 100
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == 3
    # file names are relative to the JSON and pycocotools loads it
    api = COCO(str(tmp_path / "out" / "c.json"))
    assert len(api.getAnnIds()) == 3
    loaded = load_coco(tmp_path / "out" / "c.json")
    assert (tmp_path / "out" / loaded["images"][0]["file_name"]).resolve() == (src / "images" / "a.jpg").resolve()


def test_voc_and_csv(tmp_path):
    make_scene(tmp_path / "voc" / "JPEGImages" / "p.jpg", [(5, 5, 30, 30)], size=(64, 64))
    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    (tmp_path / "voc" / "Annotations" / "p.xml").write_text(
        "<annotation><filename>p.jpg</filename><size><width>64</width><height>64</height></size>"
        "<object><name>ant</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>35</xmax><ymax>35</ymax></bndbox></object>"
        "<object><name>ant</name><bndbox><xmin>40</xmin><ymin>40</ymin><xmax>40</xmax><ymax>50</ymax></bndbox>"
        "</object></annotation>")
    coco, problems = import_annotations("voc", tmp_path / "voc", tmp_path / "voc.json")
    assert len(coco["annotations"]) == 1 and _problem_kinds(problems) == ["degenerate box"]
    assert coco["annotations"][0]["bbox"] == [5, 5, 30, 30]

    make_scene(tmp_path / "csv" / "q.jpg", [(1, 1, 10, 10)], size=(32, 32))
    make_scene(tmp_path / "csv" / "empty.jpg", [], size=(32, 32))
    (tmp_path / "csv" / "boxes.csv").write_text("image,label,xmin,ymin,xmax,ymax\nq.jpg,bee,1,1,11,11\n"
                                                "q.jpg,wasp,-5,2,8,9\nempty.jpg,,,,,\nmissing.jpg,bee,1,1,2,2\n")
    coco, problems = import_annotations("csv", tmp_path / "csv" / "boxes.csv", tmp_path / "csv.json")
    assert len(coco["images"]) == 2 and len(coco["annotations"]) == 2
    assert _problem_kinds(problems) == ["box outside image", "missing image"]
    assert coco["annotations"][1]["bbox"] == [0, 2, 8, 7]


def test_coco_duplicate_category_names_merged(tmp_path):
    make_scene(tmp_path / "x.jpg", [(1, 1, 10, 10)], size=(40, 40))
    src = {"images": [{"id": 7, "file_name": "x.jpg", "width": 40, "height": 40}],
           "annotations": [{"id": 1, "image_id": 7, "category_id": 0, "bbox": [1, 1, 10, 10]},
                           {"id": 2, "image_id": 7, "category_id": 1, "bbox": [20, 20, 5, 5]}],
           "categories": [{"id": 0, "name": "Insects", "supercategory": "none"},
                          {"id": 1, "name": "Insects", "supercategory": "Insects"}]}
    (tmp_path / "src.json").write_text(json.dumps(src))
    coco, problems = import_annotations("coco", tmp_path / "src.json", tmp_path / "out.json")
    assert [c["name"] for c in coco["categories"]] == ["Insects"]
    assert {a["category_id"] for a in coco["annotations"]} == {1}
    assert _problem_kinds(problems) == ["duplicate category"]
    agnostic = make_class_agnostic(coco)
    assert agnostic["categories"] == [{"id": 1, "name": "organism", "supercategory": "organism"}]


def test_validate_lists_every_problem(tiny_coco):
    coco = json.loads(tiny_coco.read_text())
    coco["images"][0]["width"] = 500                     # size mismatch
    coco["images"][1]["file_name"] = "photos/gone.jpg"   # missing
    coco["annotations"][0]["category_id"] = 9            # unknown category
    coco["annotations"][1]["id"] = coco["annotations"][2]["id"]  # duplicate id
    coco["annotations"][3]["bbox"] = [5, 5, 0, 3]         # degenerate
    tiny_coco.write_text(json.dumps(coco))
    kinds = sorted(p.kind for p in validate(tiny_coco))
    assert kinds == ["degenerate box", "duplicate annotation id", "missing or unreadable image", "size mismatch",
                     "unknown category"]


def test_split_and_stats(tiny_coco, tmp_path):
    split_main([str(tiny_coco), "--out", str(tmp_path / "split"), "--val-fraction", "0.3", "--seed", "1",
                "--group-regex", r"scene\d(\d)"])  # groups by last digit: scene01 and scene11 together
    tr, va = load_coco(tmp_path / "split" / "train.json"), load_coco(tmp_path / "split" / "val.json")
    assert len(tr["images"]) + len(va["images"]) == 13 and va["images"]
    last = lambda c: {im["file_name"][-5] for im in c["images"]}  # noqa: E731
    assert not last(tr) & last(va)
    assert read_image(tmp_path / "split" / tr["images"][0]["file_name"]).shape == (80, 96, 3)
    s = stats(load_coco(tiny_coco))
    assert s["images"] == 13 and s["images_without_boxes"] == 1 and s["boxes_per_class"] == {"wasp": 12, "bee": 6}


def test_crops_are_the_pipeline_crops(tiny_coco, tmp_path):
    manifest = export_crops(tiny_coco, tmp_path / "crops", padding=0.2)
    assert manifest["crops_per_class"] == {"wasp": 12, "bee": 6} and manifest["padding"] == 0.2
    coco = load_coco(tiny_coco)
    ann = coco["annotations"][0]
    photo = read_image(tiny_coco.parent / coco["images"][0]["file_name"])
    saved = np.asarray(Image.open(tmp_path / "crops" / "wasp" / f"scene00_{ann['id']}.png"))
    assert np.array_equal(saved, crop_box(photo, ann["bbox"], 0.2))


def test_crop_region_pads_and_clips():
    assert crop_region((10, 10, 20, 10), 100, 100, padding=0.5) == (0, 5, 40, 25)
    assert crop_region((90, 90, 20, 20), 100, 100, padding=0.0) == (90, 90, 100, 100)
    assert crop_region((50, 50, 0.2, 0.2), 100, 100, padding=0.0) == (50, 50, 51, 51)


def test_real_roboflow_export_quirks(tmp_path):
    bh = shared("bees-hornets")
    coco, problems = import_annotations("yolo", bh / "train", tmp_path / "train.json")
    polygons = [p for p in problems if p.kind == "polygon"]
    assert len(polygons) == 1 and "youtube-60_jpg" in polygons[0].file
    assert len(coco["images"]) == 557
    assert len(set(range(1, 558)) - {a["image_id"] for a in coco["annotations"]}) == 18  # negatives kept
    traps = shared("yellow-traps", "valid", "_annotations.coco.json")
    coco, problems = import_annotations("coco", traps, tmp_path / "traps.json")
    assert [c["name"] for c in coco["categories"]] == ["Insects"]
    assert len(coco["images"]) == 60


def test_merge_two_files_of_other_folders(tiny_coco, tmp_path):
    coco = load_coco(tiny_coco)
    save_subset(coco, {1, 2, 3}, tmp_path / "a" / "first.json")
    # the second file: other photos, its own ids from 1 and its categories in another order
    second = {"images": [{**im, "id": im["id"] - 3} for im in coco["images"] if im["id"] in (4, 5)],
              "annotations": [{**a, "id": k + 1, "image_id": a["image_id"] - 3, "category_id": 3 - a["category_id"]}
                              for k, a in enumerate(a for a in coco["annotations"] if a["image_id"] in (4, 5))],
              "categories": [{"id": 1, "name": "bee"}, {"id": 2, "name": "wasp"}, {"id": 3, "name": "fly"}]}
    (tiny_coco.parent / "second.json").write_text(json.dumps(second))
    merged = merge_coco([load_coco(tmp_path / "a" / "first.json"), load_coco(tiny_coco.parent / "second.json")],
                        tmp_path / "b" / "merged.json")
    back = load_coco(tmp_path / "b" / "merged.json")  # strict: ids unique, every reference declared
    assert len(back["images"]) == 5 and [c["name"] for c in back["categories"]] == ["wasp", "bee", "fly"]
    names = {c["id"]: c["name"] for c in back["categories"]}
    by_photo = {}
    for a in back["annotations"]:
        im = next(i for i in back["images"] if i["id"] == a["image_id"])
        assert (tmp_path / "b" / im["file_name"]).resolve().is_file()
        by_photo.setdefault(Path(im["file_name"]).name, []).append((names[a["category_id"]], a["bbox"]))
    original = {c["id"]: c["name"] for c in coco["categories"]}
    for a in coco["annotations"]:
        if a["image_id"] <= 5:
            name = Path(coco["images"][a["image_id"] - 1]["file_name"]).name
            assert (original[a["category_id"]], a["bbox"]) in by_photo[name]
    assert len(merged["annotations"]) == sum(a["image_id"] <= 5 for a in coco["annotations"])
    with pytest.raises(ValueError, match="listed in two"):
        merge_coco([load_coco(tiny_coco), load_coco(tmp_path / "a" / "first.json")], tmp_path / "c.json")
