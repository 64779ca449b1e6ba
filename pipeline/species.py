"""Species cards: what a citizen wants to know about a taxon, from ``configs/species.yaml``."""

from __future__ import annotations

from pathlib import Path

from core.taxonomy import RANKS, normalise_name, species_index

LANGUAGES = ("en", "es", "gl")


def load_species(path: str | Path | None = None) -> dict[str, dict]:
    """Entries by scientific name; each alias (lower case) also points to its entry.

    ``path`` defaults to the packaged ``configs/species.yaml``.
    """
    return species_index(str(path) if path else None)


def species_card(taxon: str, language: str = "en", path: str | Path | None = None) -> dict:
    """The card of a taxon in one language; a plain card (``known: False``) for a taxon with no entry."""
    lang = language if language in LANGUAGES else "en"
    index = load_species(path) if path else load_species()
    entry = index.get(normalise_name(taxon))
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
