"""Issue 19: the demo's crops with the honey bees of hymenoptera train (web photos) added, three seeds.

Usage: ``benchmarks/issue19_web.py NAME SEEDS... [-- TRAIN OPTIONS]``. runs/r19/data2/crops is runs/r19/data/crops
(the demo recipe's crops) plus one detector box per hymenoptera train bee photo (``annotations propose``, as
``tools.demo.add_web_photos`` does in the demo); a classifier per seed (the demo recipe and the options) into
runs/r19/NAME-seedS, evaluated on every held-out set with the demo detector.
"""
import shutil
import sys
from pathlib import Path

sys.path.insert(0, ".")
from annotations.commands import export_crops  # noqa: E402
from classifier import train  # noqa: E402
from detector.predict import Detector  # noqa: E402
from detector.propose import propose  # noqa: E402
from tools.demo import GROUP_REGEX, OUTLIER_CLASS, SHARED, _link_photos, evaluate_demo  # noqa: E402

demo, root = Path("runs/demo"), Path("runs/r19")
name, rest = sys.argv[1], sys.argv[2:]
split = rest.index("--") if "--" in rest else len(rest)
seeds, options = [int(s) for s in rest[:split]], rest[split + 1:]
crops = root / "data2" / "crops"
if not (crops / "crops.json").is_file():
    partial = root / "data2" / "crops.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(root / "data" / "crops", partial, symlinks=True)
    folder = root / "data2" / "web-by-class"
    _link_photos(folder / "Apis mellifera", sorted((SHARED / "hymenoptera" / "train" / "bees").iterdir()))
    propose(Detector.from_file(demo / "detector" / "model.pt"), folder, root / "data2" / "web.json",
            score_threshold=0.3, max_per_photo=1)
    print(export_crops(root / "data2" / "web.json", partial).get("crops_per_class"), flush=True)
    partial.rename(crops)
for seed in seeds:
    out = root / f"{name}-seed{seed}"
    model = out / "classifier" / "model.pt"
    if not model.is_file():
        train.main(["--config", "demo-classifier", "--data", str(crops), "--out", str(out / "classifier"),
                    "--input-size", "160", "--epochs", "4", "--augment", "field", "--lighting", "0.5",
                    "--outlier-classes", OUTLIER_CLASS, "--group-regex", GROUP_REGEX, "--seed", str(seed),
                    "--no-eval", "--workers", "1", *options])
    if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(demo, demo / "detector" / "model.pt", model, dest=out / "evaluation", extra=["--workers", "1"])
    print("done", name, seed, flush=True)
