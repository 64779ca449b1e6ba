"""Bad input, as a hostile-but-realistic user feeds it: nothing crashes a run, loses work or invents data.

Each case is one the README's promises must survive (issue 10); RELIABILITY.md counts them. Tables list
what is fed and what must come back; each test fails if its guard is removed.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotations.coco import import_annotations, load_coco
from core.io import check_jsonl, folder_lock, read_jsonl, scan_images
from core.modelfile import ModelFileError, weights_sha256
from pipeline.predictor import Pipeline
from pipeline.settings import InferenceSettings
from tests.conftest import make_scene
from tools.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def _strict_json(text: str):
    """json.loads that refuses NaN and infinities, as strict readers do."""
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=refuse)


def _photos(folder: Path, n: int = 2) -> Path:
    for i in range(n):
        make_scene(folder / f"p{i}.jpg", [(8, 8, 30, 24), (55, 40, 30, 30)], seed=i)
    return folder


def _run(det, clf, folder, out, *extra) -> int:
    return cli(["run", str(folder), "--detector", str(det), "--classifier", str(clf), "--out", str(out),
                "--workers", "0", *[str(e) for e in extra]])


def _records(out: Path) -> list[dict]:
    return _strict_json((out / "results.json").read_text())["images"]


# ---- runs that stopped, and stopped again on every rerun ------------------------------------------------

@pytest.mark.parametrize("workers", [0, 1])
def test_extreme_aspect_ratio_is_a_failure_record_and_the_run_goes_on(tiny_models, tmp_path, workers):
    det, clf = tiny_models
    folder = _photos(tmp_path / "photos")
    Image.new("RGB", (20000, 20), (90, 120, 40)).save(folder / "strip.png")
    Image.new("RGB", (20, 20000), (90, 120, 40)).save(folder / "pole.png")
    assert _run(det, clf, folder, tmp_path / "out", "--workers", workers) == 0
    by_file = {r["file"]: r for r in _records(tmp_path / "out")}
    assert by_file["strip.png"]["status"] == "failed" and "too narrow" in by_file["strip.png"]["failure"]
    assert by_file["pole.png"]["status"] == "failed"
    assert by_file["p0.jpg"]["status"] == by_file["p1.jpg"]["status"] == "ok"


def test_a_batch_with_one_bad_photo_keeps_the_others(tiny_models, tmp_path, monkeypatch):
    """The app's batch call and the folder run share process_items: a photo that breaks the models fails alone."""
    det, clf = tiny_models
    folder = _photos(tmp_path / "photos", 3)
    pipe = Pipeline.from_files(det, clf, InferenceSettings(device="cpu"))
    items = [pipe.load(p, p.name) for p in sorted(folder.iterdir())]
    Image.new("RGB", (20000, 20)).save(tmp_path / "strip.png")
    items.insert(1, pipe.load(tmp_path / "strip.png", "strip.png"))
    real = pipe.process_batch

    def breaks_on_the_second_photo(images, inputs, *args):
        if any(im.shape == items[2]["image"].shape and np.array_equal(im, items[2]["image"]) for im in images):
            raise RuntimeError("a kernel fault on this photo")
        return real(images, inputs, *args)

    monkeypatch.setattr(pipe, "process_batch", breaks_on_the_second_photo)
    records = pipe.process_items(items)
    assert [r["status"] for r in records] == ["ok", "failed", "failed", "ok"]
    assert "too narrow" in records[1]["failure"] and "a kernel fault" in records[2]["failure"]


