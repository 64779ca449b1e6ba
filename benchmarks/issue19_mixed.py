"""Issue 19, item 5: an agreeing ensemble of two unlike members, a fine-tune and a frozen-feature (linear) model.

Usage: ``benchmarks/issue19_mixed.py NAME SEEDS... [-- OPTIONS...]``. The demo's ensemble joins two fine-tunes of one
recipe, which make the same confident mistakes (BENCHMARKS.md, "A softer agreement"); here the second member is the
``linear`` recipe at the same input size (the ImageNet network kept as it is, its last layer fitted by L-BFGS), whose
mistakes are others and which trains in a minute or two. For each split S: the demo recipe's fine-tune of seed S
(runs/r19/base-seedS, the first member of the demo's ensemble measured before) and ``classifier train --recipe
linear`` with the demo's command line plus OPTIONS on split S (runs/r19/NAME-lin-seedS), joined with agreement into
runs/r19/NAME-seedS and evaluated on every held-out set with the demo's detector. ``benchmarks/issue19_table.py``
prints the figures.
"""
import sys

sys.path.insert(0, ".")
from benchmarks.seeds import DEMO, ROOT, parse  # noqa: E402
from tools.demo import evaluate_demo, train_agreeing_ensemble  # noqa: E402

name, seeds, options = parse(sys.argv[1:])
for seed in seeds:
    model = ROOT / f"{name}-seed{seed}" / "classifier" / "model.pt"
    if not model.is_file():  # the fine-tune is there already (base-seedS); only the linear member is trained
        linear = ("--recipe", "linear", "--workers", "2", "--feature-cache", str(ROOT / f"features-{name}"), *options)
        members = [(ROOT / f"base-seed{seed}" / "classifier", seed, ()),
                   (ROOT / f"{name}-lin-seed{seed}" / "classifier", seed, linear)]
        train_agreeing_ensemble(DEMO / "data" / "crops", members, model, split_seed=seed)
    if not (model.parent.parent / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(DEMO, DEMO / "detector" / "model.pt", model, dest=model.parent.parent / "evaluation",
                      extra=["--workers", "1"])
    print("done", name, seed, flush=True)
