"""The release model file both stages write: weights plus everything needed to use them.

A release file is a plain dict of tensors, strings, numbers, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (a model file is untrusted input). It names its ``kind`` so a
detector file is never used as a classifier, and carries the SHA-256 of its weights, checked on load.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from core.io import atomic_torch_save

FORMAT_VERSION = 1
KINDS = ("classifier", "detector")


class WeightsError(RuntimeError):
    """Pretrained weights could not be had; the message says how to pass a local file instead."""


class ModelFileError(ValueError):
    """A model file that is missing, unsafe, corrupt or of the wrong kind; the message names it."""


def taxolens_version() -> str:
    """The installed taxolens version."""
    try:
        return metadata.version("taxolens")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, shapes, dtypes and bytes, in key order."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save_model_file(path: str | os.PathLike, *, kind: str, state_dict: dict[str, torch.Tensor],
                    meta: dict[str, Any]) -> dict[str, Any]:
    """Write a release file atomically and return what was written (minus the weights).

    Args:
        path: where to write it.
        kind: ``classifier`` or ``detector``.
        state_dict: the weights (moved to CPU).
        meta: architecture, class names, preprocessing, thresholds, metrics, training data summary...
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    # contiguous: a network trained in channels_last memory format is stored in the usual one
    cpu_state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    digest = weights_sha256(cpu_state)
    created = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    header = {
        "format": "taxolens",
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "taxolens_version": taxolens_version(),
        "created": created,
        "weights_sha256": digest,
        "model_version": f"{meta.get('architecture', kind)}-{created[:10].replace('-', '')}-{digest[:8]}",
        **meta,
    }
    atomic_torch_save({**header, "state_dict": cpu_state}, path)
    return header


def load_model_file(path: str | os.PathLike, kind: str) -> dict[str, Any]:
    """Load and check a release file of the given ``kind``.

    Raises:
        ModelFileError: missing file, not loadable with ``weights_only=True``, not a taxolens model
            file, of another kind, or weights that do not match their recorded SHA-256.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: model file not found")
    if p.stat().st_size == 0:
        raise ModelFileError(f"{p}: empty file (0 bytes); not a model file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{p}: not a model file that loads safely with weights_only=True "
                             f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from exc
    if not isinstance(obj, dict) or obj.get("format") != "taxolens" or "state_dict" not in obj:
        raise ModelFileError(f"{p}: not a taxolens release model file (a training checkpoint? "
                             "use the model.pt that training writes)")
    if obj.get("kind") != kind:
        raise ModelFileError(f"{p}: is a {obj.get('kind')} model file, a {kind} model file is needed here")
    if obj.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(f"{p}: written by a newer taxolens (format {obj['format_version']}); upgrade taxolens")
    _check_header(p, obj, kind)
    if weights_sha256(obj["state_dict"]) != obj.get("weights_sha256"):
        raise ModelFileError(f"{p}: weights do not match their recorded SHA-256; the file is corrupt")
    for name, tensor in obj["state_dict"].items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{p}: weights hold NaN or infinite values (tensor {name}); the model would answer "
                                 "nonsense: retrain it or use another file")
    obj["path"] = str(p)
    return obj


#: fewest classes a model of each kind may have: a classifier of one class would name every crop with
#: probability 1.0, which means nothing
MIN_CLASSES = {"classifier": 2, "detector": 1}


def _check_header(p: Path, obj: dict, kind: str) -> None:
    """What every use of a model file relies on: an architecture, class names, a dict of tensors."""
    if not isinstance(obj.get("architecture"), str) or not obj["architecture"]:
        raise ModelFileError(f"{p}: no architecture named in the model file")
    names = obj.get("class_names")
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise ModelFileError(f"{p}: class_names missing or not a list of names")
    if len(names) < MIN_CLASSES[kind]:
        raise ModelFileError(f"{p}: {len(names)} class(es); a {kind} needs at least {MIN_CLASSES[kind]}")
    if len(set(names)) != len(names):
        raise ModelFileError(f"{p}: class_names repeat a name")
    state = obj["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(f"{p}: state_dict is not a mapping of tensors")


def load_weights(model: torch.nn.Module, mf: dict[str, Any]) -> None:
    """Load a release file's weights into the network its header describes.

    Raises:
        ModelFileError: the weights do not fit that architecture (a file edited or mislabelled).
    """
    try:
        model.load_state_dict(mf["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ModelFileError(f"{mf.get('path', 'model file')}: its weights do not fit the architecture it names "
                             f"({mf['architecture']}, {len(mf['class_names'])} classes): {first[:200]}") from exc
