"""Issue 19 experiment: the demo recipe with a moving average of its weights (``--ema``) against the demo recipe.

Usage: ``benchmarks/issue19_ema.py NAME SEEDS... [-- TRAIN_OPTIONS...]``: trains the demo's classifier command line
(``tools.demo.classifier_argv``) on the demo's own crops (runs/demo/data/crops) with ``--seed S`` and the options,
one model per seed, into runs/r19/NAME-seed<S>, then ``taxolens evaluate`` on every held-out set with the demo's
detector (``benchmarks/seeds.py``). With no options it is the demo recipe itself (the baseline's seeds besides the
demo's own seed 0). ``benchmarks/issue19_table.py`` prints the figures.
"""
import sys

sys.path.insert(0, ".")
from benchmarks.seeds import DEMO, parse, train_and_evaluate  # noqa: E402
from tools.demo import classifier_argv  # noqa: E402

name, seeds, options = parse(sys.argv[1:])
train_and_evaluate(name, seeds, lambda seed, out: classifier_argv(
    DEMO / "data" / "crops", out, extra=["--seed", str(seed), "--no-eval", *options]))
