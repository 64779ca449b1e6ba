"""Issue 19, item 6: the demo detector trained with giant-hornet train too, against the demo's own.

Usage: ``benchmarks/issue19_detector.py NAME [DETECTOR OPTIONS...]``: trains the demo detector profile on
bees-hornets train + giant-hornet train (runs/demo/data/detector-train.json) into runs/r19/NAME/detector, then
``taxolens detector evaluate`` on bees-hornets valid and giant-hornet val (AP50, share of boxes around only
part of an organism), and ``taxolens evaluate`` on every held-out set with the classifier of runs/r19/new-seed0.
"""
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, ".")
from detector import evaluate as det_eval  # noqa: E402
from detector import train  # noqa: E402
from tools.demo import PROFILES, detector_training_set, evaluate_demo, giant_hornet_splits  # noqa: E402

demo = Path("runs/demo")
name, options = sys.argv[1], sys.argv[2:]
out = Path("runs/r19") / name
model = out / "detector" / "model.pt"
profile = PROFILES["demo"]
if not model.is_file():
    data = detector_training_set(demo, replace(profile, giant_hornets=True))
    train.main(["--config", profile.detector_config, "--train", str(data),
                "--val", str(demo / "data" / "bh-valid.json"), "--out", str(out / "detector"), "--class-agnostic",
                *options])
for label, coco in (("bees-hornets-valid", demo / "data" / "bh-valid.json"),
                    ("giant-hornet-val", giant_hornet_splits(demo)["val"])):
    for det in (model, demo / "detector" / "model.pt"):
        dest = out / "detector-evaluation" / f"{det.parent.parent.name}-{label}"
        if not (dest / "metrics.json").is_file():
            det_eval.main(["--model", str(det), "--coco", str(coco), "--out", str(dest)])
clf = Path("runs/r19/new-seed0/classifier/model.pt")
if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
    evaluate_demo(demo, model, clf, dest=out / "evaluation", extra=["--workers", "1"])
print("done", name, flush=True)
