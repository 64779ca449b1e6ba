"""Train a Faster R-CNN on a canonical COCO file (``taxolens annotations import`` makes one).

Launch::

    taxolens detector train --train runs/bh/train.json --val runs/bh/valid.json --out runs/det \
        --arch fasterrcnn_efficientnet_lite0_fpn --weights imagenet --class-agnostic --epochs 6

Defaults come from ``configs/detector.yaml``. The run folder gets ``config.yaml``, ``checkpoint.pt``
(rewritten atomically after every epoch; rerunning the same command resumes from it), ``history.json``,
``model.pt`` (the release file) and ``eval/`` (COCO metrics on ``--val``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from annotations.coco import load_coco
from core.config import HelpFormatter, add_config_arg, parse_with_config, write_resolved
from core.defaults import DETECTOR_SCORE_THRESHOLD, SUPPRESS_CONTAINMENT, SUPPRESS_IOU
from core.distributed import Dist, mean_across, training_run, wrap
from core.io import atomic_write_json
from core.modelfile import save_model_file
from core.runtime import WorkerInit, seed_everything
from core.training import KeptEpoch, Run, add_force_arg, kept_state
from detector.data import PRESETS, CocoDetectionDataset, build_augmentation, collate
from detector.evaluate import add_suppression_args
from detector.models import (
    ARCHITECTURES,
    DEFAULT_ANCHOR_SIZES,
    anchor_sizes_from_boxes,
    build_detector,
    normalization,
)

LOGGER = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens detector train``."""
    p = argparse.ArgumentParser(prog="taxolens detector train", description=__doc__, formatter_class=HelpFormatter)
    add_config_arg(p, "detector")
    p.add_argument("--train", required=True, help="training boxes, canonical COCO JSON")
    p.add_argument("--val", default=None, help="validation boxes, canonical COCO JSON (evaluated at the end)")
    p.add_argument("--out", required=True, help="run folder (an existing run there is resumed)")
    p.add_argument("--arch", default="fasterrcnn_resnet50_fpn_v2", choices=ARCHITECTURES, help="network")
    p.add_argument("--weights", default="coco", help="coco | imagenet | none | path to a local state dict")
    p.add_argument("--class-agnostic", action="store_true", help="one class, organism: a detector that localizes")
    p.add_argument("--augment", default="standard", choices=PRESETS, help="augmentation preset")
    p.add_argument("--epochs", type=int, default=12, help="passes over the training photos")
    p.add_argument("--batch-size", type=int, default=2, help="photos per training step")
    p.add_argument("--lr", type=float, default=0.02, help="SGD learning rate")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="SGD weight decay")
    p.add_argument("--clip-grad", type=float, default=10.0, help="gradient norm clipping (0: off)")
    p.add_argument("--warmup-iters", type=int, default=200, help="linear learning-rate warm-up in the first epoch")
    p.add_argument("--lr-steps", type=int, nargs="*", default=None, help="epochs at which lr x 0.1 (default: 75%%)")
    p.add_argument("--min-size", type=int, default=800, help="shorter side inside the model")
    p.add_argument("--max-size", type=int, default=1333, help="longer side inside the model, at most")
    p.add_argument("--trainable-layers", type=int, default=3, help="backbone stages trained")
    p.add_argument("--anchor-sizes", default="default", choices=["default", "auto"],
                   help="EfficientNet-Lite detectors: default (16-256 px) or auto (fitted to the training boxes)")
    p.add_argument("--head-size", type=int, default=1024, help="box head width (efficientnet_lite0 detector only)")
    p.add_argument("--rois-per-image", type=int, default=512, help="proposals sampled per photo for the box head")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="stored in the model file for the pipeline; default: the operating point chosen on --val "
                        f"(F1-best, or --target-precision), else {DETECTOR_SCORE_THRESHOLD}")
    p.add_argument("--target-precision", type=float, default=None,
                   help="choose the operating point as the lowest score reaching this precision on --val")
    add_suppression_args(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (order, augmentations)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="photo-loading processes")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto: CUDA, then MPS, then CPU")
    p.add_argument("--max-steps-per-epoch", type=int, default=0, help="batches per epoch at most (0: all)")
    p.add_argument("--no-eval", action="store_true", help="skip the COCO evaluation on --val at the end")
    add_force_arg(p)
    return p


