"""The store of predictions and expert reviews: SQLite by default, PostgreSQL by changing one URL.

Why SQLAlchemy Core: one schema, written once, runs on SQLite (nothing to install; a file path in
``configs/pipeline.yaml``) and on PostgreSQL (many reviewers on a server) with the same code, transactions
and constraints. Why our own named migrations rather than Alembic: the schema ships inside the package and
upgrades itself when a store is opened (no migrations folder or ``env.py`` for a user to run); each step has
a version and a name, recorded in ``schema_migrations``, and a store newer than the code is refused.

Tables: ``photos`` (one per sha256: path, upright size, EXIF time and GPS), ``predictions`` (one per photo,
model pair and settings: a rerun with another threshold is kept beside the first; source ``run`` or ``app``,
time), ``detections`` (each box with its answer: taxon, rank, reason, probability, unknown score, top three;
``dropped`` for boxes answered no organism) and
``reviews`` (every expert answer, never deleted: the latest per detection is the one in force).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.schema import CreateTable

from core.answers import REASON_NO_ORGANISM
from core.io import display_name, file_facts

LOGGER = logging.getLogger(__name__)
SOURCES = ("run", "app")
#: what an expert can answer about a detection
ACTIONS = ("accept", "correct", REASON_NO_ORGANISM, "redraw")

metadata = MetaData()
migrations_table = Table(
    "schema_migrations", metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", String(32), nullable=False))
photos = Table(
    "photos", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("path", Text, nullable=False),  # as text: bytes that are not UTF-8 shown as \xNN (display_name)
    Column("path_bytes", LargeBinary),  # the path exactly as the file system has it (os.fsencode)
    Column("width", Integer),
    Column("height", Integer),
    Column("taken_at", String(32)),  # EXIF DateTimeOriginal as ISO 8601 (local time, as the camera wrote it)
    Column("latitude", Float),
    Column("longitude", Float),
    Column("added_at", String(32), nullable=False))
predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("photo_id", ForeignKey("photos.id"), nullable=False),
    Column("model_version", String(300), nullable=False),
    Column("settings_id", String(32), nullable=False, server_default=""),
    Column("source", String(8), nullable=False),
    Column("file", Text, nullable=False),  # the record's stable id (path relative to the run's folder)
    Column("status", String(8), nullable=False),
    Column("failure", Text),
    Column("created_at", String(32), nullable=False),
    UniqueConstraint("photo_id", "model_version", "settings_id", name="one_prediction_per_photo_models_and_settings"))
detections = Table(
    "detections", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", ForeignKey("predictions.id"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("x", Float, nullable=False),
    Column("y", Float, nullable=False),
    Column("w", Float, nullable=False),
    Column("h", Float, nullable=False),
    Column("detector_score", Float),
    Column("taxon", String(200), nullable=False),
    Column("rank", String(32)),
    Column("reason", String(16), nullable=False),
    Column("probability", Float),
    Column("unknown_score", Float),
    Column("top", JSON),
    Column("dropped", Boolean, nullable=False),
    UniqueConstraint("prediction_id", "idx", name="one_detection_per_index"))
reviews = Table(
    "reviews", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("detection_id", ForeignKey("detections.id"), nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("action", String(16), nullable=False),
    Column("taxon", String(200)),  # the taxon in force after this review; None for no_organism
    Column("x", Float),
    Column("y", Float),
    Column("w", Float),
    Column("h", Float),
    Column("created_at", String(32), nullable=False))


def _add_path_bytes(conn: Connection) -> None:
    # a path that is not valid UTF-8 cannot be stored as text on SQLite or PostgreSQL: its exact bytes go here
    columns = {c["name"] for c in inspect(conn).get_columns("photos")}
    if "path_bytes" not in columns:
        kind = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
        conn.execute(text(f"ALTER TABLE photos ADD COLUMN path_bytes {kind}"))


def _create_tables(conn: Connection) -> None:
    for table in (photos, predictions, detections, reviews):
        table.create(conn, checkfirst=True)


def _add_review_indexes(conn: Connection) -> None:
    # plain DDL (both SQLite and PostgreSQL have IF NOT EXISTS): an Index object would attach itself to the
    # module's Table and be created again by step 1 on the next new store
    conn.execute(text("CREATE INDEX IF NOT EXISTS reviews_by_detection ON reviews (detection_id)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS detections_by_reason ON detections (reason)"))


def _key_predictions_by_settings(conn: Connection) -> None:
    # a rerun of the same photos with other settings (another threshold, --no-rollup) is kept, not dropped:
    # predictions are unique per photo, model pair and settings. Stores made by step 1 of this code already
    # have that key (step 1 creates today's table); older ones are rebuilt. SQLite cannot drop a constraint,
    # so its table is copied into a new one; PostgreSQL swaps the constraint.
    if conn.dialect.name == "sqlite":
        _rebuild_sqlite_predictions(conn)
        return
    conn.execute(text("UPDATE predictions SET settings_id = '' WHERE settings_id IS NULL"))
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE predictions DROP CONSTRAINT IF EXISTS one_prediction_per_photo_and_models"))
        conn.execute(text("ALTER TABLE predictions ALTER COLUMN settings_id SET DEFAULT ''"))
        conn.execute(text("ALTER TABLE predictions ALTER COLUMN settings_id SET NOT NULL"))
        conn.execute(text("ALTER TABLE predictions DROP CONSTRAINT IF EXISTS "
                          "one_prediction_per_photo_models_and_settings"))
        conn.execute(text("ALTER TABLE predictions ADD CONSTRAINT one_prediction_per_photo_models_and_settings "
                          "UNIQUE (photo_id, model_version, settings_id)"))



def _rebuild_sqlite_predictions(conn: Connection) -> None:
    # SQLite's own recipe for changing a table's constraints: foreign keys off (possible only outside a
    # transaction, hence first and before an explicit BEGIN), a new table, the rows copied, the old one dropped,
    # the new one renamed, the foreign keys checked. open_store drops the pooled connection afterwards, so every
    # later connection has foreign keys on again.
    ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE type='table' AND name='predictions'")).scalar()
    if "one_prediction_per_photo_models_and_settings" in (ddl or ""):
        return
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    conn.exec_driver_sql("BEGIN")
    columns = ", ".join(c.name for c in predictions.columns)
    create = str(CreateTable(predictions).compile(dialect=conn.dialect))
    conn.exec_driver_sql(create.replace("CREATE TABLE predictions ", "CREATE TABLE predictions_new ", 1))
    conn.execute(text(f"INSERT INTO predictions_new ({columns}) SELECT id, photo_id, model_version, "
                      f"COALESCE(settings_id, ''), source, file, status, failure, created_at FROM predictions"))
    conn.execute(text("DROP TABLE predictions"))
    conn.execute(text("ALTER TABLE predictions_new RENAME TO predictions"))
    broken = conn.execute(text("PRAGMA foreign_key_check")).fetchall()
    if broken:
        raise StoreError(f"the upgrade of the predictions table would break {len(broken)} reference(s); "
                         "nothing was changed")


#: (version, name, step): applied in order, each once, each in its own transaction
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "photos, predictions, detections and reviews", _create_tables),
    (2, "indexes for the review queue", _add_review_indexes),
    (3, "predictions keyed by photo, models and settings", _key_predictions_by_settings),
    (4, "photo paths kept as their exact bytes", _add_path_bytes),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreError(ValueError):
    """A store that cannot be used; the message names it."""


def now() -> str:
    """UTC time as ISO 8601 with seconds."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def store_url(location: str | os.PathLike) -> str:
    """An SQLAlchemy URL from a file path (SQLite) or a URL (``postgresql://...``, ``sqlite:///...``)."""
    text = str(location)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; two writers queue
    cursor.execute("PRAGMA busy_timeout=1000")  # then with_lock_wait waits on, saying so, up to its limit
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


