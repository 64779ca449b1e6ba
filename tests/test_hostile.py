"""The second campaign (issue 18): ground the first one's 73 kinds of bad input did not cover.

File names that are not UTF-8, the store's catch-up, photos that change during a run, formula injection,
unusable stores, ONNX files that lie, full disks, and the small ones. Each test fails if its guard is removed.
"""

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

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


def test_the_store_catch_up_matches_photos_by_content_not_by_relative_name(tiny_models, tmp_path):
    """Cameras name every card IMG_0001.jpg: folder B's is another photo than folder A's."""
    from review import store as st

    for folder, seed in (("A", 1), ("B", 2)):
        make_scene(tmp_path / folder / "IMG_0001.jpg", [(8, 8, 30, 24)], seed=seed)
    store = tmp_path / "s.sqlite"
    assert _run(tiny_models, tmp_path / "A", tmp_path / "outA", "--store", "--store-url", store) == 0
    # B's run finished its results but was cut before its store writes (as a kill -9 there does)
    assert _run(tiny_models, tmp_path / "B", tmp_path / "outB") == 0
    assert _run(tiny_models, tmp_path / "B", tmp_path / "outB", "--store", "--store-url", store) == 0
    rows = st.photo_rows(st.open_store(store))
    assert len({r["sha256"] for r in rows}) == 2, "folder B's IMG_0001.jpg never reached the store"


def test_a_photo_rewritten_after_the_models_saw_it_is_stored_as_they_saw_it(tiny_models, tmp_path):
    from core.io import read_photo
    from review import store as st

    photo = make_scene(tmp_path / "p.jpg", [(8, 8, 30, 24)], size=(96, 80), seed=1)
    _, facts = read_photo(photo)
    record = {"file": "p.jpg", "status": "ok", "model_version": "d+c", "width": 96, "height": 80,
              "detections": [{"box": [50, 40, 40, 30], "taxon": "Vespa", "reason": "rolled_up", "top": []}],
              "dropped": [], "sha256": facts["sha256"]}
    make_scene(photo, [(1, 1, 5, 5)], size=(40, 30), seed=9)  # a sync client rewrote it meanwhile
    engine = st.open_store(tmp_path / "s.sqlite")
    st.add_record(engine, record, photo, source="run", settings_id="x")
    row = st.photo_rows(engine)[0]
    assert (row["sha256"], row["width"], row["height"]) == (facts["sha256"], 96, 80)


@pytest.mark.parametrize("cell,safe", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+2", "'+1+2"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tcmd", "'\tcmd"), ("\rcmd", "'\rcmd"), ("-0.5", "-0.5"), ("+3", "+3"),
    (-0.5, -0.5), (3, 3), ("Vespa velutina", "Vespa velutina"), ("", ""), (None, None),
    (os.fsdecode(LATIN1), "caf\\xe9.jpg"),
])
def test_csv_cells_are_neutralised_and_numbers_stay_numbers(cell, safe):
    from core.io import csv_cell

    assert csv_cell(cell) == safe


def test_no_formula_reaches_any_csv_we_write(tiny_models, tmp_path):
    """results.csv, the app's batch CSV, Darwin Core's occurrence.txt and Camtrap DP's tables."""
    from pipeline.predictor import Pipeline
    from pipeline.settings import InferenceSettings
    from review import store as st
    from review.exports import export_camtrapdp, export_dwc
    from webapp.identify import IdentifyPage

    folder = tmp_path / "photos"
    for i, name in enumerate(("=cmd.jpg", "@SUM.jpg", "+x.jpg")):
        make_scene(folder / name, [(8, 8, 30, 24)], seed=i)
    store = tmp_path / "s.sqlite"
    assert _run(tiny_models, folder, tmp_path / "out", "--format", "csv", "--store", "--store-url", store,
                "--threshold", "0.0") == 0

    def cells(text: str, delimiter=","):
        return [c for row in csv.reader(text.splitlines(), delimiter=delimiter) for c in row]

    def no_formula(found):
        bad = [c for c in found if c and c[0] in "=+@" and not c[0] == "'"]
        assert not bad, bad
        return found

    assert "'=cmd.jpg" in no_formula(cells((tmp_path / "out" / "results.csv").read_text(encoding="utf-8")))
    page = IdentifyPage(Pipeline.from_files(*tiny_models, InferenceSettings(device="cpu", score_threshold=0.0)))
    _, batch_csv = page.batch([str(folder / "=cmd.jpg")], 0.0, 0.0)
    assert "'=cmd.jpg" in no_formula(cells(Path(batch_csv).read_text(encoding="utf-8")))
    engine = st.open_store(store)
    row = st.detection_rows(engine)[0]
    st.add_review(engine, row["id"], reviewer="=evil()", action="correct", taxon="@Vespa")
    export_dwc(engine, tmp_path / "dwc.zip")
    import zipfile

    with zipfile.ZipFile(tmp_path / "dwc.zip") as z:
        occurrence = z.read("occurrence.txt").decode("utf-8")
    assert "'=evil()" in no_formula(cells(occurrence, "\t")) and "'@Vespa" in cells(occurrence, "\t")
    export_camtrapdp(engine, tmp_path / "dp", latitude=42.1, longitude=-8.2)
    for table in ("media.csv", "observations.csv"):
        no_formula(cells((tmp_path / "dp" / table).read_text(encoding="utf-8")))
    assert "'=cmd.jpg" in cells((tmp_path / "dp" / "media.csv").read_text(encoding="utf-8"))


