"""Fine-tune a classifier on a folder of photos per class, as the study did.

Launch::

    taxolens classifier train --data ../shared/data/hymenoptera --out runs/cls \
        --arch efficientnet_lite0 --epochs 5

Defaults come from ``configs/classifier.yaml`` (the study's: ResNet50, SGD lr 0.0005 momentum 0.99,
batch 4, StepLR 7/0.1, 25 epochs). The run folder gets ``config.yaml`` (resolved settings),
``dataset.md/json`` (Table 1), ``checkpoint.pt`` (rewritten atomically after every epoch; rerunning
the same command resumes from it, even after kill -9), ``history.json``, ``model.pt`` (the release
file: best epoch by validation accuracy) and ``eval/`` (the evaluation report).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler
from tqdm import tqdm

from classifier.calibration import UNKNOWN_METHODS
from classifier.data import (
    AUGMENTATIONS,
    COLOURS,
    ClassData,
    FolderDataset,
    build_transform,
    load_class_data,
    write_dataset_report,
)
from classifier.fit import DEFAULT_UNKNOWN_METHOD, fit_extras
from classifier.hierarchy import RANKS as HIERARCHY_RANKS
from classifier.hierarchy import HierarchicalLoss, rank_groups
from classifier.metrics import confusion_summary
from classifier.models import ARCHITECTURES, TTA, Preprocessing, build_classifier, count_trainable
from classifier.predict import Classifier
from core.config import HelpFormatter, add_config_arg, parse_with_config, write_resolved
from core.defaults import BACKGROUND_CLASS, CROP_PADDING, THRESHOLD, UNKNOWN_PASS_RATE
from core.distributed import Dist, mean_across, training_run, wrap
from core.io import atomic_write_json
from core.modelfile import save_model_file
from core.runtime import CHANNELS_LAST, WorkerInit, seed_everything
from core.taxonomy import lineages
from core.training import KeptEpoch, Run, add_force_arg, kept_state

LOGGER = logging.getLogger(__name__)
#: how the network is trained: the whole of it by SGD, or only its last layer on frozen features
RECIPES = ("finetune", "linear", "linear-finetune")


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens classifier train``; defaults are the study's."""
    p = argparse.ArgumentParser(prog="taxolens classifier train", description=__doc__, formatter_class=HelpFormatter)
    add_config_arg(p, "classifier")
    p.add_argument("--data", required=True, help="root/<class>/*.jpg, or root/train/<class>/ and root/val/<class>/")
    p.add_argument("--out", required=True, help="run folder (created; an existing run there is resumed)")
    p.add_argument("--arch", default="resnet50", choices=ARCHITECTURES, help="network")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet (torchvision/timm; offline copy for efficientnet_lite0), none, or a local .pth")
    p.add_argument("--lr", type=float, default=0.0005, help="SGD learning rate")
    p.add_argument("--momentum", type=float, default=0.99, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=0.0, help="SGD weight decay")
    p.add_argument("--batch-size", type=int, default=4, help="photos per training step")
    p.add_argument("--step-size", type=int, default=7, help="StepLR step, in epochs")
    p.add_argument("--gamma", type=float, default=0.1, help="StepLR factor")
    p.add_argument("--epochs", type=int, default=25, help="passes over the training photos")
    p.add_argument("--input-size", type=int, default=224, help="side of the square the network sees, in pixels")
    p.add_argument("--crop-scale", type=float, nargs=2, default=[0.08, 1.0], help="RandomResizedCrop area range")
    p.add_argument("--paste-background", type=float, default=0.0,
                   help="share of organism crops cut out (GrabCut from the box) and put on a plain or sandy "
                        "background in training, as insects at bait stations and traps are seen")
    p.add_argument("--lighting", type=float, default=0.0,
                   help="share of training crops given one strong change of light (grey, a strong coloured light, "
                        "colours swapped, or backlit and dark), so colour and brightness alone name no taxon")
    p.add_argument("--colour", default="as_is", choices=COLOURS,
                   help="grey_world: scale each crop's channels to one mean first (training and inference, stored "
                        "in the model file), taking out a background's colour cast")
    p.add_argument("--rotations", type=float, nargs="*", default=[], help="e.g. 0 30 90 135 (SPIPOLL)")
    p.add_argument("--balance", default="none", choices=["none", "sampler", "loss"],
                   help="class-balanced sampling or loss weighting")
    p.add_argument("--threshold", type=float, default=THRESHOLD, help="stored in the model file")
    p.add_argument("--augment", default="study", choices=AUGMENTATIONS,
                   help="study: crop and flip; field: also colour, tint, blur, low resolution, rotation")
    p.add_argument("--background-class", default=BACKGROUND_CLASS,
                   help="class folder of crops with no organism (used when present): never named, the box is "
                        "dropped")
    p.add_argument("--outlier-classes", nargs="*", default=[],
                   help="class folders of look-alikes the model learns to tell apart but never names (answer: "
                        "unknown)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True,
                   help="fit a temperature on validation crops so probabilities mean what they say")
    p.add_argument("--target-precision", type=float, default=None,
                   help="also fit per-class thresholds reaching this precision on validation crops")
    p.add_argument("--unknown-method", default="auto", choices=["auto", "none", *UNKNOWN_METHODS],
                   help=f"how unlike the training classes a crop is; auto: {DEFAULT_UNKNOWN_METHOD}, measured best "
                        "on classes left out of training (every method is measured on look-alike crops too)")
    p.add_argument("--unknown-pass-rate", type=float, default=UNKNOWN_PASS_RATE,
                   help="share of known validation crops the unknown threshold lets pass")
    p.add_argument("--species-file", default=None,
                   help="lineages of the classes for rollup (default: the packaged configs/species.yaml)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of each class kept for validation (data without train/ and val/ only)")
    p.add_argument("--group-regex", default=None, help="regex on file names; matching photos stay on one side")
    p.add_argument("--seed", type=int, default=0, help="random seed (split, order, augmentations)")
    p.add_argument("--split-seed", type=int, default=None,
                   help="seed of the train/val split alone (default: --seed); models trained with one split seed "
                        "and other seeds can be averaged by classifier soup")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="photo-loading processes")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto: CUDA, then MPS, then CPU")
    p.add_argument("--max-steps-per-epoch", type=int, default=0, help="batches per epoch at most (0: all)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation report at the end")
    p.add_argument("--recipe", default="finetune", choices=RECIPES,
                   help="finetune: train the whole network by SGD for --epochs; linear: keep the ImageNet network "
                        "as it is and fit only its last layer, by L-BFGS on cached features of --views copies of "
                        "each crop (minutes on a CPU); linear-finetune: the linear fit first, then the fine-tune "
                        "from there (LP-FT; see docs/classifier.md)")
    p.add_argument("--views", type=int, default=2,
                   help="linear recipe: copies of each training crop (the crop, its mirror image, then augmented "
                        "copies with --augment and --lighting)")
    p.add_argument("--feature-cache", default=None,
                   help="linear recipe: folder where the features are kept for the next run on the same crops "
                        "(default OUT/features)")
    p.add_argument("--l2", type=float, default=0.01, help="linear recipe: weight penalty of the last layer")
    p.add_argument("--hierarchy-ranks", nargs="+", default=list(HIERARCHY_RANKS), choices=HIERARCHY_RANKS,
                   help="the ranks --hierarchy-weight takes the loss at")
    p.add_argument("--tta", default="none", choices=TTA,
                   help="test-time augmentation stored in the model file: mirror classifies each crop and its "
                        "mirror image and averages the two (twice the classifier's work per crop)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="decay of an exponential moving average of the weights, updated after every step (for "
                        "example 0.99: about the last 100 steps); the average is validated, kept and released "
                        "(BENCHMARKS.md: higher validation accuracy, but more never-seen look-alikes named); 0: none")
    p.add_argument("--hierarchy-weight", type=float, default=0.0,
                   help="weight of the loss at genus, family and order (the summed probability of the true "
                        "class's taxon; species.yaml's lineages), added to the loss at the class; 0: none")
    add_force_arg(p)
    return p


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    device: torch.device, scaler: torch.amp.GradScaler | None, epoch: int,
                    max_steps: int = 0, quiet: bool = False, after_step: Callable[[], None] | None = None) -> dict:
    """One pass over the training data; returns mean loss, accuracy, images and seconds.

    ``after_step``: called after every optimizer step (the moving average of the weights, ``--ema``).
    """
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1} train", unit="batch", leave=False, disable=quiet)
    for step, (x, y) in enumerate(bar):
        if max_steps and step >= max_steps:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if device.type in CHANNELS_LAST:
            x = x.to(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=scaler is not None):
            logits = model(x)
            loss = criterion(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"epoch {epoch + 1} step {step}: loss is {loss.item()}; lower --lr")
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if after_step is not None:
            after_step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}")
    seconds = time.perf_counter() - start
    return {"loss": total_loss / max(seen, 1), "accuracy": correct / max(seen, 1), "images": seen,
            "seconds": seconds}


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device,
             class_names: list[str]) -> dict:
    """Validation loss, accuracy and kappa."""
    model.eval()
    total_loss, preds, labels = 0.0, [], []
    for x, y in tqdm(loader, desc="validate", unit="batch", leave=False):
        x, y = x.to(device), y.to(device)
        if device.type in CHANNELS_LAST:
            x = x.to(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            logits = model(x)
        total_loss += criterion(logits.float(), y).item() * len(y)
        preds.append(logits.argmax(1).cpu().numpy())
        labels.append(y.cpu().numpy())
    if not labels:
        return {"loss": None, "accuracy": None, "kappa": None}
    s = confusion_summary(np.concatenate(labels), np.concatenate(preds), class_names)
    return {"loss": total_loss / s["n"], "accuracy": s["accuracy"], "kappa": s["kappa"]}


def _crop_padding(data_root: str) -> float | None:
    """Padding used by ``annotations crops`` when the data are crops (recorded in crops.json)."""
    manifest = Path(data_root) / "crops.json"
    if manifest.is_file():
        return float(json.loads(manifest.read_text()).get("padding", CROP_PADDING))
    return None


def _loaders(data: ClassData, settings: TrainSettings, pre: Preprocessing, device: torch.device,
             d: Dist = Dist()) -> tuple[DataLoader, DataLoader]:
    train_tf = build_transform(pre, train=True, rotations=settings.rotations, scale=settings.crop_scale,
                               augment=settings.augment, lighting=settings.lighting)
    eval_tf = build_transform(pre, train=False)
    organisms = frozenset(i for i, n in enumerate(data.class_names)
                          if n != settings.background_class and n not in settings.outlier_classes)
    paste = (settings.paste_background, organisms, pre.crop_padding) if settings.paste_background else None
    train_ds, val_ds = FolderDataset(data.train, train_tf, paste), FolderDataset(data.val, eval_tf)
    sampler: Any = None
    if d.enabled:
        if settings.balance == "sampler":
            raise ValueError("--balance sampler does not combine with several processes (torchrun); use "
                             "--balance loss")
        # each process its own share of the photos, reshuffled every epoch (set_epoch)
        sampler = DistributedSampler(train_ds, num_replicas=d.world_size, rank=d.rank, shuffle=True,
                                     seed=settings.seed, drop_last=True)
    elif settings.balance == "sampler":
        counts = np.bincount([c for _, c in data.train], minlength=len(data.class_names))
        weights = [1.0 / counts[c] for _, c in data.train]
        sampler = WeightedRandomSampler(weights, num_samples=len(weights), replacement=True,
                                        generator=torch.Generator().manual_seed(settings.seed))
    common: dict[str, Any] = {"num_workers": settings.workers, "pin_memory": device.type == "cuda",
                              "worker_init_fn": WorkerInit(seed=True)}
    # training workers are started afresh every epoch so each epoch's augmentations follow from its seed
    train_loader = DataLoader(train_ds, batch_size=settings.batch_size, shuffle=sampler is None, sampler=sampler,
                              drop_last=len(train_ds) > settings.batch_size, **common)
    val_loader = DataLoader(val_ds, batch_size=max(settings.batch_size, 16), shuffle=False,
                            persistent_workers=settings.workers > 0, **common)
    return train_loader, val_loader


@dataclass(frozen=True)
class TrainSettings:
    """Every setting of a classifier training run; built by :func:`parse_settings`, which holds the defaults."""

    data: str
    out: str
    arch: str
    weights: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    step_size: int
    gamma: float
    epochs: int
    input_size: int
    crop_scale: tuple[float, float]
    rotations: tuple[float, ...]
    balance: str
    threshold: float
    val_fraction: float
    group_regex: str | None
    seed: int
    workers: int
    device: str
    max_steps_per_epoch: int
    no_eval: bool
    augment: str
    background_class: str
    outlier_classes: tuple[str, ...]
    calibrate: bool
    target_precision: float | None
    unknown_method: str
    unknown_pass_rate: float
    species_file: str | None
    colour: str = "as_is"
    paste_background: float = 0.0
    lighting: float = 0.0
    force: bool = False
    config: str | None = None
    recipe: str = "finetune"
    feature_cache: str | None = None
    views: int = 2
    l2: float = 0.01
    hierarchy_weight: float = 0.0
    tta: str = "none"
    split_seed: int | None = None
    hierarchy_ranks: tuple[str, ...] = HIERARCHY_RANKS
    ema: float = 0.0

    @property
    def split_seed_in_force(self) -> int:
        """The seed of the train/val split: ``--split-seed``, else ``--seed``."""
        return self.seed if self.split_seed is None else self.split_seed

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> TrainSettings:
        """The settings from parsed options (options of other commands are ignored)."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values["crop_scale"] = tuple(float(v) for v in values["crop_scale"])
        values["rotations"] = tuple(float(v) for v in values["rotations"])
        values["outlier_classes"] = tuple(values["outlier_classes"])
        if "hierarchy_ranks" in values:
            values["hierarchy_ranks"] = tuple(values["hierarchy_ranks"])
        return cls(**values)


def parse_settings(argv: Sequence[str] | None, overrides: dict | None = None,
                   parser: argparse.ArgumentParser | None = None) -> TrainSettings:
    """Settings from a command line: the parser's defaults, then the YAML profile, then ``overrides``, then argv."""
    args = parse_with_config(parser or get_args_parser(), argv, default="classifier", overrides=overrides)
    return TrainSettings.from_namespace(args)


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens classifier train``; returns the run summary."""
    return train(parse_settings(argv))


def train(settings: TrainSettings) -> dict:
    """Train a classifier with ``settings`` into ``settings.out``; returns the run summary.

    The output folder is locked for the run: a second training into it is refused at once.
    """
    out = Path(settings.out)
    with training_run(out, settings.device, "classifier training") as (device, d):
        return _train(settings, out, device, d)


def _check_data(settings: TrainSettings) -> tuple[ClassData, list[str], list[str]]:
    """The class folders, split; the background and outlier classes among them. Refuses unusable data."""
    data = load_class_data(settings.data, val_fraction=settings.val_fraction, seed=settings.split_seed_in_force,
                           group_regex=settings.group_regex)
    if len(data.class_names) < 2:
        raise ValueError(f"{settings.data}: {len(data.class_names)} class folder(s) ({', '.join(data.class_names)}); "
                         "a classifier needs at least two (one class would be named for every crop with "
                         "probability 1.0)")
    background = [settings.background_class] if settings.background_class in data.class_names else []
    outliers = list(settings.outlier_classes)
    if missing := [c for c in outliers if c not in data.class_names]:
        raise ValueError(f"{settings.data}: no class folder for outlier class(es) {', '.join(missing)}")
    if len(data.class_names) - len(background) - len(outliers) < 1:
        raise ValueError(f"{settings.data}: no organism class besides the background and outlier classes")
    return data, background, outliers


def _class_weights(settings: TrainSettings, data: ClassData) -> torch.Tensor | None:
    """``--balance loss``: each class weighted by the inverse of its share of the training photos."""
    if settings.balance != "loss":
        return None
    counts = np.bincount([c for _, c in data.train], minlength=len(data.class_names)).astype(np.float32)
    return torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)))


def taxonomy_loss(settings: TrainSettings, class_names: list[str],
                  class_weights: torch.Tensor | None) -> HierarchicalLoss:
    """Cross-entropy at the class, plus ``--hierarchy-weight`` times the loss at each rank above it."""
    groups = rank_groups(class_names, lineages(class_names, settings.species_file),
                         settings.hierarchy_ranks) if settings.hierarchy_weight else {}
    return HierarchicalLoss(groups, settings.hierarchy_weight, class_weights)


def _optimisation(settings: TrainSettings, data: ClassData, model: nn.Module, device: torch.device) -> tuple:
    """Loss (class-weighted with ``--balance loss``), SGD, StepLR and, on CUDA, the AMP gradient scaler."""
    class_weights = _class_weights(settings, data)
    criterion = taxonomy_loss(settings, data.class_names, class_weights).to(device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=settings.lr,
                                momentum=settings.momentum, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=settings.step_size, gamma=settings.gamma)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    return criterion, optimizer, scheduler, scaler


def _train(settings: TrainSettings, out: Path, device: torch.device, d: Dist) -> dict:
    seed_everything(settings.seed)
    data, background, outliers = _check_data(settings)
    LOGGER.info("%d classes, %d train / %d val photos, device %s", len(data.class_names), len(data.train),
                len(data.val), device)
    model, pre = build_classifier(settings.arch, len(data.class_names), settings.weights)
    padding = _crop_padding(settings.data)
    pre = replace(pre, input_size=settings.input_size, resize_size=round(settings.input_size / 0.875),
                  crop_padding=pre.crop_padding if padding is None else padding, colour=settings.colour,
                  tta=settings.tta)
    model.to(device)
    if device.type in CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    if not 0.0 <= settings.ema < 1.0:
        raise ValueError(f"--ema {settings.ema}: a decay in [0, 1) (0: no moving average)")
    if settings.recipe == "linear":
        if settings.ema:
            raise ValueError("--ema averages the weights of SGD steps; --recipe linear takes none (use finetune or "
                             "linear-finetune)")
        return _train_linear(settings, out, device, d, data, pre, model, background, outliers)
    if settings.recipe == "linear-finetune" and not (out / "checkpoint.pt").is_file():
        # the fine-tune starts from a fitted last layer, so the first steps do not tear the features apart to
        # make up for a random one (a resumed run takes its weights from the checkpoint)
        _fit_linear(settings, out, device, data, pre, model)
        model.to(device)
    train_loader, val_loader = _loaders(data, settings, pre, device, d)
    criterion, optimizer, scheduler, scaler = _optimisation(settings, data, model, device)
    averaged = moving_average(model, settings.ema)
    run = Run.start(out, arch=settings.arch, class_names=data.class_names, device=device, model=model,
                    optimizer=optimizer, scheduler=scheduler, scaler=scaler, settings=asdict(settings),
                    kept=KeptEpoch.for_run(bool(data.val)), force=settings.force, averaged=averaged)
    # written once the resume check passed: a refused resume leaves the run's files as they were
    report = data.report()
    if d.main:
        report = write_dataset_report(data, out)
        write_resolved(asdict(settings), out / "config.yaml")
    ddp = wrap(model, d, device)  # DistributedDataParallel under torchrun: gradients averaged every step
    train_transform = train_loader.dataset.transform  # type: ignore[attr-defined]

    def one_epoch(epoch: int) -> dict:
        # reseeded per epoch so that a resumed run draws the same batches as an uninterrupted one
        seed_everything(settings.seed * 1000 + epoch)
        train_transform.set_random_seed(settings.seed * 1000 + epoch)
        if sampler_generator := getattr(train_loader.sampler, "generator", None):
            sampler_generator.manual_seed(settings.seed * 1000 + epoch)
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch)
        tr = train_one_epoch(ddp, train_loader, criterion, optimizer, device, scaler, epoch,
                             settings.max_steps_per_epoch, quiet=not d.main,
                             after_step=None if averaged is None else lambda: averaged.update_parameters(model))
        tr["loss"], tr["accuracy"] = (mean_across(tr[k], d, tr["images"]) for k in ("loss", "accuracy"))
        va = evaluate(run.kept_model, val_loader, criterion, device, data.class_names) if data.val else {}
        scheduler.step()
        return {"lr": optimizer.param_groups[0]["lr"], "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                "seconds": tr["seconds"], "images_per_second": tr["images"] / tr["seconds"] if tr["seconds"] else None,
                **{f"val_{k}": v for k, v in va.items()}}

    def saved(row: dict) -> None:
        LOGGER.info("epoch %d/%d: train loss %.4f, val loss %s, val accuracy %s (%.1f s)", row["epoch"],
                    settings.epochs, row["train_loss"], row.get("val_loss"), row.get("val_accuracy"), row["seconds"])
        atomic_write_json(out / "history.json", run.history)

    run.run_epochs(settings.epochs, one_epoch, d, saved)
    if not d.main:
        return {"rank": d.rank, "history": run.history}
    return _release(settings, out, device, d, data, pre, run.kept_model, (run.history, run.kept), report,
                    background, outliers)


def moving_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """``--ema``: torch's exponential moving average of the weights, batch-norm statistics included; 0: none."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _train_linear(settings: TrainSettings, out: Path, device: torch.device, d: Dist, data: ClassData,
                  pre: Preprocessing, model: nn.Module, background: list[str], outliers: list[str]) -> dict:
    """The linear recipe: features of ``--views`` copies of each training crop, the last layer fitted by L-BFGS."""
    if d.enabled:
        raise ValueError("--recipe linear runs in one process (its fit takes seconds); start it without torchrun")
    report = write_dataset_report(data, out)
    write_resolved(asdict(settings), out / "config.yaml")
    row = _fit_linear(settings, out, device, data, pre, model)
    atomic_write_json(out / "history.json", [row])
    return _release(settings, out, device, d, data, pre, model, ([row], KeptEpoch("last", 1)), report, background,
                    outliers)


