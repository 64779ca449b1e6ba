"""What both stages share to run as ONNX.

Stamping an export with the weights it came from, opening it with ONNX Runtime (refused when it does not
match its release file), and dynamic int8 quantization.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core.modelfile import ModelFileError


def onnx_path(model_file: str | os.PathLike, variant: str = "") -> Path:
    """Where ``taxolens export`` puts a release file's ONNX copy: beside it, ``model.onnx`` (``model.int8.onnx``)."""
    p = Path(model_file)
    return p.with_suffix(f".{variant}.onnx" if variant else ".onnx")


def stamp(path: str | os.PathLike, mf: dict) -> None:
    """Write the release file's identity into an ONNX file's metadata (``taxolens_weights_sha256``...)."""
    import onnx

    model = onnx.load(str(path))
    for key in ("kind", "model_version", "weights_sha256"):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"taxolens_{key}", json.dumps(mf[key])
    onnx.save(model, str(path))


def preferred_providers() -> list[str]:
    """CUDA where present, then OpenVINO's execution provider where installed, then ONNX Runtime's CPU one."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    order = ["CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider"]
    return [p for p in order if p in available] or available


def session(path: str | os.PathLike, mf: dict, threads: int = 0) -> Any:
    """An ONNX Runtime session for ``path``.

    Raises:
        ModelFileError: no such file, not loadable, or exported from other weights than the release file ``mf``.
    """
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no ONNX file; make it with `taxolens export --format onnx`")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(p), options, providers=preferred_providers())
    except Exception as exc:  # ONNX Runtime raises its own exception types for a corrupt file
        raise ModelFileError(f"{p}: not a usable ONNX file ({exc.__class__.__name__}: {str(exc)[:200]})") from exc
    meta = sess.get_modelmeta().custom_metadata_map
    if json.loads(meta.get("taxolens_weights_sha256", "null")) != mf["weights_sha256"]:
        raise ModelFileError(f"{p}: was exported from other weights than {mf.get('path')}; export it again")
    return sess


#: what dynamic int8 quantization touches: the fully connected layers (the detector's box head, the classifier's
#: last layer). Quantizing the convolutions too made both slower on a CPU and changed answers (BENCHMARKS.md).
QUANTIZED_OPS = ("MatMul", "Gemm")


def quantize(src: str | os.PathLike, dst: str | os.PathLike, ops: tuple[str, ...] = QUANTIZED_OPS) -> Path:
    """Dynamic int8 quantization of an ONNX file's ``ops`` (weights int8, activations scaled at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=list(ops))
    os.replace(tmp, dst)
    return dst