def test_deep_folders_and_long_names_keep_their_crops(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = tmp_path / "photos"
    deep = folder.joinpath(*[f"level-{i:03d}" for i in range(60)])  # flattened: 600 characters, > 255
    _photos(deep, 1)
    long_name = deep / ("x" * 240 + ".jpg")
    make_scene(long_name, [(8, 8, 30, 24)], seed=5)
    out = tmp_path / "out"
    assert _run(det, clf, folder, out, "--save-crops", "--save-annotated") == 0
    records = _records(out)
    assert len(records) == 2 and all(r["status"] == "ok" and "warnings" not in r for r in records)
    n_dets = sum(len(r["detections"]) for r in records)
    assert n_dets and len([p for p in (out / "crops").rglob("*.jpg")]) == n_dets
    assert len(list((out / "annotated").rglob("*.jpg"))) == 2


def _deep_tree(root: Path, levels: int) -> None:
    """A tree deeper than PATH_MAX allows to name, built one level at a time through folder descriptors."""
    root.mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir("deep-folder", dir_fd=fd)
            new = os.open("deep-folder", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
    finally:
        os.close(fd)


def test_a_tree_too_deep_to_list_is_reported_and_the_rest_runs(tiny_models, tmp_path, caplog):
    det, clf = tiny_models
    folder = _photos(tmp_path / "photos", 1)
    _deep_tree(folder / "tree", 600)
    found, problems = scan_images(folder)
    assert [p.name for p in found] == ["p0.jpg"] and problems and "cannot be listed" in problems[0]
    assert _run(det, clf, folder, tmp_path / "out") == 0
    info = _strict_json((tmp_path / "out" / "results.json").read_text())["info"]
    assert info["unlisted_folders"] and "deep-folder" in info["unlisted_folders"][0]
    assert "cannot be listed" in caplog.text


def test_a_folder_without_permission_is_named_not_skipped(tiny_models, tmp_path, monkeypatch, caplog):
    det, clf = tiny_models
    folder = _photos(tmp_path / "photos", 1)
    _photos(folder / "private", 1)
    real_scandir = os.scandir

    def scandir(path):  # as for a user without read permission (the tests may run as root)
        if Path(path).name == "private":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert _run(det, clf, folder, tmp_path / "out") == 0
    info = _strict_json((tmp_path / "out" / "results.json").read_text())["info"]
    assert len(info["unlisted_folders"]) == 1 and "private" in info["unlisted_folders"][0]
    assert "Permission denied" in info["unlisted_folders"][0] and "private" in caplog.text


def test_out_that_is_a_file_is_refused_in_one_line(tiny_models, tmp_path, capsys):
    det, clf = tiny_models
    (tmp_path / "results").write_text("not a folder")
    assert _run(det, clf, _photos(tmp_path / "photos"), tmp_path / "results") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file, not a folder" in err


def _model_variant(src: Path, dest: Path, change) -> Path:
    obj = torch.load(src, weights_only=True)
    change(obj)
    obj["weights_sha256"] = weights_sha256(obj["state_dict"])
    torch.save(obj, dest)
    return dest


def _nan_weights(obj):
    name = next(k for k, v in obj["state_dict"].items() if v.is_floating_point())
    obj["state_dict"][name] = torch.full_like(obj["state_dict"][name], float("nan"))


class _Payload:
    pass


def _write(dest: Path, data: bytes) -> Path:
    dest.write_bytes(data)
    return dest


MODEL_CASES = {
    # case: (which model, how to spoil it, what the one line must say)
    "empty file": ("classifier", lambda src, d: _write(d, b""), "empty file (0 bytes)"),
    "truncated": ("detector", lambda src, d: _write(d, src.read_bytes()[:5000]), "loads safely"),
    "pickled object": ("classifier", lambda src, d: torch.save({"x": _Payload()}, d) or d, "loads safely"),
    "no class_names": ("classifier", lambda src, d: _model_variant(src, d, lambda o: o.pop("class_names")),
                       "class_names missing"),
    "empty class_names": ("detector", lambda src, d: _model_variant(src, d, lambda o: o.update(class_names=[])),
                          "0 class(es)"),
    "one-class classifier": ("classifier", lambda src, d: _model_variant(
        src, d, lambda o: o.update(class_names=["Apis mellifera"])), "needs at least 2"),
    "architecture of other weights": ("classifier", lambda src, d: _model_variant(
        src, d, lambda o: o.update(architecture="resnet50")), "do not fit the architecture"),
    "unknown architecture": ("classifier", lambda src, d: _model_variant(
        src, d, lambda o: o.update(architecture="quantum_net")), "settings missing or wrong"),
    "detector without sizes": ("detector", lambda src, d: _model_variant(src, d, lambda o: o.pop("min_size")),
                               "settings missing or wrong"),
    "NaN weights": ("classifier", lambda src, d: _model_variant(src, d, _nan_weights), "NaN or infinite"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_spoiled_model_files_are_refused_in_one_line_naming_the_file(case, tiny_models, tmp_path, capsys):
    det, clf = tiny_models
    which, spoil, message = MODEL_CASES[case]
    bad = spoil(det if which == "detector" else clf, tmp_path / "bad.pt")
    args = (bad, clf) if which == "detector" else (det, bad)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        Pipeline.from_files(*args, InferenceSettings(device="cpu"))
    assert _run(*args, _photos(tmp_path / "photos"), tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and message in err, err


# ---- work lost, duplicated or mixed ---------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its entry waits to be reaped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_kill_9_leaves_no_loader_worker_behind(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = tmp_path / "photos"
    for i in range(60):
        make_scene(folder / f"p{i:02d}.jpg", [(8, 8, 30, 24)], seed=i)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tools.cli", "run", str(folder), "--detector", str(det), "--classifier", str(clf),
           "--out", str(out), "--workers", "2", "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    jsonl = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (jsonl.exists() and jsonl.read_text().count("\n") >= 2):
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers, "the run should have loader workers while it runs"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(map(_alive, workers)):
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"loader workers {left} outlived their killed run"


def test_a_second_run_into_the_same_out_is_refused_and_a_stale_lock_is_not(tiny_models, tmp_path, capsys):
    det, clf = tiny_models
    folder, out = _photos(tmp_path / "photos"), tmp_path / "out"
    with folder_lock(out):
        assert _run(det, clf, folder, out) == 2
        err = capsys.readouterr().err
        assert f"in use by another taxolens run (pid {os.getpid()})" in err
        assert not (out / "results.jsonl").exists()
    (out / ".taxolens.lock").write_text("999999\n")  # left by a killed run: the kernel's lock died with it
    assert _run(det, clf, folder, out) == 0
    assert len(_records(out)) == 2


def test_resume_with_other_settings_is_refused_even_without_run_json(tiny_models, tmp_path, capsys):
    det, clf = tiny_models
    folder, out = _photos(tmp_path / "photos", 3), tmp_path / "out"
    assert _run(det, clf, folder, out) == 0
    records = list(read_jsonl(out / "results.jsonl"))
    assert len({r["settings_id"] for r in records}) == 1
    (out / "run.json").unlink()
    lines = (out / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text(lines[0] + "\n")  # as if killed after the first photo
    assert _run(det, clf, folder, out, "--threshold", "0.5") == 2
    assert "decided with other models or settings" in capsys.readouterr().err
    assert _run(det, clf, folder, out) == 0  # the same settings resume
    assert len(_records(out)) == 3


def test_outputs_of_photos_with_one_stem_do_not_collide(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = tmp_path / "photos"
    make_scene(folder / "x.jpg", [(8, 8, 30, 24), (55, 40, 30, 30)], seed=1)
    make_scene(folder / "x.png", [(8, 8, 30, 24), (55, 40, 30, 30)], seed=2)
    make_scene(folder / "a" / "b.jpg", [(8, 8, 30, 24)], seed=3)
    make_scene(folder / "a__b.jpg", [(8, 8, 30, 24)], seed=4)
    out = tmp_path / "out"
    assert _run(det, clf, folder, out, "--save-annotated", "--save-crops") == 0
    n_dets = sum(len(r["detections"]) for r in _records(out))
    assert len([p for p in (out / "crops").rglob("*") if p.is_file()]) == n_dets > 4
    annotated = sorted(p.relative_to(out / "annotated").as_posix() for p in (out / "annotated").rglob("*.*"))
    assert annotated == ["a/b.jpg", "a__b.jpg", "x.jpg", "x.png"]


def test_out_inside_the_input_folder_is_never_read_as_input(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = _photos(tmp_path / "photos", 2)
    out = folder / "results"
    for _ in range(2):
        assert _run(det, clf, folder, out, "--save-annotated", "--save-crops") == 0
    assert sorted(r["file"] for r in _records(out)) == ["p0.jpg", "p1.jpg"]


def test_broken_lines_are_reported_moved_aside_and_their_photos_redone(tiny_models, tmp_path, caplog):
    det, clf = tiny_models
    folder, out = _photos(tmp_path / "photos", 4), tmp_path / "out"
    assert _run(det, clf, folder, out) == 0
    lines = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    lines[1] = b'{"file": "p1.jpg", "status": "ok", "detec\n'  # edited by hand, in the middle
    lines[2] = b'{"file": "p2.jpg", "status": "\xff\xfe"}\n'  # not UTF-8
    (out / "results.jsonl").write_bytes(b"".join(lines))
    records, broken = check_jsonl(out / "results.jsonl")
    assert [n for n, *_ in broken] == [2, 3] and "not UTF-8" in broken[1][2]
    assert _run(det, clf, folder, out) == 0
    assert "line 2: not valid JSON" in caplog.text and "line 3: not UTF-8" in caplog.text
    assert len((out / "results.broken.jsonl").read_bytes().splitlines()) == 2
    files = [r["file"] for r in read_jsonl(out / "results.jsonl")]
    assert sorted(files) == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert len(_records(out)) == 4


def _train_args(data, out, *extra):
    return ["--data", str(data), "--out", str(out), "--arch", "resnet18", "--weights", "none", "--input-size", "32",
            "--epochs", "1", "--batch-size", "4", "--workers", "0", "--no-eval", "--unknown-method", "none",
            *extra]


def test_a_refused_classifier_resume_leaves_the_run_as_it_was(tiny_classes, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["classifier", "train", *_train_args(tiny_classes, out)]) == 0
    capsys.readouterr()
    config = (out / "config.yaml").read_text()
    ckpt = out / "checkpoint.pt"
    for spoil, message in ((lambda: torch.save({"x": _Payload()}, ckpt), "cannot be loaded"),
                           (lambda: ckpt.write_bytes(ckpt.read_bytes()[:100]), "cannot be loaded"),
                           (lambda: torch.save({"arch": "resnet18"}, ckpt), "not a taxolens training checkpoint")):
        spoil()
        assert cli(["classifier", "train", *_train_args(tiny_classes, out, "--epochs", "3", "--lr", "0.1")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(ckpt) in err and message in err, err
        assert (out / "config.yaml").read_text() == config


def test_a_single_class_is_refused(tiny_classes, tmp_path, capsys):
    only = tmp_path / "one"
    only.mkdir()
    (tiny_classes / "red").rename(only / "red")
    assert cli(["classifier", "train", *_train_args(only, tmp_path / "run")]) == 2
    assert "needs at least two" in capsys.readouterr().err


def test_training_into_a_file_is_refused(tiny_classes, tiny_coco, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    assert cli(["classifier", "train", *_train_args(tiny_classes, tmp_path / "taken")]) == 2
    assert cli(["detector", "train", "--train", str(tiny_coco), "--out", str(tmp_path / "taken"), "--arch",
                "fasterrcnn_mobilenet_v3_large_fpn", "--weights", "none", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("is a file, not a folder" in line for line in err)


# ---- data invented at import ------------------------------------------------------------------------------

def _yolo(tmp_path, label_text: str) -> Path:
    root = tmp_path / "yolo"
    make_scene(root / "images" / "a.jpg", [(8, 8, 30, 24)], size=(100, 100))
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(label_text)
    (root / "data.yaml").write_text("names: [bee, hornet]\n")
    return root


def _csv(tmp_path, rows: str) -> Path:
    make_scene(tmp_path / "a.jpg", [(8, 8, 30, 24)], size=(100, 100))
    (tmp_path / "labels.csv").write_text("image,label,xmin,ymin,xmax,ymax\n" + rows)
    return tmp_path / "labels.csv"


def _voc(tmp_path, filename: str, size=(100, 100)) -> Path:
    make_scene(tmp_path / "voc" / "a.jpg", [(8, 8, 30, 24)], size=(100, 100))
    (tmp_path / "voc" / "a.xml").write_text(
        f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
        "</size><object><name>bee</name><bndbox><xmin>60</xmin><ymin>60</ymin><xmax>90</xmax><ymax>90</ymax>"
        "</bndbox></object></annotation>")
    return tmp_path / "voc"


def _coco(tmp_path, data) -> Path:
    make_scene(tmp_path / "c" / "a.jpg", [(8, 8, 30, 24)], size=(100, 100))
    path = tmp_path / "c" / "in.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _coco_doc(**change):
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30]}],
           "categories": [{"id": 1, "name": "bee"}]}
    doc.update(change)
    return doc


IMPORT_CASES = {
    # case: (format, make the source, boxes that must come out, a problem kind that must be reported)
    "YOLO NaN coordinates": ("yolo", lambda t: _yolo(t, "0 nan 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n"), 1, "bad box"),
    "YOLO infinite size": ("yolo", lambda t: _yolo(t, "0 0.5 0.5 inf 0.2\n"), 0, "bad box"),
    "YOLO class id 0.5": ("yolo", lambda t: _yolo(t, "0.5 0.5 0.5 0.2 0.2\n"), 0, "bad line"),
    "CSV NaN coordinates": ("csv", lambda t: _csv(t, "a.jpg,bee,nan,1,20,20\na.jpg,bee,1,1,20,20\n"), 1, "bad box"),
    "CSV path out of the folder": ("csv", lambda t: _csv(t, "../../../../etc/passwd,bee,1,1,20,20\n"), 0,
                                   "unsafe path"),
    "VOC filename out of the folder": ("voc", lambda t: _voc(t, "../../../../etc/passwd"), 0, "unsafe path"),
    "VOC recorded size wrong": ("voc", lambda t: _voc(t, "a.jpg", size=(50, 50)), 1, "size mismatch"),
    "COCO recorded size wrong": ("coco", lambda t: _coco(t, _coco_doc(images=[
        {"id": 1, "file_name": "a.jpg", "width": 50, "height": 50}])), 1, "size mismatch"),
    "COCO file_name out of the folder": ("coco", lambda t: _coco(t, _coco_doc(images=[
        {"id": 1, "file_name": "../../../etc/passwd", "width": 100, "height": 100}])), 0, "unsafe path"),
}


@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_import_never_invents_or_drops_a_box(case, tmp_path):
    fmt, make, boxes, kind = IMPORT_CASES[case]
    coco, problems = import_annotations(fmt, make(tmp_path), tmp_path / "out.json")
    assert len(coco["annotations"]) == boxes
    assert kind in {p.kind for p in problems}, problems
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert all(np.isfinite(a["bbox"])) and w > 0 and h > 0 and x + w <= 100 and y + h <= 100
    _strict_json((tmp_path / "out.json").read_text())


COCO_REFUSED = {
    # case: (the file's content, what the one line must say)
    "top level is a list": ("[1, 2, 3]", "top level is a list"),
    "images without file_name": (_coco_doc(images=[{"id": 1}]), "images[0] needs an id and a file_name"),
    "boxes without bbox": (_coco_doc(annotations=[{"id": 1, "image_id": 1, "category_id": 1}]),
                           "needs a bbox of four finite numbers"),
    "nested 100000 deep": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "duplicate image ids": (_coco_doc(images=[{"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "a.jpg"}]),
                            "used more than once"),
    "not UTF-8": ('{"images": "\xff"}'.encode("latin-1").decode("latin-1"), "not"),
}


@pytest.mark.parametrize("case", list(COCO_REFUSED))
def test_unusable_coco_files_are_refused_in_one_line(case, tmp_path, capsys):
    content, message = COCO_REFUSED[case]
    src = _coco(tmp_path, content)
    if case == "not UTF-8":
        src.write_bytes(b'{"images": "\xff"}')
    assert cli(["annotations", "import", "--format", "coco", str(src), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(src) in err and message in err, err
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("command", [["split", "--out", "{tmp}/split"], ["crops", "--out", "{tmp}/crops"]])
def test_split_and_crops_refuse_an_undeclared_category(command, tmp_path, capsys):
    src = _coco(tmp_path, _coco_doc(annotations=[{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 9, 9]}]))
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    assert cli(["annotations", args[0], str(src), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert "unknown category" in err and "category 7" in err
    with pytest.raises(ValueError, match="annotations validate"):
        load_coco(src)
    assert cli(["annotations", "validate", str(src)]) == 1  # validate lists it instead of refusing


# ---- settings taken without a check ------------------------------------------------------------------------

RUN_SETTINGS = {
    "--threshold 1.5": (["--threshold", "1.5"], "--threshold 1.5: not allowed; expected a probability from 0 to 1"),
    "--threshold -1": (["--threshold", "-1"], "--threshold -1.0: not allowed"),
    "--threshold nan": (["--threshold", "nan"], "--threshold nan: not a number"),
    "--score-threshold inf": (["--score-threshold", "inf"], "--score-threshold inf: not a number"),
    "--batch-size 0": (["--batch-size", "0"], "--batch-size 0: not allowed; expected a whole number from 1 up"),
    "--suppress-iou -0.5": (["--suppress-iou", "-0.5"], "--suppress-iou -0.5: not allowed"),
}


@pytest.mark.parametrize("case", list(RUN_SETTINGS))
def test_run_settings_are_checked_before_any_photo(case, tiny_models, tmp_path, capsys):
    det, clf = tiny_models
    extra, message = RUN_SETTINGS[case]
    assert _run(det, clf, _photos(tmp_path / "photos"), tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


YAML_SETTINGS = {
    # case: (command, YAML, what the error must name)
    "epochs: -3": ("classifier", "epochs: -3\n", "--epochs -3: not allowed; expected a whole number from 1 up"),
    "lr: [1, 2]": ("classifier", "lr: [1, 2]\n", "lr: [1, 2] is not allowed (one value, not a list)"),
    "device: quantum": ("classifier", "device: quantum\n", "device: 'quantum' is not allowed (one of auto, cpu"),
    "batch_size: 2.5": ("classifier", "batch_size: 2.5\n", "batch_size: 2.5 is not allowed (a whole number)"),
    "formats: [xml]": ("run", "formats: [xml]\n", "formats: ['xml'] is not allowed (one of csv, coco, megadetector)"),
    "threshold: .nan": ("run", "threshold: .nan\n", "--threshold nan: not a number"),
    "save_crops: maybe": ("run", "save_crops: maybe\n", "save_crops: 'maybe' is not allowed (true or false)"),
}


@pytest.mark.parametrize("case", list(YAML_SETTINGS))
def test_yaml_settings_are_checked_like_the_command_line(case, tiny_models, tiny_classes, tmp_path, capsys):
    det, clf = tiny_models
    command, text, message = YAML_SETTINGS[case]
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    if command == "run":
        rc = _run(det, clf, _photos(tmp_path / "photos"), out, "--config", config)
    else:
        rc = cli(["classifier", "train", "--config", str(config), "--data", str(tiny_classes), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


def test_records_never_hold_nan(tiny_models, tmp_path):
    """A whole-photo answer has no detector score: it is null, never NaN, in every output."""
    det, clf = tiny_models
    out = tmp_path / "out"
    assert _run(det, clf, _photos(tmp_path / "photos"), out, "--score-threshold", "1.0", "--classify-whole-photo",
                "--format", "coco", "megadetector") == 0
    for name in ("results.json", "results_coco.json", "results_megadetector.json"):
        _strict_json((out / name).read_text())
    for line in (out / "results.jsonl").read_text().splitlines():
        record = _strict_json(line)
        assert all(d["detector_score"] is None for d in record["detections"])
