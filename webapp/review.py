"""The Review page: the store's queue, one detection at a time, and an expert's signed answers."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
from sqlalchemy import Engine

from core.answers import ANSWERED
from core.io import ImageReadError, read_image
from core.taxonomy import normalise_name, species_index
from pipeline.predictor import Pipeline
from pipeline.render import draw_detections
from review.queue import flagged_taxa, review_queue
from review.store import add_review, detection_rows, stored_path
from webapp.cards import card_html
from webapp.text import esc, lang_code, t


class ReviewPage:
    """The queue of a store (each photo's newest answer), shown and answered by experts."""

    def __init__(self, pipeline: Pipeline, store: Engine, signed_in: bool = False) -> None:
        self.pipe = pipeline
        self.store = store
        self.signed_in = signed_in  # the reviewer is the name signed in with (Gradio's auth)
        self.flagged = flagged_taxa()

    def resolve_taxon(self, text: str | None) -> str | None:
        """A typed taxon as its scientific name: a class of the model, or a taxon of the species file."""
        text = (text or "").strip()
        if text in self.pipe.classifier.class_names:
            return text
        card = species_index().get(normalise_name(text)) if text else None
        return card["scientific_name"] if card else None

    def review_next(self, language: str, note: str = "", after: int | None = None):
        """The detection an expert should see next: (its photo with the box, the panel, its id).

        ``after``: the one after this detection in the queue (a skip), wrapping round to the first.
        """
        lang = lang_code(language)
        assert self.store is not None
        queue = review_queue(detection_rows(self.store, newest_only=True), flagged=self.flagged)
        head = f'<p class="tl-message">{esc(note)}</p>' if note else ""
        if not queue:
            return None, head + f"<p>{esc(t(lang, 'review_empty'))}</p>", None
        ids = [r["id"] for r in queue]
        row = queue[(ids.index(after) + 1) % len(queue)] if after in ids else queue[0]
        try:
            photo = read_image(stored_path(row))
        except ImageReadError as exc:
            photo, head = None, head + f'<p class="tl-message">{esc(exc)}</p>'
        detection = {"taxon": row["taxon"], "reason": row["reason"], "rank": row["rank"], "top": row["top"] or [],
                     "probability": row["probability"] or 0.0, "unknown_score": row["unknown_score"],
                     "accepted": row["reason"] in ANSWERED and not row["dropped"],
                     "threshold": self.pipe.threshold, "source": "detector"}
        box = {"box": [row["x"], row["y"], row["w"], row["h"]], "accepted": detection["accepted"]}
        image = draw_detections(photo, [box], [row["taxon"]]) if photo is not None else None
        said = t(lang, "review_model", taxon=row["taxon"], reason=row["reason"],
                 probability="n/a" if row["probability"] is None else f"{row['probability']:.3f}")
        panel = (head + f"<p>{esc(t(lang, 'review_left', n=len(queue)))}</p><p data-testid='review-said'>"
                 f"{esc(Path(row['path']).name)}: {esc(said)}</p>" + card_html(detection, row["idx"], lang))
        return image, panel, row["id"]

    def review_answer(self, action: str, detection_id: int | None, reviewer: str, taxon: str | None, box: str,
                      language: str, request: gr.Request | None = None):
        """Keep one expert answer (signed), then show the next detection."""
        lang = lang_code(language)
        name = (request.username if self.signed_in and request is not None and request.username else reviewer)
        name = (name or "").strip()
        if detection_id is None or action == "skip":
            return self.review_next(language, after=detection_id)
        if not name:
            image, panel, _ = self.review_next(language, t(lang, "review_need_name"))
            return image, panel, detection_id
        chosen, numbers = None, None
        if action == "correct" or (action == "redraw" and (taxon or "").strip()):
            chosen = self.resolve_taxon(taxon)
            if chosen is None:
                image, panel, _ = self.review_next(language, t(lang, "review_bad_taxon", taxon=taxon or ""))
                return image, panel, detection_id
        if action == "redraw":
            numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", box or "")]
        assert self.store is not None
        try:
            add_review(self.store, detection_id, reviewer=name, action=action, taxon=chosen, box=numbers)
        except ValueError as exc:
            image, panel, _ = self.review_next(language, str(exc))
            return image, panel, detection_id
        return self.review_next(language, t(lang, "review_saved", action=action, reviewer=name))