#: how long a write waits for a lock held by another writer (another run, a reviewer) before it gives up
LOCK_WAIT_SECONDS = 120
SQLITE_HEADER = b"SQLite format 3\x00"


def _sqlite_file(location: str | os.PathLike, url: str, writable: bool) -> tuple[str, bool]:
    """Check an SQLite store's file before SQLAlchemy touches it; returns (URL to open, read-only?).

    Raises:
        StoreError: one line naming the file and what is wrong (a folder, not SQLite, read-only for a write).
    """
    path = Path(url[len("sqlite:///"):])
    if path.is_dir():
        raise StoreError(f"{location}: is a folder, not a store; name a file (e.g. runs/taxolens-store.sqlite)")
    if path.is_file() and path.stat().st_size:
        try:
            with open(path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise StoreError(f"{location}: cannot be read ({exc.strerror or exc})") from exc
        if head != SQLITE_HEADER:
            raise StoreError(f"{location}: not a taxolens store (not an SQLite database: it begins {head[:8]!r}); "
                             "move it aside or name another --store-url")
    folder = path.parent
    if not path.exists():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{location}: its folder cannot be made ({exc.strerror or exc})") from exc
        if not os.access(folder, os.W_OK):
            raise StoreError(f"{location}: cannot be created: {folder} is read-only")
        return url, False
    # SQLite writes its journal beside the file: both the file and its folder must be writable
    read_only = not (os.access(path, os.W_OK) and os.access(folder, os.W_OK))
    if read_only and writable:
        raise StoreError(f"{location}: read-only (the file or its folder); it can be read (taxolens review stats, "
                         "the exports) but not written: copy it somewhere writable, or name another --store-url")
    if read_only:
        return _read_only_url(path), True
    return url, False


def _read_only_url(path: Path) -> str:
    """Read-only, with the write-ahead log where SQLite can read it, else the file as it is (immutable)."""
    import sqlite3

    plain = f"file:{path}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(plain, uri=True)) as probe:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return f"sqlite:///{plain}&uri=true"
    except sqlite3.Error:  # a folder SQLite cannot write its shared-memory file in: read the main file alone
        return f"sqlite:///file:{path}?mode=ro&immutable=1&uri=true"


def _unusable(location: str | os.PathLike, exc: Exception) -> StoreError:
    """A database error as one line that names the store and says how to recover."""
    message = " ".join(str(getattr(exc, "orig", exc) or exc).split())  # one line
    if "full" in message:
        return StoreError(f"{location}: the disk is full ({message}); nothing more was written: free some space "
                          "and run the same command again (results already written stay; finished photos are stored "
                          "when "
                          "it resumes)")
    if "locked" in message or "busy" in message:
        return StoreError(f"{location}: locked by another writer for more than {LOCK_WAIT_SECONDS} s (another "
                          "taxolens run, or a reviewer's app); nothing more was written: run the same command again "
                          "once it is free")
    if "readonly" in message or "read-only" in message:
        return StoreError(f"{location}: read-only ({message}); copy it somewhere writable or name another --store-url")
    return StoreError(f"{location}: the store is damaged ({message}); recover what it holds with `sqlite3 {location} "
                      ".recover | sqlite3 recovered.sqlite` and use that, or name another --store-url")


def with_lock_wait(location: str | os.PathLike, action: Callable[[], Any]) -> Any:
    """Run a store write; while another writer holds the lock, wait (saying so once), up to LOCK_WAIT_SECONDS.

    Raises:
        StoreError: the lock was not freed in time, the disk is full, or the store is damaged (one line).
    """
    start, told = time.monotonic(), False
    while True:
        try:
            return action()
        except OperationalError as exc:
            message = str(exc.orig or exc)
            if ("locked" not in message and "busy" not in message) or time.monotonic() - start >= LOCK_WAIT_SECONDS:
                raise _unusable(location, exc) from exc
            if not told:
                LOGGER.warning("%s: locked by another writer; waiting up to %d s", location, LOCK_WAIT_SECONDS)
                told = True
            time.sleep(0.25)
        except DatabaseError as exc:
            raise _unusable(location, exc) from exc


def _sqlite_read_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def open_store(location: str | os.PathLike, migrations: Sequence[tuple[int, str, Callable]] = MIGRATIONS, *,
               writable: bool = True) -> Engine:
    """Open (creating or upgrading) the store at a path or URL.

    ``writable=False`` (the review commands and exports) also opens a store on read-only media, as it is.

    Raises:
        StoreError: one line naming the store: a folder, not a store, damaged (checked before the schema
            version), read-only where a write is needed, locked too long, on a full disk, or written by a
            newer taxolens.
    """
    url = store_url(location)
    read_only = False
    if url.startswith("sqlite:///"):
        url, read_only = _sqlite_file(location, url, writable)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas if not read_only else _sqlite_read_pragmas)
        _check_integrity(location, engine)
    try:
        applied = _applied(location, engine, read_only)
    except (OperationalError, DatabaseError) as exc:
        raise _unusable(location, exc) from exc
    known = {v for v, _, _ in migrations}
    if applied - known:
        raise StoreError(f"{location}: written by a newer taxolens (schema version {max(applied)}, this one knows "
                         f"{max(known)}); upgrade taxolens")
    if read_only:
        if known - applied:
            raise StoreError(f"{location}: read-only and written by an older taxolens (schema version "
                             f"{max(applied, default=0)}); copy it somewhere writable once so it can be upgraded")
        return engine
    for version, name, step in migrations:
        if version not in applied:
            with_lock_wait(location, functools.partial(_migrate, engine, version, name, step))
    if engine.dialect.name == "sqlite" and len(applied) < len(migrations):
        engine.dispose()  # a migration may have turned foreign keys off on its connection: start afresh
    return engine


