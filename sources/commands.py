r"""``taxolens data inaturalist``: a training set from iNaturalist in one command.

Launch::

    taxolens data inaturalist --taxa "Vespa velutina" "Vespa crabro" --place Galicia --per-taxon 150 \
        --licence cc0 cc-by cc-by-nc --out data/hornets
    taxolens data inaturalist --preset galicia-study --out data/galicia   # the study's five taxa
    taxolens classifier train --data data/galicia --group-regex '^(obs\d+)_' --out runs/galicia

Each name is resolved to one iNaturalist taxon (the match is printed; an unknown or ambiguous name is refused
in one line), research-grade observations are searched (``--quality``), photos under the licences asked for
are spread over observers and observations, downloaded at about one request a second into one folder per
taxon, with ``attribution.csv`` and ``dataset.md`` beside them. Run the same command again after a kill: it
goes on where it stopped and fetches nothing twice.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests_cache

from core.config import check_settings, packaged, read_yaml
from sources import gbif
from sources.fetch import GROUP_REGEX, fetch
from sources.inaturalist import (
    LICENCES,
    SIZES,
    Photo,
    SourceError,
    Taxon,
    resolve_place,
    resolve_taxon,
    search,
    session,
    spread,
)

GBIF_DOC = r"""``taxolens data gbif``: a training set from GBIF occurrences with photos, in one command.

Launch::

    taxolens data gbif --taxa "Acacia dealbata" "Acacia melanoxylon" --gadm-gid ESP.12_1 --per-taxon 150 \
        --licence cc0 cc-by cc-by-nc --out data/acacias
    taxolens data gbif --preset galicia-study --out data/galicia-gbif   # the study's five taxa, from GBIF

