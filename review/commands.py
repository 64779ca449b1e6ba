"""``taxolens review stats|export-coco|export-dwc|export-camtrapdp|report``: what the store holds, and out of it.

The store is ``--store-url`` (a file path for SQLite, or an SQLAlchemy URL such as
``postgresql://user@host/taxolens``); the default is ``store_url`` in ``configs/pipeline.yaml``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from core.config import HelpFormatter, check_settings, packaged, read_yaml
from core.io import atomic_write_json, atomic_write_text


def default_store_url() -> str:
    """``store_url`` of the packaged ``configs/pipeline.yaml``."""
    return str((read_yaml(packaged("pipeline.yaml")) or {}).get("store_url", "runs/taxolens-store.sqlite"))


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"taxolens review {prog}", description=description,
                                formatter_class=HelpFormatter)
    p.add_argument("--store-url", default=default_store_url(), help="store: a file path (SQLite) or an SQLAlchemy URL")
    return p


def _open(args: argparse.Namespace):
    from review.store import open_store

    if "://" not in args.store_url and not Path(args.store_url).exists():
        raise FileNotFoundError(f"{args.store_url}: no store there (taxolens run --store, or the app's "
                                "'keep for review' box, creates it)")
    return open_store(args.store_url, writable=False)


def stats_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens review stats``."""
    from review.store import stats

    args = check_settings(_parser("stats", "Counts of photos, predictions, detections and reviews.").parse_args(argv))
    print(json.dumps(stats(_open(args)), indent=2))
    return 0


def export_coco_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens review export-coco``."""
    from review.exports import export_coco

    p = _parser("export-coco", "Reviewed detections as OUT/reviewed.json (COCO, for detector train) and crops "
                               "by taxon in OUT/crops/ (for classifier train).")
    p.add_argument("--out", required=True, help="folder")
    args = check_settings(p.parse_args(argv))
    print(json.dumps(export_coco(_open(args), args.out)))
    return 0


def export_dwc_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens review export-dwc``."""
    from review.exports import export_dwc

    p = _parser("export-dwc", "Occurrences as a Darwin Core Archive (occurrence.txt, meta.xml, eml.xml), for "
                              "GBIF: MachineObservation, or HumanObservation once an expert confirmed it.")
    p.add_argument("--out", required=True, help="the archive, e.g. occurrences.zip")
    p.add_argument("--title", default="taxolens occurrences")
    args = check_settings(p.parse_args(argv))
    print(json.dumps(export_dwc(_open(args), args.out, args.title)))
    return 0


def export_camtrapdp_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens review export-camtrapdp``."""
    from review.exports import export_camtrapdp

    p = _parser("export-camtrapdp", "A Camtrap DP 1.0.2 data package (deployments, media, observations).")
    p.add_argument("--out", required=True, help="folder")
    p.add_argument("--latitude", type=float, default=None, help="where the photos were taken, for folders whose "
                                                                "photos carry no GPS")
    p.add_argument("--longitude", type=float, default=None)
    p.add_argument("--title", default="taxolens observations")
    args = check_settings(p.parse_args(argv))
    print(json.dumps(export_camtrapdp(_open(args), args.out, latitude=args.latitude, longitude=args.longitude,
                                      title=args.title)))
    return 0


def report_main(argv: Sequence[str] | None = None) -> int:
    """``taxolens review report``."""
    from review.report import agreement_report, report_markdown

    p = _parser("report", "The model against the experts: agreement, kappa, confusion matrix, per-taxon "
                          "sensitivity and precision (report.md and report.json in --out).")
    p.add_argument("--out", required=True, help="folder")
    args = check_settings(p.parse_args(argv))
    report = agreement_report(_open(args))
    out = Path(args.out)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", report_markdown(report))
    print(report_markdown(report))
    return 0
