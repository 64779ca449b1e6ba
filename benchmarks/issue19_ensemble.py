"""Issue 19, item 5: an ensemble of two fine-tunes on one split, and the soup of the same two, three splits.

Usage: ``benchmarks/issue19_ensemble.py SEEDS...``. For each seed S the first member is the demo recipe's model of
seed S (runs/r19/base-seedS, split S) and the second is trained on the same split with seed S+10 (``--split-seed S
--seed S+10``, the demo's classifier command line, into runs/r19/b-seedS). Each second member alone, ``taxolens
classifier ensemble`` of the two (runs/r19/ens-seedS) and ``taxolens classifier soup`` of the two (runs/r19/soup2-seedS)
and the ensemble whose names need both members' agreement (runs/r19/ensa-seedS) are evaluated on every held-out set
with the demo's detector; ``benchmarks/issue19_table.py`` prints the figures.
"""
import sys
import time
from functools import partial

sys.path.insert(0, ".")
from benchmarks.seeds import DEMO, ROOT, train_and_evaluate  # noqa: E402
from classifier.soup import ensemble, soup  # noqa: E402
from tools.demo import classifier_argv, evaluate_demo  # noqa: E402

seeds = [int(s) for s in sys.argv[1:]]
for seed in seeds:
    train_and_evaluate("b", [seed], lambda s, out: classifier_argv(
        DEMO / "data" / "crops", out, extra=["--split-seed", str(s), "--seed", str(s + 10), "--no-eval"]))
    members = [ROOT / f"{name}-seed{seed}" / "classifier" / "model.pt" for name in ("base", "b")]
    for name, combine in (("ens", partial(ensemble, agreement=False)), ("soup2", soup),
                          ("ensa", partial(ensemble, agreement=True))):
        out = ROOT / f"{name}-seed{seed}"
        model = out / "classifier" / "model.pt"
        if not model.is_file():
            model.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            meta = combine(members, model, workers=1)
            print(name, seed, "val accuracy", meta["metrics"]["val_accuracy"], f"{time.perf_counter() - start:.0f} s",
                  flush=True)
        if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
            start = time.perf_counter()
            evaluate_demo(DEMO, DEMO / "detector" / "model.pt", model, dest=out / "evaluation",
                          extra=["--workers", "1"])
            print(name, seed, f"evaluated in {time.perf_counter() - start:.0f} s", flush=True)
        print("done", name, seed, flush=True)
