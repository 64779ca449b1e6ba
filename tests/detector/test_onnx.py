"""The detector exported to ONNX gives the boxes and scores of the PyTorch network, on photos of any size."""

import numpy as np

from core.modelfile import load_model_file
from detector.onnx import OnnxDetector, export_onnx
from detector.predict import Detector
from tests.conftest import make_scene


def test_onnx_detector_raw_outputs_equal_pytorch(tiny_models, tmp_path):
    det_file, _ = tiny_models
    onnx_file = export_onnx(det_file, tmp_path / "detector.onnx")
    mf = load_model_file(det_file, "detector")
    torch_det = Detector.from_loaded(mf, "cpu")
    onnx_det = OnnxDetector.from_onnx(mf, onnx_file)
    assert not hasattr(onnx_det, "model")  # the PyTorch network is dropped
    from core.io import read_image

    for size in ((96, 80), (120, 96)):  # other sizes than the export's example
        image = read_image(make_scene(tmp_path / f"p{size[0]}.jpg", [(8, 8, 30, 24)], size=size))
        tensor, _ = torch_det.preprocess(image)
        (a_boxes, a_scores, a_labels), = torch_det.raw_outputs([tensor])
        (b_boxes, b_scores, b_labels), = onnx_det.raw_outputs([tensor])
        assert a_boxes.shape == b_boxes.shape and np.allclose(a_boxes, b_boxes, atol=1.0)
        assert np.allclose(a_scores, b_scores, atol=1e-3) and (a_labels == b_labels).all()
        # and through the same suppression and thresholds: the same detections
        a, b = torch_det.predict(image, 0.0), onnx_det.predict(image, 0.0)
        assert np.allclose(a["boxes"], b["boxes"], atol=1.0) and a["labels"] == b["labels"]


def test_exported_pooler_merges_levels_without_a_full_size_scatter(tiny_models, tmp_path):
    """torchvision's export scatters each level into a zero tensor (a third of the detector's CPU time): not ours."""
    import onnx

    det_file, _ = tiny_models
    graph = onnx.load(export_onnx(det_file, tmp_path / "detector.onnx")).graph
    pool = [n.op_type for n in graph.node if "box_roi_pool" in n.name]
    assert pool.count("RoiAlign") >= 2 and "Gather" in pool  # one RoiAlign per FPN level pooled
    assert "ScatterElements" not in pool and "Expand" not in pool


def test_an_earlier_export_is_named_slower_and_the_demo_exports_it_again(tiny_models, tmp_path, caplog):
    """An export stamped without the gather pooler still answers, with a warning; `make demo` replaces it."""
    import shutil

    from core.onnxrt import onnx_path, read_checked, stamp
    from tools.demo import _exported

    det_file, _ = tiny_models
    model = shutil.copy(det_file, tmp_path / "detector.pt")
    mf = load_model_file(model, "detector")
    current = _exported(model, "detector")  # none yet: exported, with the pooler stamped
    assert current == onnx_path(model) and read_checked(current, mf)[1]["pooler"] == "gather"
    before = current.stat().st_mtime_ns
    assert _exported(model, "detector").stat().st_mtime_ns == before  # a current export is kept
    stamp(current, mf, {"proposals": 0})  # as an earlier taxolens stamped it
    with caplog.at_level("WARNING", logger="detector.onnx"):
        OnnxDetector.from_onnx(mf, current)
    assert "export it again" in caplog.text and str(current) in caplog.text
    _exported(model, "detector")
    assert read_checked(current, mf)[1]["pooler"] == "gather"
    caplog.clear()
    with caplog.at_level("WARNING", logger="detector.onnx"):
        OnnxDetector.from_onnx(mf, current)
    assert "export it again" not in caplog.text
