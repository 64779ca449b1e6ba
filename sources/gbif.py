"""GBIF through pygbif: names matched, occurrences with photos searched, photos chosen.

GBIF gathers the occurrences of hundreds of publishers (iNaturalist's research-grade observations among them,
Observation.org, national schemes, museums), so it is the better source for a taxon that iNaturalist has few
photos of in a region. pygbif is GBIF's well-kept client, but it calls ``requests.get`` itself and takes no
session; :func:`through` hands its calls, for the length of a ``with`` block, to one :class:`GbifSession` that
keeps to a steady rate (GBIF publishes no per-second figure for its search API and asks for considerate use; one
request a second by default, HTTP 429 answers waited out as ``Retry-After`` says), retries what failed on the
server's side, caches API answers (never photos) and can send them to another server with the same API (a mirror,
or the recorded answers the tests serve on 127.0.0.1). Nothing outside pygbif's own module is changed.

Photos are kept only under a licence of their own (a GBIF media item's ``license``) that was asked for: a photo
without one is not taken, whatever its record's licence, because the record's licence covers the data, not
necessarily the photo.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests_cache import CacheMixin
from requests_ratelimiter import LimiterMixin, SQLiteBucket
from urllib3.util.retry import Retry

from sources.inaturalist import sized
from sources.photos import Photo, SourceError, count_requests

LOGGER = logging.getLogger(__name__)

#: where pygbif sends its requests (the occurrence API is v1, the name matching v2)
GBIF_API = "https://api.gbif.org"
#: the licences a GBIF photo may carry, with the names taxolens gives them (those of iNaturalist)
LICENCES = ("cc0", "cc-by", "cc-by-nc", "cc-by-sa", "cc-by-nd", "cc-by-nc-sa", "cc-by-nc-nd")
#: what GBIF's ``basisOfRecord`` values mean for photos: field photos (the default) or specimens in collections
BASES = ("HUMAN_OBSERVATION", "MACHINE_OBSERVATION", "OBSERVATION", "PRESERVED_SPECIMEN", "LIVING_SPECIMEN",
         "MATERIAL_SAMPLE", "OCCURRENCE")
#: matches GBIF's name matching calls exact (the name, or a variant of it that differs in spelling only)
EXACT_MATCHES = ("EXACT", "VARIANT")
_PAGE = 300  # the most results GBIF's occurrence search gives per request
_SWAP = threading.Lock()


class GbifSession(CacheMixin, LimiterMixin, requests.Session):
    """A rate-limited, retrying, caching session (requests-cache and requests-ratelimiter, as documented there).

    Answers from the cache do not count against the rate. Requests for ``https://api.gbif.org`` go to
    ``api_url`` instead when one is given; ``requests_sent`` holds the monotonic time of every request that
    reached a server, to measure the rate kept.
    """

    requests_sent: list[float]

    def __init__(self, cache_dir: Path, *, api_url: str = GBIF_API, per_second: float = 1.0) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(cache_name=str(cache_dir / "gbif-cache.sqlite"), backend="sqlite", expire_after=86400,
                         allowable_codes=(200,), per_second=per_second, burst=1, per_host=False,
                         bucket_class=SQLiteBucket, bucket_kwargs={"path": str(cache_dir / "gbif-ratelimit.sqlite")})
        retry = Retry(total=5, backoff_factor=1.0, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=("GET",), respect_retry_after_header=True, raise_on_status=False)
        for scheme in ("http://", "https://"):
            self.mount(scheme, HTTPAdapter(max_retries=retry))
        self.api_url = api_url.rstrip("/")
        self.headers["User-Agent"] = "taxolens (taxolens data gbif)"
        count_requests(self)

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:  # noqa: D102
        if isinstance(request.url, str) and request.url.startswith(GBIF_API + "/"):
            request.url = self.api_url + request.url[len(GBIF_API):]
        return super().prepare_request(request)


@contextmanager
def through(sess: requests.Session) -> Iterator[None]:
    """Send pygbif's requests through ``sess`` inside the block (its module's ``requests`` name, nothing else)."""
    import pygbif.gbifutils as utils

    stand_in = SimpleNamespace(get=sess.get, post=sess.post, delete=sess.delete, __version__=requests.__version__)
    with _SWAP:
        kept = utils.requests
        utils.requests = stand_in
        try:
            yield
        finally:
            utils.requests = kept


@dataclass(frozen=True)
class Taxon:
    """A taxon as GBIF's name matching gives it (``key`` in the checklist pygbif matches against)."""

    key: str
    name: str
    rank: str
    kingdom: str | None = None
    synonym_of: str | None = None


def _ranked(usage: dict | None) -> str:
    usage = usage or {}
    return f"{usage.get('canonicalName') or usage.get('name')} ({str(usage.get('rank') or '?').lower()})"


