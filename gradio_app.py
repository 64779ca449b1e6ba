"""The taxolens web app: a photo in, every organism boxed, named and explained, in three languages.

Launch::

    taxolens app --detector runs/demo/detector/model.pt --classifier runs/demo/classifier/model.pt
    python gradio_app.py --detector ... --classifier ...

A thin layer over ``pipeline/``: the pipeline finds, crops, classifies and decides; this file only lays
the results out (boxes, probability bars, species cards) and translates the interface.
"""

from __future__ import annotations

import argparse
import html
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import gradio as gr

from core.answers import ANSWERED, REASON_UNCERTAIN, REASON_UNKNOWN
from core.config import add_config_arg, packaged, parse_with_config, read_yaml
from core.io import ImageReadError, read_image
from core.taxonomy import normalise_name, species_index
from pipeline.exports import write_csv
from pipeline.predictor import Pipeline
from pipeline.render import draw_detections
from pipeline.settings import InferenceSettings, settings_id
from pipeline.species import species_card
from review.queue import flagged_taxa, review_queue
from review.store import add_record, add_review, detection_rows, open_store, photo_facts

LANGUAGES = {"English": "en", "Español": "es", "Galego": "gl"}
CSS = """
.tl-card {border: 1px solid #ccc; border-radius: 8px; padding: 10px 14px; margin: 8px 0;}
.tl-card h3 {margin: 0 0 6px 0;}
.tl-bar {background: #eee; border-radius: 4px; height: 14px; width: 100%; margin: 4px 0 8px 0;}
.tl-bar > div {height: 14px; border-radius: 4px;}
.tl-invasive {background: #c0392b; color: white; font-weight: bold; padding: 2px 8px; border-radius: 4px;}
.tl-message {padding: 10px 14px; border-radius: 8px; background: #fff3cd; border: 1px solid #e0c36c;}
"""
#: keyboard shortcuts of the Review tab: a key clicks the button with that element id (not while typing)
REVIEW_KEYS = """
<script>
document.addEventListener("keydown", (event) => {
  const tag = (event.target.tagName || "").toLowerCase();
  if (["input", "textarea", "select"].includes(tag) || event.ctrlKey || event.metaKey || event.altKey) return;
  const ids = {a: "review-accept", n: "review-no-organism", c: "review-correct", r: "review-redraw",
               s: "review-skip"};
  const button = ids[event.key] && document.getElementById(ids[event.key]);
  if (button && button.offsetParent !== null) { event.preventDefault(); button.click(); }
});
</script>
"""


@lru_cache(maxsize=1)
def ui_text() -> dict:
    """Interface texts by language, from ``configs/ui.yaml``."""
    return read_yaml(packaged("ui.yaml"))


def t(lang: str, key: str, **kw: object) -> str:
    """One interface text in ``lang``."""
    text = ui_text().get(lang, ui_text()["en"]).get(key, ui_text()["en"][key])
    return text.format(**kw) if kw else text


def _esc(x: object) -> str:
    return html.escape(str(x))


def _bar(p: float, accepted: bool) -> str:
    colour = "#2ecc40" if accepted else "#ffa500"
    return f'<div class="tl-bar"><div style="width:{100 * p:.1f}%;background:{colour}"></div></div>'


def _rank(lang: str, rank: str | None) -> str:
    return ui_text()[lang if lang in ui_text() else "en"]["ranks"].get(rank, rank) if rank else ""


