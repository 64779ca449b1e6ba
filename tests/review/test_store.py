"""The store of predictions, the review queue, and what comes out of the store."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import insert

from review import store as st
from review.exports import answer, export_camtrapdp, export_coco, export_dwc, validate_camtrapdp
from review.queue import flagged_taxa, review_queue
from review.report import agreement_report, report_markdown
from tests.conftest import make_scene
from tools.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


def _exif_photo(path: Path, seed: int, gps: bool = True) -> Path:
    """A scene with EXIF capture time and (optionally) GPS, as a phone writes them."""
    make_scene(path, [(8, 8, 30, 24), (55, 40, 30, 30)], seed=seed)
    img = Image.open(path)
    exif = Image.Exif()
    exif[0x0132] = "2025:06:01 10:20:30"
    exif.get_ifd(0x8769)[0x9003] = "2025:06:01 10:20:30"
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (42.0, 52.0, 48.0), 3: "W", 4: (8.0, 32.0, 42.0)})
    img.save(path, exif=exif)
    return path


def _run_into_store(tiny_models, tmp_path, n=3, name="out"):
    det, clf = tiny_models
    folder = tmp_path / "photos"
    if not folder.exists():
        for i in range(n):
            _exif_photo(folder / f"p{i}.jpg", seed=i, gps=i != 2)
    url = tmp_path / "store.sqlite"
    assert cli(["run", str(folder), "--detector", str(det), "--classifier", str(clf), "--out", str(tmp_path / name),
                "--workers", "0", "--store", "--store-url", str(url)]) == 0
    return url, json.loads((tmp_path / name / "results.json").read_text())


def test_round_trip_and_no_duplicates_on_a_rerun(tiny_models, tmp_path):
    url, result = _run_into_store(tiny_models, tmp_path)
    engine = st.open_store(url)
    assert st.schema_version(engine) == st.SCHEMA_VERSION
    n_dets = sum(len(r["detections"]) for r in result["images"])
    counts = st.stats(engine)
    assert (counts["photos"], counts["predictions"], counts["detections"]) == (3, 3, n_dets) and n_dets
    rows = st.detection_rows(engine)
    first = next(r for r in result["images"] if r["file"] == "p0.jpg")["detections"][0]
    row = next(r for r in rows if r["file"] == "p0.jpg" and r["idx"] == 1)
    assert [row["x"], row["y"], row["w"], row["h"]] == first["box"]
    assert (row["taxon"], row["reason"], row["top"]) == (first["taxon"], first["reason"], first["top"])
    assert row["taken_at"] == "2025-06-01T10:20:30"
    assert row["latitude"] == pytest.approx(42.88) and row["longitude"] == pytest.approx(-8.545)
    assert row["source"] == "run" and row["model_version"] == result["images"][0]["model_version"]
    assert next(r for r in rows if r["file"] == "p2.jpg")["latitude"] is None
    # the same photos and models again, into another output folder: nothing new
    _run_into_store(tiny_models, tmp_path, name="again")
    assert st.stats(engine) == counts
    again = st.add_record(engine, result["images"][0], tmp_path / "photos" / "p0.jpg", source="app")
    assert not again.added and st.stats(engine) == counts


def test_a_write_killed_mid_way_leaves_no_half_written_photo(tiny_models, tmp_path, monkeypatch):
    _, result = _run_into_store(tiny_models, tmp_path, n=1)
    engine = st.open_store(tmp_path / "fresh.sqlite")
    record = result["images"][0]
    real_insert = st.insert

    def dies_on_the_boxes(table):
        if table is st.detections:
            raise KeyboardInterrupt  # as a kill between the photo's rows and its boxes
        return real_insert(table)

    monkeypatch.setattr(st, "insert", dies_on_the_boxes)
    with pytest.raises(KeyboardInterrupt):
        st.add_record(engine, record, tmp_path / "photos" / "p0.jpg", source="run")
    monkeypatch.setattr(st, "insert", real_insert)
    assert st.stats(engine)["photos"] == 0 and st.stats(engine)["predictions"] == 0
    assert st.add_record(engine, record, tmp_path / "photos" / "p0.jpg", source="run").added
    assert st.stats(engine)["detections"] == len(record["detections"])


def test_a_killed_run_stores_its_finished_photos_when_it_resumes(tiny_models, tmp_path):
    url, result = _run_into_store(tiny_models, tmp_path)
    os.unlink(url)  # as if the run died after its results but before its store writes
    for suffix in ("-wal", "-shm"):
        Path(str(url) + suffix).unlink(missing_ok=True)
    _run_into_store(tiny_models, tmp_path)  # the same command: every photo is already done
    assert st.stats(st.open_store(url))["photos"] == 3


def test_the_queue_order_on_a_literal_table():
    rows = [
        {"id": 1, "reason": "named", "taxon": "Apis mellifera", "probability": 0.99, "dropped": False},
        {"id": 2, "reason": "uncertain", "taxon": "uncertain", "probability": 0.60, "dropped": False},
        {"id": 3, "reason": "named", "taxon": "Vespa velutina", "probability": 0.99, "dropped": False},
        {"id": 4, "reason": "unknown", "taxon": "unknown", "probability": 0.40, "dropped": False},
        {"id": 5, "reason": "rolled_up", "taxon": "Vespa", "probability": 0.95, "dropped": False},
        {"id": 6, "reason": "no_organism", "taxon": "no organism", "probability": 0.97, "dropped": True},
        {"id": 7, "reason": "named", "taxon": "Apis mellifera", "probability": 0.96, "dropped": False},
        {"id": 8, "reason": "uncertain", "taxon": "uncertain", "probability": 0.50, "dropped": False,
         "review_action": "accept"},
    ]
    flagged = flagged_taxa()
    assert {"Vespa velutina", "Acacia dealbata"} <= flagged and "Apis mellifera" not in flagged
    assert [r["id"] for r in review_queue(rows, flagged=flagged)] == [4, 2, 5, 7, 3, 1, 6]


def test_a_later_review_supersedes_and_never_erases(tiny_models, tmp_path):
    url, _ = _run_into_store(tiny_models, tmp_path, n=1)
    engine = st.open_store(url)
    det_id = st.detection_rows(engine)[0]["id"]
    model_taxon = st.detection_rows(engine)[0]["taxon"]
    st.add_review(engine, det_id, reviewer="ana", action="accept")
    time.sleep(0.01)
    st.add_review(engine, det_id, reviewer="brais", action="correct", taxon="Vespa crabro")
    history = st.review_history(engine, det_id)
    assert [(h["reviewer"], h["action"], h["taxon"]) for h in history] == [
        ("ana", "accept", model_taxon), ("brais", "correct", "Vespa crabro")]
    row = next(r for r in st.detection_rows(engine) if r["id"] == det_id)
    assert answer(row)["taxon"] == "Vespa crabro" and answer(row)["by"] == "expert"
    st.add_review(engine, det_id, reviewer="ana", action="redraw", box=[1, 2, 30, 40])
    row = next(r for r in st.detection_rows(engine) if r["id"] == det_id)
    assert answer(row)["box"] == [1, 2, 30, 40] and answer(row)["taxon"] == model_taxon
    assert len(st.review_history(engine, det_id)) == 3
    for bad in ({"action": "correct"}, {"action": "redraw"}, {"action": "maybe"}):
        with pytest.raises(ValueError):
            st.add_review(engine, det_id, reviewer="ana", **bad)
    with pytest.raises(ValueError, match="reviewer"):
        st.add_review(engine, det_id, reviewer=" ", action="accept")


WRITER = """
import sys
from review import store as st
engine = st.open_store(sys.argv[1])
for i in range(40):
    st.add_review(engine, int(sys.argv[2]), reviewer=sys.argv[3], action="correct", taxon=f"taxon {i}")
