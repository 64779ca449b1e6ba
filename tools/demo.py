"""``make demo``: train the demo models from ../shared/data when they are missing, run them, start the app.

Launch::

    python -m tools.demo            # or: make demo (or taxolens demo)
    python -m tools.demo --no-app   # everything but the web app

Steps, each skipped when its output exists (so a later run starts the app in seconds):

1. ``bees-hornets`` and ``hornets-3class`` (YOLO) -> COCO; a class-agnostic detector on bees-hornets
   (configs/demo-detector.yaml), its operating point chosen on bees-hornets valid.
2. Classifier crops through the one crop function: honey bees and hornets of bees-hornets (its hornets are
   mostly *Vespa velutina*), Asian and European hornets and the look-alikes ("other": wasps, flies, bees) of
   hornets-3class train and valid; ants from ``hymenoptera`` through ``annotations propose``; crops of
   no organism: the detector's boxes on bees-hornets that match no annotated organism; honey bees from above
   at a hive (``hive-bees``) and insects of yellow sticky traps as more look-alikes (``add_non_targets``).
3. A classifier over *Apis mellifera*, *Vespa velutina*, *Vespa crabro* and Formicidae, with ``no organism``
   as background and the look-alikes as an outlier class (configs/demo-classifier.yaml, field augmentation
   and --lighting 0.5: a dark hornet lit green is no ant): on one split, a fine-tune and the frozen ImageNet
   network with its last layer fitted (``--recipe linear``), in runs/demo/classifier-members, joined by
   ``classifier ensemble``: a taxon is named only when both members name it; calibrated, with an unknown
   score, on validation crops.
4. ``taxolens run`` over sample photos into runs/demo/results (CSV, MegaDetector JSON, annotated photos).
   Kept out of every training set on purpose: ``hornet-frames`` (bait stations), ``bumblebee`` (a taxon
   the models do not know), hornets-3class ``test``.
5. The web app on 127.0.0.1 with those models and example photos.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import check_settings

if TYPE_CHECKING:
    from detector.predict import Detector

LOGGER = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
BEES_HORNETS = {"Bees": "Apis mellifera", "Hornets": "Vespa velutina"}
HORNETS_3CLASS = {"asian": "Vespa velutina", "european": "Vespa crabro", "other": "other insect"}
OUTLIER_CLASS = "other insect"
# frames of one video, photos of one observation (and their augmented copies) share a file-name prefix
GROUP_REGEX = r"(?i)^(.*?)_(?:jpg|jpeg|png)"


@dataclass(frozen=True)
class Profile:
    """How long the demo trains: the detector's profile and the classifier's options (BENCHMARKS.md measures both)."""

    name: str
    detector_config: str
    classifier_options: tuple[str, ...]
    minutes: str  # what to expect on 2 CPU cores, said in the log
    #: options added to the detector's profile
    detector_options: tuple[str, ...] = ()
    #: the detector also trains on giant-hornet train (its val split stays out: the hornet the classifier never saw)
    giant_hornets: bool = False
    #: the classifier's members on one split (seeds 0, 10, ...), each ``classifier_options`` plus its own options;
    #: more than one are joined by ``taxolens classifier ensemble``, whose names need every member's agreement
    #: (BENCHMARKS.md, issue 19)
    members: tuple[tuple[str, ...], ...] = ((),)


PROFILES = {
    # 3 detector epochs at 352 px; on one split, a 4-epoch fine-tune at 160 px and the frozen ImageNet network with
    # its last layer fitted (the linear recipe, same input), whose names need both members' agreement: unlike
    # members catch each other's confident mistakes (BENCHMARKS.md, issue 19, "A fine-tune and a linear member")
    "demo": Profile("demo", "demo-detector",
                    ("--config", "demo-classifier", "--input-size", "160", "--epochs", "4"), "about 10",
                    members=((), ("--recipe", "linear"))),
    # for users who can wait (<= 60 minutes on 2 cores in all): 10 detector epochs at 416 px
    # (configs/detector-cpu.yaml), the classifier of configs/long-classifier.yaml
    "long": Profile("long", "detector-cpu", ("--config", "long-classifier"), "about 25"),
}


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


def import_data(out: Path) -> None:
    """bees-hornets and hornets-3class as COCO files under ``out/data``."""
    from annotations.coco import import_annotations

    for prefix, name, splits in (("bh", "bees-hornets", ("train", "valid")),
                                 ("h3", "hornets-3class", ("train", "valid", "test"))):
        folder = _need(SHARED / name)
        for split in splits:
            if not (out / "data" / f"{prefix}-{split}.json").is_file():
                import_annotations("yolo", folder / split, out / "data" / f"{prefix}-{split}.json")


def train_detector(out: Path, profile: Profile = PROFILES["demo"]) -> Path:
    """Class-agnostic detector on bees-hornets (train); operating point and evaluation on its valid split."""
    from detector import train

    model = out / "detector" / "model.pt"
    if model.is_file():
        LOGGER.info("demo detector found: %s", model)
        return model
    LOGGER.info("training the %s detector (configs/%s.yaml; the demo's takes about 8 minutes on 2 CPU cores, "
                "the long profile's about 26)", profile.name, profile.detector_config)
    train.main(["--config", profile.detector_config, "--train", str(detector_training_set(out, profile)),
                "--val", str(out / "data" / "bh-valid.json"), "--out", str(out / "detector"), "--class-agnostic",
                *profile.detector_options])
    return model


def giant_hornet_splits(out: Path) -> dict[str, Path]:
    """``giant-hornet`` (Pascal VOC) as COCO files of its own train and val splits under ``out/data``."""
    from annotations.coco import import_annotations, load_coco, save_subset

    giant = _need(SHARED / "giant-hornet") / "annotated_dataset"
    files = {split: out / "data" / f"gh-{split}.json" for split in ("train", "val")}
    if not all(f.is_file() for f in files.values()):
        import_annotations("voc", giant / "Annotations", out / "data" / "gh-all.json")
        coco = load_coco(out / "data" / "gh-all.json")
        for split, dest in files.items():
            names = set((giant / "ImageSets" / "Main" / f"{split}.txt").read_text().split())
            save_subset(coco, {im["id"] for im in coco["images"] if Path(im["file_name"]).stem in names}, dest)
    return files


def detector_training_set(out: Path, profile: Profile) -> Path:
    """bees-hornets train, and with ``profile.giant_hornets`` giant-hornet train merged in (one COCO file)."""
    from annotations.coco import load_coco, merge_coco

    bh = out / "data" / "bh-train.json"
    if not profile.giant_hornets or not (SHARED / "giant-hornet").is_dir():
        return bh
    merged = out / "data" / "detector-train.json"
    if not merged.is_file():
        merge_coco([load_coco(bh), load_coco(giant_hornet_splits(out)["train"])], merged)
    return merged


def make_crops(out: Path, detector: Path, engine: str = "auto") -> Path:
    """Crops per class through the one crop function; no-organism crops from the detector's own mistakes.

    ``engine``: the detector's (:func:`crop_detector`).
    """
    from annotations.commands import export_crops
    from core.defaults import BACKGROUND_CLASS, CROP_PADDING
    from detector.propose import mine_background, propose

    done = out / "data" / "crops"
    if (done / "crops.json").is_file():
        return done
    # built aside and renamed when complete: a run killed half-way starts the crops again, never trains on half
    crops = out / "data" / "crops.partial"
    shutil.rmtree(crops, ignore_errors=True)
    export_crops(out / "data" / "bh-train.json", crops, rename=BEES_HORNETS)
    for split in ("train", "valid"):  # hornets-3class test stays out: it measures
        export_crops(out / "data" / f"h3-{split}.json", crops, rename=HORNETS_3CLASS)
    det = crop_detector(detector, engine)
    # bees-hornets is annotated with care (hornets-3class is not: its unlabelled wasps would be taught as background),
    # though not completely: `classifier audit` finds about 46 of these crops to be insects its annotators missed;
    # moving them out was measured and refused (BENCHMARKS.md, issue 19, "Label issues")
    mine_background(det, out / "data" / "bh-train.json", crops / BACKGROUND_CLASS, padding=CROP_PADDING,
                    per_photo=1, min_score=0.3)
    hym = _need(SHARED / "hymenoptera")
    ants = sorted((hym / "train" / "ants").iterdir())  # hymenoptera val stays out: it measures
    folder = _link_photos(out / "data" / "ants-by-class" / "Formicidae", ants).parent
    propose(det, folder, out / "data" / "ants.json", score_threshold=0.3, max_per_photo=1)
    export_crops(out / "data" / "ants.json", crops)
    add_non_targets(out, crops)  # issue 19: three seeds each, fewer wrong names of insects never seen (BENCHMARKS.md)
    counts = {p.name: len(list(p.glob("*.png"))) for p in sorted(crops.iterdir()) if p.is_dir()}
    LOGGER.info("crops per class: %s", counts)
    shutil.rmtree(done, ignore_errors=True)
    crops.rename(done)
    return done


def add_non_targets(out: Path, crops: Path, hive_bees: int = 240, trap_photos: int = 2) -> dict[str, int]:
    """The recipe of issue 19: honey bees seen from above at a hive, and insects of every kind as look-alikes.

    ``hive-bees`` (one bee per crop, from above, as a hive or bait-station camera sees them): every third of
    them, named ``hive-<frame>_jpg-<item>`` so that the group split keeps the frames of one video together.
    ``yellow-traps``: the boxes of ``trap_photos`` trap photos (flies, wasps, beetles...) cut as crops of the
    look-alike class, which the classifier learns to tell apart and answers ``unknown``.
    """
    from annotations.coco import import_annotations, load_coco
    from annotations.commands import export_crops
    from core.io import atomic_write_json

    added = {"Apis mellifera": 0, OUTLIER_CLASS: 0}
    hive = SHARED / "hive-bees" / "Dataset"
    if hive.is_dir():
        dest = crops / "Apis mellifera"
        for photo in sorted(hive.glob("*.jpg"))[::3][:hive_bees]:
            frame, _, item = photo.stem.lstrip("NP").partition("-")
            link = dest / f"hive-{frame}_jpg-{item}{photo.suffix}"
            if not link.exists():
                link.symlink_to(photo)
            added["Apis mellifera"] += 1
    traps = SHARED / "yellow-traps" / "valid" / "_annotations.coco.json"
    if traps.is_file():
        coco, _ = import_annotations("coco", traps, out / "data" / "traps.json")
        keep = {im["id"] for im in coco["images"][:trap_photos]}
        subset = load_coco(out / "data" / "traps.json")
        subset = {**subset, "images": [im for im in subset["images"] if im["id"] in keep],
                  "annotations": [a for a in subset["annotations"] if a["image_id"] in keep]}
        subset.pop("image_root", None)
        atomic_write_json(out / "data" / "traps-subset.json", subset)
        names = {c["name"]: OUTLIER_CLASS for c in subset["categories"]}
        added[OUTLIER_CLASS] = export_crops(out / "data" / "traps-subset.json", crops, rename=names).get(
            "crops_per_class", {}).get(OUTLIER_CLASS, 0)
    LOGGER.info("non-target and hive crops added: %s", added)
    return added


def train_classifier(out: Path, crops: Path, profile: Profile = PROFILES["demo"]) -> Path:
    """EfficientNet-Lite0 over the crops (the group split keeps frames of one video together)."""
    from classifier import train

    model = out / "classifier" / "model.pt"
    if model.is_file():
        LOGGER.info("demo classifier found: %s", model)
        return model
    LOGGER.info("training the %s classifier (%s minutes on 2 CPU cores)", profile.name, profile.minutes)
    if len(profile.members) == 1:
        train.main(classifier_argv(crops, out / "classifier", profile, extra=profile.members[0]))
        return model
    members = [(out / "classifier-members" / member_name(options, 10 * i), 10 * i, options)
               for i, options in enumerate(profile.members)]
    return train_agreeing_ensemble(crops, members, model, split_seed=0, profile=profile)


def member_name(options: Sequence[str], seed: int) -> str:
    """A member's folder: its recipe (``--recipe``, else finetune) and seed, for example ``linear-seed10``."""
    recipe = options[list(options).index("--recipe") + 1] if "--recipe" in options else "finetune"
    return f"{recipe}-seed{seed}"