def train_one_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                    device: torch.device, epoch: int, scaler: torch.amp.GradScaler | None, warmup_iters: int,
                    max_steps: int = 0, clip_grad: float = 0.0) -> dict:
    """One pass over the training photos; warm-up in the first epoch. Returns mean losses and timings."""
    model.train()
    warmup = None
    if epoch == 0 and warmup_iters > 0:
        warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.001,
                                                   total_iters=min(warmup_iters, max(len(loader) - 1, 1)))
    sums: dict[str, float] = {}
    steps = images = 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1} train", unit="batch", leave=False)
    for step, (photos, targets) in enumerate(bar):
        if max_steps and step >= max_steps:
            break
        photos = [p.to(device, non_blocking=True) for p in photos]
        targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
        with torch.autocast(device.type, dtype=torch.float16, enabled=scaler is not None):
            losses = model(photos, targets)
            loss = sum(losses.values())
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"epoch {epoch + 1} step {step}: loss is {loss.item()} "
                                     f"({ {k: round(v.item(), 4) for k, v in losses.items()} }); lower --lr")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if clip_grad:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if warmup is not None:
            warmup.step()
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        sums["loss"] = sums.get("loss", 0.0) + loss.item()
        steps += 1
        images += len(photos)
        bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}")
    seconds = time.perf_counter() - start
    return {**{k: v / max(steps, 1) for k, v in sums.items()}, "iterations": steps, "images": images,
            "seconds": seconds, "iterations_per_second": steps / seconds if seconds else None,
            "images_per_second": images / seconds if seconds else None}


