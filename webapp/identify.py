"""The Identify and Several photos pages: photos through the pipeline, answers laid out as cards and a table."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine

from pipeline.exports import write_csv
from pipeline.predictor import Pipeline
from pipeline.render import draw_detections
from pipeline.settings import settings_id
from review.store import add_record, photo_facts
from webapp.cards import results_html
from webapp.text import lang_code

#: batch CSVs older than this are removed when a new one is written: every call's file stays downloadable a
#: while, and a long-running app does not fill the disk with them
KEEP_CSV_SECONDS = 3600


class IdentifyPage:
    """One photo (boxed photo and cards) or many (a table and a CSV) through the pipeline."""

    def __init__(self, pipeline: Pipeline, store: Engine | None = None, photo_dir: str | os.PathLike | None = None,
                 csv_dir: str | os.PathLike | None = None) -> None:
        self.pipe = pipeline
        self.store = store
        self.photo_dir = Path(photo_dir) if photo_dir else None
        self.csv_dir = Path(csv_dir) if csv_dir else Path(tempfile.gettempdir()) / f"taxolens-app-{os.getpid()}"

    def keep(self, path: str, record: dict, score: float, threshold: float) -> None:
        """Keep an uploaded photo (a copy named by its sha256) and its record in the store, source ``app``.

        Its ``settings_id`` is that of the models and the settings of this call (the sliders' thresholds), so
        the same photo kept again at another threshold is a second prediction, not a lost one.
        """
        assert self.store is not None and self.photo_dir is not None
        facts = photo_facts(path)
        dest = self.photo_dir / facts["sha256"][:2] / (facts["sha256"] + Path(path).suffix.lower())
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        settings = self.pipe.settings.replace(score_threshold=score, threshold=threshold)
        answers = settings_id({"models": self.pipe.model_version, "settings": settings.identity()})
        add_record(self.store, {**record, "file": Path(path).name}, dest, source="app", facts=facts,
                   settings_id=answers)

    def identify(self, path: str | None, score: float, threshold: float, language: str, keep: bool = False):
        """Upload -> (boxed photo, result panel, state); with ``keep``, the photo and answers go to the store."""
        lang = lang_code(language)
        if not path:
            state = {"message": "no_file"}
            return None, results_html(state, lang), state
        record, image = self.pipe.process_file(path, score_threshold=score, threshold=threshold)
        if image is None:
            state = {"message": "bad_file", "detail": f"{record['file']}: {record['failure']}"}
            return None, results_html(state, lang), state
        if keep and self.store is not None:
            self.keep(path, record, score, threshold)
        detections = record["detections"]
        labels = [d["taxon"] if d["accepted"] else "?" for d in detections]
        state = {"detections": detections, "dropped": record.get("dropped", [])}
        scale = record["width"] / image.shape[1]  # above 1 where the photo was decoded at a reduced scale
        return draw_detections(image, detections, labels, scale), results_html(state, lang), state

    def batch(self, paths: Sequence[str] | None, score: float, threshold: float):
        """Several photos -> (table rows, CSV file). The CSVs live in one folder of this app, pruned as it goes."""
        records = [self.pipe.process_file(path, score_threshold=score, threshold=threshold)[0] for path in paths or []]
        rows = []
        for r in records:
            if not r["detections"]:
                rows.append([r["file"], "", r.get("result") or r.get("failure"), None, r["status"]])
            for i, d in enumerate(r["detections"], start=1):
                rows.append([r["file"], i, d["taxon"], d["probability"], r["status"]])
        self.prune_csvs()
        csv_path = self.csv_dir / uuid.uuid4().hex / "taxolens_results.csv"
        write_csv(records, csv_path)
        return rows, str(csv_path)

    def prune_csvs(self, older_than: float = KEEP_CSV_SECONDS) -> None:
        """Remove batch CSVs written more than ``older_than`` seconds ago."""
        import time

        if not self.csv_dir.is_dir():
            return
        limit = time.time() - older_than
        for folder in self.csv_dir.iterdir():
            try:
                if folder.stat().st_mtime < limit:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                continue

    def close(self) -> None:
        """Remove this app's batch CSVs (called when the app stops)."""
        shutil.rmtree(self.csv_dir, ignore_errors=True)
