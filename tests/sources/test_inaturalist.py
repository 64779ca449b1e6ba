"""taxolens data inaturalist against a local server on 127.0.0.1 that answers as iNaturalist's API v1 does.

The answers are built here in the API's documented format (``total_results``, ``page``, ``per_page``,
``results``; taxa with ``id``, ``name``, ``rank``, ``iconic_taxon_name``, ``preferred_common_name``; observations
with ``id``, ``uri``, ``quality_grade``, ``observed_on``, ``place_guess``, ``user``, ``taxon`` and ``photos``
whose ``url`` is the square size and ``license_code`` the photo's own licence), trimmed to the fields taxolens
reads. Photos are small generated JPEGs; one answers 404, one is not an image, two have the same bytes.
"""

import csv
import io
import json
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from sources.commands import inaturalist_main
from sources.fetch import MediaBudget
from sources.inaturalist import Photo, SourceError, spread
from tests.sources.server import Handler, Recorded, jpeg, kill_half_way_and_resume, serving

ROOT = Path(__file__).resolve().parents[2]
TAXA = {
    "vespa velutina": [
        {"id": 119019, "name": "Vespa velutina", "rank": "species", "iconic_taxon_name": "Insecta",
         "preferred_common_name": "Yellow-legged Hornet", "matched_term": "Vespa velutina", "is_active": True},
        {"id": 1194410, "name": "Vespa velutina nigrithorax", "rank": "subspecies", "iconic_taxon_name": "Insecta",
         "matched_term": "Vespa velutina nigrithorax", "is_active": True}],
    "vespa": [  # a homonym: two taxa of one name, told apart by their iconic taxon
        {"id": 54327, "name": "Vespa", "rank": "genus", "iconic_taxon_name": "Insecta", "is_active": True},
        {"id": 999001, "name": "Vespa", "rank": "genus", "iconic_taxon_name": "Mollusca", "is_active": True}],
    "vespa crabo": [
        {"id": 54328, "name": "Vespa crabro", "rank": "species", "iconic_taxon_name": "Insecta", "is_active": True}],
}
PLACES = [{"id": 10422, "name": "Galicia", "display_name": "Galicia, ES"},
          {"id": 10423, "name": "Galicia Highlands", "display_name": "Galicia Highlands, ES"}]


def _observations(port: int) -> list[dict]:
    """12 observations of V. velutina by 4 observers (one of them with 6), 1-3 photos each, mixed licences."""
    obs, photo_id = [], 1000
    observers = ["ana"] * 6 + ["brais", "carme", "dani"] * 2
    for i, login in enumerate(observers):
        photos = []
        for k in range(1 + i % 3):
            photo_id += 1
            licence = ["cc-by-nc", "cc-by", "cc-by-nd", "cc0", None][(i + k) % 5]
            photos.append({"id": photo_id, "license_code": licence,
                           "attribution": f"(c) {login}, some rights reserved",
                           "url": f"http://127.0.0.1:{port}/photos/{photo_id}/square.jpg?16000"})
        obs.append({"id": 500 + i, "uri": f"https://www.inaturalist.org/observations/{500 + i}",
                    "quality_grade": "research", "observed_on": f"2024-0{1 + i % 9}-1{i % 9}",
                    "place_guess": "Lugo, Galicia, ES", "user": {"id": 7 + i % 4, "login": login},
                    "taxon": {"id": 119019, "name": "Vespa velutina", "rank": "species"}, "photos": photos})
    # the photo answered 404, the one that is not an image, and one with the bytes of another
    obs[1]["photos"][0]["id"], obs[2]["photos"][0]["id"], obs[3]["photos"][0]["id"] = 404, 666, 1001
    for o in obs[1:4]:
        o["photos"][0]["license_code"] = "cc-by"
        o["photos"][0]["url"] = f"http://127.0.0.1:{port}/photos/{o['photos'][0]['id']}/square.jpg"
    obs[3]["photos"][0]["id"] = 777  # same bytes as photo 1001 (served below)
    obs[3]["photos"][0]["url"] = f"http://127.0.0.1:{port}/photos/777/square.jpg"
    return obs


class Source(Recorded):
    """The local server, with the observations it serves."""

    def __init__(self) -> None:
        super().__init__(SourceHandler)
        self.observations = _observations(self.port)


class SourceHandler(Handler):
    server: Source

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.logged(url.path, q)
        if url.path == "/v1/taxa":
            results = TAXA.get(q.get("q", "").lower(), [])
            return self.send(200, json.dumps({"total_results": len(results), "page": 1, "per_page": 30,
                                               "results": results}).encode())
        if url.path == "/v1/places/autocomplete":
            results = [p for p in PLACES if p["name"].lower().startswith(q.get("q", "").lower())]
            return self.send(200, json.dumps({"total_results": len(results), "page": 1, "per_page": 20,
                                               "results": results}).encode())
        if url.path == "/v1/observations":
            allowed = set(q.get("photo_license", "").lower().split(","))
            results = [o for o in self.server.observations if int(q.get("taxon_id", 0)) == 119019
                       and any(p["license_code"] in allowed for p in o["photos"])]
            page, per_page = int(q.get("page", 1)), int(q.get("per_page", 30))
            chunk = results[(page - 1) * per_page:page * per_page]
            return self.send(200, json.dumps({"total_results": len(results), "page": page, "per_page": per_page,
                                               "results": chunk}).encode())
        if url.path.startswith("/photos/"):
            photo_id = int(url.path.split("/")[2])
            if photo_id == 404:
                return self.send(404, b"not found", "text/plain")
            if photo_id == 666:
                return self.send(200, b"\xff\xd8 this is no jpeg", "image/jpeg")
            return self.send(200, jpeg(1001 if photo_id == 777 else photo_id), "image/jpeg")
        return self.send(404, b"{}")


