"""Evaluate the demo classifier before and after the species.yaml required precision (refit), held-out sets."""
import sys
from pathlib import Path

sys.path.insert(0, ".")
from tools.demo import evaluate_demo

out = Path("runs/demo")
# first: taxolens classifier refit --model runs/demo/classifier/model.pt \
#            --out runs/demo/classifier/refit.pt
for name, clf in (("before", out / "classifier" / "model.pt"), ("refit", out / "classifier" / "refit.pt")):
    evaluate_demo(out, out / "detector" / "model.pt", Path(clf), dest=out / f"evaluation-{name}",
                  extra=["--workers", "1"])
