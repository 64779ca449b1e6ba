"""Reproducible train/validation splits, stratified by class, that never put one group on both sides.

Photos of one observation or frames of one video are near-duplicates; a random split leaks them
between training and validation and flatters every metric. A ``group_regex`` says how file names
group: its first capture group (or the whole match) is the group key.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import PurePath


def group_key(name: str, group_regex: str | None) -> str:
    """The group a file belongs to: the regex's first group (or whole match) on its base name.

    Without a regex, or where it does not match, each file is its own group.
    """
    base = PurePath(name).name
    if not group_regex:
        return name
    m = re.search(group_regex, base)
    if not m:
        return name
    return m.group(1) if m.groups() else m.group(0)


def group_split(names: Sequence[str], labels: Sequence[Sequence[str] | str], *, val_fraction: float,
                seed: int, group_regex: str | None = None) -> tuple[list[int], list[int]]:
    """Split items into train and validation indices.

    Groups are taken in a seeded random order; a group goes to validation while the class it holds
    most of is short of ``val_fraction`` of its items there. The result is reproducible for the same
    names, labels and seed, stratified by class, and no group is ever on both sides.

    Args:
        names: file names (the regex runs on their base names).
        labels: each item's class, or list of classes (a detection photo with several).
        val_fraction: share of each class wanted in validation.
        seed: random seed.
        group_regex: how file names group; ``None`` for one group per file.

    Returns:
        ``(train_indices, val_indices)``, each sorted.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    item_labels = [[lab] if isinstance(lab, str) else list(lab) for lab in labels]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        groups[group_key(name, group_regex)].append(i)
    class_totals = Counter(lab for labs in item_labels for lab in labs)
    unlabelled = "\0none"
    class_totals[unlabelled] = sum(1 for labs in item_labels if not labs)
    target = {c: val_fraction * n for c, n in class_totals.items()}
    in_val: Counter[str] = Counter()
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    train, val = [], []
    for key in keys:
        members = groups[key]
        counts = Counter(lab for i in members for lab in (item_labels[i] or [unlabelled]))
        # the class this group holds most of decides; ties broken by name for reproducibility
        main = min(counts, key=lambda c: (-counts[c], c))
        if in_val[main] + counts[main] / 2 <= target[main]:
            val.extend(members)
            in_val.update(counts)
        else:
            train.extend(members)
    return sorted(train), sorted(val)