def train_agreeing_ensemble(crops: Path, members: Sequence[tuple[Path, int, Sequence[str]]], out: Path, *,
                            split_seed: int, profile: Profile = PROFILES["demo"], extra: Sequence[str] = ()) -> Path:
    """Each ``(folder, seed, options)`` member trained on ``split_seed`` unless its model is there; joined at ``out``.

    The ensemble's names need every member's agreement (``classifier ensemble``). The demo and the benchmarks that
    measure other members (issue 19) train through here.
    """
    from classifier import train
    from classifier.soup import ensemble

    for i, (folder, seed, options) in enumerate(members, 1):
        if not (folder / "model.pt").is_file():
            LOGGER.info("member %d of %d (%s, seed %d, split %d)", i, len(members), folder.name, seed, split_seed)
            train.main(classifier_argv(crops, folder, profile, extra=[
                "--seed", str(seed), "--split-seed", str(split_seed), "--no-eval", *options, *extra]))
    LOGGER.info("joining the %d members: a name needs every member's agreement", len(members))
    out.parent.mkdir(parents=True, exist_ok=True)
    ensemble([folder / "model.pt" for folder, _, _ in members], out, agreement=True, workers=1)
    return out


def classifier_argv(crops: Path, dest: Path, profile: Profile = PROFILES["demo"],
                    extra: Sequence[str] = ()) -> list[str]:
    """The demo's ``classifier train`` command line for ``profile`` (the benchmarks train the same, with ``extra``)."""
    return [*profile.classifier_options, "--data", str(crops), "--out", str(dest), "--augment", "field",
            "--lighting", "0.5", "--outlier-classes", OUTLIER_CLASS, "--group-regex", GROUP_REGEX, *extra]


