"""The skeleton both trainers share: which epoch a run keeps, one checkpoint format, and a resume that checks.

Both ``classifier train`` and ``detector train`` run the same loop (:func:`run_epochs`): one epoch, its row in
the history, the policy that says whether this epoch's weights are the ones to keep (:class:`KeptEpoch`), a
checkpoint written atomically after every epoch (:func:`save_checkpoint`), and on a rerun a resume that
refuses a checkpoint written with other settings, naming each one that changed (:func:`resume_training`,
``--force`` to go on anyway).

The policy is said, not implied:

- ``best val_accuracy``: the epoch with the highest validation accuracy (the classifier, with validation
  photos). Its weights are written to ``OUT/kept-<epoch>.pt`` when it improves, before the checkpoint that
  names that epoch (a kill between the two leaves the older checkpoint and its own file), so the checkpoint
  holds one copy of the weights, not two.
- ``last``: the last epoch (the detector, whose validation is a COCO evaluation run once at the end, and a
  classifier trained without validation photos: a training loss is no measure of the best epoch).

A run may keep an exponential moving average of its weights besides the weights SGD moves (``averaged``, a
``torch.optim.swa_utils.AveragedModel``): then the averaged weights are the ones validated, kept and released,
and the checkpoint holds both, so a resumed run averages on from where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from core.distributed import Dist, barrier
from core.io import atomic_torch_save
from core.modelfile import ModelFileError

if TYPE_CHECKING:
    from torch.optim.swa_utils import AveragedModel

LOGGER = logging.getLogger(__name__)

#: settings a resumed run may change without changing what it trains: more epochs, other loader processes,
#: another device, the profile file's name, --force itself, and what is fitted or measured after the last epoch
#: (validation boxes, thresholds, suppression, calibration, the unknown score, the final evaluation)
FREE_ON_RESUME = frozenset({"epochs", "workers", "device", "config", "force", "out", "no_eval", "val",
                            "score_threshold", "target_precision", "suppress_iou", "suppress_containment",
                            "threshold", "calibrate", "unknown_method", "unknown_pass_rate", "species_file"})
POLICIES = ("best val_accuracy", "last")
def kept_file(out: Path, epoch: int) -> Path:
    """Where the kept epoch's weights are: ``OUT/kept-<epoch>.pt``."""
    return out / f"kept-{epoch}.pt"


class ResumeRefused(ValueError):
    """A checkpoint written with other settings; the message names each setting that changed."""


@dataclass
class KeptEpoch:
    """Which epoch's weights the release file holds, by the run's stated policy (see the module docstring)."""

    policy: str
    epoch: int = 0
    score: float | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"epoch policy {self.policy!r}: choose one of {', '.join(POLICIES)}")

    @classmethod
    def for_run(cls, has_validation: bool) -> KeptEpoch:
        """``best val_accuracy`` where there are validation photos to measure each epoch on, else ``last``."""
        return cls("best val_accuracy" if has_validation else "last")

    def offer(self, epoch: int, row: Mapping[str, Any]) -> bool:
        """Whether ``epoch`` (its history ``row``) becomes the kept one."""
        if self.policy == "last":
            self.epoch, self.score = epoch, None
            return True
        score = row.get("val_accuracy")
        if score is None:
            raise ValueError(f"epoch {epoch}: no val_accuracy to choose the best epoch by")
        if self.score is None or float(score) > self.score:
            self.epoch, self.score = epoch, float(score)
            return True
        return False

    def as_dict(self) -> dict[str, Any]:
        """For the checkpoint and the model file's metrics."""
        return {"policy": self.policy, "epoch": self.epoch, "score": self.score}