def _check_integrity(location: str | os.PathLike, engine: Engine) -> None:
    """SQLite's quick_check before anything else: a store damaged in the middle is said to be damaged."""
    try:
        with engine.connect() as conn:
            problems = [row[0] for row in conn.execute(text("PRAGMA quick_check"))]
    except (OperationalError, DatabaseError) as exc:
        raise _unusable(location, exc) from exc
    if problems != ["ok"]:
        first = " ".join(problems[0].split())
        raise StoreError(f"{location}: the store is damaged ({first}); recover what it holds with `sqlite3 "
                         f"{location} .recover | sqlite3 recovered.sqlite` and use that, or name another --store-url")


def _applied(location: str | os.PathLike, engine: Engine, read_only: bool) -> set[int]:
    if not read_only:
        with_lock_wait(location, lambda: _create_migrations_table(engine))
    elif not inspect(engine).has_table("schema_migrations"):
        raise StoreError(f"{location}: not a taxolens store (an SQLite database without its tables)")
    with engine.connect() as conn:
        return {row.version for row in conn.execute(select(migrations_table.c.version))}


def _create_migrations_table(engine: Engine) -> None:
    with engine.begin() as conn:
        migrations_table.create(conn, checkfirst=True)


def _migrate(engine: Engine, version: int, name: str, step: Callable[[Connection], None]) -> None:
    try:
        with engine.begin() as conn:
            step(conn)
            conn.execute(insert(migrations_table).values(version=version, name=name, applied_at=now()))
    except IntegrityError:  # another process applied it at the same moment
        pass


