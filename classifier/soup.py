"""``taxolens classifier soup`` and ``ensemble``: several fine-tunes on one split, answering as one release file.

Launch::

    taxolens classifier train ... --split-seed 0 --seed 1 --out runs/a
    taxolens classifier train ... --split-seed 0 --seed 2 --out runs/b
    taxolens classifier soup runs/a/model.pt runs/b/model.pt --out runs/soup.pt
    taxolens classifier ensemble runs/a/model.pt runs/b/model.pt --out runs/ensemble.pt

``soup``: networks fine-tuned from the same ImageNet weights for a few epochs stay close enough that their
average is a network too (a "uniform model soup", Wortsman et al., 2022): one network, so no more work per crop
than one member. Batch normalisation's running statistics are measured again over the training crops with the
averaged weights.

``ensemble``: every member keeps its weights and each crop goes through all of them; the answer is the mean of
their logits (a blend of models, as in the SPIPOLL challenge's best result): the work per crop of as many
networks as there are members. By default a taxon is named only where every member, calibrated on its own, names
it too (``--no-agreement``: the blend alone decides).

The members must share the architecture, the classes, the preprocessing and the train/validation split
(``--split-seed``): the honesty entries (temperature, thresholds, unknown score) are fitted again on those
validation crops, which no member trained on.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from classifier.data import FolderDataset, load_class_data
from classifier.fit import collect, fit_extras
from classifier.metrics import confusion_summary
from classifier.models import Ensemble, Preprocessing, rebuild_classifier
from classifier.predict import Classifier
from core.config import check_settings
from core.modelfile import load_model_file, load_weights, save_model_file
from core.runtime import WorkerInit

LOGGER = logging.getLogger(__name__)
HEADER_KEYS = ("format", "format_version", "kind", "taxolens_version", "created", "weights_sha256", "model_version",
               "path", "state_dict")
#: what the members of a soup must share
SHARED_KEYS = ("architecture", "class_names", "preprocessing", "background_classes", "outlier_classes")


def average_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of each floating-point tensor over ``states``; counters (integer tensors) from the first."""
    if not states:
        raise ValueError("a soup needs at least one model")
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if list(s) != keys or any(s[k].shape != states[0][k].shape for k in keys):
            raise ValueError(f"model {i + 1}: its tensors are not those of model 1")
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(states[0][k].dtype)
            if states[0][k].is_floating_point() else states[0][k].clone() for k in keys}