def changed_settings(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``--name new (checkpoint: old)`` for each setting that differs, apart from :data:`FREE_ON_RESUME`."""
    keys = sorted((set(saved) | set(now)) - FREE_ON_RESUME)
    norm = {k: (list(v) if isinstance(v, tuple) else v) for k, v in now.items()}
    return [f"--{k.replace('_', '-')} {norm.get(k)!r} (checkpoint: {saved.get(k)!r})" for k in keys
            if saved.get(k) != norm.get(k)]


def save_checkpoint(path: Path, *, arch: str, class_names: list[str], epoch: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    scaler: torch.amp.GradScaler | None, history: list[dict], settings: Mapping[str, Any],
                    kept: KeptEpoch, averaged: AveragedModel | None = None) -> None:
    """Write the one checkpoint format atomically: what :func:`resume_training` needs to go on after ``epoch``."""
    atomic_torch_save({"arch": arch, "class_names": class_names, "epoch": epoch, "model": model.state_dict(),
                       "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "scaler": scaler.state_dict() if scaler is not None else None, "history": history,
                       "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
                       "kept": kept.as_dict(),
                       "averaged": averaged.state_dict() if averaged is not None else None}, path)


def resume_training(path: Path, *, arch: str, class_names: list[str], device: torch.device,
                    model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler | None,
                    settings: Mapping[str, Any], force: bool = False,
                    averaged: AveragedModel | None = None) -> dict | None:
    """Restore a run from its checkpoint, if there is one; returns the checkpoint (history, kept epoch).

    Raises:
        ResumeRefused: the checkpoint was written with other settings (each named), unless ``force``.
        ModelFileError: the checkpoint belongs to another architecture or other classes, is not a checkpoint,
            or cannot be loaded.
    """
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path}: checkpoint cannot be loaded ({exc.__class__.__name__}); "
                             "delete it to start the run again") from exc
    needed = ("arch", "class_names", "epoch", "model", "optimizer", "scheduler", "history", "settings", "kept")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in needed):
        raise ModelFileError(f"{path}: not a taxolens training checkpoint (or one from an older taxolens); delete "
                             "it to start the run again")
    if ckpt["arch"] != arch or ckpt["class_names"] != class_names:
        raise ModelFileError(f"{path}: belongs to another run ({ckpt['arch']}, classes {ckpt['class_names']}); "
                             "use another --out or delete it")
    changed = changed_settings(ckpt["settings"], settings)
    if changed and not force:
        raise ResumeRefused(f"{path}: written with other settings: {'; '.join(changed)}. Run with the checkpoint's "
                            "settings to resume, add --force to go on with the new ones, or use another --out")
    if changed:
        LOGGER.warning("%s: resuming with changed settings (--force): %s", path, "; ".join(changed))
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        if averaged is not None:
            if ckpt.get("averaged") is None:
                raise KeyError("averaged")
            averaged.load_state_dict(ckpt["averaged"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: checkpoint does not fit this run's model ({exc.__class__.__name__}); "
                             "delete it to start the run again") from exc
    return ckpt


def kept_state(out: Path, kept: KeptEpoch, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights the release file gets: the last epoch's, or the best epoch's from ``OUT/kept-<epoch>.pt``."""
    if kept.policy == "last":
        return model.state_dict()
    path = kept_file(out, kept.epoch)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: the kept epoch's weights cannot be read ({exc}); delete checkpoint.pt to "
                             "train again") from exc


@dataclass
class Run:
    """A training run's state that lives across epochs and checkpoints."""

    out: Path
    arch: str
    class_names: list[str]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    settings: Mapping[str, Any]
    kept: KeptEpoch
    history: list[dict]
    first_epoch: int = 0
    processes: int = 1
    averaged: AveragedModel | None = None

    @property
    def kept_model(self) -> torch.nn.Module:
        """The network whose weights are validated and kept: the moving average where the run keeps one."""
        return self.averaged.module if self.averaged is not None else self.model

    @property
    def checkpoint(self) -> Path:
        """``OUT/checkpoint.pt``."""
        return self.out / "checkpoint.pt"

    @classmethod
    def start(cls, out: Path, *, arch: str, class_names: list[str], device: torch.device, model: torch.nn.Module,
              optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
              scaler: torch.amp.GradScaler | None, settings: Mapping[str, Any], kept: KeptEpoch,
              force: bool = False, averaged: AveragedModel | None = None) -> Run:
        """A new run, or the one ``OUT/checkpoint.pt`` holds (checked by :func:`resume_training`)."""
        run = cls(out, arch, class_names, model, optimizer, scheduler, scaler, settings, kept, [], averaged=averaged)
        ckpt = resume_training(run.checkpoint, arch=arch, class_names=class_names, device=device, model=model,
                               optimizer=optimizer, scheduler=scheduler, scaler=scaler, settings=settings,
                               force=force, averaged=averaged)
        if ckpt is not None:
            run.first_epoch, run.history = int(ckpt["epoch"]), list(ckpt["history"])
            run.kept = KeptEpoch(**ckpt["kept"])
        return run

    def run_epochs(self, epochs: int, one_epoch: Callable[[int], dict], d: Dist,
                   on_saved: Callable[[dict], None] | None = None) -> None:
        """Epochs ``first_epoch`` .. ``epochs - 1``: each one's row, the kept-epoch policy, a checkpoint.

        ``one_epoch(epoch)`` trains (and validates) one epoch and returns its history row, without ``epoch``.
        Only the main process writes; no process starts the next epoch before the checkpoint is written.
        """
        self.processes = d.world_size
        if self.first_epoch:
            LOGGER.info("resuming %s after epoch %d of %d", self.checkpoint, self.first_epoch, epochs)
        for epoch in range(self.first_epoch, epochs):
            row = {"epoch": epoch + 1, **one_epoch(epoch)}
            self.history.append(row)
            improved = self.kept.offer(epoch + 1, row)
            if d.main:
                if improved and self.kept.policy != "last":
                    atomic_torch_save({k: v.detach().cpu() for k, v in self.kept_model.state_dict().items()},
                                      kept_file(self.out, self.kept.epoch))
                save_checkpoint(self.checkpoint, arch=self.arch, class_names=self.class_names, epoch=epoch + 1,
                                model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                scaler=self.scaler, history=self.history, settings=self.settings, kept=self.kept,
                                averaged=self.averaged)
                for old in self.out.glob("kept-*.pt"):  # only once the checkpoint names the new one
                    if old != kept_file(self.out, self.kept.epoch):
                        old.unlink(missing_ok=True)
                if on_saved is not None:
                    on_saved(row)
            barrier(d)
        self.first_epoch = max(self.first_epoch, epochs)


def add_force_arg(parser: Any) -> None:
    """``--force``: resume a checkpoint written with other settings (each is named in the log)."""
    parser.add_argument("--force", action="store_true",
                        help="resume even though settings changed since the checkpoint was written (each one is "
                             "named); without it such a resume is refused")
