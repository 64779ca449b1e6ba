"""The required precision over three seeds: each current-recipe classifier refit without it, held-out sets.

Seed 0 is runs/demo (`issue19_refit_eval.py` measured it both ways); seeds 1 and 2 come from
`issue19_seeds.py` (trained with it) and are refit here with a species file without `required_precision`.
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, ".")
from classifier.refit import refit  # noqa: E402
from tools.demo import evaluate_demo  # noqa: E402

demo = Path("runs/demo")
plain = Path("runs/species-noreq.yaml")
plain.write_text(re.sub(r"^  required_precision: .*\n", "", Path("configs/species.yaml").read_text(), flags=re.M))
for seed in (1, 2):
    run = Path(f"runs/r19/current-seed{seed}")
    model = run / "classifier" / "noreq.pt"
    if not model.is_file():
        refit(run / "classifier" / "model.pt", model, species_file=str(plain))
    evaluate_demo(demo, demo / "detector" / "model.pt", model, dest=run / "evaluation-noreq", extra=["--workers", "1"])
    print("done", seed, flush=True)
