"""Issue 19, item 3: which unknown score catches look-alikes the classifier never saw, and at what cost.

Usage: ``benchmarks/issue19_unknown.py RUN...`` (folders such as runs/r19/new-seed0 holding classifier/model.pt).
Crops by the one crop function from the annotated boxes of two taxa no demo model was trained on: bumblebees
(``bumblebee``, all splits, YOLO) and Asian giant hornets (``giant-hornet`` val, VOC); the cost is measured on
crops of known taxa from photos no model trained on (bees-hornets valid, hornets-3class test). For every score:
AUROC, share flagged unknown, share named wrongly through the whole decision, share of known held-out crops
flagged. Writes RUN/unknown-scores.json and prints a table.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, ".")
from annotations.coco import import_annotations, load_coco, save_subset  # noqa: E402
from annotations.commands import export_crops  # noqa: E402
from classifier.data import load_class_data  # noqa: E402
from classifier.predict import Classifier  # noqa: E402
from core.io import list_images  # noqa: E402
from tools.unknown_study import score_table  # noqa: E402

SHARED, root = Path("../shared/data"), Path("runs/r19/unknown-crops")


def crops_of(name: str, coco_file: Path) -> list[Path]:
    """Crops of every box of ``coco_file`` (one class, ``name``)."""
    dest = root / name
    if not (dest / "crops.json").is_file():
        export_crops(coco_file, dest, rename={c["name"]: name for c in load_coco(coco_file)["categories"]})
    return list_images(dest / name)


def annotated() -> dict[str, list[Path]]:
    """The never-seen taxa's crops and the known held-out crops."""
    giant = SHARED / "giant-hornet" / "annotated_dataset"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "bumblebee.json").is_file():
        (root / "bumblebee-names.txt").write_text("Bombus\n")  # the set ships no names file: one class
        import_annotations("yolo", SHARED / "bumblebee", root / "bumblebee.json",
                           names_file=root / "bumblebee-names.txt")
    if not (root / "giant-val.json").is_file():
        import_annotations("voc", giant / "Annotations", root / "giant-all.json")
        coco = load_coco(root / "giant-all.json")
        val = set((giant / "ImageSets" / "Main" / "val.txt").read_text().split())
        save_subset(coco, {im["id"] for im in coco["images"] if Path(im["file_name"]).stem in val},
                    root / "giant-val.json")
    known = crops_of("known", Path("runs/demo/data/bh-valid.json"))
    known += crops_of("known-h3", Path("runs/demo/data/h3-test.json"))
    return {"Bombus": crops_of("Bombus", root / "bumblebee.json"),
            "Vespa mandarinia": crops_of("Vespa mandarinia", root / "giant-val.json"), "known": known}


if __name__ == "__main__":
    sets = annotated()
    for run in map(Path, sys.argv[1:]):
        model = run / "classifier" / "model.pt"
        clf = Classifier.from_file(model)
        split = clf.info["training_data"]
        data = load_class_data(split["root"], **split["split_settings"])
        result = {}
        for taxon in ("Bombus", "Vespa mandarinia"):
            result[taxon] = score_table(clf, data.train, data.val, sets[taxon], truth=taxon,
                                        pass_rate=(clf.info.get("unknown") or {}).get("pass_rate", 0.95),
                                        known_crops=sets["known"], workers=2)
        (run / "unknown-scores.json").write_text(json.dumps(result, indent=1))
        for taxon, t in result.items():
            print(run.name, taxon, f"{t['crops']} crops, named wrongly without a score "
                  f"{t['named_wrongly_without_unknown_score']:.3f}")
            for m, r in t["methods"].items():
                print(f"  {m:9s} auroc {r['auroc']:.3f} flagged {r['flagged_unknown']:.3f} named wrongly "
                      f"{r['named_wrongly']:.3f} known held-out flagged {r.get('known_held_out_flagged', 0):.3f}")
