"""What the issue-19 recipe scripts share: ``NAME SEEDS... -- OPTIONS`` read, then one model per seed, evaluated.

Each model is trained (when its file is missing) by ``classifier train`` with the command line the script builds for
that seed, into runs/r19/NAME-seed<S>/classifier, then evaluated by ``taxolens evaluate`` on every held-out set with
the demo's detector into runs/r19/NAME-seed<S>/evaluation.
"""
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, ".")
from classifier import train  # noqa: E402
from tools.demo import evaluate_demo  # noqa: E402

DEMO, ROOT = Path("runs/demo"), Path("runs/r19")


def parse(argv: list[str]) -> tuple[str, list[int], list[str]]:
    """``NAME SEEDS... [-- OPTIONS...]`` -> name, seeds, the options for ``classifier train``."""
    name, rest = argv[0], argv[1:]
    split = rest.index("--") if "--" in rest else len(rest)
    return name, [int(s) for s in rest[:split]], rest[split + 1:]


def train_and_evaluate(name: str, seeds: list[int], command: Callable[[int, Path], list[str]]) -> None:
    """Per seed: ``classifier train`` with ``command(seed, out)`` unless its model exists; then the held-out sets."""
    for seed in seeds:
        out = ROOT / f"{name}-seed{seed}"
        model = out / "classifier" / "model.pt"
        if not model.is_file():
            start = time.perf_counter()
            summary = train.main(command(seed, out / "classifier"))
            print(name, seed, "val accuracy", summary["val_accuracy"], "best epoch", summary["best_epoch"],
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        if not (out / "evaluation" / "giant-hornet-val" / "report.json").is_file():
            evaluate_demo(DEMO, DEMO / "detector" / "model.pt", model, dest=out / "evaluation",
                          extra=["--workers", "1"])
        print("done", name, seed, flush=True)
