"""Issue 19 experiment: the linear recipe (frozen EfficientNet, last layer by L-BFGS) against the fine-tune.

Usage: ``benchmarks/issue19_linear.py NAME SEEDS... -- TRAIN_OPTIONS...``: trains ``classifier train --recipe
linear`` with those options on the demo's crops with hive bees and non-target insects (runs/r19/data/crops, made
by issue19_seeds.py), one model per seed, into runs/r19/NAME-seed<S>, then ``taxolens evaluate`` on every
held-out set with the demo's detector. Features are cached in runs/r19/features, shared by every run.
"""
import sys
from pathlib import Path

sys.path.insert(0, ".")
from classifier import train  # noqa: E402
from tools.demo import GROUP_REGEX, OUTLIER_CLASS, evaluate_demo  # noqa: E402

demo, root = Path("runs/demo"), Path("runs/r19")
name, rest = sys.argv[1], sys.argv[2:]
split = rest.index("--") if "--" in rest else len(rest)
seeds, options = [int(s) for s in rest[:split]], rest[split + 1:]
for seed in seeds:
    out = root / f"{name}-seed{seed}"
    model = out / "classifier" / "model.pt"
    if not model.is_file():
        summary = train.main(["--config", "demo-classifier", "--data", str(root / "data" / "crops"),
                              "--out", str(out / "classifier"), "--recipe", "linear", "--augment", "field",
                              "--lighting", "0.5", "--outlier-classes", OUTLIER_CLASS, "--group-regex", GROUP_REGEX,
                              "--seed", str(seed), "--no-eval", "--workers", "2",
                              "--feature-cache", str(root / "features"), *options])
        print(name, seed, "val accuracy", summary["val_accuracy"], flush=True)
    if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(demo, demo / "detector" / "model.pt", model, dest=out / "evaluation", extra=["--workers", "1"])
    print("done", name, seed, flush=True)
