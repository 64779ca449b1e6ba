"""Issue 19 experiment: the demo recipe with a moving average of its weights (``--ema``) against the demo recipe.

Usage: ``benchmarks/issue19_ema.py NAME SEEDS... [-- TRAIN_OPTIONS...]``: trains the demo's classifier command line
(``tools.demo.classifier_argv``) on the demo's own crops (runs/demo/data/crops) with ``--seed S`` and the options,
one model per seed, into runs/r19/NAME-seed<S>, then ``taxolens evaluate`` on every held-out set with the demo's
detector. With no options it is the demo recipe itself (the baseline's seeds besides the demo's own seed 0).
``benchmarks/issue19_table.py`` prints the figures.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, ".")
from classifier import train  # noqa: E402
from tools.demo import classifier_argv, evaluate_demo  # noqa: E402

demo, root = Path("runs/demo"), Path("runs/r19")
name, rest = sys.argv[1], sys.argv[2:]
split = rest.index("--") if "--" in rest else len(rest)
seeds, options = [int(s) for s in rest[:split]], rest[split + 1:]
for seed in seeds:
    out = root / f"{name}-seed{seed}"
    model = out / "classifier" / "model.pt"
    if not model.is_file():
        start = time.perf_counter()
        summary = train.main(classifier_argv(demo / "data" / "crops", out / "classifier",
                                             extra=["--seed", str(seed), "--no-eval", *options]))
        print(name, seed, "val accuracy", summary["val_accuracy"], "best epoch", summary["best_epoch"],
              f"{time.perf_counter() - start:.0f} s", flush=True)
    if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(demo, demo / "detector" / "model.pt", model, dest=out / "evaluation", extra=["--workers", "1"])
    print("done", name, seed, flush=True)