def _stored_run(tiny_models, tmp_path, n=3):
    folder = tmp_path / "photos"
    for i in range(n):
        make_scene(folder / f"p{i}.jpg", [(8, 8, 30, 24)], seed=i)
    store = tmp_path / "s.sqlite"
    assert _run(tiny_models, folder, tmp_path / "out", "--store", "--store-url", store) == 0
    return folder, store


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _damaged_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    for i in range(page + 100, min(len(data), 3 * page)):  # the schema's table pages, the header intact
        data[i] = 0xA5
    path.write_bytes(bytes(data))


def _a_folder(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.mkdir()


@pytest.mark.parametrize("spoil,says", [
    (_random_bytes, "not a taxolens store (not an SQLite database"),
    (_truncated, "damaged"),
    (_damaged_in_the_middle, "damaged"),
    (_a_folder, "is a folder, not a store"),
])
def test_an_unusable_store_is_one_line_and_costs_nothing(tiny_models, tmp_path, capsys, spoil, says):
    import gc

    folder, store = _stored_run(tiny_models, tmp_path)
    from review import store as st

    gc.collect()  # no connection of the first run left to write the log back into the spoiled file
    st.open_store(store).dispose()
    for suffix in ("-wal", "-shm"):  # everything in the main file, as a copied store has it
        Path(str(store) + suffix).unlink(missing_ok=True)
    spoil(store)
    capsys.readouterr()
    make_scene(folder / "p9.jpg", [(8, 8, 30, 24)], seed=9)  # one more photo to answer
    assert _run(tiny_models, folder, tmp_path / "out", "--store", "--store-url", store) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{store}: " in err and says in err and "Traceback" not in err and "newer taxolens" not in err
    # what was done stays, and the run completes with a usable store
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == 3
    assert _run(tiny_models, folder, tmp_path / "out") == 0
    assert cli(["review", "stats", "--store-url", str(store)]) == 2 and says in capsys.readouterr().err


def test_read_only_checks_use_the_access_rules(tiny_models, tmp_path, capsys, monkeypatch):
    """Root can write anything, so the media's read-only state is simulated where access() is asked."""
    folder, store = _stored_run(tiny_models, tmp_path)
    from review import store as st

    st.open_store(store).dispose()
    real_access = os.access
    monkeypatch.setattr(st.os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    capsys.readouterr()
    assert cli(["review", "stats", "--store-url", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)["photos"] == 3
    assert cli(["review", "export-dwc", "--store-url", str(store), "--out", str(tmp_path / "dwc.zip")]) == 0
    assert _run(tiny_models, folder, tmp_path / "out2", "--store", "--store-url", store) == 2
    assert "read-only" in capsys.readouterr().err


def test_a_full_disk_under_the_store_is_one_line_and_the_resume_completes(tiny_models, tmp_path, capsys,
                                                                          monkeypatch):
    """SQLite's max_page_count makes the store's 'disk' full for real (SQLITE_FULL)."""
    from review import store as st

    folder = tmp_path / "photos"
    for i in range(6):
        make_scene(folder / f"p{i}.jpg", [(8, 8, 30, 24)], seed=i)
    store = tmp_path / "s.sqlite"
    st.open_store(store).dispose()
    pages = len(store.read_bytes()) // 4096 + 1
    real = st._sqlite_pragmas

    def tiny_disk(conn, record):
        real(conn, record)
        conn.execute(f"PRAGMA max_page_count={pages}")

    monkeypatch.setattr(st, "_sqlite_pragmas", tiny_disk)
    capsys.readouterr()
    assert _run(tiny_models, folder, tmp_path / "out", "--store", "--store-url", store) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{store}: the disk is full" in err and "Traceback" not in err
    done = len((tmp_path / "out" / "results.jsonl").read_text().splitlines())
    assert done >= 1
    monkeypatch.setattr(st, "_sqlite_pragmas", real)
    assert _run(tiny_models, folder, tmp_path / "out", "--store", "--store-url", store) == 0
    assert st.stats(st.open_store(store))["photos"] == 6


def test_a_lock_held_by_another_writer_is_waited_for_then_named(tiny_models, tmp_path, monkeypatch, caplog):
    import sqlite3
    import threading

    from review import store as st

    _, store = _stored_run(tiny_models, tmp_path, n=1)
    engine = st.open_store(store)
    record = json.loads((tmp_path / "out" / "results.json").read_text())["images"][0]
    holder = sqlite3.connect(store, timeout=0, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(st, "LOCK_WAIT_SECONDS", 2)
    with pytest.raises(st.StoreError, match=r"locked by another writer for more than 2 s"):
        st.add_record(engine, {**record, "settings_id": "other"}, tmp_path / "photos" / "p0.jpg", source="run")
    threading.Timer(2.5, lambda: holder.execute("COMMIT")).start()  # freed after 2.5 s: the write waits
    monkeypatch.setattr(st, "LOCK_WAIT_SECONDS", 30)
    assert st.add_record(engine, {**record, "settings_id": "other"}, tmp_path / "photos" / "p0.jpg",
                         source="run").added
    assert "locked by another writer; waiting up to 30 s" in caplog.text
    holder.close()


def _classifier_file(path: Path, classes: list[str], input_size: int = 32, seed: int = 0) -> Path:
    import torch

    from classifier.models import Preprocessing, build_classifier
    from core.modelfile import save_model_file

    torch.manual_seed(seed)
    model, _ = build_classifier("resnet18", len(classes), "none")
    save_model_file(path, kind="classifier", state_dict=model.state_dict(),
                    meta={"architecture": "resnet18", "class_names": classes, "threshold": 0.94,
                          "preprocessing": Preprocessing(input_size=input_size, resize_size=input_size + 4).to_dict(),
                          "class_thresholds": {}, "taxonomy": {}, "metrics": {}})
    return path


def _copy_stamp(src: Path, dst: Path) -> None:
    import onnx

    stamped = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for key, value in stamped.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(dst))


def _garble_stamp(src: Path, dst: Path) -> None:
    import onnx

    model = onnx.load(str(dst))
    for entry in model.metadata_props:
        if entry.key == "taxolens_weights_sha256":
            entry.value = "not json {"
    onnx.save(model, str(dst))


def _forge(src: Path, dst: Path) -> None:
    """A careful forger: the release file's identity over the other file's own digest (the shapes catch it)."""
    from core.modelfile import load_model_file
    from core.onnxrt import stamp

    stamp(dst, load_model_file(src.with_suffix(".pt"), "classifier"))


@pytest.mark.parametrize("other,spoil,says", [
    (["a", "b", "c"], _copy_stamp, "its stamp does not belong to its weights"),
    (["a", "b", "c"], _garble_stamp, "its taxolens stamp is not readable"),
    (["a", "b"], _forge, "gives 2 outputs, but"),
    ((["a", "b", "c"], 48), _forge, "takes input"),
])
def test_an_onnx_file_is_checked_against_its_own_weights_and_its_release_file(tiny_models, tmp_path, capsys,
                                                                                other, spoil, says):
    from classifier.onnx import export_onnx
    from core.onnxrt import onnx_path

    classes, size = other if isinstance(other, tuple) else (other, 32)
    mine = _classifier_file(tmp_path / "mine.pt", ["Apis mellifera", "Formicidae", "Vespa velutina"])
    theirs = _classifier_file(tmp_path / "theirs.pt", classes, size, seed=1)
    export_onnx(mine, onnx_path(mine))
    export_onnx(theirs, onnx_path(theirs))
    shutil.copy(onnx_path(theirs), tmp_path / "swapped.onnx")
    spoil(onnx_path(mine), tmp_path / "swapped.onnx")
    shutil.copy(tmp_path / "swapped.onnx", onnx_path(mine))
    from detector.onnx import export_onnx as export_detector

    det = shutil.copy(tiny_models[0], tmp_path / "det.pt")
    export_detector(det, onnx_path(det))
    folder = tmp_path / "photos"
    make_scene(folder / "p.jpg", [(8, 8, 30, 24)])
    capsys.readouterr()
    code = cli(["run", str(folder), "--detector", str(det), "--classifier", str(mine), "--out", str(tmp_path / "o"),
                "--workers", "0", "--engine", "onnx"])
    err = capsys.readouterr().err
    assert code == 2 and f"{onnx_path(mine)}: " in err and says in err, err


def test_a_full_disk_while_training_is_one_line_and_the_resume_works(tiny_classes, tmp_path, capsys, monkeypatch,
                                                                     caplog):
    import errno

    import torch

    from tests.classifier.test_train import FAST

    out = tmp_path / "run"
    args = ["classifier", "train", "--data", str(tiny_classes), "--out", str(out), "--no-eval", "--epochs", "2",
            *FAST]
    real_save, calls = torch.save, []

    def disk_fills(obj, fh, *a, **kw):
        calls.append(1)
        if len(calls) >= 3:  # the first epoch's kept weights and checkpoint fit; then the disk is full
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed "
                                   "writing file data/0: file write failed") from None
        return real_save(obj, fh, *a, **kw)

    monkeypatch.setattr(torch, "save", disk_fills)
    capsys.readouterr()
    assert cli(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if "error" in line]) == 1 and "Traceback" not in "\n".join(err)
    assert "could not be written" in err[-1] and str(out) in err[-1]
    monkeypatch.setattr(torch, "save", real_save)
    caplog.set_level("INFO")
    assert cli(args) == 0
    assert "after epoch 1 of 2" in caplog.text


def test_a_full_disk_during_a_folder_run_names_the_file_and_the_resume_redoes_the_outputs(tiny_models, tmp_path,
                                                                                         capsys, monkeypatch):
    import errno

    from pipeline import run as prun

    folder = tmp_path / "photos"
    for i in range(3):
        make_scene(folder / f"p{i}.jpg", [(8, 8, 30, 24)], seed=i)
    out = tmp_path / "out"
    real_save = prun.atomic_save_image

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prun, "atomic_save_image", full)
    assert _run(tiny_models, folder, out, "--save-annotated", "--save-crops") == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["warnings"] for r in records) and not (out / "annotated").exists()
    monkeypatch.setattr(prun, "atomic_save_image", real_save)
    assert _run(tiny_models, folder, out, "--save-annotated", "--save-crops") == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert not any(r.get("warnings") for r in records) and len(list((out / "annotated").iterdir())) == 3
    # results.jsonl itself cannot be written: the file is named, and the resume goes on from there
    shutil.rmtree(out)
    real_json, calls = prun.to_json, []

    def fails_second(obj, *a):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_json(obj, *a)

    monkeypatch.setattr(prun, "to_json", fails_second)
    capsys.readouterr()
    assert _run(tiny_models, folder, out) == 2
    assert f"{out / 'results.jsonl'}: could not be written (No space left on device)" in capsys.readouterr().err
    monkeypatch.setattr(prun, "to_json", real_json)
    assert _run(tiny_models, folder, out) == 0
    assert len(json.loads((out / "results.json").read_text())["images"]) == 3


