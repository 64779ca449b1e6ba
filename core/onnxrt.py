"""What both stages share to run as ONNX.

Stamping an export with the weights it came from, opening it with ONNX Runtime or OpenVINO (refused when it
does not match its release file), dynamic int8 quantization (ONNX Runtime) and static int8 quantization
calibrated on real inputs (NNCF, for OpenVINO).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from core.modelfile import ModelFileError

#: what runs an exported file
RUNTIMES = ("onnxruntime", "openvino")


def onnx_path(model_file: str | os.PathLike, variant: str = "", proposals: int = 0) -> Path:
    """Where ``taxolens export`` puts a release file's ONNX copy: beside it.

    ``model.onnx``; its int8 copies ``model.int8.onnx`` (dynamic) and ``model.static-int8.onnx`` (static); a
    detector exported with a number of region proposals of its own, ``model.p300.onnx`` (``model.p300.int8.onnx``
    ...), so that exports with several numbers lie side by side.
    """
    parts = [f"p{proposals}"] if proposals else []
    parts += [variant] if variant else []
    return Path(model_file).with_suffix("".join(f".{x}" for x in parts) + ".onnx")


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


def stamp(path: str | os.PathLike, mf: dict, extra: dict | None = None) -> None:
    """Write the release file's identity and the digest of the ONNX file's own weights into its metadata.

    ``extra`` adds what the export fixed beyond the weights (``{"proposals": 300}``).
    """
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in [*((k, mf[k]) for k in STAMP_KEYS), *(extra or {}).items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = f"taxolens_{key}", json.dumps(value)
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
    for key, raw in meta.items():  # what an export adds of its own (the detector's proposals)
        name = key.removeprefix("taxolens_")
        if key.startswith("taxolens_") and name not in found:
            try:
                found[name] = json.loads(raw)
            except json.JSONDecodeError:
                pass
    return found


def preferred_providers() -> list[str]:
    """CUDA where present, then OpenVINO's execution provider where installed, then ONNX Runtime's CPU one."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    order = ["CUDAExecutionProvider", "OpenVINOExecutionProvider", "CPUExecutionProvider"]
    return [p for p in order if p in available] or available


def read_checked(path: str | os.PathLike, mf: dict) -> tuple[Any, dict[str, Any]]:
    """An exported file and its stamp, once both fit the release file ``mf``.

    Raises:
        ModelFileError: each naming the file: no such file, not loadable, a stamp missing, unreadable or copied
            from another export, exported from other weights than ``mf``, of another kind, or an input or a
            class count that does not fit ``mf``.
    """
    import onnx

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
    _check_shapes(p, model, mf)
    return model, found


def session(path: str | os.PathLike, mf: dict, threads: int = 0, runtime: str = "onnxruntime") -> Any:
    """A session for ``path`` (ONNX Runtime's, or :class:`OpenVinoSession`), once it fits the release file ``mf``.

    Both answer ``run(output_names, {input_name: array})``. Raises :class:`ModelFileError` as
    :func:`read_checked` does, and for a file the runtime cannot run.
    """
    model, _ = read_checked(path, mf)
    return open_checked(path, model, threads, runtime)


