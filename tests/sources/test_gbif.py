"""taxolens data gbif against a local server on 127.0.0.1 that answers as GBIF's API does.

The answers are built here in the documented format of GBIF's name matching (API v2 ``species/match``: ``usage``
with ``key``, ``name``, ``canonicalName``, ``rank``; ``classification``; ``diagnostics`` with ``matchType``,
``note`` and ``alternatives``; ``synonym`` and ``acceptedUsage``) and occurrence search (API v1
``occurrence/search``: ``offset``, ``limit``, ``endOfRecords``, ``count``, ``results`` with ``key``,
``eventDate``, ``recordedBy``, ``locality``, ``stateProvince``, ``country``, ``datasetName``,
``acceptedScientificName`` and ``media`` items with ``type``, ``format``, ``identifier``, ``license`` and
``rightsHolder``), trimmed to the fields taxolens reads. Photos are small generated JPEGs; one answers 404, one
is not an image, two have the same bytes, some carry no licence of their own.
"""

import csv
import io
import json
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from core.config import SettingError
from sources.commands import gbif_main
from sources.gbif import licence_code
from sources.photos import SourceError
from tests.sources.server import Handler, Recorded, jpeg, kill_half_way_and_resume, serving

ROOT = Path(__file__).resolve().parents[2]
VV = {"key": "4QHKG", "name": "Vespa velutina Lepeletier, 1836", "canonicalName": "Vespa velutina", "rank": "SPECIES"}
ANIMALIA = [{"key": "N", "name": "Animalia", "rank": "KINGDOM"}, {"key": "H6", "name": "Arthropoda", "rank": "PHYLUM"}]
MATCHES = {
    "vespa velutina": {"usage": VV, "classification": ANIMALIA, "synonym": False,
                       "diagnostics": {"matchType": "EXACT", "confidence": 99}},
    "vespa auraria": {"usage": {"key": "6DDV7", "name": "Vespa auraria Smith, 1852", "canonicalName": "Vespa auraria",
                                "rank": "SPECIES"}, "acceptedUsage": VV, "classification": ANIMALIA, "synonym": True,
                      "diagnostics": {"matchType": "EXACT", "confidence": 98}},
    "oenanthe": {"synonym": False, "diagnostics": {
        "matchType": "NONE", "confidence": 100, "note": "Multiple equal matches for Oenanthe",
        "alternatives": [
            {"usage": {"key": "3G4", "name": "Oenanthe L.", "canonicalName": "Oenanthe", "rank": "GENUS"},
             "classification": [{"key": "P", "name": "Plantae", "rank": "KINGDOM"}]},
            {"usage": {"key": "7KX", "name": "Oenanthe Vieillot, 1816", "canonicalName": "Oenanthe", "rank": "GENUS"},
             "classification": [{"key": "N", "name": "Animalia", "rank": "KINGDOM"}]}]}},
    "vespa velutinaa": {"usage": VV, "classification": ANIMALIA, "synonym": False,
                        "diagnostics": {"matchType": "FUZZY", "confidence": 90}},
}
LICENCE_URLS = {"cc-by-nc": "http://creativecommons.org/licenses/by-nc/4.0/",
                "cc-by": "http://creativecommons.org/licenses/by/4.0/",
                "cc-by-nd": "http://creativecommons.org/licenses/by-nd/4.0/",
                "cc0": "http://creativecommons.org/publicdomain/zero/1.0/", None: None}


