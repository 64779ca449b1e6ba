"""Issue 19, item 5: a soup of two fine-tunes on one split against each fine-tune alone, three splits.

Usage: ``benchmarks/issue19_soup.py SEEDS...``. For each seed S, runs/r19/new-seedS (the demo recipe, seed S) is
joined by a second member trained on the same split with another seed (``--split-seed S --seed S+10``, into
runs/r19/new-seedS-b); ``taxolens classifier soup`` of the two goes to runs/r19/soup-seedS, evaluated on every
held-out set with the demo detector. Compare the spread over seeds of the soups with that of the first members.
"""
import sys
from pathlib import Path

sys.path.insert(0, ".")
from classifier import train  # noqa: E402
from classifier.soup import soup  # noqa: E402
from tools.demo import classifier_argv, evaluate_demo  # noqa: E402

demo, root = Path("runs/demo"), Path("runs/r19")
for seed in map(int, sys.argv[1:]):
    member_b = root / f"new-seed{seed}-b" / "classifier" / "model.pt"
    if not member_b.is_file():
        train.main(classifier_argv(root / "data" / "crops", member_b.parent, extra=[
            "--split-seed", str(seed), "--seed", str(seed + 10), "--no-eval", "--workers", "1"]))
    out = root / f"soup-seed{seed}"
    model = out / "classifier" / "model.pt"
    if not model.is_file():
        model.parent.mkdir(parents=True, exist_ok=True)
        soup([root / f"new-seed{seed}" / "classifier" / "model.pt", member_b], model, workers=1)
    if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(demo, demo / "detector" / "model.pt", model, dest=out / "evaluation", extra=["--workers", "1"])
    print("done", seed, flush=True)
