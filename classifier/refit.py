"""``taxolens classifier refit``: fit a trained classifier's honesty entries again, without training it again.

Launch::

    taxolens classifier refit --model runs/demo/classifier/model.pt --out runs/demo/classifier/refit.pt

After ``configs/species.yaml`` changed (a taxon's ``required_precision``, a new lineage), or to try another
``--target-precision`` or unknown score: the temperature, the per-class thresholds, the unknown score and the
lineages are fitted again on the validation crops of the split recorded in the model file (the same crops
training used), and a new release file is written with the same weights. Nothing else changes.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from classifier.calibration import UNKNOWN_METHODS
from classifier.data import load_class_data
from classifier.fit import fit_extras
from classifier.models import TTA
from classifier.predict import Classifier
from core.config import check_settings
from core.defaults import UNKNOWN_PASS_RATE
from core.modelfile import load_model_file, save_model_file

LOGGER = logging.getLogger(__name__)
HEADER_KEYS = ("format", "format_version", "kind", "taxolens_version", "created", "weights_sha256", "model_version",
               "path", "state_dict")


def refit(model: str | Path, out: str | Path, *, data: str | None = None, target_precision: float | None = None,
          species_file: str | None = None, calibrate: bool = True, unknown_method: str | None = None,
          pass_rate: float | None = None, tta: str | None = None, workers: int = 0) -> dict:
    """Fit the honesty entries of ``model`` again on its recorded validation split; write ``out``; return them."""
    mf = load_model_file(model, "classifier")
    training = mf.get("training_data") or {}
    root = data or training.get("root")
    if not root or not Path(root).is_dir():
        raise FileNotFoundError(f"{model}: its training crops ({root}) are not there; name them with --data")
    data_set = load_class_data(root, **(training.get("split_settings") or {}))
    if data_set.class_names != list(mf["class_names"]):
        raise ValueError(f"{root}: class folders {data_set.class_names} are not the model's {mf['class_names']}")
    clf = Classifier.from_file(model, "cpu")
    if tta is not None:  # the honesty entries are fitted on the outputs the new setting gives
        clf.preprocessing = replace(clf.preprocessing, tta=tta)
    previous = mf.get("unknown") or {}
    extras = fit_extras(clf, data_set.train, data_set.val, background=mf.get("background_classes") or [],
                        outliers=mf.get("outlier_classes") or [], calibrate=calibrate,
                        target_precision=target_precision,
                        unknown_method=unknown_method or previous.get("method") or "auto",
                        pass_rate=pass_rate if pass_rate is not None else previous.get("pass_rate", UNKNOWN_PASS_RATE),
                        species_file=species_file, workers=workers)
    meta = {k: v for k, v in mf.items() if k not in HEADER_KEYS}
    meta["preprocessing"] = clf.preprocessing.to_dict()
    meta = {**meta, **extras, "refit": {"from": str(Path(model).resolve()), "model_version": mf["model_version"],
                                        "target_precision": target_precision}}
    if "class_thresholds_fit" not in extras:
        meta.pop("class_thresholds_fit", None)
    save_model_file(out, kind="classifier", state_dict=mf["state_dict"], meta=meta)
    return extras


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens classifier refit``."""
    p = argparse.ArgumentParser(prog="taxolens classifier refit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the classifier release file")
    p.add_argument("--out", required=True, help="the new release file (same weights)")
    p.add_argument("--data", default=None, help="the training crops, where they moved (default: the model file's)")
    p.add_argument("--target-precision", type=float, default=None,
                   help="also fit a threshold per class reaching this precision (species.yaml's required_precision "
                        "applies to its taxa in any case)")
    p.add_argument("--species-file", default=None, help="lineages and required precisions (default: the packaged)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--unknown-method", default=None, choices=["auto", "none", *UNKNOWN_METHODS],
                   help="default: the model file's")
    p.add_argument("--unknown-pass-rate", type=float, default=None, help="default: the model file's")
    p.add_argument("--tta", default=None, choices=TTA,
                   help="test-time augmentation (mirror: each crop and its mirror image, averaged); default: the "
                        "model file's")
    p.add_argument("--workers", type=int, default=0)
    args = check_settings(p.parse_args(argv))
    extras = refit(args.model, args.out, data=args.data, target_precision=args.target_precision,
                   species_file=args.species_file, calibrate=args.calibrate, unknown_method=args.unknown_method,
                   tta=args.tta,
                   pass_rate=args.unknown_pass_rate, workers=args.workers)
    print(json.dumps({"out": args.out, "class_thresholds": extras.get("class_thresholds"),
                      "temperature": extras["calibration"]["temperature"]}, indent=1))
    return extras
