"""The interface: Blocks laid out once, every component kept by name, the events wired, the language switched.

:class:`TaxolensApp` holds the pages (``identify``, ``review``) and builds the Blocks. Translation goes by
name: :data:`TEXTS` says which interface text each named component shows, and :meth:`TaxolensApp.translate`
returns a mapping from component to its new text, so a component added or moved is translated by adding
one line, never by counting positions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, cast

import gradio as gr

from pipeline.predictor import Pipeline
from review.store import open_store
from webapp.cards import about_html, results_html
from webapp.identify import IdentifyPage
from webapp.review import ReviewPage
from webapp.text import LANGUAGES, lang_code, t

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
REVIEW_ACTIONS = ("accept", "no_organism", "correct", "redraw", "skip")
#: component name -> (the property that holds its text, the interface text's key)
TEXTS: dict[str, tuple[str, str]] = {
    "language": ("label", "language"), "intro": ("value", "intro"), "upload": ("label", "upload"),
    "score": ("label", "score"), "threshold": ("label", "threshold"), "identify": ("value", "identify"),
    "boxed": ("label", "result"), "files": ("label", "batch_upload"), "run_all": ("value", "batch_run"),
    "csv_file": ("label", "batch_csv"), "home": ("value", "home"), "tab_identify": ("label", "tab_identify"),
    "tab_batch": ("label", "tab_batch"), "tab_home": ("label", "tab_home"), "tab_about": ("label", "tab_about"),
    "keep": ("label", "keep"), "tab_review": ("label", "tab_review"), "reviewer": ("label", "reviewer"),
    "review_next": ("value", "review_next"), "taxon_choice": ("label", "review_taxon"),
    "new_box": ("label", "review_box"),
    **{f"review_{a}": ("value", f"review_{a}") for a in REVIEW_ACTIONS},
}


#: how a boxed photo goes to the browser: JPEG is encoded in 1 ms (640 px) to 4 ms (1920x1080), Gradio's default
#: WebP in 27 to 105 ms, every answer, on the two cores that answer the next user (BENCHMARKS.md, issue 20)
PHOTO_FORMAT = "jpeg"


class TaxolensApp:
    """The models (loaded once per process), the pages, and the interface built over them."""

    def __init__(self, pipeline: Pipeline, examples: Sequence[str] = (), store_url: str | None = None,
                 photo_dir: str | os.PathLike | None = None, signed_in: bool = False) -> None:
        self.pipe = pipeline
        self.examples = [str(e) for e in examples]
        self.store = open_store(store_url) if store_url else None
        self.identify_page = IdentifyPage(pipeline, self.store, photo_dir)
        self.review_page = ReviewPage(pipeline, self.store, signed_in) if self.store is not None else None
        self.ui: dict[str, Any] = {}  # every component by name

    def translate(self, language: str, current: dict | None) -> dict:
        """Every named component's text in ``language``, and the answers shown again in it."""
        lang = lang_code(language)
        ui = self.ui
        updates: dict[Any, Any] = {ui[name]: gr.update(**cast(dict[str, Any], {prop: t(lang, key)}))
                                   for name, (prop, key) in TEXTS.items() if name in ui}
        updates[ui["title"]] = gr.update(value=f"# {t(lang, 'title')}")
        updates[ui["panel"]] = gr.update(value=results_html(current, lang))
        updates[ui["about"]] = gr.update(value=about_html(self.pipe, lang))
        return updates

    def build(self) -> gr.Blocks:
        """The interface."""
        ui = self.ui
        with gr.Blocks(title="taxolens") as demo:
            ui["state"] = gr.State(None)
            with gr.Row():
                ui["title"] = gr.Markdown(f"# {t('en', 'title')}")
                ui["language"] = gr.Radio(list(LANGUAGES), value="English", label=t("en", "language"),
                                          elem_id="language")
            with gr.Tabs(selected="identify"):
                self._identify_tab()
                self._batch_tab()
                self._review_tab()
                with gr.Tab(t("en", "tab_home"), id="home") as ui["tab_home"]:
                    ui["home"] = gr.Markdown(t("en", "home"))
                with gr.Tab(t("en", "tab_about"), id="about") as ui["tab_about"]:
                    ui["about"] = gr.HTML(about_html(self.pipe, "en"))
            self._wire()
        return demo

    def _identify_tab(self) -> None:
        ui = self.ui
        with gr.Tab(t("en", "tab_identify"), id="identify") as ui["tab_identify"]:
            ui["intro"] = gr.Markdown(t("en", "intro"))
            with gr.Row():
                with gr.Column():
                    ui["upload"] = gr.File(label=t("en", "upload"), file_count="single", type="filepath",
                                           elem_id="upload")
                    ui["score"] = gr.Slider(self.pipe.detector.score_floor, 1.0, value=self.pipe.score_threshold,
                                            step=0.01, label=t("en", "score"))
                    ui["threshold"] = gr.Slider(0.0, 1.0, value=self.pipe.threshold, step=0.01,
                                                label=t("en", "threshold"))
                    ui["keep"] = gr.Checkbox(False, label=t("en", "keep"), info=t("en", "keep_info"),
                                             elem_id="keep", visible=self.store is not None)
                    ui["identify"] = gr.Button(t("en", "identify"), variant="primary", elem_id="identify")
                    if self.examples:
                        gr.Examples(self.examples, inputs=[ui["upload"]], label=t("en", "examples"))
                with gr.Column():
                    ui["boxed"] = gr.Image(label=t("en", "result"), type="numpy", interactive=False,
                                           elem_id="boxed", format=PHOTO_FORMAT)
                    ui["panel"] = gr.HTML(elem_id="cards")

    def _batch_tab(self) -> None:
        ui = self.ui
        with gr.Tab(t("en", "tab_batch"), id="batch") as ui["tab_batch"]:
            ui["files"] = gr.File(label=t("en", "batch_upload"), file_count="multiple", type="filepath")
            ui["run_all"] = gr.Button(t("en", "batch_run"), variant="primary")
            ui["table"] = gr.Dataframe(headers=["file", "#", "taxon", "probability", "status"], interactive=False)
            ui["csv_file"] = gr.File(label=t("en", "batch_csv"))

    def _review_tab(self) -> None:
        ui = self.ui
        with gr.Tab(t("en", "tab_review"), id="review", visible=self.store is not None) as ui["tab_review"]:
            ui["current"] = gr.State(None)
            with gr.Row():
                with gr.Column():
                    ui["reviewer"] = gr.Textbox(label=t("en", "reviewer"), elem_id="reviewer",
                                                visible=not (self.review_page and self.review_page.signed_in))
                    ui["review_next"] = gr.Button(t("en", "review_next"), elem_id="review-next")
                    ui["review_image"] = gr.Image(type="numpy", interactive=False, elem_id="review-image",
                                                  format=PHOTO_FORMAT,
                                                  show_label=False)
                with gr.Column():
                    ui["review_panel"] = gr.HTML(elem_id="review-panel")
                    ui["taxon_choice"] = gr.Dropdown(sorted(self.pipe.classifier.class_names), value=None,
                                                     allow_custom_value=True, label=t("en", "review_taxon"),
                                                     elem_id="review-taxon")
                    ui["new_box"] = gr.Textbox(label=t("en", "review_box"), elem_id="review-box")
                    with gr.Row():
                        for action in REVIEW_ACTIONS:
                            ui[f"review_{action}"] = gr.Button(
                                t("en", f"review_{action}"), elem_id=f"review-{action.replace('_', '-')}",
                                variant="primary" if action == "accept" else "secondary")

    def _wire(self) -> None:
        ui, page = self.ui, self.identify_page
        inputs = [ui[n] for n in ("upload", "score", "threshold", "language", "keep")]
        outputs = [ui["boxed"], ui["panel"], ui["state"]]
        ui["identify"].click(page.identify, inputs, outputs, api_name="identify")
        ui["upload"].upload(page.identify, inputs, outputs, api_name="identify_on_upload")
        ui["run_all"].click(page.batch, [ui["files"], ui["score"], ui["threshold"]], [ui["table"], ui["csv_file"]],
                            api_name="batch")
        if self.review_page is not None:
            review, out = self.review_page, [ui["review_image"], ui["review_panel"], ui["current"]]
            ui["review_next"].click(review.review_next, [ui["language"]], out, api_name="review_next")
            ui["tab_review"].select(review.review_next, [ui["language"]], out)
            for action in REVIEW_ACTIONS:
                ui[f"review_{action}"].click(
                    lambda *a, _action=action, **kw: review.review_answer(_action, *a, **kw),
                    [ui["current"], ui["reviewer"], ui["taxon_choice"], ui["new_box"], ui["language"]], out,
                    api_name=f"review_{action}")
        translated = [c for name, c in ui.items() if name in TEXTS or name in ("title", "panel", "about")]
        ui["language"].change(self.translate, [ui["language"], ui["state"]], translated)
