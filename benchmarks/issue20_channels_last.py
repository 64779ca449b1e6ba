"""Issue 20: the demo classifier recipe trained in channels_last on the CPU, seeds 1 and 2 (seed 0 is the demo).

Usage: ``benchmarks/issue20_channels_last.py DEMO_OUT SEEDS...`` after ``taxolens demo --no-app --evaluate --out
DEMO_OUT`` (its detector, crops and evaluation are seed 0). Each seed trains the demo profile's classifier on
DEMO_OUT's crops into ``runs/r20/cl-seed<S>`` and is evaluated on every held-out set with DEMO_OUT's detector;
``benchmarks/issue19_table.py`` then gives the issue-19 figures beside those of the earlier layout.
"""
import sys
from pathlib import Path

sys.path.insert(0, ".")
from classifier import train  # noqa: E402
from tools.demo import classifier_argv, evaluate_demo  # noqa: E402

demo, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
for seed in seeds:
    out = Path("runs/r20") / f"cl-seed{seed}"
    model = out / "classifier" / "model.pt"
    if not model.is_file():
        train.main(classifier_argv(demo / "data" / "crops", out / "classifier", extra=["--seed", str(seed)]))
    if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(demo, demo / "detector" / "model.pt", model, dest=out / "evaluation")
    print("done", seed, flush=True)