def card_html(detection: dict, number: int | Sequence[int], lang: str, count: int = 1) -> str:
    """One answer: the taxon (``count`` organisms of it), its probability as a bar, why, and its species card.

    ``number`` is the box's number on the photo, or the numbers of all the boxes with this answer.
    """
    numbers = [number] if isinstance(number, int) else list(number)
    head = f"{count} × " if count > 1 else ""
    parts = [f'<div class="tl-card" data-testid="organism-card"><h3>{head}']
    reason = detection["reason"]
    if reason == REASON_UNKNOWN:
        parts.append(f"{_esc(t(lang, 'unknown_title'))}</h3>")
        score = detection.get("unknown_score")
        parts.append(f"<p>{_esc(t(lang, 'reason_unknown', score='n/a' if score is None else f'{score:.3f}'))}</p>")
    elif reason == REASON_UNCERTAIN or not detection["accepted"]:
        parts.append(f"? </h3><p>{_esc(t(lang, 'not_sure', threshold=detection['threshold']))}</p><ol>")
        for g in detection["top"]:
            card = species_card(g["taxon"], lang)
            parts.append(f"<li><i>{_esc(card['scientific_name'])}</i> ({_esc(card['name'])}): "
                         f"{math.floor(g['probability'] * 100) / 100:.2f}{_bar(g['probability'], False)}</li>")
        parts.append("</ol>")
    else:
        card = species_card(detection["taxon"], lang)
        rank = _rank(lang, detection.get("rank") or card["rank"])
        parts.append(f"<i>{_esc(card['scientific_name'])}</i>{f' ({_esc(rank)})' if rank else ''} &mdash; "
                     f"{_esc(card['name'])}</h3>")
        parts.append(f"{_esc(t(lang, 'probability'))}: {math.floor(detection['probability'] * 1000) / 1000:.3f}"
                     f"{_bar(detection['probability'], True)}")
        parts.append(f"<p>{_esc(t(lang, 'reason_' + reason, rank=rank))}</p>")
        if detection["source"] == "whole_photo":
            parts.append(f"<p>{_esc(t(lang, 'whole_photo'))}</p>")
        if not card["known"]:
            parts.append(f"<p>{_esc(t(lang, 'no_card'))}</p>")
        else:
            if card["invasive"]:
                parts.append(f'<p><span class="tl-invasive">{_esc(t(lang, "invasive"))}</span></p>')
            lineage = " &rsaquo; ".join(_esc(name) for _, name in card["lineage"])
            status = ui_text()["galicia_status"][lang].get(card["galicia"], card["galicia"])
            iucn = card["iucn"] + (f" ({card['iucn_note']})" if card["iucn_note"] else "")
            rows = [("rank", _esc(_rank(lang, card["rank"]))), ("lineage", lineage), ("habitat", _esc(card["habitat"])),
                    ("iucn", _esc(iucn)), ("galicia", _esc(status)), ("action", _esc(card["action"])),
                    ("sources", _esc("; ".join(card["sources"])))]
            parts += [f"<p><b>{_esc(t(lang, key))}:</b> {value}</p>" for key, value in rows]
    parts.append(f'<p class="tl-boxes">{_esc(t(lang, "boxes", numbers=", ".join(str(n) for n in numbers)))}</p>')
    parts.append("</div>")
    return "".join(parts)


def group_answers(detections: Sequence[dict]) -> list[tuple[dict, list[int]]]:
    """Organisms with the same answer together: ``(the most probable one, box numbers from 1)``, by size of group.

    Uncertain organisms each keep their own card: their best guesses differ.
    """
    groups: dict[tuple, list[int]] = {}
    for i, d in enumerate(detections):
        key = ("#", i) if d["reason"] == REASON_UNCERTAIN else (d["taxon"], d["reason"])
        groups.setdefault(key, []).append(i)
    ordered = sorted(groups.values(), key=lambda idx: (-len(idx), idx[0]))
    return [(max((detections[i] for i in idx), key=lambda d: d["probability"]), [i + 1 for i in idx])
            for idx in ordered]


def results_html(state: dict | None, lang: str) -> str:
    """The result panel for the last photo (or its message) in ``lang``."""
    if not state:
        return ""
    if state.get("message"):
        detail = f": {_esc(state['detail'])}" if state.get("detail") else ""
        return f'<div class="tl-message" data-testid="message">{_esc(t(lang, state["message"]))}{detail}</div>'
    dets = state["detections"]
    dropped = len(state.get("dropped") or [])
    note = f'<p class="tl-dropped">{_esc(t(lang, "dropped", n=dropped))}</p>' if dropped else ""
    if not dets:
        return f'<div class="tl-message" data-testid="message">{_esc(t(lang, "no_organism"))}</div>{note}'
    return "".join(card_html(d, numbers, lang, len(numbers)) for d, numbers in group_answers(dets)) + note


