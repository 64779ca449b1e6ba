"""The detector as ONNX, run by ONNX Runtime: the same network and post-processing, another engine.

``export_onnx`` writes the torchvision Faster R-CNN with everything inside it (normalisation, region
proposals, box head, per-class NMS) for one photo of any size, already shrunk as :func:`pipeline.predictor.
detector_input` shrinks it. The class-agnostic suppression and the score threshold run after it in the same
numpy code as the PyTorch engine (:meth:`detector.predict.Detector.batch_predict_tensors`). The ONNX file
names the weights it came from (``weights_sha256``), checked when it is loaded beside its release file.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from core.modelfile import ModelFileError, load_model_file
from core.onnxrt import open_checked, read_checked, stamp
from detector.predict import Detector

LOGGER = logging.getLogger(__name__)

#: what static int8 leaves in float: the per-level RoIAlign of the box head (a level no proposal of a calibration
#: photo falls on has no statistics to calibrate it by)
STATIC_INT8_FLOAT = (".*/box_roi_pool/.*",)


#: how the exported graph merges the pooled FPN levels (:class:`detector.models.GatherRoIAlign`); a file without it
#: was exported before, with torchvision's scatter: the same answers, a tenth slower (BENCHMARKS.md, issue 20)
POOLER = "gather"


def stale_pooler(found: dict) -> bool:
    """Whether an export's stamp ``found`` says it merges the FPN levels the slower way (exported before)."""
    return found.get("pooler") != POOLER


def export_onnx(model_file: str | os.PathLike, out: str | os.PathLike, opset: int = 17, proposals: int = 0) -> Path:
    """Export a detector release file to ONNX at ``out``; returns ``out``.

    The outputs are named in the order torchvision's detector returns them (``boxes``, ``labels``,
    ``scores``); :class:`OnnxDetector` asks for them by name. ``proposals`` (0: the model's 1000) is fixed in
    the graph and stamped, so a run asking for another number is refused rather than silently given this one.
    """
    mf = load_model_file(model_file, "detector")
    # no score floor: every box the model makes, filtered afterwards
    det = Detector.from_loaded(mf, "cpu", proposals=proposals)
    size = int(mf["min_size"])
    example = [torch.rand(3, size, size)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on the detector's Python control flow
        torch.onnx.export(det.model.eval(), (example,), str(tmp), opset_version=opset, input_names=["image"],
                          output_names=["boxes", "labels", "scores"], dynamic_axes={"image": {1: "height", 2: "width"}},
                          dynamo=False)
    stamp(tmp, mf, {"proposals": proposals, "pooler": POOLER})
    os.replace(tmp, out)
    return out


class OnnxDetector(Detector):
    """:class:`Detector` whose network runs in ONNX Runtime; everything around it is the same code."""

    sess: Any = None

    @classmethod
    def from_onnx(cls, mf: dict, onnx_file: str | os.PathLike, *, threads: int = 0, runtime: str = "onnxruntime",
                  proposals: int = 0, suppress_iou: float | None = None,
                  suppress_containment: float | None = None) -> OnnxDetector:
        """A release file already read (its settings and classes) with the ONNX file's network.

        ``mf`` comes from :func:`core.modelfile.load_model_file`, so the release file is read once; ``runtime``
        is ONNX Runtime or OpenVINO. ``proposals`` must be the number the file was exported with.

        Raises:
            ModelFileError: as :func:`core.onnxrt.session`, and for a file exported with other proposals.
        """
        graph, found = read_checked(onnx_file, mf)
        exported = int(found.get("proposals") or 0)
        if exported != proposals:
            def said(n: int) -> str:
                return f"{n} proposals" if n else "the model's own proposals"
            raise ModelFileError(f"{onnx_file}: exported with {said(exported)}, but this run asks for "
                                 f"{said(proposals)}; export it again with --proposals {proposals}")
        det = cast(OnnxDetector, cls.from_loaded(mf, "cpu", proposals=proposals, suppress_iou=suppress_iou,
                                                 suppress_containment=suppress_containment))
        if stale_pooler(found):
            LOGGER.warning("%s: exported by an earlier taxolens, whose graph is slower for the same answers; "
                           "export it again (taxolens export) to gain about a tenth", onnx_file)
        det.sess = open_checked(onnx_file, graph, threads, runtime)  # the file read once
        del det.model  # the PyTorch network is not used, nor kept in memory
        det.info = {**det.info, "engine": "onnx" if runtime == "onnxruntime" else runtime, "onnx_path": str(onnx_file)}
        return det

    def raw_outputs(self, images: list[torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One ONNX Runtime call per photo (the exported graph takes one photo of any size)."""
        outputs = []
        for im in images:
            boxes, scores, labels = self.sess.run(["boxes", "scores", "labels"],
                                                  {"image": im.detach().cpu().float().numpy()})
            outputs.append((boxes.astype(np.float32), scores.astype(np.float32), labels.astype(np.int64)))
        return outputs