def sample_photos(out: Path) -> Path:
    """Photos no model trained on: bait-station hornets, bees-hornets valid, ants, bumblebees (unknown taxon)."""
    photos = sorted((SHARED / "hornet-frames" / "Vespa_velutina").iterdir())[:5]
    photos += sorted((SHARED / "hornet-frames" / "Vespa_crabro").iterdir())[:3]
    photos += sorted((SHARED / "bees-hornets" / "valid" / "images").glob("*.jpg"))[:6]
    photos += sorted((SHARED / "hymenoptera" / "val" / "ants").glob("*.jpg"))[:3]
    photos += sorted((SHARED / "bumblebee" / "images" / "test").glob("*.jpg"))[:3]
    return _link_photos(out / "samples", photos, prefix_folder=True)


def _photos_of_one_class(coco_path: Path) -> dict[str, list[Path]]:
    """Photos of a COCO file whose boxes are all of one class, by class name (photos with none left out)."""
    from annotations.coco import image_path, load_coco

    coco = load_coco(coco_path)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    classes: dict[int, set[str]] = {}
    for a in coco["annotations"]:
        classes.setdefault(a["image_id"], set()).add(names[a["category_id"]])
    found: dict[str, list[Path]] = {}
    for im in coco["images"]:
        if len(classes.get(im["id"], set())) == 1:
            found.setdefault(next(iter(classes[im["id"]])), []).append(image_path(coco, im))
    return found