STANDARD = Path(__file__).resolve().parents[1].parent / "shared" / "standards" / "camtrap-dp-1.0.2"


def _standard() -> Path:
    if not STANDARD.is_dir():
        pytest.skip(f"the Camtrap DP standard's files are not available: {STANDARD} is missing")
    return STANDARD


def test_the_standards_own_example_passes_our_validation_and_our_tables_have_its_fields():
    from review.exports import DEPLOYMENT_FIELDS, MEDIA_FIELDS, OBSERVATION_FIELDS, validate_camtrapdp

    std = _standard()
    assert validate_camtrapdp(std / "example", std) == []
    for table, ours in (("deployments", DEPLOYMENT_FIELDS), ("media", MEDIA_FIELDS),
                        ("observations", OBSERVATION_FIELDS)):
        schema = json.loads((std / f"{table}-table-schema.json").read_text())
        assert ours == [f["name"] for f in schema["fields"]], table


def test_our_camtrap_export_passes_the_standards_schemas_and_a_spoiled_one_does_not(tiny_models, tmp_path):
    from review import store as st
    from review.exports import export_camtrapdp, validate_camtrapdp

    std = _standard()
    _, store = _stored_run(tiny_models, tmp_path)
    engine = st.open_store(store)
    export_camtrapdp(engine, tmp_path / "dp", latitude=42.1, longitude=-8.2)
    assert validate_camtrapdp(tmp_path / "dp", std) == []
    header = (tmp_path / "dp" / "deployments.csv").read_text().splitlines()[0].split(",")
    assert "cameraID" in header and "cameraDelay" in header and len(header) == 24
    # what the hand-written schema let through before: a deployments table without the standard's columns
    rows = list(csv.reader((tmp_path / "dp" / "deployments.csv").read_text().splitlines()))
    keep = [i for i, name in enumerate(rows[0]) if name not in ("cameraID", "cameraDelay")]
    (tmp_path / "dp" / "deployments.csv").write_text("\n".join(",".join(r[i] for i in keep) for r in rows) + "\n")
    errors = validate_camtrapdp(tmp_path / "dp", std)
    assert errors and any("deployments" in e for e in errors)
    dp = json.loads((tmp_path / "dp" / "datapackage.json").read_text())
    dp["taxonomic"] = [{"scientificName": "Vespa", "taxonRank": None}]
    (tmp_path / "dp" / "datapackage.json").write_text(json.dumps(dp))
    assert any("taxonRank" in e for e in validate_camtrapdp(tmp_path / "dp", std))


