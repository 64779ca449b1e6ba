"""Issue 19, item 5: an agreeing ensemble of two members trained with other options (for example shorter).

Usage: ``benchmarks/issue19_ensemble_recipe.py [--cpu-channels-last] NAME SEEDS... [-- TRAIN_OPTIONS...]``
(``--cpu-channels-last``: the members trained in channels_last on the CPU too, as ``core.runtime.CHANNELS_LAST``
does on CUDA; BENCHMARKS.md measures ``e4cl`` so). For each seed S, two members
of the demo's classifier command line plus the options, on split S: seed S (runs/r19/NAME-a-seedS) and seed S+10
(runs/r19/NAME-b-seedS); ``taxolens classifier ensemble`` of the two (names need both members' agreement) into
runs/r19/NAME-seedS, evaluated on every held-out set with the demo's detector. ``benchmarks/issue19_table.py``
prints the figures.
"""
import sys
import time

sys.path.insert(0, ".")
from benchmarks.seeds import DEMO, ROOT, parse  # noqa: E402
from classifier import train  # noqa: E402
from classifier.soup import ensemble  # noqa: E402
from tools.demo import classifier_argv, evaluate_demo  # noqa: E402

argv = sys.argv[1:]
if "--cpu-channels-last" in argv[:1]:
    argv = argv[1:]
    train.CHANNELS_LAST = ("cuda", "cpu")  # the trainer reads the layout's devices from its own module
name, seeds, options = parse(argv)
for seed in seeds:
    members = []
    for part, member_seed in (("a", seed), ("b", seed + 10)):
        out = ROOT / f"{name}-{part}-seed{seed}" / "classifier"
        if not (out / "model.pt").is_file():
            start = time.perf_counter()
            summary = train.main(classifier_argv(DEMO / "data" / "crops", out, extra=[
                "--split-seed", str(seed), "--seed", str(member_seed), "--no-eval", *options]))
            print(name, part, seed, "val accuracy", summary["val_accuracy"], f"{time.perf_counter() - start:.0f} s",
                  flush=True)
        members.append(out / "model.pt")
    model = ROOT / f"{name}-seed{seed}" / "classifier" / "model.pt"
    if not model.is_file():
        model.parent.mkdir(parents=True, exist_ok=True)
        meta = ensemble(members, model, workers=1)
        print(name, seed, "ensemble val accuracy", meta["metrics"]["val_accuracy"], flush=True)
    if not (model.parent.parent / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(DEMO, DEMO / "detector" / "model.pt", model, dest=model.parent.parent / "evaluation",
                      extra=["--workers", "1"])
    print("done", name, seed, flush=True)