GBIF gathers iNaturalist's research-grade observations with those of other publishers (Observation.org, national
recording schemes, collections): the better source for a taxon iNaturalist has few photos of. Each name is matched
to one GBIF taxon (the match is printed; a name GBIF matches only fuzzily or to a higher rank, or to several taxa
equally, is refused in one line). Occurrences recorded as present, with still images, of the kinds of record asked
for (field observations by default) are searched; photos under the licences asked for (the photo's own licence) are
spread over observers and occurrences and downloaded at about one request a second, into the same layout as
``taxolens data inaturalist`` (one folder per taxon, ``attribution.csv``, ``dataset.md``), resumable after a kill.
"""

LOGGER = logging.getLogger(__name__)
API_V1 = "https://api.inaturalist.org/v1"
#: the study's five taxa of Galicia (its Table 1), research grade, the licence it used and those that allow more
PRESETS: dict[str, dict[str, Any]] = {
    "galicia-study": {"taxa": ["Acacia dealbata", "Acacia melanoxylon", "Apis mellifera", "Vespa velutina",
                               "Formicidae"],
                      "place": "Galicia", "gadm_gid": "ESP.12_1", "licence": ["cc0", "cc-by", "cc-by-nc"],
                      "per_taxon": 200}}


def _species_file_taxa(path: str | None) -> list[str]:
    raw = read_yaml(Path(path) if path else packaged("species.yaml")) or {}
    return [str(name) for name in raw]


def _common(p: argparse.ArgumentParser, licences: Sequence[str]) -> None:
    """The options both sources take."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--taxa", nargs="+", help="scientific names, one folder each")
    which.add_argument("--species-file", nargs="?", const="", default=None,
                       help="every taxon of a species.yaml (no value: the packaged one)")
    which.add_argument("--preset", choices=sorted(PRESETS), help="galicia-study: the study's five taxa of Galicia")
    p.add_argument("--taxon-id", nargs="*", default=[], metavar="NAME=ID",
                   help="the taxon id (GBIF: key) for a name that is ambiguous (Vespa=54327)")
    p.add_argument("--out", required=True, help="the data set's folder (created; a run there is resumed)")
    p.add_argument("--licence", nargs="+", choices=list(licences), default=None,
                   help="photo licences to take (default cc0 cc-by cc-by-nc; the study used cc-by-nc)")
    p.add_argument("--d1", default=None, help="observed on or after (YYYY-MM-DD)")
    p.add_argument("--d2", default=None, help="observed on or before (YYYY-MM-DD)")
    p.add_argument("--per-taxon", type=int, default=None, help="photos per taxon (default 100)")
    p.add_argument("--size", default="large", choices=SIZES,
                   help="photo size (large: up to 1024 px; GBIF: for photos iNaturalist hosts)")
    p.add_argument("--per-second", type=float, default=1.0,
                   help="requests per second at most (default 1; more is refused against the public service)")


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens data inaturalist``."""
    p = argparse.ArgumentParser(prog="taxolens data inaturalist", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p, [*LICENCES, "none"])
    p.add_argument("--place", default=None, help="a place name, resolved to iNaturalist's place (Galicia)")
    p.add_argument("--place-id", type=int, default=None, help="an iNaturalist place id")
    p.add_argument("--quality", default="research", choices=["research", "needs_id", "any"],
                   help="observation quality grade (default research)")
    p.add_argument("--api-url", default=API_V1, help="the iNaturalist API (another server with the same API)")
    return p


def get_gbif_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens data gbif``."""
    p = argparse.ArgumentParser(prog="taxolens data gbif", description=GBIF_DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(p, gbif.LICENCES)
    p.add_argument("--country", default=None, help="an ISO 3166 country code (ES)")
    p.add_argument("--gadm-gid", default=None,
                   help="a GADM region, as GBIF filters places (Galicia: ESP.12_1; see gadm.org)")
    p.add_argument("--place", default=None, help=argparse.SUPPRESS)  # refused with the way to say it (below)
    p.add_argument("--basis-of-record", nargs="+", default=["HUMAN_OBSERVATION"], choices=gbif.BASES,
                   help="kinds of record (default HUMAN_OBSERVATION: photos taken in the field, not specimens)")
    p.add_argument("--api-url", default=gbif.GBIF_API, help="GBIF's API (another server with the same API)")
    return p


def _taxa(args: argparse.Namespace) -> list[str]:
    if args.preset:
        return list(PRESETS[args.preset]["taxa"])
    if args.species_file is not None:
        return _species_file_taxa(args.species_file or None)
    return list(args.taxa)


def inaturalist_main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens data inaturalist``; returns the summary it prints."""
    args = check_settings(get_args_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    preset: dict = PRESETS.get(args.preset or "", {})
    licences: list[str] = args.licence or preset.get("licence") or ["cc0", "cc-by", "cc-by-nc"]
    per_taxon = int(args.per_taxon or preset.get("per_taxon") or 100)
    place: str | None = args.place or preset.get("place")
    if args.per_second > 1.0 and args.api_url.rstrip("/") == API_V1:
        raise SourceError(f"--per-second {args.per_second}: iNaturalist asks for about one request a second at most")
    out = Path(args.out)
    sess = session(out / ".fetch", api_url=args.api_url, per_second=args.per_second)
    ids = dict(item.split("=", 1) for item in args.taxon_id)
    place_id = args.place_id
    if place_id is None and place:
        place_id, place_name = resolve_place(place, sess)
        print(f"place {place!r} -> iNaturalist place {place_id} ({place_name})")
    chosen: dict[str, Sequence[Photo]] = {}
    for name in _taxa(args):
        taxon = Taxon(int(ids[name]), name, "given") if name in ids else resolve_taxon(name, sess)
        print(f"{name!r} -> iNaturalist taxon {taxon.id}: {taxon.name} ({taxon.rank}"
              f"{', ' + taxon.common_name if taxon.common_name else ''})")
        candidates = list(search(taxon, sess, licences=licences, want=per_taxon, place_id=place_id, d1=args.d1,
                                 d2=args.d2, quality=args.quality, size=args.size))
        chosen[taxon.name] = spread(candidates, per_taxon)
        LOGGER.info("%s: %d photos chosen of %d found (%d observations, %d observers)", taxon.name,
                    len(chosen[taxon.name]), len(candidates), len({p.observation_id for p in chosen[taxon.name]}),
                    len({p.observer for p in chosen[taxon.name]}))

    def get(url: str) -> object:
        return sess.request("GET", url, expire_after=requests_cache.DO_NOT_CACHE, raise_for_status=False,
                            headers={"Accept": "image/*"})

    summary = fetch(chosen, out, get)
    summary["requests"] = len(sess.requests_sent)
    print(json.dumps(summary, indent=1))
    print(f"train on it: taxolens classifier train --data {out} --group-regex '{GROUP_REGEX}' ...")
    return summary


def gbif_main(argv: Sequence[str] | None = None) -> dict:
    """Entry point of ``taxolens data gbif``; returns the summary it prints."""
    args = check_settings(get_gbif_args_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.place:
        raise SourceError(f"--place {args.place!r}: GBIF filters places by GADM region, not by name: give "
                          "--gadm-gid (Galicia is ESP.12_1) or --country (ES)")
    preset: dict = PRESETS.get(args.preset or "", {})
    licences: list[str] = args.licence or preset.get("licence") or ["cc0", "cc-by", "cc-by-nc"]
    per_taxon = int(args.per_taxon or preset.get("per_taxon") or 100)
    gadm = args.gadm_gid or preset.get("gadm_gid")
    if args.per_second > 1.0 and args.api_url.rstrip("/") == gbif.GBIF_API:
        raise SourceError(f"--per-second {args.per_second}: more than one request a second is not asked of GBIF's "
                          "public API here (use GBIF's download service for large sets)")
    out = Path(args.out)
    sess = gbif.GbifSession(out / ".fetch", api_url=args.api_url, per_second=args.per_second)
    keys = dict(item.split("=", 1) for item in args.taxon_id)
    chosen: dict[str, Sequence[Photo]] = {}
    skipped: dict[str, int] = {}
    for name in _taxa(args):
        taxon = gbif.Taxon(keys[name], name, "given") if name in keys else gbif.resolve_taxon(name, sess)
        print(f"{name!r} -> GBIF taxon {taxon.key}: {taxon.name} ({taxon.rank}"
              f"{', ' + taxon.kingdom if taxon.kingdom else ''}"
              f"{'; ' + name + ' is a synonym of it' if taxon.synonym_of else ''})")
        candidates = list(gbif.search(taxon, sess, licences=licences, want=per_taxon, country=args.country,
                                      gadm_gid=gadm, d1=args.d1, d2=args.d2, basis=args.basis_of_record,
                                      size=args.size, skipped=skipped))
        chosen[taxon.name] = spread(candidates, per_taxon)
        LOGGER.info("%s: %d photos chosen of %d found (%d occurrences, %d observers)", taxon.name,
                    len(chosen[taxon.name]), len(candidates), len({p.observation_id for p in chosen[taxon.name]}),
                    len({p.observer for p in chosen[taxon.name]}))

    def get(url: str) -> object:
        return sess.get(url, expire_after=requests_cache.DO_NOT_CACHE, headers={"Accept": "image/*"})

    summary = fetch(chosen, out, get)
    summary["requests"] = len(sess.requests_sent)
    summary["skipped_no_licence"] = skipped.get("no_licence", 0)
    print(json.dumps(summary, indent=1))
    print(f"train on it: taxolens classifier train --data {out} --group-regex '{GROUP_REGEX}' ...")
    return summary
