"""The review queue: which detection an expert should look at next. Pure: rows in, order out."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from core.answers import NEEDS_A_LOOK
from core.taxonomy import species_index

#: conservation codes that make a named taxon worth an expert's look even when the model is sure
THREATENED = ("VU", "EN", "CR")


def flagged_taxa(path: str | None = None) -> set[str]:
    """Taxa of the species file that are invasive in Galicia or threatened (IUCN VU, EN, CR)."""
    return {card["scientific_name"] for card in species_index(path).values()
            if card.get("galicia") == "invasive" or card.get("iucn") in THREATENED}


def queue_key(row: Mapping, *, flagged: Collection[str]) -> tuple:
    """Sort key of a detection: the smaller, the sooner an expert should see it.

    First what the model could not answer (``unknown``, ``uncertain``), then the lowest probability, then (at
    equal probability) invasive or threatened taxa the model named, then the oldest; boxes dropped as no
    organism come last (a missed organism hides there).
    """
    need = 0 if row["reason"] in NEEDS_A_LOOK else 2 if row.get("dropped") else 1
    probability = row.get("probability")
    return (need, 1.0 if probability is None else float(probability),
            0 if row["taxon"] in flagged else 1, row["id"])


def review_queue(rows: Sequence[Mapping], *, flagged: Collection[str]) -> list[Mapping]:
    """Detections with no review yet, in the order an expert should see them."""
    return sorted((r for r in rows if r.get("review_action") is None), key=lambda r: queue_key(r, flagged=flagged))