def resolve_taxon(name: str, sess: requests.Session) -> Taxon:
    """The one taxon GBIF matches ``name`` to exactly; a synonym gives its accepted taxon.

    Raises:
        SourceError: no exact match (GBIF's closest is shown), or several taxa match equally (their keys, ranks and
            kingdoms are given: name one with ``--taxon-id NAME=KEY``).
    """
    from pygbif import species

    with through(sess):
        answer = species.name_backbone(scientificName=name, strict=True, verbose=True)
    diagnostics = answer.get("diagnostics") or {}
    match = str(diagnostics.get("matchType") or answer.get("matchType") or "NONE").upper()
    alternatives = diagnostics.get("alternatives") or answer.get("alternatives") or []
    note = str(diagnostics.get("note") or "")
    if match in EXACT_MATCHES and answer.get("usage"):
        usage, accepted = answer["usage"], answer.get("acceptedUsage")
        chosen = accepted if answer.get("synonym") and accepted else usage
        kingdom = next((c.get("name") for c in answer.get("classification") or []
                        if str(c.get("rank", "")).upper() == "KINGDOM"), None)
        return Taxon(str(chosen["key"]), str(chosen.get("canonicalName") or chosen.get("name")),
                     str(chosen.get("rank") or "").lower(), kingdom,
                     synonym_of=_ranked(usage) if chosen is not usage else None)
    if "multiple" in note.lower() or (match == "NONE" and len(alternatives) > 1):
        which = "; ".join(f"key {(a.get('usage') or {}).get('key')}: {_ranked(a.get('usage'))}, "
                          + str(next((c.get("name") for c in a.get("classification") or []
                                      if str(c.get("rank", "")).upper() == "KINGDOM"), "?"))
                          for a in alternatives) or note
        raise SourceError(f"{name!r}: ambiguous, GBIF matches several taxa equally ({which}); name one with "
                          "--taxon-id NAME=KEY")
    closest = [_ranked(answer["usage"])] if answer.get("usage") else []
    closest += [_ranked(a.get("usage")) for a in alternatives[:4]]
    raise SourceError(f"{name!r}: no GBIF taxon has this scientific name (GBIF's match: {match.lower()}"
                      f"{'; closest: ' + ', '.join(closest) if closest else ''})")


def licence_code(text: str | None) -> str | None:
    """The name taxolens gives (``cc-by-nc``) a licence as GBIF media give it (a Creative Commons URL or title)."""
    if not text:
        return None
    t = text.strip().lower().replace("_", "-")
    if "publicdomain/zero" in t or re.search(r"\bcc0\b", t):
        return "cc0"
    m = re.search(r"licenses/([a-z-]+)/", t) or re.search(r"\bcc[ -]((?:by)(?:[ -](?:nc|sa|nd))*)\b", t)
    if not m:
        return None
    parts = m.group(1).replace(" ", "-").split("-")
    return "cc-" + "-".join(parts) if f"cc-{'-'.join(parts)}" in LICENCES else None


_INAT_OBSERVATION = re.compile(r"^https?://(?:www\.)?inaturalist\.org/observations/(\d+)")
_INAT_PHOTO = re.compile(r"/photos/(\d+)/")


def occurrence_photos(occ: dict, licences: Sequence[str], size: str = "large") -> tuple[list[Photo], int]:
    """The still images of one occurrence (a search result) under one of ``licences``; and how many had none.

    A record iNaturalist published keeps iNaturalist's observation and photo ids (source ``iNaturalist``): a photo
    fetched by both commands into one data set is then one photo, and its observation one group.
    """
    key = int(occ["key"])
    observer = str(occ.get("recordedBy") or occ.get("rightsHolder") or "unknown")
    place = ", ".join(str(occ[k]) for k in ("locality", "stateProvince", "country") if occ.get(k)) or None
    inat = _INAT_OBSERVATION.match(str(occ.get("occurrenceID") or ""))
    found, unlicensed = [], 0
    images = [m for m in occ.get("media") or [] if m.get("type") == "StillImage" and m.get("identifier")]
    for i, m in enumerate(images, start=1):
        licence = licence_code(m.get("license"))
        if licence is None:
            unlicensed += 1
            continue
        if licence not in licences:
            continue
        holder = m.get("rightsHolder") or m.get("creator") or observer
        url = str(m["identifier"])
        attribution = (f"(c) {holder}, {licence.upper()}"
                       + (f", via {occ['datasetName']}" if occ.get("datasetName") else "") + " (GBIF)")
        date = str(occ["eventDate"])[:10] if occ.get("eventDate") else None
        taxon = str(occ.get("acceptedScientificName") or occ.get("scientificName") or "")
        photo = _INAT_PHOTO.search(url)
        if inat and photo:  # GBIF gives iNaturalist's originals: take the size asked for
            found.append(Photo("iNaturalist", int(photo.group(1)), sized(url, size), int(inat.group(1)),
                               inat.group(0), str(holder), licence, attribution, date, place, taxon))
        else:
            found.append(Photo("GBIF", f"{key}-{i}", url, key, f"https://www.gbif.org/occurrence/{key}",
                               str(holder), licence, attribution, date, place, taxon))
    return found, unlicensed


def search(taxon: Taxon, sess: requests.Session, *, licences: Sequence[str], want: int, country: str | None = None,
           gadm_gid: str | None = None, d1: str | None = None, d2: str | None = None,
           basis: Sequence[str] = ("HUMAN_OBSERVATION",), size: str = "large", max_pages: int = 50,
           skipped: dict | None = None) -> Iterator[Photo]:
    """Photos of ``taxon``'s occurrences (present, with still images), page by page, until ``3 * want`` are at hand.

    ``skipped`` (if given) counts the photos left out for having no licence of their own.
    """
    from pygbif import occurrences

    params: dict[str, Any] = {"taxonKey": taxon.key, "mediaType": "StillImage", "occurrenceStatus": "PRESENT",
                              "basisOfRecord": list(basis) or None, "limit": _PAGE}
    for key, value in (("country", country), ("gadmGid", gadm_gid)):
        if value:
            params[key] = value
    if d1 or d2:
        params["eventDate"] = f"{d1 or '*'},{d2 or '*'}"
    given = offset = 0
    for _ in range(max_pages):
        with through(sess):
            answer = occurrences.search(offset=offset, **params)
        results = answer.get("results") or []
        offset += len(results)  # the server may give fewer than asked for
        for occ in results:
            photos, unlicensed = occurrence_photos(occ, licences, size)
            if skipped is not None:
                skipped["no_licence"] = skipped.get("no_licence", 0) + unlicensed
            for photo in photos:
                given += 1
                yield photo
        if given >= 3 * want or not results or answer.get("endOfRecords", True):
            return
