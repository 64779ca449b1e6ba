import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.io import read_jsonl
from detector.evaluate import coco_metrics
from pipeline.exports import coco_results
from pipeline.records import RESULT_NO_ORGANISM
from tests.conftest import make_scene
from tools.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


def _folder(tmp_path, n=6):
    folder = tmp_path / "photos"
    for i in range(n):
        make_scene(folder / ("sub" if i % 2 else "") / f"p{i:02d}.jpg", [(8, 8, 30, 24), (55, 40, 30, 30)], seed=i)
    return folder


def _run(args):
    return cli(["run", *[str(a) for a in args]])


def test_end_to_end_every_organism_and_all_exports(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    rc = _run([folder, "--detector", det, "--classifier", clf, "--out", out, "--format", "csv", "coco",
               "megadetector", "--save-annotated", "--save-crops", "--workers", "0", "--batch-size", "4"])
    assert rc == 0
    result = json.loads((out / "results.json").read_text())
    files = [r["file"] for r in result["images"]]
    assert files == sorted(files, key=lambda f: f) and len(files) == 6 and "sub/p01.jpg" in files
    info = result["info"]
    assert info["detector"]["sha256"] and info["classifier"]["model_version"]
    assert info["resolved_settings"]["threshold"] == 0.94 and info["settings"]["threshold"] is None
    assert info["timings"]["photos_this_run"] == 6
    several = [r for r in result["images"] if len(r["detections"]) > 1]
    assert several, "the score threshold 0 of the tiny detector gives several boxes per photo"
    for r in result["images"]:
        assert r["status"] == "ok" and (r["width"], r["height"]) == (96, 80)
        for d in r["detections"]:
            x, y, w, h = d["box"]
            assert 0 <= x and 0 <= y and x + w <= 96.01 and y + h <= 80.01
            assert len(d["top"]) == 3 and d["taxon"] in ("uncertain", *[t["taxon"] for t in d["top"][:1]])
            assert d["accepted"] == (d["taxon"] != "uncertain") and d["source"] == "detector"
    n_dets = sum(len(r["detections"]) for r in result["images"])
    assert info["summary"]["organisms"] == n_dets
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + n_dets
    assert len(list((out / "annotated").rglob("*.jpg"))) == 6
    assert len(list((out / "crops").rglob("*.jpg"))) == n_dets
    md = json.loads((out / "results_megadetector.json").read_text())
    assert md["info"]["format_version"] == "1.4" and md["detection_categories"] == {"1": "organism"}
    # the thresholds in force (the model files'), not the run's unset options
    assert md["info"]["classifier_metadata"]["threshold"] == 0.94
    used = info["resolved_settings"]["score_threshold"]
    assert md["info"]["detector_metadata"]["typical_detection_threshold"] == used
    assert set(md["classification_categories"].values()) == {"Apis mellifera", "Formicidae", "Vespa velutina"}
    for im in md["images"]:
        assert set(im) >= {"file", "detections", "max_detection_conf"}
        for d in im["detections"]:
            assert d["category"] == "1" and 0 <= d["conf"] <= 1 and all(0 <= v <= 1.0001 for v in d["bbox"])
            assert d["classifications"][0][0] in md["classification_categories"]


def test_coco_export_scores_with_pycocotools(tiny_models, tiny_coco, tmp_path):
    from annotations.coco import make_class_agnostic

    det, clf = tiny_models
    out = tmp_path / "out"
    gt = make_class_agnostic(json.loads(tiny_coco.read_text()))  # the taxa differ from wasp/bee: score localization
    (tiny_coco.parent / "agnostic.json").write_text(json.dumps(gt))
    assert _run([tiny_coco.parent / "photos", "--detector", det, "--classifier", clf, "--out", out,
                 "--format", "coco", "--coco-gt", tiny_coco.parent / "agnostic.json", "--workers", "0"]) == 0
    results = json.loads((out / "results_coco.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    records = {r["file"]: r for r in json.loads((out / "results.json").read_text())["images"]}
    ids = {im["id"]: Path(im["file_name"]).name for im in gt["images"]}
    # every result sits on the ground truth's id of its own photo, with that photo's boxes
    for r in results:
        assert r["category_id"] == 1 and r["bbox"] in [d["box"] for d in records[ids[r["image_id"]]]["detections"]]
    assert len(results) == sum(len(r["detections"]) for r in records.values())
    # and COCOeval reads the export: the ground truth's own boxes, exported the same way, score AP 1
    perfect = [{"file": im["file_name"].split("/")[-1], "status": "ok",
                "detections": [{"box": a["bbox"], "detector_score": 0.9, "top": [{"taxon": "x", "probability": 1.0}]}
                               for a in gt["annotations"] if a["image_id"] == im["id"]]} for im in gt["images"]]
    exported, _ = coco_results(perfect, ["x"], {**gt, "image_root": str(tiny_coco.parent)})
    assert coco_metrics({**gt, "image_root": str(tiny_coco.parent)}, exported)["AP"] == pytest.approx(1.0)


def test_bad_files_become_failure_records(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = _folder(tmp_path, n=2)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo")
    good = folder / "p00.jpg"
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    Image.new("RGB", (400, 400)).save(folder / "huge.png")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    Image.fromarray(np.full((40, 50), 30000, np.uint16)).save(folder / "deep16.png")
    Image.new("RGB", (50, 40), (10, 200, 30)).convert("P").save(folder / "palette.png")
    Image.new("RGB", (50, 40), (10, 200, 30)).save(folder / "plain.bmp")
    Image.new("RGBA", (50, 40), (255, 0, 0, 128)).save(folder / "alpha.webp")
    Image.new("L", (50, 40)).save(folder / "grey.tif")
    out = tmp_path / "out"
    args = [folder, "--detector", det, "--classifier", clf, "--out", out, "--workers", "1", "--max-pixels", "100000"]
    assert _run(args) == 0
    by_file = {r["file"]: r for r in json.loads((out / "results.json").read_text())["images"]}
    reasons = {f: r.get("failure") for f, r in by_file.items() if r["status"] == "failed"}
    assert set(reasons) == {"empty.jpg", "notes.jpg", "truncated.jpg", "huge.png", "gone.jpg"}
    assert "empty" in reasons["empty.jpg"] and "not an image" in reasons["notes.jpg"]
    assert "truncated" in reasons["truncated.jpg"] and "too large" in reasons["huge.png"]
    assert "cannot read" in reasons["gone.jpg"]
    for ok in ("deep16.png", "palette.png", "plain.bmp", "alpha.webp", "grey.tif", "p00.jpg"):
        assert by_file[ok]["status"] == "ok", ok
    summary = json.loads((out / "results.json").read_text())["info"]["summary"]
    assert summary["failures"] == 5 and summary["photos"] == 12
    assert _run([*args[:-2], "--max-pixels", "100000", "--strict"]) == 1  # resumed, nothing new, but strict


def test_one_line_errors(tiny_models, tmp_path, capsys):
    det, clf = tiny_models
    folder = _folder(tmp_path, n=1)
    assert _run([folder, "--detector", tmp_path / "missing.pt", "--classifier", clf, "--out", tmp_path / "o"]) == 2
    assert "missing.pt: model file not found" in capsys.readouterr().err
    assert _run([folder, "--detector", clf, "--classifier", clf, "--out", tmp_path / "o"]) == 2
    assert "is a classifier model file, a detector model file is needed" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _run([tmp_path / "empty", "--detector", det, "--classifier", clf, "--out", tmp_path / "o"]) == 2
    assert "no photos found" in capsys.readouterr().err


def test_whole_photo_option_and_no_organism(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = _folder(tmp_path, n=2)
    base = [folder, "--detector", det, "--classifier", clf, "--workers", "0", "--score-threshold", "1.0"]
    assert _run([*base, "--out", tmp_path / "a"]) == 0
    recs = json.loads((tmp_path / "a" / "results.json").read_text())["images"]
    assert all(r["result"] == RESULT_NO_ORGANISM and r["detections"] == [] for r in recs)
    assert _run([*base, "--out", tmp_path / "b", "--classify-whole-photo"]) == 0
    recs = json.loads((tmp_path / "b" / "results.json").read_text())["images"]
    for r in recs:
        assert r["result"] == "whole photo classified" and len(r["detections"]) == 1
        d = r["detections"][0]
        assert d["source"] == "whole_photo" and d["box"] == [0, 0, 96, 80] and d["detector_score"] is None


def test_killed_run_resumes_with_one_record_per_photo(tiny_models, tmp_path):
    det, clf = tiny_models
    folder = _folder(tmp_path, n=24)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "tools.cli", "run", str(folder), "--detector", str(det), "--classifier",
           str(clf), "--out", str(out), "--workers", "0", "--batch-size", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    jsonl = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if jsonl.exists() and jsonl.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = jsonl.read_text().count("\n")
    assert 3 <= before < 24, before
    with open(jsonl, "a") as fh:
        fh.write('{"file": "p3')  # as if killed in the middle of a write
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming" in rerun.stderr
    files = [r["file"] for r in read_jsonl(jsonl)]
    assert len(files) == 24 and len(set(files)) == 24
    result = json.loads((out / "results.json").read_text())
    assert len(result["images"]) == 24 and result["info"]["timings"]["photos_this_run"] == 24 - before
    # a rerun of a finished run writes nothing new
    assert subprocess.run(cmd, capture_output=True, env=env, timeout=300).returncode == 0
    assert len(list(read_jsonl(jsonl))) == 24


def test_resume_refuses_other_models(tiny_models, tmp_path, capsys):
    det, clf = tiny_models
    folder = _folder(tmp_path, n=1)
    assert _run([folder, "--detector", det, "--classifier", clf, "--out", tmp_path / "o", "--workers", "0"]) == 0
    assert _run([folder, "--detector", det, "--classifier", clf, "--out", tmp_path / "o", "--workers", "0",
                 "--threshold", "0.5"]) == 2
    assert "holds a run with other models, folder or settings" in capsys.readouterr().err


@pytest.mark.parametrize("batch", [1, 3])
def test_pipeline_batches_give_the_same_answers(tiny_models, batch, tmp_path):
    from core.io import read_image
    from pipeline.predictor import Pipeline
    from pipeline.settings import InferenceSettings

    det, clf = tiny_models
    folder = _folder(tmp_path, n=3)
    pipe = Pipeline.from_files(det, clf, InferenceSettings(device="cpu"))
    photos = [read_image(p) for p in sorted(folder.rglob("*.jpg"))]
    one_by_one = [pipe.process(p) for p in photos]
    batched = [r for i in range(0, 3, batch) for r in pipe.process_batch(photos[i:i + batch])]
    for a, b in zip(one_by_one, batched):
        assert [d["taxon"] for d in a] == [d["taxon"] for d in b]
        assert np.allclose([d["box"] for d in a], [d["box"] for d in b], atol=0.2)


def test_threads_are_applied_by_the_pipeline_for_every_command(tiny_models):
    """--threads is set where the pipeline is built, so run, evaluate, bench and the app all keep it."""
    import torch

    from pipeline.predictor import Pipeline
    from pipeline.settings import InferenceSettings

    before = torch.get_num_threads()
    try:
        Pipeline.from_files(*tiny_models, InferenceSettings(device="cpu", threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
