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


def _how_to_tell(name: str, lang: str) -> dict | None:
    entry = species_index().get(normalise_name(name))
    if entry is None or not entry.get("how_to_tell"):
        return None
    text = entry["how_to_tell"]
    names = entry.get("names") or {}
    return {"scientific_name": entry["scientific_name"],
            "name": names.get(lang, names.get("en", entry["scientific_name"])) if isinstance(names, dict) else names,
            "how_to_tell": text.get(lang, text.get("en")) if isinstance(text, dict) else text}


def look_alikes(detection: dict, language: str = "en") -> list[dict]:
    """What to look at before trusting (or reporting) an answer: the taxa it may be confused with.

    Shown when the answer is a taxon with look-alikes in ``species.yaml`` (a hornet; or Vespa or Vespidae,
    rolled up), or when the answer is coarser or uncertain and one of the three best guesses is such a taxon
    (an answer Hymenoptera, or "not sure", with the Asian hornet among the guesses). Each item: the taxon's
    ``scientific_name``, ``name`` in ``language`` and ``how_to_tell`` it. The answer's own taxon comes first.
    """
    lang = language if language in LANGUAGES else "en"
    index = species_index()
    candidates = [detection["taxon"]] if detection.get("accepted") else []
    candidates += [g["taxon"] for g in detection.get("top") or []]
    for name in candidates:
        entry = index.get(normalise_name(name))
        if entry and entry.get("look_alikes"):
            shown = ([entry["scientific_name"]] if entry.get("how_to_tell") else []) + list(entry["look_alikes"])
            cards = [_how_to_tell(n, lang) for n in shown]
            return [c for c in cards if c is not None]
    return []