def schema_version(engine: Engine) -> int:
    """The highest migration applied to a store."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.max(migrations_table.c.version))).scalar() or 0)


# ---- photos -------------------------------------------------------------------------------------------

def photo_facts(path: str | os.PathLike) -> dict:
    """sha256, upright size, and EXIF capture time and GPS position where the photo has them."""
    return file_facts(path)


@dataclass
class StoredRecord:
    """What :func:`add_record` did: the prediction's id and whether it was new."""

    prediction_id: int
    added: bool


def add_record(engine: Engine, record: dict, photo_path: str | os.PathLike, *, source: str,
               settings_id: str | None = None, facts: dict | None = None) -> StoredRecord:
    """Keep one photo's record: the photo (once per sha256), its prediction and every box, in one transaction.

    Predictions are kept per photo, model pair and settings (``settings_id``, else the record's): the same
    photo with the same models and settings again adds nothing, other settings add a prediction beside it. A
    process killed mid-way leaves no half-written photo (the transaction is never committed).
    Two writers at once: the loser of a race reads the winner's.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}")
    seen = record.get("sha256")
    try:
        facts = facts or photo_facts(photo_path)
    except OSError:
        if not seen:
            raise
        facts = {"sha256": ""}  # the photo is gone since the models saw it: the record's own facts below
    if seen and facts["sha256"] != seen:
        # the file changed after the models saw it: the answer belongs to the bytes they saw, not to these
        facts = {"sha256": seen, "width": record.get("width"), "height": record.get("height"), "taken_at": None,
                 "latitude": None, "longitude": None}
    def once() -> StoredRecord:
        for attempt in range(3):
            try:
                with engine.begin() as conn:
                    return _add_record(conn, record, photo_path, source, settings_id, facts)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return with_lock_wait(where(engine), once)


def where(engine: Engine) -> str:
    """The store as the messages name it: its file, or its URL without a password."""
    url = engine.url
    return url.database if url.get_backend_name() == "sqlite" and url.database else url.render_as_string(True)


def _add_record(conn: Connection, record: dict, photo_path: str | os.PathLike, source: str,
                settings_id: str | None, facts: dict) -> StoredRecord:
    photo_id = conn.execute(select(photos.c.id).where(photos.c.sha256 == facts["sha256"])).scalar()
    if photo_id is None:
        # the size of the photo the boxes belong to: the record's, upright (EXIF-rotated), as the models saw it
        width, height = record.get("width") or facts["width"], record.get("height") or facts["height"]
        where = str(Path(photo_path).resolve())
        photo_id = conn.execute(insert(photos).values(
            sha256=facts["sha256"], path=display_name(where), path_bytes=os.fsencode(where), width=width,
            height=height,
            taken_at=facts["taken_at"], latitude=facts["latitude"], longitude=facts["longitude"],
            added_at=now())).inserted_primary_key[0]  # type: ignore[index]
    settings = settings_id or record.get("settings_id") or ""
    existing = conn.execute(select(predictions.c.id).where(
        predictions.c.photo_id == photo_id, predictions.c.model_version == record["model_version"],
        predictions.c.settings_id == settings)).scalar()
    if existing is not None:
        return StoredRecord(int(existing), False)
    prediction_id = conn.execute(insert(predictions).values(
        photo_id=photo_id, model_version=record["model_version"], settings_id=settings,
        source=source, file=display_name(record["file"]), status=record["status"], failure=record.get("failure"),
        created_at=now())).inserted_primary_key[0]  # type: ignore[index]
    boxes = [(d, False) for d in record.get("detections", [])] + [(d, True) for d in record.get("dropped", [])]
    if boxes:
        conn.execute(insert(detections), [
            {"prediction_id": prediction_id, "idx": i, "x": d["box"][0], "y": d["box"][1], "w": d["box"][2],
             "h": d["box"][3], "detector_score": d.get("detector_score"), "taxon": d["taxon"], "rank": d.get("rank"),
             "reason": d["reason"], "probability": d.get("probability"), "unknown_score": d.get("unknown_score"),
             "top": d.get("top") or [], "dropped": dropped}
            for i, (d, dropped) in enumerate(boxes, start=1)])
    return StoredRecord(int(prediction_id), True)


def stored_photos(engine: Engine, model_version: str, settings_id: str) -> set[str]:
    """sha256 of the photos already stored for a model pair and settings.

    A resumed run's catch-up matches its records by content, never by relative name: cameras name every card
    ``IMG_0001.jpg``, and another folder's photo of that name is another photo.
    """
    with engine.connect() as conn:
        return {row.sha256 for row in conn.execute(
            select(photos.c.sha256).join(predictions, predictions.c.photo_id == photos.c.id).where(
                predictions.c.model_version == model_version, predictions.c.settings_id == settings_id))}


def stored_path(row: Mapping[str, Any]) -> str:
    """The photo's path as the file system has it (``path_bytes``), else the text form."""
    raw = row.get("path_bytes")
    return os.fsdecode(bytes(raw)) if raw else row["path"]


