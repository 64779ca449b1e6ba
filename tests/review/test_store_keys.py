"""The store keeps every run's answers (keyed by settings too), upgrades a real v2 store, and stores upright sizes."""

import csv
import json
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, insert, text

from review import store as st
from review.exports import export_camtrapdp, export_coco
from tests.conftest import make_scene
from tools.cli import main as cli


def _run(tiny_models, folder, out, store, *extra):
    det, clf = tiny_models
    assert cli(["run", str(folder), "--detector", str(det), "--classifier", str(clf), "--out", str(out),
                "--workers", "0", "--store", "--store-url", str(store), *extra]) == 0
    return json.loads((Path(out) / "results.json").read_text())


def test_a_rerun_with_other_settings_is_kept_beside_the_first_and_the_queue_shows_the_newest(tiny_models, tmp_path):
    folder = tmp_path / "photos"
    for i in range(2):
        make_scene(folder / f"p{i}.jpg", [(8, 8, 30, 24)], seed=i)
    store = tmp_path / "s.sqlite"
    first = _run(tiny_models, folder, tmp_path / "a", store)
    second = _run(tiny_models, folder, tmp_path / "b", store, "--threshold", "0.5", "--no-rollup")
    assert first["info"]["settings_id"] != second["info"]["settings_id"]
    engine = st.open_store(store)
    counts = st.stats(engine)
    assert (counts["photos"], counts["predictions"]) == (2, 4)  # before: the second run was dropped silently
    stored = {r["settings_id"] for r in st.detection_rows(engine)}
    assert stored == {first["info"]["settings_id"], second["info"]["settings_id"]}
    newest = st.detection_rows(engine, newest_only=True)
    assert newest and {r["settings_id"] for r in newest} == {second["info"]["settings_id"]}
    # the same settings again add nothing
    _run(tiny_models, folder, tmp_path / "c", store, "--threshold", "0.5", "--no-rollup")
    assert st.stats(engine)["predictions"] == 4


# the v2 schema as taxolens wrote it before predictions were keyed by settings (SQLAlchemy's DDL of that code)
V2_PREDICTIONS = """
CREATE TABLE predictions (
    id INTEGER NOT NULL, photo_id INTEGER NOT NULL, model_version VARCHAR(300) NOT NULL, settings_id VARCHAR(32),
    source VARCHAR(8) NOT NULL, file TEXT NOT NULL, status VARCHAR(8) NOT NULL, failure TEXT,
    created_at VARCHAR(32) NOT NULL, PRIMARY KEY (id),
    CONSTRAINT one_prediction_per_photo_and_models UNIQUE (photo_id, model_version),
    FOREIGN KEY(photo_id) REFERENCES photos (id))
"""


def test_a_real_v2_store_is_upgraded_keeping_its_rows_and_its_boxes(tmp_path):
    path = tmp_path / "old.sqlite"
    st.open_store(path, migrations=st.MIGRATIONS[:2]).dispose()
    raw = create_engine(f"sqlite:///{path}")
    with raw.begin() as conn:
        conn.execute(text("DROP TABLE detections"))
        conn.execute(text("DROP TABLE predictions"))
        conn.execute(text(V2_PREDICTIONS))
        st.detections.create(conn)
        conn.execute(insert(st.photos).values(id=1, sha256="ab" * 32, path="/x.jpg", added_at=st.now()))
        conn.execute(text("INSERT INTO predictions VALUES (1, 1, 'd+c', NULL, 'run', 'x.jpg', 'ok', NULL, 'now')"))
        conn.execute(insert(st.detections).values(prediction_id=1, idx=1, x=1, y=2, w=3, h=4, taxon="Vespa",
                                                  reason="rolled_up", dropped=False))
    raw.dispose()
    engine = st.open_store(path)
    assert st.schema_version(engine) == st.SCHEMA_VERSION
    rows = st.detection_rows(engine)
    assert [(r["taxon"], r["settings_id"], r["file"]) for r in rows] == [("Vespa", "", "x.jpg")]
    record = {"file": "x.jpg", "status": "ok", "model_version": "d+c", "width": 10, "height": 10,
              "detections": [], "dropped": []}
    facts = {"sha256": "ab" * 32, "width": 10, "height": 10, "taken_at": None, "latitude": None, "longitude": None}
    assert st.add_record(engine, record, "/x.jpg", source="run", settings_id="other", facts=facts).added
    assert not st.add_record(engine, record, "/x.jpg", source="run", settings_id="other", facts=facts).added
    with engine.connect() as conn:  # the detections' foreign key still points at the rebuilt table
        fks = conn.execute(text("PRAGMA foreign_key_list(detections)")).fetchall()
        assert {fk[2] for fk in fks} == {"predictions"}
        assert conn.execute(text("PRAGMA foreign_key_check")).fetchall() == []
    assert st.stats(engine)["predictions"] == 2


def _rotated(path: Path, orientation: int) -> Path:
    """A 120x80 photo stored sideways: EXIF orientation 6 or 8 turns it upright as 80x120."""
    make_scene(path, [(10, 20, 40, 30)], size=(120, 80), seed=orientation)
    img = Image.open(path)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif)
    return path


@pytest.mark.parametrize("orientation", [6, 8])
def test_rotated_photos_are_stored_and_exported_at_their_upright_size(tiny_models, tmp_path, orientation):
    folder = tmp_path / "photos"
    _rotated(folder / "r.jpg", orientation)
    store = tmp_path / "s.sqlite"
    result = _run(tiny_models, folder, tmp_path / "out", store, "--score-threshold", "0.0")
    record = result["images"][0]
    assert (record["width"], record["height"]) == (80, 120)
    engine = st.open_store(store)
    rows = st.detection_rows(engine)
    assert rows and {(r["photo_width"], r["photo_height"]) for r in rows} == {(80, 120)}
    for row in rows:
        st.add_review(engine, row["id"], reviewer="ana", action="accept")
    coco = json.loads((tmp_path / "coco" / "reviewed.json").read_text()) if export_coco(
        engine, tmp_path / "coco") else None
    assert coco is not None and [(i["width"], i["height"]) for i in coco["images"]] == [(80, 120)]
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert x + w <= 80 + 0.5 and y + h <= 120 + 0.5
    export_camtrapdp(engine, tmp_path / "dp", latitude=42.1, longitude=-8.2)
    with open(tmp_path / "dp" / "observations.csv", newline="") as fh:
        obs = [o for o in csv.DictReader(fh) if o["bboxX"]]
    boxes = {tuple(d["box"]) for d in record["detections"]}
    assert len(obs) == len(boxes)
    for o in obs:
        x, y = float(o["bboxX"]) * 80, float(o["bboxY"]) * 120
        w, h = float(o["bboxWidth"]) * 80, float(o["bboxHeight"]) * 120
        assert any(abs(x - b[0]) < 0.5 and abs(y - b[1]) < 0.5 and abs(w - b[2]) < 0.5 and abs(h - b[3]) < 0.5
                   for b in boxes), (o, boxes)
