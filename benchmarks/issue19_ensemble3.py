"""Issue 19, item 5: an agreeing ensemble of three fine-tunes on one split, against the two of ``issue19_ensemble``.

Usage: ``benchmarks/issue19_ensemble3.py SEEDS...`` after ``benchmarks/issue19_ensemble.py`` on the same seeds. For
each seed S a third member is trained on split S with seed S+20 (``--split-seed S --seed S+20``, the demo's
classifier command line, into runs/r19/c-seedS); ``taxolens classifier ensemble`` of base-seedS, b-seedS and it
(names need all three members' agreement) goes to runs/r19/ensa3-seedS and is evaluated on every held-out set with
the demo's detector; ``benchmarks/issue19_table.py`` prints the figures beside ensa-seedS's.
"""
import sys

sys.path.insert(0, ".")
from benchmarks.seeds import DEMO, ROOT  # noqa: E402
from tools.demo import evaluate_demo, train_agreeing_ensemble  # noqa: E402

for seed in (int(s) for s in sys.argv[1:]):
    out = ROOT / f"ensa3-seed{seed}"
    model = out / "classifier" / "model.pt"
    if not model.is_file():  # the first two members are issue19_ensemble.py's, trained there
        members = [(ROOT / f"{name}-seed{seed}" / "classifier", seed + k, ())
                   for name, k in (("base", 0), ("b", 10), ("c", 20))]
        train_agreeing_ensemble(DEMO / "data" / "crops", members, model, split_seed=seed)
    if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(DEMO, DEMO / "detector" / "model.pt", model, dest=out / "evaluation", extra=["--workers", "1"])
    print("done ensa3", seed, flush=True)
