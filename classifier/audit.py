"""``taxolens classifier audit``: crops whose folder an independent model disagrees with, found before training.

Launch::

    taxolens classifier audit --data runs/demo/data/crops --out runs/demo/data/crops-audit
    taxolens classifier audit --data crops --out audit --quarantine "no organism" "other insect=Apis mellifera"

A classifier learns what its folders say. Folders built by rules carry the rules' mistakes: a box the detector
drew where no organism was annotated is cut as ``no organism``, but where the annotator missed an insect it is
an insect taught as background; a look-alike class gathered from a mixed source (``hornets-3class`` ``other``:
wasps, flies *and honey bees*) teaches a honey bee as "not a honey bee". Each such crop pulls the classifier's
probabilities apart on exactly the insects it must name, so it answers them ``uncertain``.

The audit asks a model that never trained on the crop. Every crop (and its mirror image) goes through the
ImageNet network as it is (EfficientNet-Lite0, offline weights); a logistic regression on those features is
fitted on four fifths of the crops and predicts the fifth it did not see, five times over, the folds split by
source group (frames of one video, copies of one photo stay in one fold, so a near-duplicate cannot vouch for
itself). cleanlab's confident learning (Northcutt et al., 2021; ``cleanlab.filter.find_label_issues``) then
flags the crops whose folder those out-of-fold probabilities contradict, the worst first.

Every flag is reported (``audit.json``, ``audit.md``, and ``issues.png`` to look at them); only the flags that a
``--quarantine`` rule names are moved out of the class folders, into ``OUT/quarantine/<class>/``, so that
training does not see them (move a file back to undo). A rule is ``CLASS`` (every flagged crop of that folder)
or ``CLASS=SUGGESTED`` (only those the audit would put in ``SUGGESTED``). The frozen ImageNet features tell a
honey bee from a background well and a common wasp from a hornet badly. BENCHMARKS.md (issue 19, "Label issues")
measures what moving the demo's flags changed on photos no model trained on: more answers, and more never-seen
insects named wrongly; the demo does not move them.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import numpy as np
import torch

from annotations.split import group_key
from core.config import check_settings
from core.io import atomic_write_json, atomic_write_text

LOGGER = logging.getLogger(__name__)

#: frames of one video and copies of one photo share a file-name prefix (the demo's crops name them so)
GROUP_REGEX = r"(?i)^(.*?)_(?:jpg|jpeg|png)"


def parse_rule(text: str, class_names: Sequence[str]) -> tuple[str, str | None]:
    """``CLASS`` or ``CLASS=SUGGESTED`` -> (class, suggested or None); each name must be a class of the crops."""
    given, sep, suggested = text.partition("=")
    given, suggested = given.strip(), suggested.strip()
    for name in (given, *([suggested] if sep else [])):
        if name not in class_names:
            raise ValueError(f"--quarantine {text!r}: {name!r} is no class of the crops "
                             f"({', '.join(class_names)})")
    return given, (suggested if sep else None)


def out_of_fold_probabilities(x: np.ndarray, y: np.ndarray, groups: Sequence[str], *, folds: int = 5,
                              c: float = 0.1) -> np.ndarray:
    """Each item's class probabilities from a logistic regression fitted without its group (``folds`` folds).

    Features are standardised within each fold's training part; ``c`` is the inverse of the weight penalty.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_groups = len(set(groups))
    if n_groups < folds:
        raise ValueError(f"{n_groups} source groups: the audit needs at least {folds} (one per fold)")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    return cross_val_predict(model, x, y, groups=list(groups), cv=GroupKFold(folds), method="predict_proba")


def label_issues(labels: np.ndarray, pred_probs: np.ndarray, class_names: Sequence[str]) -> list[dict]:
    """The confident-learning flags of cleanlab, worst first: index, given and suggested class, their probabilities."""
    from cleanlab.filter import find_label_issues

    ranked = find_label_issues(np.asarray(labels), np.asarray(pred_probs), return_indices_ranked_by="self_confidence")
    return [{"index": int(i), "given": class_names[int(labels[i])],
             "suggested": class_names[int(np.argmax(pred_probs[i]))],
             "p_given": round(float(pred_probs[i, int(labels[i])]), 4),
             "p_suggested": round(float(np.max(pred_probs[i])), 4)} for i in ranked]