# ---- reviews ------------------------------------------------------------------------------------------

def add_review(engine: Engine, detection_id: int, *, reviewer: str, action: str, taxon: str | None = None,
               box: Sequence[float] | None = None) -> int:
    """Keep one expert answer; earlier ones stay (the latest is in force). Returns the review's id.

    ``accept`` keeps the model's taxon (and box); ``correct`` names ``taxon``; ``no_organism`` says the box
    holds none; ``redraw`` gives a new ``box`` (and ``taxon``, else the model's).

    Raises:
        ValueError: an unknown action, no reviewer, a correction without a taxon, a redraw without a box, or
            a detection that is not in the store.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}")
    if not reviewer or not reviewer.strip():
        raise ValueError("a review needs the reviewer's name")
    if action == "correct" and not (taxon and taxon.strip()):
        raise ValueError("a correction needs the taxon")
    if action == "redraw" and (box is None or len(box) != 4 or min(box[2], box[3]) <= 0):
        raise ValueError("a redrawn box needs x, y, width, height with a positive size")
    def once() -> int:
        with engine.begin() as conn:
            row = conn.execute(select(detections.c.taxon).where(detections.c.id == detection_id)).first()
            if row is None:
                raise ValueError(f"detection {detection_id} is not in the store")
            answer = None if action == REASON_NO_ORGANISM else (taxon.strip() if taxon and taxon.strip()
                                                                else row.taxon)
            x, y, w, h = (float(v) for v in box) if action == "redraw" and box is not None else (None,) * 4
            return int(conn.execute(insert(reviews).values(
                detection_id=detection_id, reviewer=reviewer.strip(), action=action, taxon=answer, x=x, y=y, w=w,
                h=h, created_at=now())).inserted_primary_key[0])  # type: ignore[index]

    return int(with_lock_wait(where(engine), once))


def review_history(engine: Engine, detection_id: int) -> list[dict]:
    """Every review of a detection, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(reviews).where(reviews.c.detection_id == detection_id).order_by(reviews.c.id))
        return [dict(r._mapping) for r in rows]


