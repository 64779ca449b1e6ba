"""Issue 19, item 5: an agreeing ensemble of three fine-tunes on one split, against the two of ``issue19_ensemble``.

Usage: ``benchmarks/issue19_ensemble3.py SEEDS...`` after ``benchmarks/issue19_ensemble.py`` on the same seeds. For
each seed S a third member is trained on split S with seed S+20 (``--split-seed S --seed S+20``, the demo's
classifier command line, into runs/r19/c-seedS); ``taxolens classifier ensemble`` of base-seedS, b-seedS and it
(names need all three members' agreement) goes to runs/r19/ensa3-seedS and is evaluated on every held-out set with
the demo's detector; ``benchmarks/issue19_table.py`` prints the figures beside ensa-seedS's.
"""
import sys
import time

sys.path.insert(0, ".")
from benchmarks.seeds import DEMO, ROOT  # noqa: E402
from classifier import train  # noqa: E402
from classifier.soup import ensemble  # noqa: E402
from tools.demo import classifier_argv, evaluate_demo  # noqa: E402

for seed in (int(s) for s in sys.argv[1:]):
    third = ROOT / f"c-seed{seed}" / "classifier"
    if not (third / "model.pt").is_file():
        start = time.perf_counter()
        summary = train.main(classifier_argv(DEMO / "data" / "crops", third, extra=[
            "--split-seed", str(seed), "--seed", str(seed + 20), "--no-eval"]))
        print("c", seed, "val accuracy", summary["val_accuracy"], f"{time.perf_counter() - start:.0f} s", flush=True)
    members = [ROOT / f"{name}-seed{seed}" / "classifier" / "model.pt" for name in ("base", "b", "c")]
    out = ROOT / f"ensa3-seed{seed}"
    model = out / "classifier" / "model.pt"
    if not model.is_file():
        model.parent.mkdir(parents=True, exist_ok=True)
        meta = ensemble(members, model, agreement=True, workers=1)
        print("ensa3", seed, "val accuracy", meta["metrics"]["val_accuracy"], flush=True)
    if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(DEMO, DEMO / "detector" / "model.pt", model, dest=out / "evaluation", extra=["--workers", "1"])
    print("done ensa3", seed, flush=True)