def _occurrences(port: int) -> list[dict]:
    """14 occurrences of V. velutina by 4 recorders (one with 6), 1-3 photos each, mixed licences, in Galicia."""
    occ, n = [], 0
    recorders = ["Ana Pérez"] * 6 + ["Brais", "Carme", "Dani"] * 2 + ["Eva", "Fran"]
    for i, who in enumerate(recorders):
        media = []
        for k in range(1 + i % 3):
            n += 1
            licence = ["cc-by-nc", "cc-by", "cc-by-nd", "cc0", None][(i + k) % 5]
            media.append({"type": "StillImage", "format": "image/jpeg", "license": LICENCE_URLS[licence],
                          "rightsHolder": who, "identifier": f"http://127.0.0.1:{port}/photos/{n}.jpg"})
        media.append({"type": "Sound", "format": "audio/mpeg", "identifier": f"http://127.0.0.1:{port}/s{i}.mp3",
                      "license": LICENCE_URLS["cc0"]})  # not a photo: never fetched
        occ.append({"key": 4000 + i, "eventDate": f"2024-0{1 + i % 9}-1{i % 9}T10:00:00", "recordedBy": who,
                    "locality": "Lugo", "stateProvince": "Galicia", "country": "Spain",
                    "datasetName": "iNaturalist research-grade observations", "acceptedScientificName": VV["name"],
                    "basisOfRecord": "HUMAN_OBSERVATION", "gadm": {"level1": {"gid": "ESP.12_1"}}, "media": media})
    # the photo answered 404, the one that is not an image, and one with the bytes of another
    for o, name in zip(occ[1:4], ("404", "666", "777"), strict=True):
        o["media"][0].update(license=LICENCE_URLS["cc-by"], identifier=f"http://127.0.0.1:{port}/photos/{name}.jpg")
    occ[-1]["gadm"] = {"level1": {"gid": "ESP.16_1"}}  # outside Galicia: only a run without --gadm-gid sees it
    # a record iNaturalist published: its original-size photo, asked for at the size the command was given
    occ[0]["occurrenceID"] = "https://www.inaturalist.org/observations/98765"
    occ[0]["media"][0]["identifier"] = f"http://127.0.0.1:{port}/photos/5555/original.jpg"
    return occ


class Source(Recorded):
    """The local server, with the occurrences it serves."""

    def __init__(self) -> None:
        super().__init__(SourceHandler)
        self.occurrences = _occurrences(self.port)
        self.busy = 0  # answer this many occurrence searches "429 Too Many Requests, retry after 1 s" first


class SourceHandler(Handler):
    server: Source

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        q = parse_qs(url.query)
        self.logged(url.path, q)
        if url.path == "/v1/occurrence/search" and self.server.busy > 0:
            self.server.busy -= 1
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/v2/species/match":
            name = q.get("scientificName", [""])[0].lower()
            answer = MATCHES.get(name, {"synonym": False, "diagnostics": {"matchType": "NONE", "confidence": 100}})
            return self.send(200, json.dumps(answer).encode())
        if url.path == "/v1/occurrence/search":
            wanted = {"taxonKey": ["4QHKG"], "mediaType": ["StillImage"], "occurrenceStatus": ["PRESENT"],
                      "basisOfRecord": ["HUMAN_OBSERVATION"]}
            if any(q.get(k) != v for k, v in wanted.items()):
                return self.send(400, json.dumps({"asked": q}).encode())
            results = [o for o in self.server.occurrences
                       if "gadmGid" not in q or o["gadm"]["level1"]["gid"] == q["gadmGid"][0]]
            offset, limit = int(q["offset"][0]), int(q["limit"][0])
            limit = min(limit, 5)  # smaller pages than GBIF's 300, so that paging is exercised
            chunk = results[offset:offset + limit]
            return self.send(200, json.dumps({"offset": offset, "limit": limit, "count": len(results),
                                               "endOfRecords": offset + limit >= len(results),
                                               "results": chunk}).encode())
        if url.path.startswith("/photos/"):
            name = url.path.split("/")[2].removesuffix(".jpg")
            if name == "404":
                return self.send(404, b"not found", "text/plain")
            if name == "666":
                return self.send(200, b"\xff\xd8 this is no jpeg", "image/jpeg")
            return self.send(200, jpeg(5555 if name == "777" else int(name)), "image/jpeg")
        return self.send(404, b"{}")


@pytest.fixture
def server():
    with serving(Source()) as srv:
        yield srv


def _args(server, out, *more):
    return ["--api-url", f"http://127.0.0.1:{server.server_address[1]}", "--out", str(out), "--per-second", "5",
            *more]


