"""Issue 19 experiment: the linear recipe (frozen EfficientNet, last layer by L-BFGS) against the fine-tune.

Usage: ``benchmarks/issue19_linear.py NAME SEEDS... -- TRAIN_OPTIONS...``: trains ``classifier train --recipe
linear`` with those options on the demo's crops with hive bees and non-target insects (runs/r19/data/crops, made
by issue19_seeds.py), one model per seed, into runs/r19/NAME-seed<S>, then ``taxolens evaluate`` on every
held-out set with the demo's detector (``benchmarks/seeds.py``). Features are cached in runs/r19/features, shared
by every run.
"""
import sys

sys.path.insert(0, ".")
from benchmarks.seeds import ROOT, parse, train_and_evaluate  # noqa: E402
from tools.demo import GROUP_REGEX, OUTLIER_CLASS  # noqa: E402

name, seeds, options = parse(sys.argv[1:])
train_and_evaluate(name, seeds, lambda seed, out: [
    "--config", "demo-classifier", "--data", str(ROOT / "data" / "crops"), "--out", str(out), "--recipe", "linear",
    "--augment", "field", "--lighting", "0.5", "--outlier-classes", OUTLIER_CLASS, "--group-regex", GROUP_REGEX,
    "--seed", str(seed), "--no-eval", "--workers", "2", "--feature-cache", str(ROOT / "features"), *options])
