"""Lineages of taxa, from the packaged ``configs/species.yaml`` (or a file of the same shape).

A classifier's model file stores each class's lineage (``[[rank, name], ...]`` from the kingdom down to the
class itself), so that the decision can roll an uncertain answer up to a higher taxon without reading any
file at inference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from core.answers import RANKS
from core.config import packaged, read_yaml


@lru_cache(maxsize=4)
def species_index(path: str | None = None) -> dict[str, dict]:
    """Entries of a species file by scientific name and by each alias, all in lower case."""
    raw = read_yaml(Path(path) if path else packaged("species.yaml")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path or 'configs/species.yaml'}: expected a mapping of scientific name: entry")
    index: dict[str, dict] = {}
    for name, entry in raw.items():
        card = {"scientific_name": str(name), **(entry or {})}
        for key in (name, *card.get("aliases", [])):
            index[str(key).lower()] = card
    return index


def normalise_name(name: str) -> str:
    """A folder or class name as a taxon name: ``Vespa_velutina`` -> ``vespa velutina``."""
    return name.replace("_", " ").strip().lower()


def lineage_of(name: str, path: str | None = None) -> list[list[str]]:
    """``[[rank, name], ...]`` of a taxon (by scientific name or alias), most general first; ``[]`` if unknown."""
    entry = species_index(path).get(normalise_name(name))
    if entry is None:
        return []
    lineage = entry.get("lineage") or {}
    return [[rank, str(lineage[rank])] for rank in RANKS if rank in lineage]


def required_precisions(names: Iterable[str], path: str | None = None) -> dict[str, float]:
    """``required_precision`` of each name that species.yaml gives one (taxa whose mistakes cost more)."""
    found = {}
    for n in names:
        entry = species_index(path).get(normalise_name(n))
        if entry is not None and entry.get("required_precision") is not None:
            found[n] = float(entry["required_precision"])
    return found


#: how a taxon is seen in a photo: boxed and cropped, or judged from the whole photo (a tree, a branch)
FRAMINGS = ("crop", "whole_photo")


def whole_photo_taxa(names: Iterable[str], path: str | None = None) -> list[str]:
    """The names whose species.yaml entry says ``framing: whole_photo``.

    Raises:
        ValueError: a ``framing`` that is neither ``crop`` nor ``whole_photo``.
    """
    found = []
    for n in names:
        entry = species_index(path).get(normalise_name(n)) or {}
        framing = entry.get("framing", "crop")
        if framing not in FRAMINGS:
            raise ValueError(f"{path or 'configs/species.yaml'}: {n}: framing {framing!r}; expected one of "
                             f"{', '.join(FRAMINGS)}")
        if framing == "whole_photo":
            found.append(n)
    return found


def lineages(names: Iterable[str], path: str | None = None) -> dict[str, list[list[str]]]:
    """The lineage of each name that has one."""
    return {n: lin for n in names if (lin := lineage_of(n, path))}


def _lineage_names(taxon: str, table: Mapping[str, Sequence[Sequence[str]]]) -> list[str]:
    lin = table.get(taxon) or lineage_of(taxon)
    return [normalise_name(n) for _, n in lin] or [normalise_name(taxon)]


def is_right(answer: str, truth: str, table: Mapping[str, Sequence[Sequence[str]]]) -> bool:
    """Whether ``answer`` agrees with ``truth``: the same taxon, one under it, or one above it.

    The one lineage check: lineages come from ``table`` (a model file's) and then ``species.yaml``. ``Vespa``
    is right for a ``Vespa velutina`` (less precise), and ``Vespa velutina`` is right for a ``Vespa`` folder.
    """
    a, t = normalise_name(answer), normalise_name(truth)
    return a == t or t in _lineage_names(answer, table) or a in _lineage_names(truth, table)