def test_an_empty_store_exports_no_camtrap_package_and_says_so(tmp_path, capsys):
    from review import store as st

    st.open_store(tmp_path / "s.sqlite").dispose()
    capsys.readouterr()
    assert cli(["review", "export-camtrapdp", "--store-url", str(tmp_path / "s.sqlite"), "--out",
                str(tmp_path / "dp")]) == 2
    err = capsys.readouterr().err
    assert "holds no photo yet" in err and "min() arg" not in err


def test_the_yolo_import_takes_the_folders_of_a_voc_style_layout(tmp_path, capsys):
    from tests.conftest import shared

    g = shared("giant-hornet", "annotated_dataset")
    capsys.readouterr()
    assert cli(["annotations", "import", "--format", "yolo", str(g), "--out", str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err
    assert "looked for data.yaml, dataset.yaml, classes.txt in" in err and "--names" in err
    assert cli(["annotations", "import", "--format", "yolo", str(g), "--images", str(g / "JPEGImages"),
                "--labels", str(g / "txt_label"), "--out", str(tmp_path / "b.json")]) == 0
    assert cli(["annotations", "import", "--format", "voc", str(g), "--out", str(tmp_path / "c.json")]) == 0
    yolo, voc = (json.loads((tmp_path / n).read_text()) for n in ("b.json", "c.json"))
    assert len(yolo["images"]) == len(voc["images"]) == 352 and len(yolo["annotations"]) == len(voc["annotations"])


def test_the_apps_batch_csvs_live_in_one_folder_that_is_pruned_and_removed(tiny_models, tmp_path):
    import tempfile

    from pipeline.predictor import Pipeline
    from pipeline.settings import InferenceSettings
    from webapp.identify import IdentifyPage

    photo = make_scene(tmp_path / "p.jpg", [(8, 8, 30, 24)])
    before = set(os.listdir(tempfile.gettempdir()))
    page = IdentifyPage(Pipeline.from_files(*tiny_models, InferenceSettings(device="cpu")), csv_dir=tmp_path / "csv")
    paths = [Path(page.batch([str(photo)], 0.5, 0.5)[1]) for _ in range(3)]
    assert all(p.is_file() and p.parent.parent == tmp_path / "csv" for p in paths)
    assert set(os.listdir(tempfile.gettempdir())) - before == set()  # no taxolens-XXXX left per call
    os.utime(paths[0].parent, (0, 0))  # an old one: pruned at the next call
    page.batch([str(photo)], 0.5, 0.5)
    assert not paths[0].exists() and paths[1].exists()
    page.close()
    assert not (tmp_path / "csv").exists()


def test_failed_sign_ins_are_slowed_down_then_refused_for_a_while():
    from webapp import auth

    now, slept = [1000.0], []
    sign_in = auth.SignIn("s3cret", clock=lambda: now[0], sleep=slept.append)
    assert sign_in("ana", "s3cret")
    for _ in range(auth.MAX_FAILURES):
        assert not sign_in("brais", "guess")
    assert slept == [0.5, 1.0, 2.0, 4.0, 4.0]  # each failure costs more, up to the limit
    assert not sign_in("brais", "s3cret")  # locked out, even with the right password
    assert sign_in("ana", "s3cret")  # another name is not
    now[0] += auth.LOCKOUT + 1
    assert sign_in("brais", "s3cret")
    for i in range(auth.MAX_FAILURES_ALL):  # a guesser who changes names each time
        sign_in(f"name{i}", "guess")
    assert not sign_in("ana", "s3cret")
