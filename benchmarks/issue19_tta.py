"""Issue 19 experiment: test-time augmentation (the crop and its mirror image averaged) on trained models.

Usage: ``benchmarks/issue19_tta.py RUN...`` (folders such as runs/r19/new-seed0): ``taxolens classifier refit
--tta mirror`` of RUN/classifier/model.pt into RUN/classifier/tta.pt (calibration, thresholds and the unknown
score fitted again on the averaged outputs, same validation crops), then ``taxolens evaluate`` on every held-out
set into RUN/evaluation-tta, with the demo's detector. Compare with RUN/evaluation (issue19_table.py).
"""
import sys
from pathlib import Path

sys.path.insert(0, ".")
from classifier.refit import refit  # noqa: E402
from tools.demo import evaluate_demo  # noqa: E402

demo = Path("runs/demo")
for run in map(Path, sys.argv[1:]):
    model = run / "classifier" / "tta.pt"
    if not model.is_file():
        refit(run / "classifier" / "model.pt", model, tta="mirror", workers=2)
    if not (run / "evaluation-tta" / "giant-hornet-val" / "report.json").is_file():
        evaluate_demo(demo, demo / "detector" / "model.pt", model, dest=run / "evaluation-tta",
                      extra=["--workers", "1"])
    print("done", run, flush=True)