def _fit_linear(settings: TrainSettings, out: Path, device: torch.device, data: ClassData, pre: Preprocessing,
                model: nn.Module) -> dict:
    """Fit the network's last layer on frozen features (cached); returns the fit's row (accuracies, seconds)."""
    from classifier import linear

    start = time.perf_counter()
    seed_everything(settings.seed)
    clf = Classifier(model.eval(), data.class_names, pre, settings.threshold, {"architecture": settings.arch}, device)
    augmented = build_transform(pre, train=True, rotations=settings.rotations, scale=settings.crop_scale,
                                augment=settings.augment, lighting=settings.lighting)
    views = linear.view_transforms(build_transform(pre, train=False), augmented, settings.views)
    cache = Path(settings.feature_cache) if settings.feature_cache else out / "features"
    batch = max(settings.batch_size, 32)
    network = {"arch": settings.arch, "weights": settings.weights, "preprocessing": pre.to_dict()}

    def view_features(i: int, tf: Any) -> tuple[np.ndarray, np.ndarray]:
        # the crop and its mirror image are the same for every seed; the augmented copies are drawn from it
        key = {**network, "view": i, **({} if i < 2 else {
            "seed": settings.seed, "augment": settings.augment, "lighting": settings.lighting,
            "crop_scale": list(settings.crop_scale), "rotations": list(settings.rotations)})}
        def compute() -> tuple[np.ndarray, np.ndarray]:
            seed_everything(settings.seed * 1000 + i)  # each copy's draws from its own seed, cached or not
            tf.set_random_seed(settings.seed * 1000 + i)
            return linear.features(clf, data.train, tf, batch_size=batch, workers=settings.workers,
                                   desc=f"training features, copy {i + 1}/{len(views)}")

        return linear.cached_features(cache, key, compute, data.train)

    per_view = [view_features(i, tf) for i, tf in enumerate(views)]
    x, y = linear.stack_views(per_view)
    loss = taxonomy_loss(settings, data.class_names, _class_weights(settings, data))
    w, b = linear.fit_head(x, y, len(data.class_names), loss=loss, l2=settings.l2)
    linear.set_head(model, settings.arch, w, b)
    row: dict[str, Any] = {"epoch": 1, "train_accuracy": linear.accuracy(w, b, x, y), "train_loss": None,
                           "lr": None, "images_per_second": len(y) / max(time.perf_counter() - start, 1e-9)}
    if data.val:
        xv, yv = linear.cached_features(cache, {**network, "view": 0}, lambda: linear.features(
            clf, data.val, build_transform(pre, train=False), batch_size=batch, workers=settings.workers,
            desc="validation features"), data.val)
        s = confusion_summary(yv, (torch.from_numpy(xv) @ w.T + b).argmax(1).numpy(), data.class_names)
        with torch.no_grad():
            val_loss = float(loss(torch.from_numpy(xv) @ w.T + b, torch.from_numpy(yv).long()))
        row.update(val_loss=val_loss, val_accuracy=s["accuracy"], val_kappa=s["kappa"])
    row["seconds"] = time.perf_counter() - start
    LOGGER.info("last layer fitted: %d features of %d crops, train accuracy %.3f, val accuracy %s (%.0f s)", len(y),
                len(data.train), row["train_accuracy"], row.get("val_accuracy"), row["seconds"])
    return row


