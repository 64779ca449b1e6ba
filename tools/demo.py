"""``make demo``: train the demo models from ../shared/data when they are missing, run them, start the app.

Launch::

    python -m tools.demo            # or: make demo (or taxolens demo)
    python -m tools.demo --no-app   # everything but the web app

Steps, each skipped when its output exists (so a later run starts the app in seconds):

1. ``bees-hornets`` (YOLO) -> COCO; a class-agnostic detector (configs/demo-detector.yaml).
2. Crops of its honey bees and hornets; ants from ``hymenoptera`` through ``annotations propose``
   (the detector boxes photos sorted by folder, the folder names the class), then their crops.
3. A classifier over Apis mellifera, Vespa (hornets) and Formicidae crops (configs/demo-classifier.yaml).
4. ``taxolens run`` over sample photos into runs/demo/results (CSV, MegaDetector JSON, annotated photos).
5. The web app on 127.0.0.1 with those models and example photos.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
CLASS_NAMES = {"Bees": "Apis mellifera", "Hornets": "Vespa"}


def _need(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"demo data missing: {path} (the demo reads the photos in ../shared/data; "
                                "see its README)")
    return path


def _link_photos(dest: Path, photos: list[Path], prefix_folder: bool = False) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for p in photos:
        link = dest / (f"{p.parent.name}-{p.name}" if prefix_folder else p.name)
        if not link.exists():
            link.symlink_to(p)
    return dest


def train_detector(out: Path) -> Path:
    """Class-agnostic detector on bees-hornets (train), evaluated on its valid split."""
    from annotations.coco import import_annotations
    from detector import train

    model = out / "detector" / "model.pt"
    if model.is_file():
        LOGGER.info("demo detector found: %s", model)
        return model
    bh = _need(SHARED / "bees-hornets")
    for split in ("train", "valid"):
        if not (out / "data" / f"bh-{split}.json").is_file():
            import_annotations("yolo", bh / split, out / "data" / f"bh-{split}.json")
    LOGGER.info("training the demo detector (about 10 minutes on 2 CPU cores)")
    train.main(["--config", "demo-detector", "--train", str(out / "data" / "bh-train.json"),
                "--val", str(out / "data" / "bh-valid.json"), "--out", str(out / "detector"), "--class-agnostic"])
    return model


def make_crops(out: Path, detector: Path) -> Path:
    """Bee and hornet crops from their boxes; ant crops from boxes the detector proposes on hymenoptera."""
    from annotations.commands import export_crops
    from detector.predict import Detector
    from detector.propose import propose

    crops = out / "data" / "crops"
    if (crops / "crops.json").is_file():
        return crops
    export_crops(out / "data" / "bh-train.json", crops, rename=CLASS_NAMES)
    hym = _need(SHARED / "hymenoptera")
    ants = sorted(p for split in ("train", "val") for p in (hym / split / "ants").iterdir())
    folder = _link_photos(out / "data" / "ants-by-class" / "Formicidae", ants).parent
    propose(Detector.from_file(detector), folder, out / "data" / "ants.json", score_threshold=0.3, max_per_photo=1)
    manifest = export_crops(out / "data" / "ants.json", crops)  # rewrites crops.json last: done
    LOGGER.info("crops per class: %s", manifest["crops_per_class"])
    return crops


def train_classifier(out: Path, crops: Path) -> Path:
    """EfficientNet-Lite0 over the crops (group split keeps frames of one video together)."""
    from classifier import train

    model = out / "classifier" / "model.pt"
    if model.is_file():
        LOGGER.info("demo classifier found: %s", model)
        return model
    LOGGER.info("training the demo classifier (a few minutes on 2 CPU cores)")
    train.main(["--config", "demo-classifier", "--data", str(crops), "--out",
                str(out / "classifier"), "--input-size", "160", "--epochs", "4", "--balance", "loss",
                "--group-regex", r"^(.*?)_(?:jpg|jpeg|png)"])
    return model


def sample_photos(out: Path) -> Path:
    """A few photos the models did not train on: VespAI hornet frames, bees-hornets valid, hymenoptera val."""
    photos = sorted((SHARED / "hornet-frames" / "Vespa_velutina").iterdir())[:5]
    photos += sorted((SHARED / "hornet-frames" / "Vespa_crabro").iterdir())[:3]
    photos += sorted((SHARED / "bees-hornets" / "valid" / "images").glob("*.jpg"))[:8]
    photos += sorted((SHARED / "hymenoptera" / "val" / "ants").glob("*.jpg"))[:4]
    return _link_photos(out / "samples", photos, prefix_folder=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the demo."""
    p = argparse.ArgumentParser(prog="taxolens demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "runs" / "demo"))
    p.add_argument("--no-app", action="store_true", help="stop after the folder run")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    out = Path(args.out)
    detector = train_detector(out)
    classifier = train_classifier(out, make_crops(out, detector))
    samples = sample_photos(out)

    from pipeline import run

    results = out / "results"
    if not (results / "results.json").is_file():
        run.main([str(samples), "--detector", str(detector), "--classifier", str(classifier), "--out", str(results),
                  "--format", "csv", "megadetector", "--save-annotated"])
    print(f"\nmodels: {detector}\n        {classifier}\nresults of the sample photos: {results / 'results.json'} "
          f"(annotated photos in {results / 'annotated'})")
    if args.no_app:
        return 0
    import gradio_app

    examples = sorted(str(p) for p in samples.iterdir())[::3]
    print(f"starting the web app on http://127.0.0.1:{args.port} (Ctrl-C to stop)")
    return gradio_app.main(["--detector", str(detector), "--classifier", str(classifier), "--port", str(args.port),
                            "--examples", *examples])


if __name__ == "__main__":
    sys.exit(main())
