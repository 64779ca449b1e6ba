"""Species cards: what a citizen wants to know about a taxon, from ``configs/species.yaml``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from core.config import packaged, read_yaml

LANGUAGES = ("en", "es", "gl")
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


@lru_cache(maxsize=4)
def load_species(path: str | Path | None = None) -> dict[str, dict]:
    """Entries by scientific name; each alias (lower case) also points to its entry.

    ``path`` defaults to the packaged ``configs/species.yaml``.
    """
    raw = read_yaml(Path(path) if path else packaged("species.yaml")) or {}
    index: dict[str, dict] = {}
    for name, entry in raw.items():
        card = {"scientific_name": name, **entry}
        for key in (name, *entry.get("aliases", [])):
            index[str(key).lower()] = card
    return index


def species_card(taxon: str, language: str = "en", path: str | Path | None = None) -> dict:
    """The card of a taxon in one language; a plain card (``known: False``) for a taxon with no entry."""
    lang = language if language in LANGUAGES else "en"
    index = load_species(path) if path else load_species()
    entry = index.get(taxon.lower())
    if entry is None:
        return {"known": False, "scientific_name": taxon, "name": taxon, "rank": None, "lineage": [],
                "habitat": None, "iucn": None, "iucn_note": None, "galicia": None, "action": None, "sources": []}

    def text(key: str) -> str | None:
        value = entry.get(key)
        return value.get(lang, value.get("en")) if isinstance(value, dict) else value

    lineage = [(rank, entry["lineage"][rank]) for rank in RANKS if rank in entry.get("lineage", {})]
    return {"known": True, "scientific_name": entry["scientific_name"], "name": text("names"),
            "rank": entry.get("rank"), "lineage": lineage, "habitat": text("habitat"), "iucn": entry.get("iucn"),
            "iucn_note": text("iucn_note"), "galicia": entry.get("galicia"),
            "invasive": entry.get("galicia") == "invasive", "action": text("action"),
            "sources": entry.get("sources", [])}