def test_names_are_matched_exactly_and_an_ambiguous_fuzzy_or_unknown_name_refused(server, tmp_path, capsys):
    with pytest.raises(SourceError, match=r"ambiguous.*key 3G4: Oenanthe \(genus\), Plantae.*key 7KX.*Animalia"
                                          r".*--taxon-id"):
        gbif_main(_args(server, tmp_path / "a", "--taxa", "Oenanthe"))
    with pytest.raises(SourceError, match=r"no GBIF taxon has this scientific name \(GBIF's match: fuzzy; "
                                          r"closest: Vespa velutina \(species\)"):
        gbif_main(_args(server, tmp_path / "b", "--taxa", "Vespa velutinaa"))
    with pytest.raises(SourceError, match="no GBIF taxon has this scientific name"):
        gbif_main(_args(server, tmp_path / "c", "--taxa", "Nonexistentia nulla"))
    with pytest.raises(SourceError, match="--gadm-gid.*ESP.12_1"):
        gbif_main(_args(server, tmp_path / "d", "--taxa", "Vespa velutina", "--place", "Galicia"))
    with pytest.raises(SourceError, match="more than one request a second"):
        gbif_main(["--taxa", "Vespa velutina", "--out", str(tmp_path / "e"), "--per-second", "3"])
    with pytest.raises(SettingError, match="--per-second 0.0: not allowed"):  # 0 would be no limit at all
        gbif_main(_args(server, tmp_path / "g", "--taxa", "Vespa velutina", "--per-second", "0"))
    assert not (tmp_path / "g").exists()
    # a synonym gives its accepted taxon, whose occurrences are searched
    summary = gbif_main(_args(server, tmp_path / "f", "--taxa", "Vespa auraria", "--per-taxon", "2"))
    printed = capsys.readouterr().out
    said = "'Vespa auraria' -> GBIF taxon 4QHKG: Vespa velutina (species, Animalia; Vespa auraria is a synonym"
    assert said in printed
    assert list(summary["photos"]) == ["Vespa velutina"] and 0 < summary["photos"]["Vespa velutina"] <= 2
    # the name was matched strictly, as given
    match = [q for _, path, q in server.log if path == "/v2/species/match"][-1]
    assert match["strict"] == ["true"] and match["scientificName"] == ["Vespa auraria"]


def test_licences_places_spread_attribution_failures_duplicates_and_rate(server, tmp_path):
    out = tmp_path / "set"
    summary = gbif_main(_args(server, out, "--taxa", "Vespa velutina", "--per-taxon", "14", "--gadm-gid",
                              "ESP.12_1", "--licence", "cc0", "cc-by", "cc-by-nc"))
    header, *rows = list(csv.reader(io.StringIO((out / "attribution.csv").read_text())))
    photos = sorted((out / "Vespa velutina").glob("*.jpg"))
    assert len(rows) == len(photos) == summary["photos"]["Vespa velutina"] > 0
    col = {name: header.index(name) for name in header}
    # only the licences asked for, never a photo without its own licence, nor a sound
    assert {r[col["licence"]] for r in rows} <= {"cc0", "cc-by", "cc-by-nc"}
    assert summary["skipped_no_licence"] > 0
    served = [path for _, path, _ in server.log]
    assert not any(p.endswith(".mp3") for p in served)
    # the region asked for: the occurrence outside it never searched, every page of the rest read
    searches = [q for _, path, q in server.log if path == "/v1/occurrence/search"]
    assert all(q["gadmGid"] == ["ESP.12_1"] for q in searches) and len(searches) >= 3
    assert "obs4013" not in {r[col["group"]] for r in rows}
    # every row complete, its file there, its group the occurrence, its place and credit
    for r in rows:
        assert all(r[col[c]] for c in ("file", "group", "source", "observation_id", "observation_url", "photo_id",
                                       "photo_url", "observer", "licence", "attribution", "date", "place",
                                       "taxon_identified", "sha256"))
        assert (out / r[col["file"]]).is_file() and Path(r[col["file"]]).name.startswith(r[col["group"]] + "_")
        if r[col["source"]] != "iNaturalist":
            assert r[col["source"]] == "GBIF"
            assert r[col["observation_url"]] == f"https://www.gbif.org/occurrence/{r[col['observation_id']]}"
        assert r[col["attribution"]].endswith("via iNaturalist research-grade observations (GBIF)")
        assert r[col["place"]] == "Lugo, Galicia, Spain" and r[col["taxon_identified"]] == VV["name"]
    # the record iNaturalist published keeps its observation and photo ids, and came at the size asked for
    inat = [r for r in rows if r[col["source"]] == "iNaturalist"]
    assert [(r[col["group"]], r[col["photo_id"]]) for r in inat] == [("obs98765", "5555")]
    assert inat[0][col["observation_url"]] == "https://www.inaturalist.org/observations/98765"
    assert "/photos/5555/large.jpg" in served and "/photos/5555/original.jpg" not in served
    # spread: more than one recorder, at most one photo of an occurrence before every occurrence gave one
    assert len({r[col["observer"]] for r in rows}) >= 4
    # the 404 and the file that is no image recorded with their reason; the second copy of one photo dropped
    reasons = {f["url"].rsplit("/", 1)[1]: f["reason"] for f in summary["failures"]}
    assert "HTTP 404" in reasons["404.jpg"] and "not a readable image" in reasons["666.jpg"]
    assert summary["duplicates"] == 1
    credits = (out / "dataset.md").read_text()
    assert all(f"(c) {who}, " in credits for who in {r[col["observer"]] for r in rows})
    # the rate kept: at most 5 requests a second, measured at the server
    times = [t for t, _, _ in server.log]
    assert len(times) >= 10
    span = times[-1] - times[0]
    assert (len(times) - 1) / span <= 5 * 1.15, f"{len(times)} requests in {span:.2f} s"
    # run again: nothing fetched twice (the API answers come from the cache, the photos from the log)
    before = len(server.log)
    again = gbif_main(_args(server, out, "--taxa", "Vespa velutina", "--per-taxon", "14", "--gadm-gid",
                            "ESP.12_1", "--licence", "cc0", "cc-by", "cc-by-nc"))
    assert again["photos"] == summary["photos"] and len(server.log) == before