def quarantined(issue: dict, rules: Sequence[tuple[str, str | None]]) -> bool:
    """Whether a rule names this flag: its class, and the suggested class where the rule gives one."""
    return any(issue["given"] == g and (s is None or issue["suggested"] == s) for g, s in rules)


def embed(items: list[tuple[str, int]], class_names: list[str], *, arch: str, weights: str, input_size: int,
          workers: int) -> np.ndarray:
    """The frozen ImageNet network's features of each crop, averaged with its mirror image's."""
    from classifier import linear
    from classifier.data import build_transform
    from classifier.models import build_classifier
    from classifier.predict import Classifier

    model, pre = build_classifier(arch, len(class_names), weights)
    pre = type(pre).from_dict({**pre.to_dict(), "input_size": input_size, "resize_size": input_size})
    clf = Classifier(model.eval(), class_names, pre, 0.94, {"architecture": arch}, torch.device("cpu"))
    plain = build_transform(pre, train=False)
    mirror = A.Compose([A.HorizontalFlip(p=1.0), *plain.transforms])
    x0, _ = linear.features(clf, items, plain, workers=workers, desc="audit features")
    x1, _ = linear.features(clf, items, mirror, workers=workers, desc="audit features, mirrored")
    return (x0 + x1) / 2


def contact_sheet(root: Path, issues: list[dict], out: Path, limit: int = 120) -> None:
    """The flagged crops side by side, each with its folder, the suggested class and whether it was moved."""
    from PIL import Image, ImageDraw

    shown = issues[:limit]
    if not shown:
        return
    cell, cols = 120, 10
    rows = (len(shown) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell, rows * (cell + 28)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, issue in enumerate(shown):
        x, y = (k % cols) * cell, (k // cols) * (cell + 28)
        path = Path(issue["moved_to"]) if issue.get("moved_to") else root / issue["file"]
        with Image.open(path) as im:
            thumb = im.convert("RGB")
            thumb.thumbnail((cell - 4, cell - 4))
        sheet.paste(thumb, (x + 2, y + 2))
        mark = "moved" if issue.get("moved_to") else "kept"
        draw.text((x + 2, y + cell), f"{issue['given'][:16]}", fill="black")
        draw.text((x + 2, y + cell + 12), f"> {issue['suggested'][:12]} {issue['p_suggested']:.2f} {mark}",
                  fill="darkred" if mark == "moved" else "black")
    sheet.save(out)


def audit_crops(root: str | Path, out: str | Path, *, quarantine: Sequence[str] = (), folds: int = 5,
                arch: str = "efficientnet_lite0", weights: str = "imagenet", input_size: int = 224,
                group_regex: str | None = GROUP_REGEX, workers: int = 0) -> dict:
    """Flag crops of ``root/<class>/`` whose folder the out-of-fold probabilities contradict; move those a rule names.

    Writes ``audit.json`` (every flag, the rules, counts), ``audit.md`` and ``issues.png`` into ``out``.

    Raises:
        ValueError: ``root`` split into train/ and val/, ``out`` inside ``root`` (its folders would become
            classes), a rule naming no class, too few source groups for the folds.
        FileNotFoundError: ``root`` does not exist.
    """
    from classifier.data import _dataset_root, _flat_classes

    root, out = Path(root).resolve(), Path(out).resolve()
    if _dataset_root(root)[1]:
        raise ValueError(f"{root}: already split into train/ and val/; audit a folder of class folders "
                         "(each of the two on its own, or both joined)")
    if out == root or root in out.parents:
        raise ValueError(f"{out}: the audit's folder must lie outside the crops ({root}), or its quarantine "
                         "would be read as a class")
    skipped: list[dict] = []
    class_names, items = _flat_classes(root, skipped)
    rules = [parse_rule(r, class_names) for r in quarantine]
    y = np.array([c for _, c in items])
    groups = [group_key(Path(p).name, group_regex) for p, _ in items]
    x = embed(items, class_names, arch=arch, weights=weights, input_size=input_size, workers=workers)
    probs = out_of_fold_probabilities(x, y, groups, folds=folds)
    issues = label_issues(y, probs, class_names)
    out.mkdir(parents=True, exist_ok=True)
    moves = []
    for issue in issues:
        src = Path(items[issue.pop("index")][0])
        issue["file"] = str(src.relative_to(root))
        if quarantined(issue, rules):
            issue["moved_to"] = str(out / "quarantine" / src.parent.name / src.name)
            moves.append((src, Path(issue["moved_to"])))
    flagged = Counter(i["given"] for i in issues)
    moved = Counter(i["given"] for i in issues if i.get("moved_to"))
    per_class = [{"class": n, "crops": int((y == k).sum()), "flagged": flagged[n], "moved": moved[n]}
                 for k, n in enumerate(class_names)]
    report = {"root": str(root), "method": {"features": f"{arch} ({weights}) at {input_size} px, crop and mirror "
                                                        "averaged", "model": "standardised logistic regression",
                                            "folds": folds, "group_regex": group_regex,
                                            "flags": "cleanlab.filter.find_label_issues"},
              "out_of_fold_accuracy": round(float((probs.argmax(1) == y).mean()), 4),
              "quarantine_rules": list(quarantine), "classes": per_class, "skipped": skipped, "issues": issues}
    # the report first: a run killed while moving leaves every move it meant written down
    atomic_write_json(out / "audit.json", report)
    atomic_write_text(out / "audit.md", audit_markdown(report))
    for src, dest in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))
    contact_sheet(root, issues, out / "issues.png")
    LOGGER.info("audit of %s: %d of %d crops flagged, %d moved to %s", root, len(issues), len(items),
                sum(moved.values()), out / "quarantine")
    return report


