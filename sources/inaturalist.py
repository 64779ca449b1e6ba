"""iNaturalist through pyinaturalist: taxa and places resolved, observations searched, photos chosen.

Every request goes through one :class:`pyinaturalist.ClientSession`, which keeps to the published rate
(iNaturalist asks for about one API request a second and 10,000 a day), retries what failed on the server's
side and caches API answers (never photos). ``api_url`` points it at another server with the same API (a
mirror, or the recorded answers the tests serve on 127.0.0.1).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinaturalist import ClientSession
from pyinaturalist.constants import API_V1
from pyinaturalist.v1 import get_observations, get_places_autocomplete, get_taxa

from sources.photos import Photo, SourceError, count_requests, spread  # noqa: F401 (spread: part of this source's interface)

LOGGER = logging.getLogger(__name__)

#: the photo licences iNaturalist offers, as its API names them; ``none`` is "all rights reserved"
LICENCES = ("cc0", "cc-by", "cc-by-nc", "cc-by-sa", "cc-by-nd", "cc-by-nc-sa", "cc-by-nc-nd")
#: photo sizes iNaturalist serves (``original`` is up to 2048 px, ``large`` 1024, ``medium`` 500)
SIZES = ("medium", "large", "original")


class _Session(ClientSession):
    """pyinaturalist's session, sending its API requests to ``api_url`` instead of api.inaturalist.org."""

    requests_sent: list[float]

    def __init__(self, api_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.api_url = api_url.rstrip("/")
        count_requests(self)  # requests_sent: monotonic times, to measure the rate actually kept

    def prepare_inat_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        if url.startswith(API_V1):
            url = self.api_url + url[len(API_V1):]
        return super().prepare_inat_request(method, url, *args, **kwargs)


def session(cache_dir: Path, *, api_url: str = API_V1, per_second: float = 1.0) -> _Session:
    """A rate-limited, caching session whose files live in ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    return _Session(api_url, cache_file=str(cache_dir / "api-cache.sqlite"), per_second=per_second,
                    per_minute=max(60.0, per_second * 60), burst=1,  # no bursts: steady, as iNaturalist asks
                    ratelimit_path=str(cache_dir / "ratelimit.sqlite"),
                    user_agent="taxolens (taxolens data inaturalist)")


@dataclass(frozen=True)
class Taxon:
    """A taxon as the source knows it."""

    id: int
    name: str
    rank: str
    common_name: str | None = None


def resolve_taxon(name: str, sess: ClientSession) -> Taxon:
    """The one active taxon whose scientific name is ``name`` (case aside).

    Raises:
        SourceError: no taxon has that name (the closest names are given), or several do (their ids, ranks and
            groups are given: name one with ``--taxon-id``).
    """
    results = get_taxa(q=name, is_active=True, per_page=30, session=sess).get("results", [])
    exact = [t for t in results if str(t.get("name", "")).lower() == name.strip().lower()]
    if not exact:
        close = ", ".join(f"{t.get('name')} ({t.get('rank')})" for t in results[:5]) or "none"
        raise SourceError(f"{name!r}: no iNaturalist taxon has this scientific name (closest: {close})")
    if len(exact) > 1:
        which = "; ".join(f"id {t['id']}: {t['name']} ({t.get('rank')}, {t.get('iconic_taxon_name') or '?'})"
                          for t in exact)
        raise SourceError(f"{name!r}: ambiguous, {len(exact)} iNaturalist taxa have this name ({which}); "
                          "name one with --taxon-id")
    t = exact[0]
    return Taxon(int(t["id"]), str(t["name"]), str(t.get("rank", "")), t.get("preferred_common_name"))


def resolve_place(name: str, sess: ClientSession) -> tuple[int, str]:
    """The id and full name of the one place named ``name`` (``Galicia``), or :class:`SourceError`."""
    results = get_places_autocomplete(q=name, per_page=20, session=sess).get("results", [])
    key = name.strip().lower()
    exact = [p for p in results if key in (str(p.get("name", "")).lower(), str(p.get("display_name", "")).lower())]
    if not exact:
        close = ", ".join(str(p.get("display_name") or p.get("name")) for p in results[:5]) or "none"
        raise SourceError(f"place {name!r}: no iNaturalist place has this name (closest: {close}); give its id "
                          "with --place-id")
    if len(exact) > 1:
        which = "; ".join(f"id {p['id']}: {p.get('display_name') or p.get('name')}" for p in exact)
        raise SourceError(f"place {name!r}: ambiguous ({which}); give its id with --place-id")
    return int(exact[0]["id"]), str(exact[0].get("display_name") or exact[0].get("name"))


def sized(url: str, size: str) -> str:
    """An iNaturalist photo URL at another size (they end in ``.../square.jpg?123``; one path serves every size)."""
    for small in ("square", "thumb", "small", "medium", "large", "original"):
        if f"/{small}." in url:
            return url.replace(f"/{small}.", f"/{size}.", 1)
    return url


def observation_photos(obs: dict, licences: Sequence[str], size: str = "medium") -> list[Photo]:
    """The photos of one observation (an API result) under one of ``licences``."""
    user = obs.get("user") or {}
    taxon = obs.get("taxon") or {}
    found = []
    for p in obs.get("photos") or []:
        licence = p.get("license_code") or "none"
        if licence not in licences or not p.get("url"):
            continue
        found.append(Photo(source="iNaturalist", photo_id=int(p["id"]), url=sized(str(p["url"]), size),
                           observation_id=int(obs["id"]),
                           observation_url=str(obs.get("uri") or f"https://www.inaturalist.org/observations/{obs['id']}"),
                           observer=str(user.get("login") or user.get("name") or "unknown"), licence=licence,
                           attribution=str(p.get("attribution") or ""), date=obs.get("observed_on"),
                           place=obs.get("place_guess"), taxon_identified=str(taxon.get("name") or "")))
    return found


def search(taxon: Taxon, sess: ClientSession, *, licences: Sequence[str], want: int, place_id: int | None = None,
           d1: str | None = None, d2: str | None = None, quality: str = "research", size: str = "medium",
           per_page: int = 200, max_pages: int = 50) -> Iterator[Photo]:
    """Photos of ``taxon``'s observations, page by page (oldest first), until about ``3 * want`` are at hand."""
    params: dict[str, Any] = {"taxon_id": taxon.id, "photos": True, "per_page": per_page, "order_by": "id",
                              "order": "asc"}
    if "none" not in licences:  # "all rights reserved" cannot be asked for by name: then every photo is fetched
        params["photo_license"] = [lic.upper() for lic in licences]
    if quality != "any":
        params["quality_grade"] = quality
    for key, value in (("place_id", place_id), ("d1", d1), ("d2", d2)):
        if value is not None:
            params[key] = value
    given = 0
    for page in range(1, max_pages + 1):
        answer = get_observations(page=page, session=sess, **params)
        results = answer.get("results", [])
        for obs in results:
            for photo in observation_photos(obs, licences, size):
                given += 1
                yield photo
        if given >= 3 * want or not results or page * per_page >= int(answer.get("total_results", 0)):
            return