def _release(settings: TrainSettings, out: Path, device: torch.device, d: Dist, data: ClassData,
             pre: Preprocessing, model: nn.Module, kept: tuple[list[dict], KeptEpoch], report: dict,
             background: list[str], outliers: list[str]) -> dict:
    """The release file: the kept epoch's weights, fitted calibration, thresholds and unknown score; its report."""
    history, best = kept
    best_state = kept_state(out, best, model)
    split_settings = {"val_fraction": settings.val_fraction, "seed": settings.split_seed_in_force,
                      "group_regex": settings.group_regex}
    best_row = next((r for r in history if r["epoch"] == best.epoch), history[-1] if history else {})
    meta: dict[str, Any] = {
        "architecture": settings.arch,
        "class_names": data.class_names,
        "taxonomy": {},  # fitted below
        "preprocessing": pre.to_dict(),
        "threshold": settings.threshold,
        "class_thresholds": {},
        "metrics": {"best_epoch": best.epoch, "epoch_policy": best.policy, "val_accuracy": best_row.get("val_accuracy"),
                    "val_kappa": best_row.get("val_kappa"), "val_loss": best_row.get("val_loss")},
        "training": {"recipe": settings.recipe, "weights": settings.weights, "epochs": settings.epochs,
                     "lr": settings.lr, "views": settings.views, "l2": settings.l2,
                     "hierarchy_weight": settings.hierarchy_weight,
                     "hierarchy_ranks": list(settings.hierarchy_ranks), "ema": settings.ema,
                     "momentum": settings.momentum,
                     "batch_size": settings.batch_size, "balance": settings.balance, "seed": settings.seed,
                     "augment": settings.augment, "lighting": settings.lighting,
                     "paste_background": settings.paste_background,
                     "device": str(device), "processes": d.world_size,
                     "seconds_per_epoch": float(np.mean([r["seconds"] for r in history]))
                     if history else None},
        "training_data": {"root": str(Path(settings.data).resolve()), "split": data.split,
                          "split_settings": split_settings,
                          "classes": report["classes"], "train": report["train"], "val": report["val"],
                          "skipped": len(data.skipped)},
    }
    if data.val:
        # what the numbers are worth, fitted on the validation crops with the best epoch's weights, in memory
        model.load_state_dict(best_state)
        best_clf = Classifier(model.eval(), data.class_names, pre, settings.threshold, meta, device)
        extras = fit_extras(best_clf, data.train, data.val,
                            background=background, outliers=outliers, calibrate=settings.calibrate,
                            target_precision=settings.target_precision, unknown_method=settings.unknown_method,
                            pass_rate=settings.unknown_pass_rate, species_file=settings.species_file,
                            workers=settings.workers, seed=settings.seed)
        meta.update(extras)
    header = save_model_file(out / "model.pt", kind="classifier", state_dict=best_state, meta=meta)
    summary = {"model": str(out / "model.pt"), "model_version": header["model_version"], **meta["metrics"],
               "seconds_per_epoch": meta["training"]["seconds_per_epoch"],
               "trainable_parameters": count_trainable(model),
               "file_mb": (out / "model.pt").stat().st_size / 1e6}
    if data.val and not settings.no_eval:
        from classifier.evaluate import evaluate_model_file

        result = evaluate_model_file(out / "model.pt", data.val, out / "eval", settings.threshold, str(device),
                                     settings.workers)
        summary["eval"] = {"accuracy": result["all"]["accuracy"], "kappa": result["all"]["kappa"],
                           "thresholded": {k: result["thresholded"][k]
                                           for k in ("threshold", "accuracy", "kappa", "kept")}}
    atomic_write_json(out / "summary.json", summary)
    return summary