@pytest.mark.parametrize(("text", "code"), [
    ("http://creativecommons.org/licenses/by-nc/4.0/", "cc-by-nc"),
    ("https://creativecommons.org/licenses/by-nc-sa/4.0/legalcode", "cc-by-nc-sa"),
    ("http://creativecommons.org/licenses/by/4.0/", "cc-by"),
    ("http://creativecommons.org/publicdomain/zero/1.0/", "cc0"),
    ("CC_BY_NC_4_0", "cc-by-nc"), ("CC BY 4.0", "cc-by"), ("CC0 1.0", "cc0"),
    ("All rights reserved", None), ("", None), (None, None), ("http://example.org/licence", None),
])
def test_gbif_licences_are_read_as_taxolens_names_them(text, code):
    assert licence_code(text) == code


def test_a_killed_download_resumes_without_fetching_anything_twice(server, tmp_path):
    out = tmp_path / "set"
    cmd = [sys.executable, "-m", "tools.cli", "data", "gbif",
           *_args(server, out, "--taxa", "Vespa velutina", "--per-taxon", "12")]
    cmd[cmd.index("5")] = "3"  # slower, so the kill lands half-way
    kill_half_way_and_resume(server, cmd, out, 12)


@pytest.mark.slow
def test_five_photos_from_the_real_gbif(tmp_path):
    import socket

    try:
        socket.create_connection(("api.gbif.org", 443), timeout=5).close()
    except OSError:
        pytest.skip("no network to api.gbif.org")
    summary = gbif_main(["--taxa", "Vespa velutina", "--per-taxon", "5", "--size", "medium", "--country", "ES",
                         "--out", str(tmp_path / "set")])
    assert summary["photos"]["Vespa velutina"] == 5 and summary["observations"] == 5
    assert len((tmp_path / "set" / "attribution.csv").read_text().splitlines()) == 6


def test_a_busy_server_is_waited_out_as_its_retry_after_says(server, tmp_path):
    server.busy = 1
    summary = gbif_main(_args(server, tmp_path / "set", "--taxa", "Vespa velutina", "--per-taxon", "2"))
    assert summary["photos"]["Vespa velutina"] > 0
    searches = [t for t, path, _ in server.log if path == "/v1/occurrence/search"]
    assert len(searches) >= 2 and searches[1] - searches[0] >= 0.95  # the refused search asked again after 1 s
