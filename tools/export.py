"""``taxolens export --format onnx``: both release files as ONNX, beside them, for ``taxolens run --engine onnx``.

Writes ``DETECTOR.onnx`` and ``CLASSIFIER.onnx`` (the ``.pt`` replaced by ``.onnx``), each stamped with the
SHA-256 of the weights it came from; ``--quantize`` adds dynamic int8 copies (``.int8.onnx``, for
``--engine onnx-int8``). ``taxolens bench --modes naive pipeline onnx onnx-int8`` says what each changes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from core.config import check_settings
from core.onnxrt import onnx_path, quantize


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens export``."""
    p = argparse.ArgumentParser(prog="taxolens export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", default="onnx", choices=["onnx"])
    p.add_argument("--detector", required=True, help="detector release file")
    p.add_argument("--classifier", required=True, help="classifier release file")
    p.add_argument("--quantize", action="store_true", help="also write dynamic int8 copies (.int8.onnx)")
    p.add_argument("--opset", type=int, default=17)
    args = check_settings(p.parse_args(argv))
    from classifier.onnx import export_onnx as export_classifier
    from detector.onnx import export_onnx as export_detector

    written = [str(export_detector(args.detector, onnx_path(args.detector), args.opset)),
               str(export_classifier(args.classifier, onnx_path(args.classifier), args.opset))]
    if args.quantize:
        for model in (args.detector, args.classifier):
            written.append(str(quantize(onnx_path(model), onnx_path(model, "int8"))))
    print(json.dumps({"written": written}))
    return 0
