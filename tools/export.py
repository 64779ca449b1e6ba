"""``taxolens export``: both release files for other engines, beside them, for ``taxolens run --engine ...``.

``--format onnx`` writes ``DETECTOR.onnx`` and ``CLASSIFIER.onnx`` (the ``.pt`` replaced by ``.onnx``), each
stamped with the SHA-256 of the weights it came from; ONNX Runtime (``--engine onnx``) and OpenVINO
(``--engine openvino``) both run them. ``--quantize`` adds int8 copies: with ``--format onnx`` dynamic ones
(``.int8.onnx``, ``--engine onnx-int8``); with ``--format openvino`` static ones calibrated on real photos
(``--calibration PHOTOS``; ``.static-int8.onnx``, ``--engine openvino-int8``): the detector on the photos as it
sees them, the classifier on the crops the PyTorch pipeline cuts from them. ``--proposals`` fixes the
detector's region proposals in the exported graph (a run must ask for the same number).
The detector's files carry that number in their names (``DETECTOR.p300.onnx``), so several lie side by side.
``taxolens bench`` measures what each engine changes, on photos no model trained on.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.config import check_settings
from core.onnxrt import onnx_path, quantize, quantize_static

LOGGER = logging.getLogger(__name__)


def calibration_inputs(detector: str, classifier: str, photos: str, count: int, proposals: int = 0
                       ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Feeds of both exported graphs from ``count`` real photos spread over ``photos`` (every file sorted).

    The detector's: each photo as its input tensor; the classifier's: batches of the crops the PyTorch pipeline
    cuts there (the one crop function), or the whole photo where it boxes nothing.
    """
    import torch

    from core.crops import crop_box
    from core.io import list_images
    from pipeline.predictor import Pipeline
    from pipeline.settings import InferenceSettings

    files = list_images(photos)
    if not files:
        raise ValueError(f"--calibration {photos}: no photos")
    chosen = [files[int(i)] for i in np.unique(np.linspace(0, len(files) - 1, min(count, len(files))).astype(int))]
    pipe = Pipeline.from_files(detector, classifier, InferenceSettings(device="cpu", proposals=proposals))
    padding = pipe.classifier.preprocessing.crop_padding
    det_feeds, clf_feeds = [], []
    for path in chosen:
        item = pipe.load(path)
        if "failure" in item:
            LOGGER.warning("calibration photo skipped: %s: %s", path, item["failure"])
            continue
        det_feeds.append({"image": item["input"][0].numpy()})
        found = pipe.process_batch([item["image"]], [item["input"]])[0]
        h, w = item["image"].shape[:2]
        boxes = [d["box"] for d in found] or [[0.0, 0.0, float(w), float(h)]]
        crops = torch.stack([pipe.classifier.preprocess(crop_box(item["image"], b, padding)) for b in boxes[:8]])
        clf_feeds.append({"crops": crops.numpy()})
    if not det_feeds:
        raise ValueError(f"--calibration {photos}: none of the photos could be read")
    return det_feeds, clf_feeds


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens export``."""
    from pipeline.settings import profile_defaults

    p = argparse.ArgumentParser(prog="taxolens export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino"])
    p.add_argument("--detector", required=True, help="detector release file")
    p.add_argument("--classifier", required=True, help="classifier release file")
    p.add_argument("--quantize", action="store_true",
                   help="also write int8 copies (onnx: dynamic, .int8.onnx; openvino: static, calibrated on "
                        "--calibration, .static-int8.onnx)")
    p.add_argument("--calibration", default=None, help="photos whose inputs calibrate the static int8 copies")
    p.add_argument("--calibration-photos", type=int, default=100, help="how many of them (spread over the folder)")
    p.add_argument("--proposals", type=int, default=int(profile_defaults().get("proposals") or 0),
                   help="region proposals fixed in the exported detector (0: the model's 1000; default: "
                        "configs/inference.yaml's)")
    p.add_argument("--opset", type=int, default=17)
    args = check_settings(p.parse_args(argv))
    if args.format == "openvino" and args.quantize and not args.calibration:
        p.error("--format openvino --quantize needs --calibration PHOTOS (real photos, never random tensors)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from classifier.onnx import export_onnx as export_classifier
    from detector.onnx import STATIC_INT8_FLOAT
    from detector.onnx import export_onnx as export_detector

    n = args.proposals
    written = [str(export_detector(args.detector, onnx_path(args.detector, proposals=n), args.opset, n)),
               str(export_classifier(args.classifier, onnx_path(args.classifier), args.opset))]
    if args.quantize and args.format == "onnx":
        for model, k in ((args.detector, n), (args.classifier, 0)):
            written.append(str(quantize(onnx_path(model, proposals=k), onnx_path(model, "int8", k))))
    elif args.quantize:
        det_feeds, clf_feeds = calibration_inputs(args.detector, args.classifier, args.calibration,
                                                  args.calibration_photos, args.proposals)
        for model, k, feeds, ignored in ((args.detector, n, det_feeds, STATIC_INT8_FLOAT),
                                         (args.classifier, 0, clf_feeds, ())):
            written.append(str(quantize_static(onnx_path(model, proposals=k), onnx_path(model, "static-int8", k),
                                               feeds, ignored)))
    print(json.dumps({"written": written, "proposals": args.proposals}))
    return 0