def open_checked(path: str | os.PathLike, model: Any, threads: int = 0, runtime: str = "onnxruntime") -> Any:
    """A session for a file :func:`read_checked` already read and checked (``model``, its ONNX graph)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    p = Path(path)
    if runtime == "openvino":
        return OpenVinoSession(p, model, threads)
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model.SerializeToString(), options, providers=preferred_providers())
    except Exception as exc:  # ONNX Runtime raises its own exception types for a graph it cannot run
        raise ModelFileError(f"{p}: not a usable ONNX file ({exc.__class__.__name__}: {str(exc)[:200]})") from exc


class OpenVinoSession:
    """An exported file compiled by OpenVINO for the CPU, answering ONNX Runtime's ``run(names, feeds)``.

    Float32 inference precision is asked for (OpenVINO would otherwise pick bf16 on a CPU that has it, and the
    answers would change unmeasured); an int8 file (:func:`quantize_static`) runs its int8 kernels. One infer
    request per calling thread: the app answers several users at once.
    """

    def __init__(self, path: Path, model: Any, threads: int = 0) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelFileError(f"{path}: the OpenVINO engine needs OpenVINO: pip install 'taxolens[fast]'"
                                 ) from exc
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(model.SerializeToString()), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelFileError(f"{path}: OpenVINO cannot run it ({exc.__class__.__name__}: {str(exc)[:200]})"
                                 ) from exc
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]
        self._local = threading.local()
        # OpenVINO's first numpy conversion sets up pybind11's numpy API once per process; two threads making it
        # together deadlocked the app (20 users at once, its first photos: each thread waiting for the other's
        # lock, the GIL held). Made here, in the thread that loads the model, before anything runs concurrently.
        import numpy as np

        _ = ov.Tensor(np.zeros(1, dtype=np.float32)).data

    def run(self, names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        """The outputs ``names`` (all, in the file's order, for None) for the inputs ``feeds``."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer(feeds)
        return [request.get_tensor(n).data.copy() for n in (names or self.output_names)]


def _dims(value: Any) -> list[int | str]:
    """A graph input's or output's shape: sizes, and names for the dynamic ones."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def _check_shapes(p: Path, model: Any, mf: dict) -> None:
    """The input and the number of classes the release file says, or a refusal naming both."""
    initializers = {t.name for t in model.graph.initializer}
    shape = _dims([i for i in model.graph.input if i.name not in initializers][0])
    classes = len(mf["class_names"])
    if mf["kind"] == "classifier":
        size = int(mf["preprocessing"]["input_size"])
        if len(shape) != 4 or shape[1] != 3 or shape[2:] != [size, size]:
            raise ModelFileError(f"{p}: takes input {shape}, but {mf.get('path')} preprocesses crops to "
                                 f"[n, 3, {size}, {size}]; export it again")
        out = _dims(model.graph.output[0])
        # an ensemble's network gives its mean and each member's logits side by side
        width = classes * (1 + len((mf.get("ensemble") or {}).get("members") or []))
        if len(out) != 2 or out[1] != width:
            raise ModelFileError(f"{p}: gives {out[-1]} outputs, but {mf.get('path')} names {classes} classes "
                                 f"({width} outputs); export it again")
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
    extra = {k: v for k, v in identity.items() if k not in (*STAMP_KEYS, "onnx_sha256")}
    stamp(tmp, identity, extra)  # the int8 copy's own weights, the same release file and export settings
    os.replace(tmp, dst)
    return dst


def quantize_static(src: str | os.PathLike, dst: str | os.PathLike, samples: list[dict[str, Any]],
                    ignored: tuple[str, ...] = ()) -> Path:
    """Static int8 quantization by NNCF, its activation ranges measured on ``samples`` (real inputs).

    ``samples`` are feeds of the exported graph (``{input name: array}``), made from real photos by the caller;
    never random tensors, whose ranges are not a photo's. The copy holds QuantizeLinear/DequantizeLinear pairs
    that OpenVINO runs with int8 kernels (``--engine openvino-int8``); nodes whose names match a pattern of
    ``ignored`` (regular expressions) stay in float. It keeps the source's stamp (the same release file) over its
    own weights.
    """
    if not samples:
        raise ValueError(f"{src}: static int8 quantization needs calibration inputs from real photos; got none")
    try:
        import nncf
    except ImportError as exc:
        raise ValueError("static int8 quantization needs NNCF: pip install 'taxolens[fast]'") from exc
    import onnx

    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    source = onnx.load(str(src))
    identity = read_stamp(Path(src), source)
    scope = nncf.IgnoredScope(patterns=list(ignored)) if ignored else None
    quantized = nncf.quantize(source, nncf.Dataset(samples), subset_size=len(samples), ignored_scope=scope)
    onnx.save(quantized, str(tmp))
    extra = {k: v for k, v in identity.items() if k not in (*STAMP_KEYS, "onnx_sha256")}
    stamp(tmp, identity, extra | {"calibration_inputs": len(samples)})
    os.replace(tmp, dst)
    return dst