@pytest.fixture
def server():
    with serving(Source()) as srv:
        yield srv


def _args(server, out, *more):
    return ["--api-url", f"http://127.0.0.1:{server.server_address[1]}/v1", "--out", str(out), "--per-second", "5",
            *more]


def test_a_taxon_is_resolved_and_an_ambiguous_or_unknown_name_refused(server, tmp_path, capsys):
    with pytest.raises(SourceError, match="ambiguous, 2 iNaturalist taxa.*Insecta.*Mollusca.*--taxon-id"):
        inaturalist_main(_args(server, tmp_path / "a", "--taxa", "Vespa"))
    with pytest.raises(SourceError, match="no iNaturalist taxon has this scientific name.*Vespa crabro"):
        inaturalist_main(_args(server, tmp_path / "b", "--taxa", "Vespa crabo"))
    with pytest.raises(SourceError, match="place 'Galicia': ambiguous|no iNaturalist place"):
        inaturalist_main(_args(server, tmp_path / "c", "--taxa", "Vespa velutina", "--place", "Gal"))
    summary = inaturalist_main(_args(server, tmp_path / "d", "--taxa", "Vespa velutina", "--place", "Galicia",
                                     "--per-taxon", "3"))
    printed = capsys.readouterr().out
    assert "'Vespa velutina' -> iNaturalist taxon 119019: Vespa velutina (species, Yellow-legged Hornet)" in printed
    assert "place 'Galicia' -> iNaturalist place 10422 (Galicia, ES)" in printed
    assert sum(summary["photos"].values()) <= 3


def test_licences_spread_attribution_failures_duplicates_and_rate(server, tmp_path):
    out = tmp_path / "set"
    summary = inaturalist_main(_args(server, out, "--taxa", "Vespa velutina", "--per-taxon", "14",
                                     "--licence", "cc0", "cc-by", "cc-by-nc"))
    header, *rows = list(csv.reader(io.StringIO((out / "attribution.csv").read_text())))
    photos = sorted((out / "Vespa velutina").glob("*.jpg"))
    assert len(rows) == len(photos) == summary["photos"]["Vespa velutina"] > 0
    col = {name: header.index(name) for name in header}
    # only the licences asked for (cc-by-nd and all-rights-reserved photos were on the same observations)
    assert {r[col["licence"]] for r in rows} <= {"cc0", "cc-by", "cc-by-nc"}
    # every row complete, its file there, its group the observation
    for r in rows:
        assert all(r[col[c]] for c in ("file", "group", "source", "observation_id", "observation_url", "photo_id",
                                       "photo_url", "observer", "licence", "date", "taxon_identified", "sha256"))
        assert (out / r[col["file"]]).is_file() and Path(r[col["file"]]).name.startswith(r[col["group"]] + "_")
    # the 404 and the file that is no image recorded with their reason; the second copy of one photo dropped
    reasons = {f["photo_id"]: f["reason"] for f in summary["failures"]}
    assert "HTTP 404" in reasons[404] and "not a readable image" in reasons[666]
    assert summary["duplicates"] == 1
    credits = (out / "dataset.md").read_text()
    assert all(f"(c) {who}, " in credits for who in {r[col["observer"]] for r in rows})
    # the rate kept: at most 5 requests a second, measured at the server
    times = [t for t, _, _ in server.log]
    assert len(times) >= 10
    span = times[-1] - times[0]
    assert (len(times) - 1) / span <= 5 * 1.15, f"{len(times)} requests in {span:.2f} s"


def test_photos_are_spread_over_observers_and_observations():
    def photo(pid, obs, who):
        return Photo("iNaturalist", pid, f"u{pid}", obs, f"o{obs}", who, "cc-by", "", None, None, "V")

    many = [photo(10 * o + k, o, "ana") for o in range(6) for k in range(3)]  # one observer, 6 observations x 3
    few = [photo(900, 90, "brais"), photo(901, 90, "brais"), photo(910, 91, "carme")]
    chosen = spread(many + few, 5)
    assert {p.observer for p in chosen} == {"ana", "brais", "carme"}
    assert len({p.observation_id for p in chosen}) == 5  # one photo per observation before any second photo
    assert len(spread(many + few, 100)) == len(many + few)


def test_media_budget_waits_for_the_hour_to_pass():
    budget = MediaBudget(per_hour=100, per_day=1000)
    budget.add(60, now=0.0)
    assert budget.wait(now=10.0) == 0
    budget.add(50, now=20.0)  # 110 bytes in the hour: wait until the first download leaves the window
    assert budget.wait(now=30.0) == pytest.approx(3570.0)
    assert budget.wait(now=3601.0) == 0


def test_a_killed_download_resumes_without_fetching_anything_twice(server, tmp_path):
    out = tmp_path / "set"
    cmd = [sys.executable, "-m", "tools.cli", "data", "inaturalist",
           *_args(server, out, "--taxa", "Vespa velutina", "--per-taxon", "14")]
    cmd[cmd.index("5")] = "3"  # slower, so the kill lands half-way
    kill_half_way_and_resume(server, cmd, out, 14)


@pytest.mark.slow
def test_five_photos_from_the_real_inaturalist(tmp_path):
    import socket

    try:
        socket.create_connection(("api.inaturalist.org", 443), timeout=5).close()
    except OSError:
        pytest.skip("no network to api.inaturalist.org")
    summary = inaturalist_main(["--taxa", "Vespa velutina", "--per-taxon", "5", "--size", "medium",
                                "--out", str(tmp_path / "set")])
    assert summary["photos"]["Vespa velutina"] == 5 and summary["observations"] == 5
    assert len((tmp_path / "set" / "attribution.csv").read_text().splitlines()) == 6