def audit_markdown(report: dict) -> str:
    """The audit as a page: per class, crops, flagged and moved; then the most frequent disagreements."""
    lines = [f"# Label audit of {report['root']}", "",
             f"Out-of-fold accuracy of the independent model: {report['out_of_fold_accuracy']:.3f}. "
             f"Quarantine rules: {', '.join(report['quarantine_rules']) or 'none (report only)'}.", "",
             "| class | crops | flagged | moved to quarantine |", "|---|---:|---:|---:|"]
    lines += [f"| {r['class']} | {r['crops']} | {r['flagged']} | {r['moved']} |" for r in report["classes"]]
    pairs = Counter((i["given"], i["suggested"]) for i in report["issues"])
    lines += ["", "| folder | the audit suggests | flags |", "|---|---|---:|"]
    lines += [f"| {g} | {s} | {n} |" for (g, s), n in pairs.most_common()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens classifier audit``."""
    p = argparse.ArgumentParser(prog="taxolens classifier audit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="crops, one folder per class (root/<class>/*.png)")
    p.add_argument("--out", required=True, help="folder for audit.json, audit.md, issues.png and the quarantine")
    p.add_argument("--quarantine", nargs="*", default=[], metavar="RULE",
                   help="CLASS or CLASS=SUGGESTED: move those flags out of the class folders (default: none)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds, split by source group")
    p.add_argument("--group-regex", default=GROUP_REGEX, help="file-name pattern whose first group names the source")
    p.add_argument("--input-size", type=int, default=224, help="side of the crop fed to the ImageNet network")
    p.add_argument("--weights", default="imagenet", help="imagenet (offline copy), timm, or a local state dict")
    p.add_argument("--workers", type=int, default=0)
    args = check_settings(p.parse_args(argv))
    report = audit_crops(args.data, args.out, quarantine=args.quarantine, folds=args.folds,
                         group_regex=args.group_regex, input_size=args.input_size, weights=args.weights,
                         workers=args.workers)
    summary = {"out": args.out, "out_of_fold_accuracy": report["out_of_fold_accuracy"], "classes": report["classes"]}
    print(json.dumps(summary, indent=1))
    return report
