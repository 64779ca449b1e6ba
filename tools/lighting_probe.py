"""``taxolens lighting-probe``: does a classifier name taxa by their colour? The same crops under other light.

Launch::

    taxolens lighting-probe CROPS --classifier runs/demo/classifier/model.pt --out runs/lighting-probe

``CROPS`` holds a folder of crops per taxon (``annotations crops`` makes them) that the classifier did not
train on. Each crop is shown as it is, in grey, lit green from behind (a dark insect on a bright green
dish, as at a VespAI bait station) and dark (backlit), and answered through the whole decision (calibration,
thresholds, rollup, unknown score). Per folder and lighting: the share whose best guess is the folder's
taxon, the share answered right (named or rolled up to a taxon that holds it) and the share **named
wrongly**. A classifier whose wrong names jump when only the light changes learned a colour, not a
taxon: what ``classifier train --lighting`` is for (BENCHMARKS.md, "Lighting"). ``report.md`` and
``report.json`` go into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from core.io import ImageReadError, atomic_write_json, atomic_write_text, list_images, read_image
from core.taxonomy import is_right
from pipeline.decision import decide
from pipeline.evaluate import folder_taxon


def grey(crop: np.ndarray) -> np.ndarray:
    """No colour: the luminance in all three channels."""
    g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return np.dstack([g, g, g])


def green_backlit(crop: np.ndarray) -> np.ndarray:
    """The crop's luminance lit green: dark parts stay dark, bright ones turn bright green."""
    g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.clip(np.dstack([g * 0.4, g, g * 0.3]), 0, 255).astype(np.uint8)


def dark(crop: np.ndarray) -> np.ndarray:
    """Backlit: a gamma of 2.5 darkens the mid-tones, as an insect against a bright background looks."""
    return np.clip((crop.astype(np.float32) / 255) ** 2.5 * 255, 0, 255).astype(np.uint8)


LIGHTINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "as is": lambda crop: crop, "grey": grey, "green backlit": green_backlit, "dark": dark}


Analyse = Callable[[list[np.ndarray]], tuple[np.ndarray, np.ndarray | None]]


def probe(crops: Mapping[str, list[np.ndarray]], analyse: Analyse, settings: Mapping, threshold: float,
          batch: int = 32) -> list[dict]:
    """One row per folder and lighting.

    Args:
        crops: RGB crops by folder taxon.
        analyse: crops -> (calibrated probabilities ``N x classes``, unknown scores or ``None``).
        settings: the decision's keyword arguments from the model file (``Classifier.decision_settings``).
        threshold: the model file's threshold.
        batch: crops per call of ``analyse``.
    """
    names = list(settings["class_names"])
    lineages = settings.get("lineages") or {}
    rows = []
    for folder, images in crops.items():
        for lighting, change in LIGHTINGS.items():
            answers, best = [], []
            for start in range(0, len(images), batch):
                probs, scores = analyse([change(im) for im in images[start:start + batch]])
                for i, p in enumerate(probs):
                    answers.append(decide(probabilities=p, threshold=threshold, **{
                        **settings, "unknown_score": None if scores is None else float(scores[i])}))
                    best.append(names[int(np.argmax(p))])
            n = max(len(answers), 1)
            # right and wrong by lineage, as taxolens evaluate counts them (V. velutina is right for "Vespa")
            wrong = [a["taxon"] for a in answers if a["accepted"] and not is_right(a["taxon"], folder, lineages)]
            rows.append({"folder": folder, "lighting": lighting, "crops": len(answers),
                         "best_guess_right": sum(is_right(b, folder, lineages) for b in best) / n,
                         "answered_right": (sum(a["accepted"] for a in answers) - len(wrong)) / n,
                         "named_wrongly": len(wrong) / n, "wrong_names": dict(Counter(wrong))})
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens lighting-probe``."""
    p = argparse.ArgumentParser(prog="taxolens lighting-probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("crops", help="a folder of crops per taxon, none of them seen in training")
    p.add_argument("--classifier", required=True, help="a classifier model file")
    p.add_argument("--out", required=True, help="folder for report.md and report.json")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return p


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Entry point of ``taxolens lighting-probe``."""
    from classifier.predict import Classifier

    args = get_args_parser().parse_args(argv)
    root = Path(args.crops)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise SystemExit(f"{root}: no folders of crops (one per taxon) found")
    clf = Classifier.from_file(args.classifier, args.device)

    def analyse(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        a = clf.analyse(images)
        return a.probabilities, a.unknown_scores

    crops: dict[str, list[np.ndarray]] = {}
    skipped = []
    for folder in folders:
        taxon_crops = crops.setdefault(folder_taxon(folder.name), [])
        for path in list_images(folder):
            try:
                taxon_crops.append(read_image(path))
            except ImageReadError as exc:  # a bad crop is named and left out; the others are measured
                skipped.append(str(exc))
    rows = probe(crops, analyse, clf.decision_settings, clf.threshold)
    lines = [f"# Lighting probe of {clf.info['model_version']}", "", f"Crops `{root}`.", "",
             "| folder | crops | lighting | best guess right | answered right | named wrongly | wrong names |",
             "|---|---:|---|---:|---:|---:|---|"]
    lines += [f"| {r['folder']} | {r['crops']} | {r['lighting']} | {r['best_guess_right']:.1%} | "
              f"{r['answered_right']:.1%} | {r['named_wrongly']:.1%} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(r['wrong_names'].items())) or '-'} |" for r in rows]
    lines += [f"\nLeft out, unreadable: {reason}" for reason in skipped]
    out = Path(args.out)
    atomic_write_json(out / "report.json", {"classifier": str(args.classifier), "crops": str(root), "rows": rows,
                                            "skipped": skipped})
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return json.loads(json.dumps(rows))