def make_eval_sets(out: Path) -> dict[str, Path]:
    """Folders per taxon for ``taxolens evaluate``, from photos no demo model trained on.

    hornet-frames (bait stations, as they come); bumblebee (all 100 photos: Bombus, unknown to the models);
    bees-hornets valid and hornets-3class test (photos of one class only; bees-hornets' hornets are the genus
    Vespa, mostly V. velutina); hymenoptera val (ants and honey bees); giant-hornet val (Vespa mandarinia, a hornet
    the classifier never saw).
    """
    sets = out / "evaluation-sets"
    made = {"hornet-frames": _need(SHARED / "hornet-frames")}
    bumble = sorted((SHARED / "bumblebee" / "images").rglob("*.jpg"))
    made["bumblebee"] = _link_photos(sets / "bumblebee" / "Bombus", bumble).parent
    by_class = _photos_of_one_class(out / "data" / "bh-valid.json")
    for name, taxon in (("Bees", "Apis_mellifera"), ("Hornets", "Vespa")):
        _link_photos(sets / "bees-hornets-valid" / taxon, by_class.get(name, []))
    made["bees-hornets-valid"] = sets / "bees-hornets-valid"
    by_class = _photos_of_one_class(out / "data" / "h3-test.json")
    for name, taxon in (("asian", "Vespa_velutina"), ("european", "Vespa_crabro")):
        _link_photos(sets / "hornets-3class-test" / taxon, by_class.get(name, []))
    made["hornets-3class-test"] = sets / "hornets-3class-test"
    hym = _need(SHARED / "hymenoptera") / "val"
    _link_photos(sets / "hymenoptera-val" / "Formicidae", sorted((hym / "ants").iterdir()))
    _link_photos(sets / "hymenoptera-val" / "Apis_mellifera", sorted((hym / "bees").iterdir()))
    made["hymenoptera-val"] = sets / "hymenoptera-val"
    giant = SHARED / "giant-hornet" / "annotated_dataset"
    if giant.is_dir():  # the hornet the classifier never saw: Vespa (or above), uncertain or unknown are right
        names = (giant / "ImageSets" / "Main" / "val.txt").read_text().split()
        photos = [giant / "JPEGImages" / f"{n}.jpg" for n in names]
        _link_photos(sets / "giant-hornet-val" / "Vespa_mandarinia", [p for p in photos if p.is_file()])
        made["giant-hornet-val"] = sets / "giant-hornet-val"
    return made


def evaluate_demo(out: Path, detector: Path, classifier: Path, dest: Path | None = None,
                  extra: Sequence[str] = ()) -> dict[str, dict]:
    """``taxolens evaluate`` on every evaluation set into ``dest`` (default ``out/evaluation``)."""
    from pipeline import evaluate

    results = {}
    for name, photos in make_eval_sets(out).items():
        LOGGER.info("evaluating on %s", name)
        results[name] = evaluate.main([str(photos), "--detector", str(detector), "--classifier", str(classifier),
                                       "--out", str((dest or out / "evaluation") / name), *extra])
    return results


