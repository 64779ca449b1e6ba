"""The inference settings' one owner: every command that answers photos, and the app, read them here.

:class:`InferenceSettings` is frozen, as :class:`classifier.train.TrainSettings` is for training. It adds its
options to a command's parser (:meth:`InferenceSettings.add_args`, with defaults from the packaged profile
``configs/inference.yaml``), is read back from the parsed options (:meth:`InferenceSettings.from_args`), and
is all a :class:`pipeline.predictor.Pipeline` is built with. Its dict (:meth:`InferenceSettings.as_dict`) is
``results.json``'s ``settings``, the input of ``settings_id``, what a Ray actor is built from, and part of the
store's key. A new inference option goes here, and only here.

A value of ``None`` means "what the model file says" (the detector's score threshold, the classifier's
threshold, the detector file's suppression).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.config import SettingError, check_settings, packaged, read_yaml
from core.defaults import MAX_PIXELS
from detector.evaluate import add_suppression_args

#: how the networks run: PyTorch; ONNX Runtime on the exported files (float, or dynamic int8); OpenVINO on them
#: (float, or static int8 calibrated on real photos)
ENGINES = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8")
#: each exported engine's runtime and the variant of the exported files it runs (core.onnxrt.onnx_path)
EXPORTED_ENGINES = {"onnx": ("onnxruntime", ""), "onnx-int8": ("onnxruntime", "int8"),
                    "openvino": ("openvino", ""), "openvino-int8": ("openvino", "static-int8")}
DEVICES = ("auto", "cpu", "cuda", "mps")
#: the packaged profile that sets the defaults of these options for every command
PROFILE = "inference.yaml"


@dataclass(frozen=True)
class InferenceSettings:
    """Everything besides the two model files that decides how photos are answered, and where they run.

    Attributes:
        score_threshold: detector score a box needs (None: the detector file's).
        min_score_threshold: the lowest score a caller may ask for per call (the app's slider); the detector
            keeps boxes down to it (None: the score threshold, so no box is scored for nothing).
        threshold: classifier probability that counts as an answer (None: the classifier file's).
        rollup: whether a higher taxon (genus, family...) may answer when no class reaches its threshold.
        suppress_iou: class-agnostic suppression by IoU (None: the detector file's).
        suppress_containment: suppression by the share of a box inside another (None: the detector file's).
        classify_whole_photo: where no organism is boxed, classify the whole photo.
        proposals: region proposals per photo (0: the model's 1000).
        max_pixels: photos larger than this are refused as a failure, not decoded.
        decode_side: where above 0, JPEGs at least twice as large are decoded at a reduced scale (1/2, 1/4, 1/8)
            that keeps their short side at or above this many pixels, and never below the detector's input
            (0: every pixel decoded). Several times faster to decode; the crops are cut from those pixels.
        engine: ``torch``; ONNX Runtime on the exported files (``onnx``, ``onnx-int8``); OpenVINO on them
            (``openvino``, ``openvino-int8``). An exported detector keeps the proposals it was exported with.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` (PyTorch engine).
        threads: CPU threads of torch, ONNX Runtime or OpenVINO (0: one per core).
    """

    score_threshold: float | None = None
    min_score_threshold: float | None = None
    threshold: float | None = None
    rollup: bool = True
    suppress_iou: float | None = None
    suppress_containment: float | None = None
    classify_whole_photo: bool = False
    proposals: int = 0
    max_pixels: int = MAX_PIXELS
    decode_side: int = 0
    engine: str = "torch"
    device: str = "auto"
    threads: int = 0

    #: where a photo is computed, not what it is answered: left out of ``settings_id``
    PLACEMENT = ("device", "threads")

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise SettingError(f"--engine {self.engine}: choose one of {', '.join(ENGINES)}")
        if self.device not in DEVICES:
            raise SettingError(f"--device {self.device}: choose one of {', '.join(DEVICES)}")
        check_settings(argparse.Namespace(**dataclasses.asdict(self)))

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values (``results.json``'s ``settings``; a Ray actor's argument)."""
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """What decides the answers (every setting but the device and threads): the input of ``settings_id``."""
        return {k: v for k, v in self.as_dict().items() if k not in self.PLACEMENT}

    def replace(self, **changes: Any) -> InferenceSettings:
        """A copy with some settings changed (checked again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InferenceSettings:
        """Settings from :meth:`as_dict`'s form; an unknown key is an error naming it."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise SettingError(f"unknown inference setting(s) {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> InferenceSettings:
        """The settings a command's parsed options hold (the options :meth:`add_args` added)."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        if hasattr(args, "no_rollup"):
            values["rollup"] = not args.no_rollup
        if values.get("engine") not in ENGINES:  # `taxolens run --engine ray` runs PyTorch in Ray actors
            values["engine"] = "torch"
        return cls(**values)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser, *, extra_engines: tuple[str, ...] = ()) -> None:
        """Add the inference options to ``parser``, with the defaults of ``configs/inference.yaml``.

        A command's own ``--config`` profile may set them again (it wins); the command line wins over both.
        """
        g = parser.add_argument_group("inference settings (defaults: configs/inference.yaml)")
        g.add_argument("--score-threshold", type=float, help="detector score a box needs; default: the model file's")
        g.add_argument("--min-score-threshold", type=float,
                       help="lowest detector score a caller may ask for per call (the app's slider); default: the "
                            "score threshold")
        g.add_argument("--threshold", type=float, help="classifier probability that counts as an answer; default: "
                                                       "the model file's")
        g.add_argument("--no-rollup", action="store_true", help="never answer with a higher taxon (genus, family...)")
        add_suppression_args(g)
        g.add_argument("--classify-whole-photo", action="store_true",
                       help="where no organism is found, classify the whole photo (marked source=whole_photo)")
        g.add_argument("--proposals", type=int,
                       help="region proposals per photo (0: the model's 1000); fewer is faster but misses organisms "
                            "in crowded photos; an exported engine needs files exported with the same number")
        g.add_argument("--max-pixels", type=int, help="photos larger than this are refused as a failure, not decoded")
        g.add_argument("--decode-side", type=int,
                       help="decode JPEGs at least twice this size at a reduced scale (1/2, 1/4, 1/8) keeping their "
                            "short side at or above this many pixels (never below the detector's input); 0 decodes "
                            "every pixel. Faster on large photos; crops are cut from the reduced pixels")
        g.add_argument("--engine", choices=[*ENGINES, *extra_engines],
                       help="run the networks in PyTorch, or in ONNX Runtime or OpenVINO from the files `taxolens "
                            "export` wrote beside the model files (onnx-int8: their dynamic int8 copies; "
                            "openvino-int8: their static int8 copies, calibrated on real photos)"
                            + ("; ray: PyTorch in Ray Data actors (same records, same resume)"
                               if "ray" in extra_engines else ""))
        g.add_argument("--device", choices=DEVICES, help="where PyTorch runs (auto: CUDA, then MPS, then CPU)")
        g.add_argument("--threads", type=int, help="CPU threads of torch, ONNX Runtime or OpenVINO (0: one per core)")
        parser.set_defaults(**profile_defaults())


def settings_id(identity: dict) -> str:
    """A short digest of what decides answers.

    For a folder run: the folder, both models' files and :meth:`InferenceSettings.identity`; for the app, the
    models and the settings of that call.
    """
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def profile_defaults() -> dict[str, Any]:
    """The options' defaults: the dataclass's, then ``configs/inference.yaml``'s (checked against the fields)."""
    values = read_yaml(packaged(PROFILE)) or {}
    if not isinstance(values, dict):
        raise SettingError(f"configs/{PROFILE}: expected a mapping of setting: value")
    fields = {f.name: f.default for f in dataclasses.fields(InferenceSettings)}
    unknown = sorted(set(values) - set(fields) - {"no_rollup"})
    if unknown:
        raise SettingError(f"configs/{PROFILE}: unknown setting(s) {', '.join(unknown)}")
    defaults = {k: v for k, v in fields.items() if k != "rollup"} | {"no_rollup": not fields["rollup"]}
    return defaults | values
