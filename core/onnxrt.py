"""What both stages share to run as ONNX.

Stamping an export with the weights it came from, opening it with ONNX Runtime (refused when it does not
match its release file), and dynamic int8 quantization.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from core.modelfile import ModelFileError


def onnx_path(model_file: str | os.PathLike, variant: str = "") -> Path:
    """Where ``taxolens export`` puts a release file's ONNX copy: beside it, ``model.onnx`` (``model.int8.onnx``)."""
    p = Path(model_file)
    return p.with_suffix(f".{variant}.onnx" if variant else ".onnx")


#: the stamp's keys in an ONNX file's metadata
STAMP_KEYS = ("kind", "model_version", "weights_sha256")


def graph_digest(model: Any) -> str:
    """SHA-256 over an ONNX graph's own weights (every initializer's name, type, shape and bytes, by name).

    Stamped into the file at export, so a stamp copied onto another model's ONNX file no longer matches it.
    """
    from onnx import numpy_helper

    digest = hashlib.sha256()
    for init in sorted(model.graph.initializer, key=lambda t: t.name):
        digest.update(f"{init.name}|{init.data_type}|{tuple(init.dims)}|".encode())
        digest.update(numpy_helper.to_array(init).tobytes())
    return digest.hexdigest()


def stamp(path: str | os.PathLike, mf: dict) -> None:
    """Write the release file's identity and the digest of the ONNX file's own weights into its metadata."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key in STAMP_KEYS:
        entry = model.metadata_props.add()
        entry.key, entry.value = f"taxolens_{key}", json.dumps(mf[key])
    entry = model.metadata_props.add()
    entry.key, entry.value = "taxolens_onnx_sha256", json.dumps(graph_digest(model))
    onnx.save(model, str(path))


def read_stamp(path: Path, model: Any) -> dict[str, Any]:
    """The stamp of a loaded ONNX model, checked against the file's own weights.

    Raises:
        ModelFileError: no stamp, a stamp that is not readable, or one that does not match this file's weights
            (copied from another export), each naming the file.
    """
    meta = {p.key: p.value for p in model.metadata_props}
    found: dict[str, Any] = {}
    for key in (*STAMP_KEYS, "onnx_sha256"):
        raw = meta.get(f"taxolens_{key}")
        if raw is None:
            raise ModelFileError(f"{path}: no taxolens stamp ({key} missing): not exported by `taxolens export`; "
                                 "export it again")
        try:
            found[key] = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{path}: its taxolens stamp is not readable ({key}: {raw[:40]!r}); export it "
                                 "again") from exc
    if found["onnx_sha256"] != graph_digest(model):
        raise ModelFileError(f"{path}: its stamp does not belong to its weights (copied from another export?); "
                             "export it again")
    return found


def preferred_providers() -> list[str]:
    """CUDA where present, then OpenVINO's execution provider where installed, then ONNX Runtime's CPU one."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    order = ["CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider"]
    return [p for p in order if p in available] or available


def session(path: str | os.PathLike, mf: dict, threads: int = 0) -> Any:
    """An ONNX Runtime session for ``path``, once its stamp and shape fit the release file ``mf``.

    Raises:
        ModelFileError: each naming the file: no such file, not loadable, a stamp missing, unreadable or copied
            from another export, exported from other weights than ``mf``, of another kind, or an input or a
            class count that does not fit ``mf``.
    """
    import onnx
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no ONNX file; make it with `taxolens export --format onnx`")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # protobuf raises its own types for a corrupt file
        raise ModelFileError(f"{p}: not a usable ONNX file ({exc.__class__.__name__}: {str(exc)[:200]})") from exc
    found = read_stamp(p, model)
    if found["weights_sha256"] != mf["weights_sha256"]:
        raise ModelFileError(f"{p}: was exported from other weights than {mf.get('path')}; export it again")
    if found["kind"] != mf["kind"]:
        raise ModelFileError(f"{p}: is a {found['kind']} export, not a {mf['kind']}; export it again")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), options, providers=preferred_providers())
    except Exception as exc:  # ONNX Runtime raises its own exception types for a graph it cannot run
        raise ModelFileError(f"{p}: not a usable ONNX file ({exc.__class__.__name__}: {str(exc)[:200]})") from exc
    _check_shapes(p, sess, model, mf)
    return sess


def _check_shapes(p: Path, sess: Any, model: Any, mf: dict) -> None:
    """The input and the number of classes the release file says, or a refusal naming both."""
    shape = sess.get_inputs()[0].shape
    classes = len(mf["class_names"])
    if mf["kind"] == "classifier":
        size = int(mf["preprocessing"]["input_size"])
        if len(shape) != 4 or shape[1] != 3 or shape[2:] != [size, size]:
            raise ModelFileError(f"{p}: takes input {shape}, but {mf.get('path')} preprocesses crops to "
                                 f"[n, 3, {size}, {size}]; export it again")
        out = sess.get_outputs()[0].shape
        if len(out) != 2 or out[1] != classes:
            raise ModelFileError(f"{p}: gives {out[-1]} classes, but {mf.get('path')} names {classes}; export it "
                                 "again")
        return
    if len(shape) != 3 or shape[0] != 3:
        raise ModelFileError(f"{p}: takes input {shape}, not one photo [3, height, width]; export it again")
    scores = [t for t in model.graph.initializer if t.name.endswith("cls_score.weight")]
    if scores and scores[0].dims[0] != classes + 1:
        raise ModelFileError(f"{p}: detects {scores[0].dims[0] - 1} classes, but {mf.get('path')} names {classes}; "
                             "export it again")


#: what dynamic int8 quantization touches: the fully connected layers (the detector's box head, the classifier's
#: last layer). Quantizing the convolutions too made both slower on a CPU and changed answers (BENCHMARKS.md).
QUANTIZED_OPS = ("MatMul", "Gemm")


def quantize(src: str | os.PathLike, dst: str | os.PathLike, ops: tuple[str, ...] = QUANTIZED_OPS) -> Path:
    """Dynamic int8 quantization of an ONNX file's ``ops`` (weights int8, activations scaled at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    import onnx

    source = onnx.load(str(src))
    identity = read_stamp(Path(src), source)
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=list(ops))
    stamp(tmp, identity)  # the int8 copy's own weights, the same release file
    os.replace(tmp, dst)
    return dst