def _exported(model: Path, kind: str) -> Path:
    """The ONNX file of ``model`` (proposals as the model's own), exported again unless it holds these weights.

    A detector exported by an earlier taxolens (torchvision's slower merge of the pooled levels) is exported again.
    """
    from core.modelfile import ModelFileError, load_model_file
    from core.onnxrt import onnx_path, read_checked

    path = onnx_path(model)
    try:
        _, found = read_checked(path, load_model_file(model, kind))
        if kind == "detector":
            from detector.onnx import stale_pooler
            if stale_pooler(found):  # an earlier taxolens's export: the same answers, slower
                raise ModelFileError(f"{path}: exported with the slower pooler")
    except ModelFileError:  # missing, a retrained model's old export, or an earlier taxolens's
        LOGGER.info("exporting the %s for the OpenVINO engine", kind)
        if kind == "detector":
            from detector.onnx import export_onnx
            export_onnx(model, path, 17, 0)
        else:
            from classifier.onnx import export_onnx as export_classifier
            export_classifier(model, path, 17)
    return path


def has_openvino() -> bool:
    """Whether the ``fast`` extra (OpenVINO) is installed."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def crop_detector(detector: Path, engine: str = "auto") -> Detector:
    """The detector that cuts the training crops: OpenVINO where installed (exported first), else PyTorch.

    ``engine``: ``auto`` (that choice), ``torch`` or ``openvino``.

    Mining no-organism crops and boxing the ant photos is detector inference on about 700 photos, minutes of
    ``make demo`` in PyTorch on 2 cores; OpenVINO gives the same boxes (BENCHMARKS.md, issue 20) about twice as fast.
    """
    from detector.predict import Detector as TorchDetector

    if engine == "torch" or (engine == "auto" and not has_openvino()):
        return TorchDetector.from_file(detector)
    from core.modelfile import load_model_file
    from detector.onnx import OnnxDetector

    return OnnxDetector.from_onnx(load_model_file(detector, "detector"), _exported(detector, "detector"),
                                  runtime="openvino")


def fast_engine(detector: Path, classifier: Path) -> str:
    """``openvino`` where OpenVINO is installed (both networks exported beside the models if not yet), else ``torch``.

    OpenVINO gives the PyTorch engine's figures on every held-out set and answers about twice as fast on 2 cores
    (BENCHMARKS.md, issue 20).
    """
    if not has_openvino():
        return "torch"
    for model, kind in ((detector, "detector"), (classifier, "classifier")):
        _exported(model, kind)
    return "openvino"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the demo."""
    p = argparse.ArgumentParser(prog="taxolens demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="where the models and results go (default runs/<profile>)")
    p.add_argument("--profile", default="demo", choices=sorted(PROFILES),
                   help="demo: minutes on 2 cores; long: for users who can wait (under an hour on 2 cores, both "
                        "stages): more answers, and some worse ones (BENCHMARKS.md)")
    p.add_argument("--no-app", action="store_true", help="stop after the folder run")
    p.add_argument("--evaluate", action="store_true",
                   help="also measure the models with taxolens evaluate on photos they never saw (out/evaluation)")
    p.add_argument("--port", type=int, default=7860)
    args = check_settings(p.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    profile = PROFILES[args.profile]
    out = Path(args.out) if args.out else ROOT / "runs" / profile.name
    import_data(out)
    detector = train_detector(out, profile)
    classifier = train_classifier(out, make_crops(out, detector), profile)
    samples = sample_photos(out)
    engine = fast_engine(detector, classifier)

    from pipeline import run

    results = out / "results"
    if not (results / "results.json").is_file():
        run.main([str(samples), "--detector", str(detector), "--classifier", str(classifier), "--out", str(results),
                  "--format", "csv", "megadetector", "--save-annotated", "--engine", engine])
    print(f"\nmodels: {detector}\n        {classifier}\nresults of the sample photos: {results / 'results.json'} "
          f"(annotated photos in {results / 'annotated'})")
    if args.evaluate:
        evaluate_demo(out, detector, classifier)
    if args.no_app:
        return 0
    import gradio_app

    examples = sorted(str(p) for p in samples.iterdir())[::3]
    print(f"starting the web app on http://127.0.0.1:{args.port} (Ctrl-C to stop)")
    return gradio_app.main(["--detector", str(detector), "--classifier", str(classifier), "--port", str(args.port),
                            "--engine", engine, "--examples", *examples])


if __name__ == "__main__":
    sys.exit(main())