def detection_rows(engine: Engine, *, include_dropped: bool = True, newest_only: bool = False) -> list[dict]:
    """Every detection with its photo, its prediction and the review in force (``review_*``, or None).

    ``newest_only``: only the boxes of each photo's newest prediction (the review queue's view when a photo
    was answered again with other models or settings); every older answer stays in the store.
    """
    latest = (select(reviews.c.detection_id, func.max(reviews.c.id).label("rid"))
              .group_by(reviews.c.detection_id).subquery())
    query = (select(detections, photos.c.path, photos.c.path_bytes, photos.c.sha256,
                    photos.c.width.label("photo_width"),
                    photos.c.height.label("photo_height"), photos.c.taken_at, photos.c.latitude, photos.c.longitude,
                    photos.c.added_at, predictions.c.model_version, predictions.c.source, predictions.c.file,
                    predictions.c.created_at.label("predicted_at"), photos.c.id.label("photo_id"),
                    predictions.c.settings_id,
                    reviews.c.reviewer.label("review_reviewer"), reviews.c.action.label("review_action"),
                    reviews.c.taxon.label("review_taxon"), reviews.c.x.label("review_x"),
                    reviews.c.y.label("review_y"), reviews.c.w.label("review_w"), reviews.c.h.label("review_h"),
                    reviews.c.created_at.label("review_at"))
             .join(predictions, detections.c.prediction_id == predictions.c.id)
             .join(photos, predictions.c.photo_id == photos.c.id)
             .outerjoin(latest, latest.c.detection_id == detections.c.id)
             .outerjoin(reviews, reviews.c.id == latest.c.rid)
             .order_by(detections.c.id))
    if not include_dropped:
        query = query.where(detections.c.dropped.is_(False))
    if newest_only:
        newest = select(func.max(predictions.c.id)).group_by(predictions.c.photo_id)
        query = query.where(predictions.c.id.in_(newest))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def photo_rows(engine: Engine) -> list[dict]:
    """Every photo with its predictions (one row per prediction)."""
    query = (select(photos, predictions.c.id.label("prediction_id"), predictions.c.model_version,
                    predictions.c.status, predictions.c.source, predictions.c.created_at.label("predicted_at"))
             .join(predictions, predictions.c.photo_id == photos.c.id).order_by(photos.c.id))
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def stats(engine: Engine) -> dict:
    """Counts: photos, predictions, detections (and dropped), reviewed detections, reviews, reviewers."""
    with engine.connect() as conn:
        def count(q: Any) -> int:
            return int(conn.execute(q).scalar() or 0)
        return {
            "schema_version": int(conn.execute(select(func.max(migrations_table.c.version))).scalar() or 0),
            "photos": count(select(func.count()).select_from(photos)),
            "predictions": count(select(func.count()).select_from(predictions)),
            "detections": count(select(func.count()).select_from(detections).where(detections.c.dropped.is_(False))),
            "dropped": count(select(func.count()).select_from(detections).where(detections.c.dropped.is_(True))),
            "reviewed_detections": count(select(func.count(func.distinct(reviews.c.detection_id)))),
            "reviews": count(select(func.count()).select_from(reviews)),
            "reviewers": count(select(func.count(func.distinct(reviews.c.reviewer)))),
            "per_reason": {r.reason: int(r.n) for r in conn.execute(
                select(detections.c.reason, func.count().label("n")).group_by(detections.c.reason))},
        }
