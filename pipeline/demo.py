"""``make demo``: train the demo models from ../shared/data when they are missing, then show them.

Launch::

    python -m pipeline.demo            # or: make demo

Models are written under ``runs/demo/``; a later run finds them and skips training.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from annotations.config import CONFIG_DIR

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()


def _need(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"demo data missing: {path} (the demo reads the photos in ../shared/data)")
    return path


def train_demo_classifier(out: Path) -> Path:
    """The demo classifier (hymenoptera: ants and bees), trained once."""
    model = out / "classifier" / "model.pt"
    if model.is_file():
        LOGGER.info("demo classifier found: %s", model)
        return model
    from classifier import train

    LOGGER.info("training the demo classifier (a few minutes on 2 CPU cores)")
    train.main(["--config", str(CONFIG_DIR / "demo-classifier.yaml"), "--data", str(_need(SHARED / "hymenoptera")),
                "--out", str(out / "classifier")])
    return model


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the demo."""
    p = argparse.ArgumentParser(prog="python -m pipeline.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "runs" / "demo"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    out = Path(args.out)
    model = train_demo_classifier(out)
    report = out / "classifier" / "eval" / "report.md"
    print(f"demo classifier: {model}\nevaluation report: {report}\n")
    summary = json.loads((out / "classifier" / "summary.json").read_text())
    print(json.dumps(summary.get("eval", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