class TaxolensApp:
    """The models (loaded once per process) and the callbacks of the interface."""

    def __init__(self, pipeline: Pipeline, examples: Sequence[str] = (), store_url: str | None = None,
                 photo_dir: str | os.PathLike | None = None,
                 signed_in: bool = False) -> None:
        self.pipe = pipeline
        self.examples = [str(e) for e in examples]
        self.store = open_store(store_url) if store_url else None
        self.photo_dir = Path(photo_dir) if photo_dir else None
        self.signed_in = signed_in  # the reviewer is the name signed in with (Gradio's auth)
        self.flagged = flagged_taxa()

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
        lang = LANGUAGES.get(language, "en")
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
        return draw_detections(image, detections, labels), results_html(state, lang), state

    def batch(self, paths: list[str] | None, score: float, threshold: float):
        """Several photos -> (table rows, CSV file)."""
        records = [self.pipe.process_file(path, score_threshold=score, threshold=threshold)[0] for path in paths or []]
        rows = []
        for r in records:
            if not r["detections"]:
                rows.append([r["file"], "", r.get("result") or r.get("failure"), None, r["status"]])
            for i, d in enumerate(r["detections"], start=1):
                rows.append([r["file"], i, d["taxon"], d["probability"], r["status"]])
        csv_path = Path(tempfile.mkdtemp(prefix="taxolens-")) / "taxolens_results.csv"
        write_csv(records, csv_path)
        return rows, str(csv_path)

    # ---- the Review tab ----------------------------------------------------------------------------------

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
        lang = LANGUAGES.get(language, "en")
        assert self.store is not None
        queue = review_queue(detection_rows(self.store, newest_only=True), flagged=self.flagged)
        head = f'<p class="tl-message">{_esc(note)}</p>' if note else ""
        if not queue:
            return None, head + f"<p>{_esc(t(lang, 'review_empty'))}</p>", None
        ids = [r["id"] for r in queue]
        row = queue[(ids.index(after) + 1) % len(queue)] if after in ids else queue[0]
        try:
            photo = read_image(row["path"])
        except ImageReadError as exc:
            photo, head = None, head + f'<p class="tl-message">{_esc(exc)}</p>'
        detection = {"taxon": row["taxon"], "reason": row["reason"], "rank": row["rank"], "top": row["top"] or [],
                     "probability": row["probability"] or 0.0, "unknown_score": row["unknown_score"],
                     "accepted": row["reason"] in ANSWERED and not row["dropped"],
                     "threshold": self.pipe.threshold, "source": "detector"}
        box = {"box": [row["x"], row["y"], row["w"], row["h"]], "accepted": detection["accepted"]}
        image = draw_detections(photo, [box], [row["taxon"]]) if photo is not None else None
        said = t(lang, "review_model", taxon=row["taxon"], reason=row["reason"],
                 probability="n/a" if row["probability"] is None else f"{row['probability']:.3f}")
        panel = (head + f"<p>{_esc(t(lang, 'review_left', n=len(queue)))}</p><p data-testid='review-said'>"
                 f"{_esc(Path(row['path']).name)}: {_esc(said)}</p>" + card_html(detection, row["idx"], lang))
        return image, panel, row["id"]

    def review_answer(self, action: str, detection_id: int | None, reviewer: str, taxon: str | None, box: str,
                      language: str, request: gr.Request | None = None):
        """Keep one expert answer (signed), then show the next detection."""
        lang = LANGUAGES.get(language, "en")
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

    def about_html(self, lang: str) -> str:
        """What the models know, from their files."""
        out = [f"<h2>{_esc(t(lang, 'models'))}</h2>"]
        for model in (self.pipe.detector, self.pipe.classifier):
            info = model.info
            thresholds = (f"score {self.pipe.score_threshold}" if model is self.pipe.detector
                          else f"probability {self.pipe.threshold}")
            out.append(f"<h3>{_esc(info['kind'])}: {_esc(info['architecture'])}</h3><ul>"
                       f"<li>{_esc(t(lang, 'classes'))}: {_esc(', '.join(info['class_names']))}</li>"
                       f"<li>{_esc(t(lang, 'version'))}: {_esc(info['model_version'])} "
                       f"(taxolens {_esc(info['taxolens_version'])})</li>"
                       f"<li>{_esc(t(lang, 'metrics'))}: {_esc(info.get('metrics'))}</li>"
                       f"<li>{_esc(t(lang, 'thresholds'))}: {_esc(thresholds)}</li></ul>")
        return "".join(out)

    def build(self) -> gr.Blocks:
        """The interface."""
        lang0 = "en"
        with gr.Blocks(title="taxolens") as demo:
            state = gr.State(None)
            with gr.Row():
                title = gr.Markdown(f"# {t(lang0, 'title')}")
                language = gr.Radio(list(LANGUAGES), value="English", label=t(lang0, "language"),
                                    elem_id="language")
            with gr.Tabs(selected="identify"):
                with gr.Tab(t(lang0, "tab_identify"), id="identify") as tab_identify:
                    intro = gr.Markdown(t(lang0, "intro"))
                    with gr.Row():
                        with gr.Column():
                            upload = gr.File(label=t(lang0, "upload"), file_count="single", type="filepath",
                                             elem_id="upload")
                            score = gr.Slider(self.pipe.detector.score_floor, 1.0, value=self.pipe.score_threshold,
                                              step=0.01,
                                              label=t(lang0, "score"))
                            threshold = gr.Slider(0.0, 1.0, value=self.pipe.threshold, step=0.01,
                                                  label=t(lang0, "threshold"))
                            keep = gr.Checkbox(False, label=t(lang0, "keep"), info=t(lang0, "keep_info"),
                                               elem_id="keep", visible=self.store is not None)
                            button = gr.Button(t(lang0, "identify"), variant="primary", elem_id="identify")
                            if self.examples:
                                gr.Examples(self.examples, inputs=[upload], label=t(lang0, "examples"))
                        with gr.Column():
                            boxed = gr.Image(label=t(lang0, "result"), type="numpy", interactive=False,
                                             elem_id="boxed")
                            panel = gr.HTML(elem_id="cards")
                with gr.Tab(t(lang0, "tab_batch"), id="batch") as tab_batch:
                    files = gr.File(label=t(lang0, "batch_upload"), file_count="multiple", type="filepath")
                    run_all = gr.Button(t(lang0, "batch_run"), variant="primary")
                    table = gr.Dataframe(headers=["file", "#", "taxon", "probability", "status"], interactive=False)
                    csv_file = gr.File(label=t(lang0, "batch_csv"))
                with gr.Tab(t(lang0, "tab_review"), id="review", visible=self.store is not None) as tab_review:
                    current = gr.State(None)
                    with gr.Row():
                        with gr.Column():
                            reviewer = gr.Textbox(label=t(lang0, "reviewer"), elem_id="reviewer",
                                                  visible=not self.signed_in)
                            next_button = gr.Button(t(lang0, "review_next"), elem_id="review-next")
                            review_image = gr.Image(type="numpy", interactive=False, elem_id="review-image",
                                                    show_label=False)
                        with gr.Column():
                            review_panel = gr.HTML(elem_id="review-panel")
                            taxon_choice = gr.Dropdown(sorted(self.pipe.classifier.class_names), value=None,
                                                       allow_custom_value=True, label=t(lang0, "review_taxon"),
                                                       elem_id="review-taxon")
                            new_box = gr.Textbox(label=t(lang0, "review_box"), elem_id="review-box")
                            with gr.Row():
                                review_buttons = {
                                    action: gr.Button(t(lang0, f"review_{action}"),
                                                      elem_id=f"review-{action.replace('_', '-')}",
                                                      variant="primary" if action == "accept" else "secondary")
                                    for action in ("accept", "no_organism", "correct", "redraw", "skip")}
                with gr.Tab(t(lang0, "tab_home"), id="home") as tab_home:
                    home = gr.Markdown(t(lang0, "home"))
                with gr.Tab(t(lang0, "tab_about"), id="about") as tab_about:
                    about = gr.HTML(self.about_html(lang0))
            inputs = [upload, score, threshold, language, keep]
            outputs = [boxed, panel, state]
            if self.store is not None:
                review_out = [review_image, review_panel, current]
                next_button.click(self.review_next, [language], review_out, api_name="review_next")
                tab_review.select(self.review_next, [language], review_out)
                for action, btn in review_buttons.items():
                    btn.click(lambda *a, _action=action, **kw: self.review_answer(_action, *a, **kw),
                              [current, reviewer, taxon_choice, new_box, language], review_out,
                              api_name=f"review_{action}")
            button.click(self.identify, inputs, outputs, api_name="identify")
            upload.upload(self.identify, inputs, outputs, api_name="identify_on_upload")
            run_all.click(self.batch, [files, score, threshold], [table, csv_file], api_name="batch")

            def translate(language: str, current: dict | None):
                lang = LANGUAGES.get(language, "en")
                return (gr.Markdown(f"# {t(lang, 'title')}"), gr.Radio(label=t(lang, "language")),
                        gr.Markdown(t(lang, "intro")), gr.File(label=t(lang, "upload")),
                        gr.Slider(label=t(lang, "score")), gr.Slider(label=t(lang, "threshold")),
                        gr.Button(t(lang, "identify")), gr.Image(label=t(lang, "result")),
                        results_html(current, lang), gr.File(label=t(lang, "batch_upload")),
                        gr.Button(t(lang, "batch_run")), gr.File(label=t(lang, "batch_csv")),
                        gr.Markdown(t(lang, "home")), self.about_html(lang),
                        gr.Tab(label=t(lang, "tab_identify")), gr.Tab(label=t(lang, "tab_batch")),
                        gr.Tab(label=t(lang, "tab_home")), gr.Tab(label=t(lang, "tab_about")),
                        gr.Checkbox(label=t(lang, "keep"), info=t(lang, "keep_info")),
                        gr.Tab(label=t(lang, "tab_review")), gr.Textbox(label=t(lang, "reviewer")),
                        gr.Button(t(lang, "review_next")), gr.Dropdown(label=t(lang, "review_taxon")),
                        gr.Textbox(label=t(lang, "review_box")),
                        *[gr.Button(t(lang, f"review_{action}")) for action in review_buttons])

            language.change(translate, [language, state],
                            [title, language, intro, upload, score, threshold, button, boxed, panel, files, run_all,
                             csv_file, home, about, tab_identify, tab_batch, tab_home, tab_about, keep, tab_review,
                             reviewer, next_button, taxon_choice, new_box, *review_buttons.values()])
        return demo


