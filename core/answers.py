"""The words of an answer, stated once: every stage, the store, the app and the benchmarks import them here.

A record's ``taxon`` is a taxon's name or one of :data:`UNCERTAIN`, :data:`UNKNOWN`, :data:`NO_ORGANISM`;
its ``reason`` says how the decision reached it (one of :data:`REASONS`). The README documents each.
"""

from __future__ import annotations

#: answers that are not a taxon
UNCERTAIN = "uncertain"
UNKNOWN = "unknown"
NO_ORGANISM = "no organism"

#: why the decision gave its answer: a class reached its threshold; a higher taxon did; none did; the crop is
#: unlike every training class (or a look-alike); the box holds no organism (dropped)
NAMED = "named"
ROLLED_UP = "rolled_up"
REASON_UNCERTAIN = "uncertain"
REASON_UNKNOWN = "unknown"
REASON_NO_ORGANISM = "no_organism"
REASONS = (NAMED, ROLLED_UP, REASON_UNCERTAIN, REASON_UNKNOWN, REASON_NO_ORGANISM)
#: reasons whose taxon counts as an answer
ANSWERED = (NAMED, ROLLED_UP)
#: reasons an expert should look at first
NEEDS_A_LOOK = (REASON_UNKNOWN, REASON_UNCERTAIN)

#: taxonomic ranks from the most general to the most specific
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
