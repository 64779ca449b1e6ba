"""The ONNX engine gives the records the PyTorch engine gives: same boxes within 1 px, same decisions."""

import shutil

import pytest

from core.modelfile import ModelFileError
from core.onnxrt import onnx_path
from pipeline.predictor import Pipeline
from pipeline.settings import InferenceSettings
from tests.conftest import make_scene, shared
from tools.cli import main as cli


@pytest.fixture(scope="module")
def exported(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    det, clf = (shutil.copy(p, root / p.name) for p in tiny_models)
    assert cli(["export", "--format", "onnx", "--detector", str(det), "--classifier", str(clf), "--quantize"]) == 0
    return root / "detector.pt", root / "classifier.pt"


def _photos(tmp_path):
    try:
        return sorted((shared("hymenoptera") / "val" / "bees").iterdir())[:3]
    except BaseException:  # no shared data: generated scenes still test the engine
        return [make_scene(tmp_path / f"p{i}.jpg", [(8, 8, 30, 24)], seed=i) for i in range(3)]


def test_onnx_records_equal_torch_records_on_real_photos(exported, tmp_path):
    det, clf = exported
    assert onnx_path(det).is_file() and onnx_path(clf, "int8").is_file()
    torch_pipe = Pipeline.from_files(det, clf, InferenceSettings(device="cpu", score_threshold=0.0))
    onnx_pipe = Pipeline.from_files(det, clf, InferenceSettings(score_threshold=0.0, engine="onnx"))
    assert onnx_pipe.settings.engine == "onnx" and torch_pipe.settings.engine == "torch"
    _assert_same_records(torch_pipe, onnx_pipe, tmp_path, 1e-4)


def _assert_same_records(torch_pipe, other, tmp_path, probability_tolerance):
    """Every photo: the same detections and decisions, boxes within 1 px, probabilities within the tolerance."""
    n = 0
    for photo in _photos(tmp_path):
        a, _ = torch_pipe.process_file(photo)
        b, _ = other.process_file(photo)
        da, db = a["detections"] + a["dropped"], b["detections"] + b["dropped"]
        assert len(da) == len(db) > 0
        # paired by box, not by order: detections whose scores differ in the last digits may swap places
        left = list(db)
        for x in da:
            y = min(left, key=lambda d: max(abs(u - v) for u, v in zip(x["box"], d["box"])))
            left.remove(y)
            assert max(abs(u - v) for u, v in zip(x["box"], y["box"])) <= 1.0
            assert (x["taxon"], x["reason"]) == (y["taxon"], y["reason"])
            assert x["probability"] == pytest.approx(y["probability"], abs=probability_tolerance)
            n += 1
    assert n >= 3


def test_onnx_files_must_match_their_model_files(exported, tiny_models, tmp_path):
    det, clf = exported
    other = tmp_path / "detector.pt"
    shutil.copy(det, other)
    with pytest.raises(ModelFileError, match="no ONNX file"):
        Pipeline.from_files(other, clf, InferenceSettings(engine="onnx"))
    shutil.copy(onnx_path(det), onnx_path(other))
    Pipeline.from_files(other, clf, InferenceSettings(engine="onnx"))  # the same weights: fine
    shutil.copy(onnx_path(clf), onnx_path(other))  # a classifier's export beside a detector
    with pytest.raises(ModelFileError, match="other weights"):
        Pipeline.from_files(other, clf, InferenceSettings(engine="onnx"))
    with pytest.raises(ModelFileError, match="no ONNX file"):  # model.p300.onnx: not exported
        Pipeline.from_files(det, clf, InferenceSettings(engine="onnx", proposals=300))
    shutil.copy(onnx_path(det), onnx_path(det, proposals=300))  # renamed by hand: its stamp says otherwise
    with pytest.raises(ModelFileError, match="exported with the model's own proposals.*--proposals 300"):
        Pipeline.from_files(det, clf, InferenceSettings(engine="onnx", proposals=300))
    onnx_path(det, proposals=300).unlink()


def test_the_proposals_are_fixed_at_export_and_a_run_must_ask_for_them(tiny_models, tmp_path):
    """--proposals goes into the exported graph and its stamp; a run asking for another number is refused, and
    one asking for that number gets the PyTorch engine's records with the same proposals."""
    det, clf = (shutil.copy(p, tmp_path / p.name) for p in tiny_models)
    assert cli(["export", "--format", "onnx", "--detector", str(det), "--classifier", str(clf),
                "--proposals", "20"]) == 0
    assert onnx_path(det, proposals=20).name == "detector.p20.onnx" and not onnx_path(det).exists()
    shutil.copy(onnx_path(det, proposals=20), onnx_path(det))  # renamed by hand: refused by its stamp
    with pytest.raises(ModelFileError, match="exported with 20 proposals.*asks for the model's own"):
        Pipeline.from_files(det, clf, InferenceSettings(engine="onnx"))
    photo = make_scene(tmp_path / "p.jpg", [(8, 8, 30, 24), (50, 40, 20, 20)])
    onnx_pipe = Pipeline.from_files(det, clf, InferenceSettings(engine="onnx", proposals=20, score_threshold=0.0))
    torch_pipe = Pipeline.from_files(det, clf, InferenceSettings(proposals=20, score_threshold=0.0))
    a, _ = torch_pipe.process_file(photo)
    b, _ = onnx_pipe.process_file(photo)
    assert 0 < len(a["detections"] + a["dropped"]) == len(b["detections"] + b["dropped"]) <= 20


def test_openvino_records_equal_torch_records_on_real_photos(exported, tmp_path):
    """OpenVINO runs the same exported file (float32 asked for): the PyTorch engine's records."""
    det, clf = exported
    torch_pipe = Pipeline.from_files(det, clf, InferenceSettings(device="cpu", score_threshold=0.0))
    ov_pipe = Pipeline.from_files(det, clf, InferenceSettings(score_threshold=0.0, engine="openvino", threads=1))
    assert ov_pipe.detector.info["engine"] == ov_pipe.classifier.info["engine"] == "openvino"
    _assert_same_records(torch_pipe, ov_pipe, tmp_path, 1e-3)


def test_static_int8_copies_are_calibrated_on_photos_and_run_in_openvino(tiny_models, tmp_path):
    """--format openvino --quantize: NNCF's int8 copies, their ranges measured on the given photos (refused without
    them), run by --engine openvino-int8 into records that pass the record checks."""
    import onnx

    from core.onnxrt import read_stamp
    from pipeline.records import record_problems

    det, clf = (shutil.copy(p, tmp_path / p.name) for p in tiny_models)
    base = ["export", "--format", "openvino", "--detector", str(det), "--classifier", str(clf), "--quantize"]
    with pytest.raises(SystemExit):
        cli(base)  # no calibration photos: refused, not calibrated on random tensors
    photos = tmp_path / "calibration"
    for i in range(4):
        make_scene(photos / f"c{i}.jpg", [(8 + i, 8, 30, 24)], seed=i)
    assert cli([*base, "--calibration", str(photos)]) == 0
    for model in (det, clf):
        q = onnx.load(str(onnx_path(model, "static-int8")))
        assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
        assert read_stamp(onnx_path(model, "static-int8"), q)["calibration_inputs"] == 4
    pipe = Pipeline.from_files(det, clf, InferenceSettings(score_threshold=0.0, engine="openvino-int8"))
    record, _ = pipe.process_file(make_scene(tmp_path / "p.jpg", [(8, 8, 30, 24)]))
    assert record["status"] == "ok" and record_problems(record) == []
    assert pipe.classifier.info["onnx_path"].endswith(".static-int8.onnx")


def test_the_int8_engine_runs_from_the_quantized_copies(exported, tmp_path):
    """--quantize writes copies of both networks that --engine onnx-int8 runs (their answers are measured, not
    asserted equal: see BENCHMARKS.md)."""
    import onnx

    det, clf = exported
    graph = onnx.load(str(onnx_path(clf, "int8"))).graph
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in graph.node)
    pipe = Pipeline.from_files(det, clf, InferenceSettings(score_threshold=0.0, engine="onnx-int8"))
    record, _ = pipe.process_file(make_scene(tmp_path / "p.jpg", [(8, 8, 30, 24)]))
    assert record["status"] == "ok" and type(pipe.detector).__name__ == "OnnxDetector"
    assert pipe.classifier.info["onnx_path"].endswith(".int8.onnx")


def test_run_with_the_onnx_engine(exported, tmp_path):
    det, clf = exported
    folder = tmp_path / "photos"
    for i in range(2):
        make_scene(folder / f"p{i}.jpg", [(8, 8, 30, 24)], seed=i)
    for engine in ("torch", "onnx"):
        assert cli(["run", str(folder), "--detector", str(det), "--classifier", str(clf), "--out",
                    str(tmp_path / engine), "--engine", engine, "--workers", "0"]) == 0
    import json

    runs = {e: json.loads((tmp_path / e / "results.json").read_text()) for e in ("torch", "onnx")}
    assert runs["onnx"]["info"]["settings"]["engine"] == "onnx"
    assert [[d["taxon"] for d in r["detections"]] for r in runs["torch"]["images"]] == [
        [d["taxon"] for d in r["detections"]] for r in runs["onnx"]["images"]]


def test_the_openvino_engine_without_openvino_is_one_line(exported, monkeypatch):
    import sys

    det, clf = exported
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(ModelFileError, match=r"OpenVINO engine needs OpenVINO: pip install 'taxolens\[fast\]'"):
        Pipeline.from_files(det, clf, InferenceSettings(engine="openvino"))