def get_args_parser() -> argparse.ArgumentParser:
    """Options of ``taxolens app``."""
    p = argparse.ArgumentParser(prog="taxolens app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--examples", nargs="*", default=[], help="example photos shown under the upload")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--concurrency", type=int, default=2, help="photos processed at once; the rest wait in the queue")
    p.add_argument("--max-file-size", default="25mb")
    p.add_argument("--store-url", default=None,
                   help="keep photos and answers for expert review in this store (a file path for SQLite, or an "
                        "SQLAlchemy URL); adds the 'keep for review' box and the Review tab")
    p.add_argument("--store-photos", default=None,
                   help="folder for the copies of kept photos (default: beside an SQLite store, else "
                        "runs/taxolens-store-photos)")
    add_config_arg(p, "app")
    InferenceSettings.add_args(p)
    p.add_argument("--password-env", default="TAXOLENS_APP_PASSWORD",
                   help="environment variable holding the password the operator sets; when it is set, every "
                        "user signs in (any name, that password) and reviews are signed with that name")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``taxolens app``."""
    args = parse_with_config(get_args_parser(), argv, default="app")
    password = os.environ.get(args.password_env) or None
    if args.store_url and args.host not in ("127.0.0.1", "localhost", "::1") and not password:
        raise ValueError(f"--host {args.host} with a review store: reviewing on a shared machine needs a password "
                         f"(set {args.password_env})")
    pipe = Pipeline.from_files(args.detector, args.classifier, InferenceSettings.from_args(args))
    photos = args.store_photos or (Path(args.store_url).with_suffix("").as_posix() + "-photos"
                                   if args.store_url and "://" not in args.store_url else "runs/taxolens-store-photos")
    demo = TaxolensApp(pipe, args.examples, store_url=args.store_url, photo_dir=photos,
                       signed_in=password is not None).build()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=256)
    demo.launch(server_name=args.host, server_port=args.port, css=CSS, max_file_size=args.max_file_size,
                allowed_paths=[str(Path(e).resolve().parent) for e in args.examples], footer_links=["api"],
                head=REVIEW_KEYS if args.store_url else None,
                auth=(lambda _user, given: given == password) if password else None,
                auth_message="taxolens: sign in with your name and the password the operator gave you")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
