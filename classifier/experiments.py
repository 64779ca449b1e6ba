"""The study's comparisons: Table 2 (``compare``), Figure 1 (``sweep``) and Table 1 (``report-data``).

Launch::

    taxolens classifier compare --data ../shared/data/hymenoptera --out runs/compare --epochs 3 --weights none
    taxolens classifier sweep --data ../shared/data/hymenoptera --out runs/sweep --arch efficientnet_lite0 --epochs 2
    taxolens classifier report-data --data ../shared/data/hymenoptera
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from classifier import train
from classifier.data import dataset_markdown, load_class_data, write_dataset_report
from classifier.models import ARCHITECTURES
from core.config import check_settings, parse_with_config
from core.io import atomic_write_csv, atomic_write_json, atomic_write_text, saved_figure
from core.modelfile import WeightsError

LOGGER = logging.getLogger(__name__)
# fewer epochs than a real training run: these compare settings, they do not make a model to keep
COMPARE_EPOCHS, SWEEP_EPOCHS = 3, 2



def _experiment_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """``classifier train``'s options (the same defaults, one source), with ``--out`` as a folder of runs."""
    p = train.get_args_parser()
    p.prog, p.description = prog, description + " Every option of classifier train applies to each run."
    for action in p._actions:
        if action.dest == "out":
            action.help = "folder; one run folder per configuration inside"
    return p


def compare_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens classifier compare``."""
    p = _experiment_parser("taxolens classifier compare",
                           "Train several architectures on the same data: the study's Table 2 (accuracy, file "
                           "size, trainable parameters, seconds per epoch).")
    p.add_argument("--archs", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    return p


def compare_main(argv: Sequence[str] | None = None) -> list[dict]:
    """Entry point of ``taxolens classifier compare``."""
    args = parse_with_config(compare_parser(), argv, default="classifier", overrides={"epochs": COMPARE_EPOCHS})
    base = train.TrainSettings.from_namespace(args)
    out = Path(args.out)
    rows = []
    for arch in args.archs:
        try:
            s = train.train(replace(base, arch=arch, out=str(out / arch), no_eval=True))
        except WeightsError as exc:
            LOGGER.error("%s: %s", arch, exc)
            rows.append({"arch": arch, "error": str(exc)})
            continue
        rows.append({"arch": arch, "val_accuracy": s["val_accuracy"], "val_kappa": s["val_kappa"],
                     "file_mb": round(s["file_mb"], 1), "trainable_parameters": s["trainable_parameters"],
                     "seconds_per_epoch": round(s["seconds_per_epoch"], 1), "device": args.device})
    atomic_write_json(out / "compare.json", {"settings": asdict(base), "rows": rows})
    lines = [f"Trained {args.epochs} epoch(s) each on `{args.data}`, weights `{args.weights}`, device `{args.device}`.",
             "", "| architecture | val accuracy | kappa | file (MB) | trainable parameters | s/epoch |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | failed: {r['error'][:80]} | | | | |")
        else:
            lines.append(f"| {r['arch']} | {r['val_accuracy']:.4f} | {r['val_kappa']:.4f} | {r['file_mb']} | "
                         f"{r['trainable_parameters']:,} | {r['seconds_per_epoch']} |")
    atomic_write_text(out / "compare.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return rows


def sweep_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens classifier sweep``."""
    p = _experiment_parser("taxolens classifier sweep",
                           "The study's Figure 1: validation accuracy and loss over learning rates at a fixed "
                           "momentum, and over momenta at a fixed learning rate.")
    p.add_argument("--lrs", type=float, nargs="+", default=[0.0001, 0.0005, 0.001, 0.005, 0.01])
    p.add_argument("--momenta", type=float, nargs="+", default=[0.5, 0.9, 0.95, 0.99])
    return p


def _plot_sweep(rows: list[dict], args: train.TrainSettings, path: Path) -> None:
    with saved_figure(path, (11, 4.2), ncols=2) as (fig, axes):
        for ax, kind, xlabel in ((axes[0], "lr", f"learning rate (momentum {args.momentum})"),
                                 (axes[1], "momentum", f"momentum (learning rate {args.lr})")):
            sel = sorted((r for r in rows if r["varied"] == kind), key=lambda r: r[kind])
            x = [r[kind] for r in sel]
            ax.plot(x, [r["val_accuracy"] for r in sel], marker="o", label="val accuracy")
            ax2 = ax.twinx()
            ax2.plot(x, [r["val_loss"] for r in sel], marker="s", color="tab:red", label="val loss")
            ax2.set_ylabel("loss", color="tab:red")
            if kind == "lr":
                ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("accuracy")
            ax.set_ylim(0, 1.02)
        fig.suptitle(f"{args.arch}, {args.epochs} epoch(s) per point")


def sweep_main(argv: Sequence[str] | None = None) -> list[dict]:
    """Entry point of ``taxolens classifier sweep``."""
    args = parse_with_config(sweep_parser(), argv, default="classifier", overrides={"epochs": SWEEP_EPOCHS})
    base = train.TrainSettings.from_namespace(args)
    out = Path(args.out)
    rows = []
    runs = [("lr", lr, {"lr": lr, "momentum": args.momentum}) for lr in args.lrs]
    runs += [("momentum", m, {"lr": args.lr, "momentum": m}) for m in args.momenta]
    for varied, value, override in runs:
        s = train.train(replace(base, out=str(out / f"{varied}-{value}"), no_eval=True, **override))
        rows.append({"varied": varied, **override, "val_accuracy": s["val_accuracy"], "val_loss": s["val_loss"]})
    atomic_write_json(out / "sweep.json", {"settings": asdict(base), "rows": rows})
    atomic_write_csv(out / "sweep.csv", ["varied", "lr", "momentum", "val_accuracy", "val_loss"], rows)
    _plot_sweep(rows, base, out / "sweep.png")
    print(json.dumps(rows, indent=2))
    return rows


def report_data_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens classifier report-data``."""
    p = argparse.ArgumentParser(prog="taxolens classifier report-data",
                                description="The dataset report (the study's Table 1): train, test, total and "
                                            "imbalance per class, and any unreadable file skipped.")
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=None, help="also write dataset.md and dataset.json here")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--group-regex", default=None)
    return p


def report_data_main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens classifier report-data``."""
    args = check_settings(report_data_parser().parse_args(argv))
    data = load_class_data(args.data, val_fraction=args.val_fraction, seed=args.seed, group_regex=args.group_regex)
    report = write_dataset_report(data, args.out) if args.out else data.report()
    print(dataset_markdown(report), end="")
    return report