"""


def test_two_reviewers_writing_at_once_lose_nothing(tiny_models, tmp_path):
    url, _ = _run_into_store(tiny_models, tmp_path, n=1)
    engine = st.open_store(url)
    ids = [r["id"] for r in st.detection_rows(engine)][:2]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(url), str(ids[i % len(ids)]), name], env=env,
                              stderr=subprocess.PIPE, text=True) for i, name in enumerate(("ana", "brais"))]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    counts = st.stats(engine)
    assert counts["reviews"] == 80 and counts["reviewers"] == 2


def test_an_older_store_is_upgraded_and_a_newer_one_refused(tmp_path):
    old = st.open_store(tmp_path / "s.sqlite", migrations=st.MIGRATIONS[:1])
    assert st.schema_version(old) == 1
    with old.begin() as conn:
        conn.execute(insert(st.photos).values(sha256="ab" * 32, path="/x.jpg", added_at=st.now()))
    new = st.open_store(tmp_path / "s.sqlite")
    assert st.schema_version(new) == st.SCHEMA_VERSION and st.stats(new)["photos"] == 1
    with new.begin() as conn:
        conn.execute(insert(st.migrations_table).values(version=99, name="from the future", applied_at=st.now()))
    with pytest.raises(st.StoreError, match="newer taxolens"):
        st.open_store(tmp_path / "s.sqlite")


def _reviewed_store(tiny_models, tmp_path):
    url, _ = _run_into_store(tiny_models, tmp_path)
    engine = st.open_store(url)
    rows = st.detection_rows(engine)
    st.add_review(engine, rows[0]["id"], reviewer="ana", action="accept", taxon=None)
    st.add_review(engine, rows[1]["id"], reviewer="ana", action="correct", taxon="Vespa velutina")
    st.add_review(engine, rows[2]["id"], reviewer="brais", action="no_organism")
    return url, engine, rows


def test_darwin_core_archive_reads_back(tiny_models, tmp_path):
    from dwca.read import DwCAReader

    _, engine, rows = _reviewed_store(tiny_models, tmp_path)
    summary = export_dwc(engine, tmp_path / "dwc.zip")
    with DwCAReader(str(tmp_path / "dwc.zip")) as archive:
        assert archive.descriptor.core.type == "http://rs.tdwg.org/dwc/terms/Occurrence"
        occ = list(archive)
        assert len(occ) == summary["occurrences"] >= 2
        terms = {t.split("/")[-1]: v for t, v in occ[0].data.items()}
        assert {"occurrenceID", "basisOfRecord", "scientificName", "taxonRank", "kingdom", "eventDate",
                "decimalLatitude", "decimalLongitude", "geodeticDatum", "identifiedBy", "dateIdentified",
                "identificationVerificationStatus", "associatedMedia"} <= set(terms)
        human = [{t.split("/")[-1]: v for t, v in o.data.items()} for o in occ
                 if o.data["http://rs.tdwg.org/dwc/terms/basisOfRecord"] == "HumanObservation"]
        assert {h["scientificName"] for h in human} == {rows[0]["taxon"], "Vespa velutina"}
        corrected = next(h for h in human if h["scientificName"] == "Vespa velutina")
        assert (corrected["kingdom"], corrected["taxonRank"], corrected["identifiedBy"]) == (
            "Animalia", "species", "ana")
        assert corrected["eventDate"] == "2025-06-01T10:20:30" and corrected["geodeticDatum"] == "EPSG:4326"
    assert len({o.id for o in occ}) == len(occ)  # occurrenceIDs are unique


def test_camtrap_dp_validates_with_frictionless(tiny_models, tmp_path):
    from review.exports import CAMTRAP_STANDARD

    if not CAMTRAP_STANDARD.is_dir():
        pytest.skip(f"the Camtrap DP standard's files are not available: {CAMTRAP_STANDARD} is missing")
    _, engine, _ = _reviewed_store(tiny_models, tmp_path)
    summary = export_camtrapdp(engine, tmp_path / "dp")
    errors = validate_camtrapdp(tmp_path / "dp")
    assert errors == [], "\n".join(errors)
    assert summary["deployments"] == 1 and summary["media"] == 3
    obs = (tmp_path / "dp" / "observations.csv").read_text().splitlines()
    assert any(",human," in line for line in obs) and any(",machine," in line for line in obs)
    # a broken table is caught
    media = tmp_path / "dp" / "media.csv"
    media.write_text(media.read_text().replace("image/jpeg", "picture"))
    errors = validate_camtrapdp(tmp_path / "dp")
    assert errors and any("fileMediatype" in e or "pattern" in e for e in errors)
    # a folder whose photos carry no GPS needs the camera's position
    record = json.loads((tmp_path / "out" / "results.json").read_text())["images"][0]
    record = {**record, "sha256": None}  # the record of another photo, not of these bytes
    st.add_record(engine, record, _exif_photo(tmp_path / "elsewhere" / "q.jpg", seed=9, gps=False), source="app")
    with pytest.raises(ValueError, match="elsewhere: its photos have no GPS position"):
        export_camtrapdp(engine, tmp_path / "dp2")
    assert export_camtrapdp(engine, tmp_path / "dp2", latitude=42.1, longitude=-8.2)["deployments"] == 2
    assert validate_camtrapdp(tmp_path / "dp2") == []


def test_the_reviewed_coco_validates_and_trains_one_step(tiny_models, tmp_path):
    _, engine, rows = _reviewed_store(tiny_models, tmp_path)
    st.add_review(engine, rows[3]["id"], reviewer="ana", action="correct", taxon=rows[0]["taxon"])
    st.add_review(engine, rows[4]["id"], reviewer="ana", action="redraw", taxon="Vespa velutina", box=[2, 2, 20, 20])
    st.add_review(engine, rows[5]["id"], reviewer="ana", action="no_organism")
    summary = export_coco(engine, tmp_path / "export")
    assert summary["boxes"] == 4 and summary["crops"]["no organism"] == 2
    coco = tmp_path / "export" / "reviewed.json"
    assert cli(["annotations", "validate", str(coco)]) == 0
    assert cli(["detector", "train", "--train", str(coco), "--out", str(tmp_path / "det"), "--arch",
                "fasterrcnn_mobilenet_v3_large_fpn", "--weights", "none", "--epochs", "1", "--batch-size", "2",
                "--max-steps-per-epoch", "1", "--workers", "0", "--min-size", "96", "--max-size", "128"]) == 0
    crops = tmp_path / "export" / "crops"
    assert sorted(p.name for p in crops.iterdir() if p.is_dir()) == sorted(
        {"no organism", "Vespa velutina", rows[0]["taxon"]})
    assert cli(["classifier", "train", "--data", str(crops), "--out", str(tmp_path / "clf"), "--arch", "resnet18",
                "--weights", "none", "--input-size", "32", "--epochs", "1", "--max-steps-per-epoch", "1",
                "--workers", "0", "--no-eval", "--val-fraction", "0.5", "--unknown-method", "none",
                "--no-calibrate"]) == 0


def test_report_of_the_model_against_the_experts(tiny_models, tmp_path):
    url, engine, rows = _reviewed_store(tiny_models, tmp_path)
    report = agreement_report(engine)
    model = [r["taxon"] if r["reason"] in ("named", "rolled_up") else r["reason"] for r in rows[:3]]
    expert = [rows[0]["taxon"], "Vespa velutina", "no organism"]
    assert report["reviewed"] == 3
    assert report["agreement"] == pytest.approx(sum(m == e for m, e in zip(model, expert)) / 3)
    assert sum(map(sum, report["confusion_matrix"])) == 3 and report["reviewers"] == ["ana", "brais"]
    assert "| expert \\ model |" in report_markdown(report)
    assert cli(["review", "report", "--store-url", str(url), "--out", str(tmp_path / "rep")]) == 0
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["reviewed"] == 3
    assert cli(["review", "stats", "--store-url", str(url)]) == 0


def _postgres(tmp_path):
    """A throw-away PostgreSQL server (Debian's postgresql package), as the postgres user when run as root."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins or not (bins[-1] / "initdb").exists():
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    data = tmp_path / "pg"
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(tmp_path, "postgres")
    sock = tmp_path
    try:
        subprocess.run([*as_user, str(bins[-1] / "initdb"), "-D", str(data), "-A", "trust", "-U", "taxolens"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_user, str(bins[-1] / "pg_ctl"), "-D", str(data), "-o",
                        f"-k {sock} -c listen_addresses='' -p 54329", "-w", "start", "-l", str(tmp_path / "log")],
                       check=True, capture_output=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        pytest.skip(f"PostgreSQL could not start here: {exc}")
    return bins[-1], data, as_user, f"postgresql+psycopg2://taxolens@/postgres?host={sock}&port=54329"


def test_the_same_code_runs_on_postgresql(tiny_models, tmp_path):
    pytest.importorskip("psycopg2")
    pg_tmp = Path(f"/tmp/taxolens-pg-{os.getpid()}")
    pg_tmp.mkdir(exist_ok=True)
    bin_dir, data, as_user, url = _postgres(pg_tmp)
    try:
        _, result = _run_into_store(tiny_models, tmp_path, n=2)
        engine = st.open_store(url)
        photo = tmp_path / "photos" / "p0.jpg"
        for r in result["images"]:
            st.add_record(engine, r, tmp_path / "photos" / r["file"], source="run")
        assert not st.add_record(engine, result["images"][0], photo, source="run").added
        row = st.detection_rows(engine)[0]
        st.add_review(engine, row["id"], reviewer="ana", action="correct", taxon="Vespa crabro")
        counts = st.stats(engine)
        assert counts["photos"] == 2 and counts["reviews"] == 1 and st.schema_version(engine) == st.SCHEMA_VERSION
        assert agreement_report(engine)["reviewed"] == 1
        engine.dispose()
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(pg_tmp, ignore_errors=True)
