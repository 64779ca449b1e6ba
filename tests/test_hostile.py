"""The second campaign (issue 18): ground the first one's 73 kinds of bad input did not cover.

File names that are not UTF-8, the store's catch-up, photos that change during a run, formula injection,
unusable stores, ONNX files that lie, full disks, and the small ones. Each test fails if its guard is removed.
"""

import csv
import json
import os
import shutil
from pathlib import Path

from tests.conftest import make_scene
from tools.cli import main as cli

LATIN1 = b"caf\xe9.jpg"  # "café.jpg" as an old camera or a Windows share writes it: not UTF-8


def _run(tiny_models, folder, out, *extra):
    det, clf = tiny_models
    return cli(["run", str(folder), "--detector", str(det), "--classifier", str(clf), "--out", str(out),
                "--workers", "0", "--score-threshold", "0.0", *map(str, extra)])


def _latin1_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    make_scene(folder / "a.jpg", [(8, 8, 30, 24)], seed=1)
    raw = os.path.join(os.fsencode(folder), LATIN1)
    shutil.copyfile(make_scene(tmp_path / "src.jpg", [(20, 10, 30, 30)], seed=2), raw)
    make_scene(folder / "b.jpg", [(8, 8, 30, 24)], seed=3)
    make_scene(folder / "sub" / "c.jpg", [(8, 8, 30, 24)], seed=4)
    return folder


def test_a_file_name_that_is_not_utf8_is_answered_and_kept_as_written_everywhere(tiny_models, tmp_path):
    folder = _latin1_folder(tmp_path)
    out = tmp_path / "out"
    store = tmp_path / "s.sqlite"
    assert _run(tiny_models, folder, out, "--format", "csv", "coco", "megadetector", "--store", "--store-url",
                store, "--save-annotated", "--save-crops") == 0
    name = os.fsdecode(LATIN1)  # the name as Python holds it: caf\udce9.jpg
    result = json.loads((out / "results.json").read_text(encoding="utf-8"))
    files = [r["file"] for r in result["images"]]
    assert name in files and len(files) == 4 and all(r["status"] == "ok" for r in result["images"])
    assert "\\udce9" in (out / "results.jsonl").read_text(encoding="utf-8")  # escaped, valid UTF-8
    with open(out / "results.csv", encoding="utf-8", newline="") as fh:
        assert "caf\\xe9.jpg" in {row["file"] for row in csv.DictReader(fh)}
    coco_images = json.loads((out / "results_coco_images.json").read_text(encoding="utf-8"))
    assert name in {im["file_name"] for im in coco_images["images"]}
    md = json.loads((out / "results_megadetector.json").read_text(encoding="utf-8"))
    assert name in {im["file"] for im in md["images"]}
    assert os.path.exists(os.path.join(os.fsencode(out / "annotated"), LATIN1))
    from review import store as st

    rows = st.photo_rows(st.open_store(store))
    assert len(rows) == 4 and any(r["path"].endswith("caf\\xe9.jpg") for r in rows)
    # and a resume is as calm: nothing to redo, the same records
    assert _run(tiny_models, folder, out, "--format", "csv") == 0
    again = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [r["file"] for r in again["images"]] == files