@dataclass(frozen=True)
class DetectorTrainSettings:
    """Every setting of a detector training run; :func:`parse_settings` holds the defaults (``--help``)."""

    train: str
    out: str
    val: str | None
    arch: str
    weights: str
    class_agnostic: bool
    augment: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    clip_grad: float
    warmup_iters: int
    lr_steps: tuple[int, ...] | None
    min_size: int
    max_size: int
    trainable_layers: int
    anchor_sizes: str
    head_size: int
    rois_per_image: int
    score_threshold: float | None
    target_precision: float | None
    suppress_iou: float | None
    suppress_containment: float | None
    seed: int
    workers: int
    device: str
    max_steps_per_epoch: int
    no_eval: bool
    force: bool = False
    config: str | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> DetectorTrainSettings:
        """The settings from parsed options."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        if values.get("lr_steps") is not None:
            values["lr_steps"] = tuple(int(v) for v in values["lr_steps"])
        return cls(**values)


def parse_settings(argv: Sequence[str] | None) -> DetectorTrainSettings:
    """Settings from a command line: the parser's defaults, then the YAML profile, then argv."""
    return DetectorTrainSettings.from_namespace(parse_with_config(get_args_parser(), argv, default="detector"))


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens detector train``; returns the run summary."""
    return train(parse_settings(argv))


def train(settings: DetectorTrainSettings) -> dict:
    """Train a detector with ``settings`` into ``settings.out``; returns the run summary (the folder is locked)."""
    out = Path(settings.out)
    with training_run(out, settings.device, "detector training") as (device, d):
        return _train(settings, out, device, d)


def _train(args: DetectorTrainSettings, out: Path, device: torch.device, d: Dist) -> dict:
    seed_everything(args.seed)
    coco = load_coco(args.train)
    augmentation = build_augmentation(args.augment, seed=args.seed)
    dataset = CocoDetectionDataset(coco, augmentation, args.class_agnostic)
    if len(dataset) == 0:
        raise ValueError(f"{args.train}: no images")
    class_names = dataset.class_names
    anchors = (anchor_sizes_from_boxes(coco, args.min_size, args.max_size) if args.anchor_sizes == "auto"
               else DEFAULT_ANCHOR_SIZES)
    model = build_detector(args.arch, len(class_names), args.weights, min_size=args.min_size,
                           max_size=args.max_size, trainable_layers=args.trainable_layers, head_size=args.head_size,
                           rois_per_image=args.rois_per_image, anchor_sizes=anchors)
    model.to(device)
    # under torchrun each process trains on its own share of the photos, reshuffled every epoch
    sampler: DistributedSampler | None = None
    if d.enabled:
        sampler = DistributedSampler(dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=args.workers, collate_fn=collate, worker_init_fn=WorkerInit(seed=True),
                        pin_memory=device.type == "cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    steps = list(args.lr_steps) if args.lr_steps is not None else [max(1, round(0.75 * args.epochs))]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=steps, gamma=0.1)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    LOGGER.info("%s: %d photos, classes %s, %s on %s", args.train, len(dataset), class_names, args.arch, device)
    # the detector is validated once, at the end (COCO evaluation): it keeps its last epoch, and says so
    run = Run.start(out, arch=args.arch, class_names=class_names, device=device, model=model, optimizer=optimizer,
                    scheduler=scheduler, scaler=scaler, settings=asdict(args), kept=KeptEpoch.for_run(False),
                    force=args.force)
    if d.main:
        write_resolved(asdict(args), out / "config.yaml")  # once the resume check passed
    ddp = wrap(model, d, device)

    def one_epoch(epoch: int) -> dict:
        seed_everything(args.seed * 1000 + epoch)
        augmentation.set_random_seed(args.seed * 1000 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        row = train_one_epoch(ddp, optimizer, loader, device, epoch, scaler, args.warmup_iters,
                              args.max_steps_per_epoch, args.clip_grad)
        row["loss"] = mean_across(row["loss"], d)
        scheduler.step()
        return {"lr": optimizer.param_groups[0]["lr"], **row}

    def saved(row: dict) -> None:
        LOGGER.info("epoch %d/%d: loss %.4f, %.2f it/s, %.2f images/s (%.0f s)", row["epoch"], args.epochs,
                    row["loss"], row["iterations_per_second"] or 0, row["images_per_second"] or 0, row["seconds"])
        atomic_write_json(out / "history.json", run.history)

    run.run_epochs(args.epochs, one_epoch, d, saved)
    if not d.main:
        return {"rank": d.rank, "history": run.history}
    return _release(args, out, device, coco, len(dataset), class_names, [list(a) for a in anchors], model, run)


def _release(args: DetectorTrainSettings, out: Path, device: torch.device, coco: dict, images: int,
             class_names: list[str], anchors: list[list[int]], model: torch.nn.Module, run: Run) -> dict:
    """The release file with its operating point and COCO metrics on ``--val``."""
    history = run.history
    mean, std = normalization(args.arch)
    meta: dict[str, Any] = {
            "architecture": args.arch, "class_names": class_names, "class_agnostic": args.class_agnostic,
            "min_size": args.min_size, "max_size": args.max_size, "mean": list(mean), "std": list(std),
            "head_size": args.head_size, "anchor_sizes": anchors,
            "score_threshold": args.score_threshold if args.score_threshold is not None else DETECTOR_SCORE_THRESHOLD,
            "suppression": {"iou": args.suppress_iou if args.suppress_iou is not None else SUPPRESS_IOU,
                            "containment": args.suppress_containment if args.suppress_containment is not None
                            else SUPPRESS_CONTAINMENT},
            "metrics": {"kept_epoch": run.kept.epoch, "epoch_policy": run.kept.policy},
            "training": {"weights": args.weights, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                         "augment": args.augment, "device": str(device), "seed": args.seed,
                         "processes": run.processes,
                         "seconds_total": float(sum(r["seconds"] for r in history)),
                         "images_per_second": float(np.mean([r["images_per_second"] for r in history]))
                         if history else None},
            "training_data": {"coco": str(Path(args.train).resolve()), "images": images,
                              "boxes": len(coco["annotations"])}}
    state = kept_state(out, run.kept, model)
    save_model_file(out / "model.pt", kind="detector", state_dict=state, meta=meta)
    summary = {"model": str(out / "model.pt"), "history": history[-1] if history else None}
    if args.val and not args.no_eval:
        from detector.evaluate import evaluate_detector

        # without --score-threshold, the operating point measured on validation photos, not a fixed 0.5
        metrics = evaluate_detector(out / "model.pt", args.val, out / "eval", str(device),
                                    target_precision=args.target_precision,
                                    at_operating_point=args.score_threshold is None)
        op = metrics["operating_point"]
        if args.score_threshold is None:
            meta["score_threshold"] = op["score_threshold"]
        at = metrics["at_threshold"]
        meta["operating_point"] = op
        meta["metrics"] |= {k: metrics[k] for k in ("AP", "AP50", "AP75", "AR100")} | {
            "val": str(Path(args.val).resolve()), "score_threshold": at["score_threshold"],
            "found_share": at["found_share"], "false_boxes_per_photo": at["false_boxes_per_photo"],
            "duplicates_per_organism": at["duplicates_per_organism"], "precision": at["precision"],
            "partial_share": at.get("partial_share")}
        # the release file carries its validation metrics: written again with them
        save_model_file(out / "model.pt", kind="detector", state_dict=state, meta=meta)
        summary["metrics"] = meta["metrics"]
    atomic_write_json(out / "summary.json", summary)
    return summary
