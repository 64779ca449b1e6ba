"""Issue 19 experiment: the demo recipe with hive bees and non-target insects against the current one.

Seeds 0-2 of the new recipe, seeds 1-2 of the current one (seed 0 is runs/demo), each with species.yaml's
required precision, the same detector, on the held-out sets.
"""
import shutil
import sys
from pathlib import Path

sys.path.insert(0, ".")
from classifier import train  # noqa: E402
from tools.demo import GROUP_REGEX, OUTLIER_CLASS, add_non_targets, evaluate_demo  # noqa: E402

demo, root = Path("runs/demo"), Path("runs/r19")
crops = root / "data" / "crops"
if not (crops / "crops.json").is_file():
    shutil.copytree(demo / "data" / "crops", root / "data" / "crops.partial")
    print(add_non_targets(root, root / "data" / "crops.partial"), flush=True)
    (root / "data" / "crops.partial").rename(crops)
runs = [("new", s, crops) for s in (0, 1, 2)] + [("current", s, demo / "data" / "crops") for s in (1, 2)]
for recipe, seed, data in runs:
    out = root / f"{recipe}-seed{seed}"
    model = out / "classifier" / "model.pt"
    if not model.is_file():
        train.main(["--config", "demo-classifier", "--data", str(data), "--out", str(out / "classifier"),
                    "--input-size", "160", "--epochs", "4", "--augment", "field", "--lighting", "0.5",
                    "--outlier-classes", OUTLIER_CLASS, "--group-regex", GROUP_REGEX, "--seed", str(seed),
                    "--no-eval", "--workers", "1"])
    if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(demo, demo / "detector" / "model.pt", model, dest=out / "evaluation", extra=["--workers", "1"])
    print("done", recipe, seed, flush=True)