def _check_members(mfs: Sequence[dict]) -> None:
    def shared(mf: dict, key: str) -> Any:
        # a file written before a preprocessing setting existed holds its default
        return Preprocessing.from_dict(mf[key]).to_dict() if key == "preprocessing" and key in mf else mf.get(key)

    first = mfs[0]
    if len(mfs) < 2:
        raise ValueError("name at least two classifier release files")
    for mf in mfs:
        if mf.get("ensemble"):
            raise ValueError(f"{mf['path']}: is an ensemble already; name its members' release files instead")
    for mf in mfs[1:]:
        for key in SHARED_KEYS:
            if shared(mf, key) != shared(first, key):
                raise ValueError(f"{mf['path']}: its {key} differs from {first['path']}'s; a soup's members share "
                                 f"{', '.join(SHARED_KEYS)} and the split")
        a, b = ((m.get("training_data") or {}) for m in (first, mf))
        if (a.get("split_settings"), a.get("root")) != (b.get("split_settings"), b.get("root")):
            raise ValueError(f"{mf['path']}: trained on another train/validation split than {first['path']} "
                             "(train the members with one --split-seed)")


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, items: list[tuple[str, int]], transform: Any, *, batch_size: int = 32,
                           workers: int = 0) -> int:
    """Measure every batch-norm layer's running mean and variance again over ``items``; returns the layers."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch
    model.train()
    loader = DataLoader(FolderDataset(items, transform), batch_size=batch_size, num_workers=workers,
                        worker_init_fn=WorkerInit())
    for x, _ in tqdm(loader, desc="batch-norm statistics", unit="batch", leave=False):
        model(x)
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.eval()
    return len(layers)


def _fit_release(model: nn.Module, mfs: Sequence[dict], *, batch_norm: bool, workers: int) -> tuple[dict, int]:
    """The honesty entries of ``model`` (made from ``mfs``) fitted on the members' shared validation crops.

    Batch normalisation's statistics are measured again first when ``batch_norm``. Returns the release file's
    meta (the first member's, with the new entries and validation figures) and the layers measured again.
    """
    first = mfs[0]
    training = first.get("training_data") or {}
    root = training.get("root")
    if not root or not Path(root).is_dir():
        raise FileNotFoundError(f"{first['path']}: its training crops ({root}) are not there")
    data = load_class_data(root, **(training.get("split_settings") or {}))
    pre = Preprocessing.from_dict(first["preprocessing"])
    meta = {k: v for k, v in first.items() if k not in HEADER_KEYS}
    clf = Classifier(model, list(first["class_names"]), pre, float(first.get("threshold", 0.94)),
                     {**meta, "architecture": first["architecture"]}, torch.device("cpu"))
    layers = recalibrate_batch_norm(model, data.train, clf.transform, workers=workers) if batch_norm else 0
    model.eval()  # the honesty entries are fitted on the network as it answers (and its statistics kept)
    previous = first.get("unknown") or {}
    fit = first.get("class_thresholds_fit") or {}
    extras = fit_extras(clf, data.train, data.val, background=first.get("background_classes") or [],
                        outliers=first.get("outlier_classes") or [],
                        calibrate=(first.get("calibration") or {}).get("method", "temperature") != "none",
                        target_precision=fit.get("target_precision"),
                        unknown_method=previous.get("method") or "auto",
                        pass_rate=previous.get("pass_rate", 0.95), workers=workers)
    logits, _, labels = collect(clf, data.val, workers=workers, desc="validation accuracy")
    summary = confusion_summary(labels, logits.argmax(1), clf.class_names) if len(labels) else {}
    meta.update(extras)
    if "class_thresholds_fit" not in extras:
        meta.pop("class_thresholds_fit", None)
    meta["metrics"] = {"val_accuracy": summary.get("accuracy"), "val_kappa": summary.get("kappa")}
    return meta, layers


def _members(mfs: Sequence[dict]) -> dict:
    return {"members": [mf["model_version"] for mf in mfs],
            "member_val_accuracy": [(mf.get("metrics") or {}).get("val_accuracy") for mf in mfs]}


def soup(models: Sequence[str | Path], out: str | Path, *, batch_norm: bool = True, workers: int = 0) -> dict:
    """Average ``models`` into one release file at ``out``; its honesty entries fitted again. Returns its meta."""
    mfs = [load_model_file(m, "classifier") for m in models]
    _check_members(mfs)
    first = mfs[0]
    model = rebuild_classifier(first["architecture"], len(first["class_names"]))
    model.load_state_dict(average_states([mf["state_dict"] for mf in mfs]))
    meta, layers = _fit_release(model, mfs, batch_norm=batch_norm, workers=workers)
    # the soup's own figures: no member's best epoch or loss stands for it
    meta["metrics"]["epoch_policy"] = "soup"
    meta["soup"] = {**_members(mfs), "batch_norm_layers_recalibrated": layers}
    save_model_file(out, kind="classifier", state_dict=model.state_dict(), meta=meta)
    LOGGER.info("soup of %d: validation accuracy %s (members: %s) -> %s", len(mfs), meta["metrics"]["val_accuracy"],
                meta["soup"]["member_val_accuracy"], out)
    return meta


def ensemble(models: Sequence[str | Path], out: str | Path, *, agreement: bool = True, workers: int = 0) -> dict:
    """Join ``models`` into one release file at ``out`` that answers with their mean; honesty entries fitted again.

    Each member keeps its own weights (batch normalisation's statistics included); the file holds them all, and
    every crop goes through each member: the work per crop of as many models as there are members. With
    ``agreement`` a taxon is named only when every member, calibrated by its own temperature, gives it the
    threshold too (:func:`pipeline.decision.decide`); otherwise the blend's rollup or uncertain answers.
    """
    mfs = [load_model_file(m, "classifier") for m in models]
    _check_members(mfs)
    first = mfs[0]
    model = rebuild_classifier(first["architecture"], len(first["class_names"]), members=len(mfs))
    assert isinstance(model, Ensemble)
    for member, mf in zip(model.members, mfs):
        load_weights(member, mf)
    meta, _ = _fit_release(model, mfs, batch_norm=False, workers=workers)
    meta["metrics"]["epoch_policy"] = "ensemble"
    meta["ensemble"] = {**_members(mfs), "combination": "mean of the logits", "agreement": agreement,
                        "member_temperatures": [float((mf.get("calibration") or {}).get("temperature", 1.0))
                                                for mf in mfs]}
    save_model_file(out, kind="classifier", state_dict=model.state_dict(), meta=meta)
    LOGGER.info("ensemble of %d: validation accuracy %s (members: %s) -> %s", len(mfs),
                meta["metrics"]["val_accuracy"], meta["ensemble"]["member_val_accuracy"], out)
    return meta


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens classifier soup``."""
    p = argparse.ArgumentParser(prog="taxolens classifier soup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="classifier release files (one architecture, classes and split)")
    p.add_argument("--out", required=True, help="the soup's release file")
    p.add_argument("--no-batch-norm", action="store_true",
                   help="keep the averaged batch-norm statistics instead of measuring them again")
    p.add_argument("--workers", type=int, default=0)
    args = check_settings(p.parse_args(argv))
    meta = soup(args.models, args.out, batch_norm=not args.no_batch_norm, workers=args.workers)
    _print(args.out, meta, "soup")
    return meta


def _print(out: str, meta: dict, key: str) -> None:
    print(json.dumps({"out": out, "val_accuracy": meta["metrics"]["val_accuracy"], **meta[key]}, indent=1,
                     default=lambda x: float(np.asarray(x))))


def ensemble_main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens classifier ensemble``."""
    p = argparse.ArgumentParser(prog="taxolens classifier ensemble", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="classifier release files (one architecture, classes and split)")
    p.add_argument("--out", required=True, help="the ensemble's release file")
    p.add_argument("--agreement", action=argparse.BooleanOptionalAction, default=True,
                   help="name a taxon only when every member, calibrated on its own, gives it the threshold too "
                        "(default); --no-agreement: the blend's probabilities alone decide")
    p.add_argument("--workers", type=int, default=0)
    args = check_settings(p.parse_args(argv))
    meta = ensemble(args.models, args.out, agreement=args.agreement, workers=args.workers)
    _print(args.out, meta, "ensemble")
    return meta
