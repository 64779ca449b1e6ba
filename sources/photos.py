"""What every source gives: a photo with everything its attribution needs, and photos chosen spread out."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class SourceError(ValueError):
    """A request the source cannot answer as asked (an unknown or ambiguous name); one line that says why."""


def count_requests(session: Any) -> None:
    """Give a requests session ``requests_sent``: the monotonic time of every request that reached a server.

    Answers from a cache are not counted: what is left is the rate the source saw.
    """
    session.requests_sent = []

    def sent(response: Any, *args: Any, **kwargs: Any) -> Any:
        if not getattr(response, "from_cache", False):
            session.requests_sent.append(time.monotonic())
        return response

    session.hooks["response"].append(sent)


@dataclass(frozen=True)
class Photo:
    """One photo of one observation, with everything its attribution needs."""

    source: str
    photo_id: int | str  # unique within its source (GBIF: occurrence key and the photo's place in it)
    url: str
    observation_id: int
    observation_url: str
    observer: str
    licence: str
    attribution: str
    date: str | None
    place: str | None
    taxon_identified: str

    @property
    def group(self) -> str:
        """The key photos of one observation share (they stay on one side of a train/val split)."""
        return f"obs{self.observation_id}"


def spread(photos: Sequence[Photo], n: int) -> list[Photo]:
    """``n`` photos spread over observers and observations, rather than many of one.

    Each observer's first observation in turn, then their second..., and an observation's second photo only once
    every observation has given one.
    """
    by_observer: dict[str, dict[int, list[Photo]]] = {}
    for p in photos:
        by_observer.setdefault(p.observer, {}).setdefault(p.observation_id, []).append(p)
    chosen: list[Photo] = []
    depth = 0
    while len(chosen) < n:
        added = False
        # round robin over observers, each giving its next observation's photo at this depth
        rounds = max((len(obs) for obs in by_observer.values()), default=0)
        for r in range(rounds):
            for observations in by_observer.values():
                obs_list = list(observations.values())
                if r < len(obs_list) and depth < len(obs_list[r]):
                    chosen.append(obs_list[r][depth])
                    added = True
                    if len(chosen) == n:
                        return chosen
        if not added:
            break
        depth += 1
    return chosen
