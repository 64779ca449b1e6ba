"""Issue 19, item 5: an agreeing ensemble of two members trained with other options (for example shorter).

Usage: ``benchmarks/issue19_ensemble_recipe.py [--cpu-channels-last] [--crops DIR] NAME SEEDS... [-- OPTIONS...]``
(``--cpu-channels-last``: the members trained in channels_last on the CPU too, as ``core.runtime.CHANNELS_LAST``
does on CUDA; BENCHMARKS.md measures ``e4cl`` so; ``--crops``: other crops than the demo's, for example after
``taxolens classifier audit`` moved the flagged ones out, ``clean``). For each seed S, two members
of the demo's classifier command line plus the options, on split S: seed S (runs/r19/NAME-a-seedS) and seed S+10
(runs/r19/NAME-b-seedS); ``taxolens classifier ensemble`` of the two (names need both members' agreement) into
runs/r19/NAME-seedS, evaluated on every held-out set with the demo's detector. ``benchmarks/issue19_table.py``
prints the figures.
"""
import sys
from pathlib import Path

sys.path.insert(0, ".")
from benchmarks.seeds import DEMO, ROOT, parse  # noqa: E402
from classifier import train  # noqa: E402
from tools.demo import evaluate_demo, train_agreeing_ensemble  # noqa: E402

argv = sys.argv[1:]
crops = DEMO / "data" / "crops"
while argv[:1] in (["--cpu-channels-last"], ["--crops"]):
    if argv[0] == "--crops":
        crops, argv = Path(argv[1]), argv[2:]
    else:
        argv = argv[1:]
        train.CHANNELS_LAST = ("cuda", "cpu")  # the trainer reads the layout's devices from its own module
name, seeds, options = parse(argv)
for seed in seeds:
    model = ROOT / f"{name}-seed{seed}" / "classifier" / "model.pt"
    if not model.is_file():
        members = [(ROOT / f"{name}-{part}-seed{seed}" / "classifier", seed + k, ())
                   for part, k in (("a", 0), ("b", 10))]
        train_agreeing_ensemble(crops, members, model, split_seed=seed, extra=options)
    if not (model.parent.parent / "evaluation" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(DEMO, DEMO / "detector" / "model.pt", model, dest=model.parent.parent / "evaluation",
                      extra=["--workers", "1"])
    print("done", name, seed, flush=True)
