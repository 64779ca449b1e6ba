"""The app's callbacks without a browser: messages, batch table and CSV, About page."""

import csv

import numpy as np
from PIL import Image

from gradio_app import TaxolensApp, card_html, results_html
from pipeline.predictor import Pipeline
from pipeline.settings import InferenceSettings
from tests.conftest import make_scene
from webapp.cards import about_html


def _app(tiny_models, **kw):
    det, clf = tiny_models
    settings = InferenceSettings(device="cpu", score_threshold=1.0, threshold=0.3, classify_whole_photo=True,
                                 min_score_threshold=0.05, max_pixels=1_000_000)
    return TaxolensApp(Pipeline.from_files(det, clf, settings.replace(**kw)))


def test_identify_messages(tiny_models, tmp_path):
    app = _app(tiny_models)
    image, panel, state = app.identify_page.identify(None, 1.0, 0.3, "English")
    assert image is None and "Choose a photo first" in panel
    (tmp_path / "x.txt").write_text("hello")
    image, panel, state = app.identify_page.identify(str(tmp_path / "x.txt"), 1.0, 0.3, "Español")
    assert image is None and "no se puede usar como foto" in panel and "x.txt" in panel
    Image.new("RGB", (2000, 1000)).save(tmp_path / "big.png")
    _, panel, _ = app.identify_page.identify(str(tmp_path / "big.png"), 1.0, 0.3, "English")
    assert "too large" in panel
    photo = make_scene(tmp_path / "p.jpg", [(10, 10, 30, 30)])
    image, panel, state = app.identify_page.identify(str(photo), 1.0, 0.3, "Galego")
    assert image.shape == (80, 96, 3) and len(state["detections"]) == 1 and "Liñaxe" in panel


def test_uncertain_card_shows_three_guesses_and_unknown_taxon_gets_plain_card():
    d = {"taxon": "uncertain", "reason": "uncertain", "probability": 0.5, "accepted": False, "threshold": 0.94,
         "source": "detector",
         "top": [{"taxon": "Vespa velutina", "probability": 0.5}, {"taxon": "Apis mellifera", "probability": 0.3},
                 {"taxon": "Bombus", "probability": 0.2}]}
    html = card_html(d, 1, "en")
    guesses = html.split("<ol>")[1].split("</ol>")[0]
    assert "not sure" in html and guesses.count("<li>") == 3 and "Asian hornet" in html
    assert 'data-testid="look-alikes"' in html  # a hornet among the guesses: how to tell them apart
    known = card_html({**d, "taxon": "Vespa velutina", "reason": "named", "accepted": True}, 1, "es")
    assert "INVASORA en Galicia" in known and "012" in known
    plain = card_html({**d, "taxon": "Polistes dominula", "reason": "named", "accepted": True}, 2, "gl")
    assert "Aínda non hai ficha" in plain
    assert "No organism found" in results_html({"detections": []}, "en")


def test_batch_table_and_csv(tiny_models, tmp_path):
    app = _app(tiny_models)
    photos = [str(make_scene(tmp_path / f"p{i}.jpg", [(5, 5, 20, 20)], seed=i)) for i in range(2)]
    (tmp_path / "bad.jpg").write_bytes(b"")
    rows, csv_path = app.identify_page.batch([*photos, str(tmp_path / "bad.jpg")], 1.0, 0.3)
    assert [r[0] for r in rows] == ["p0.jpg", "p1.jpg", "bad.jpg"] and rows[2][-1] == "failed"
    with open(csv_path) as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 3 and table[2]["failure"] == "empty file (0 bytes)"
    about = about_html(app.pipe, "en")
    assert "Apis mellifera" in about and "resnet18" in about and "probability 0.3" in about


def test_a_photo_too_narrow_is_a_message_and_the_batch_keeps_the_good_ones(tiny_models, tmp_path):
    app = _app(tiny_models)
    Image.new("RGB", (20000, 20)).save(tmp_path / "strip.png")
    image, panel, state = app.identify_page.identify(str(tmp_path / "strip.png"), 1.0, 0.3, "English")
    assert image is None and state["message"] == "bad_file" and "too narrow" in state["detail"]
    good = str(make_scene(tmp_path / "p.jpg", [(5, 5, 20, 20)]))
    rows, _ = app.identify_page.batch([good, str(tmp_path / "strip.png"), good], 1.0, 0.3)
    assert [(r[0], r[-1]) for r in rows] == [("p.jpg", "ok"), ("strip.png", "failed"), ("p.jpg", "ok")]


def test_boxes_drawn_on_a_copy(tiny_models):
    from pipeline.render import draw_detections

    image = np.zeros((50, 60, 3), np.uint8)
    d = {"box": [5, 5, 20, 20], "accepted": True, "taxon": "Formicidae", "probability": 0.97, "top": []}
    out = draw_detections(image, [d])
    assert out.shape == image.shape and out.any() and not image.any()


def test_same_answers_are_grouped_with_reason_and_translated_rank():
    from gradio_app import group_answers

    def det(taxon, reason, p, rank=None):
        return {"taxon": taxon, "reason": reason, "probability": p, "accepted": reason in ("named", "rolled_up"),
                "rank": rank, "threshold": 0.94, "source": "detector", "unknown_score": 0.2,
                "top": [{"taxon": "Vespa velutina", "probability": 0.5},
                        {"taxon": "Vespa crabro", "probability": 0.47}]}

    dets = [det("Apis mellifera", "named", 0.95, "species"), det("Vespa", "rolled_up", 0.97, "genus"),
            det("Apis mellifera", "named", 0.99, "species"), det("uncertain", "uncertain", 0.5),
            det("uncertain", "uncertain", 0.6), det("Apis mellifera", "named", 0.96, "species")]
    groups = group_answers(dets)
    # three honey bees in one card (the surest shown), each uncertain box its own card
    assert [(g["taxon"], numbers) for g, numbers in groups] == [
        ("Apis mellifera", [1, 3, 6]), ("Vespa", [2]), ("uncertain", [4]), ("uncertain", [5])]
    assert groups[0][0]["probability"] == 0.99
    html = results_html({"detections": dets, "dropped": [det("no organism", "no_organism", 0.8)]}, "gl")
    assert "3 × " in html and "xénero" in html and "recadros 1, 3, 6" in html
    assert "1 recadro(s) descartado(s)" in html
    unknown = card_html(det("unknown", "unknown", 0.9), 7, "es")
    assert "organismo desconocido" in unknown and "0.200" in unknown and "INVASORA" not in unknown


def test_keep_for_review_and_the_review_callbacks(tiny_models, tmp_path):
    from types import SimpleNamespace

    from review import store as st

    det, clf = tiny_models
    pipe = Pipeline.from_files(det, clf, InferenceSettings(device="cpu", score_threshold=1.0, threshold=0.3,
                                                           classify_whole_photo=True, min_score_threshold=0.05))
    app = TaxolensApp(pipe, store_url=str(tmp_path / "s.sqlite"), photo_dir=tmp_path / "kept")
    photos = [make_scene(tmp_path / f"p{i}.jpg", [(5, 5, 20, 20)], seed=i) for i in range(3)]
    app.identify_page.identify(str(photos[0]), 1.0, 0.3, "English")  # not ticked: nothing kept
    assert st.stats(app.store)["photos"] == 0
    for p in photos:
        app.identify_page.identify(str(p), 1.0, 0.3, "English", keep=True)
    app.identify_page.identify(str(photos[0]), 1.0, 0.3, "English", keep=True)  # the same photo again: not twice
    assert st.stats(app.store)["photos"] == 3 and len(list((tmp_path / "kept").rglob("*.jpg"))) == 3
    assert {r["source"] for r in st.detection_rows(app.store)} == {"app"}

    image, panel, first = app.review_page.review_next("English")
    assert image is not None and "3 detections wait for review" in panel
    _, panel, same = app.review_page.review_answer("accept", first, "  ", None, "", "English")
    assert same == first and "Write your name first" in panel
    _, panel, same = app.review_page.review_answer("correct", first, "ana", "Vespa nonexistens", "", "English")
    assert same == first and "Vespa nonexistens is not a taxon" in panel
    _, panel, second = app.review_page.review_answer("skip", first, "ana", None, "", "English")
    assert second != first
    _, panel, after = app.review_page.review_answer("accept", first, "ana", None, "", "English")
    assert "Saved: accept by ana" in panel and after != first
    _, panel, _ = app.review_page.review_answer("correct", second, "ana", "asian hornet", "", "Español")  # an alias
    assert "Guardado" in panel
    signed = TaxolensApp(pipe, store_url=str(tmp_path / "s.sqlite"), photo_dir=tmp_path / "kept", signed_in=True)
    _, _, third = signed.review_page.review_next("English")
    signed.review_page.review_answer("redraw", third, "", "", "1, 2, 30, 40", "English",
                                     SimpleNamespace(username="brais"))
    reviewed = {r["id"]: r for r in st.detection_rows(app.store)}
    assert (reviewed[first]["review_action"], reviewed[first]["review_reviewer"]) == ("accept", "ana")
    assert reviewed[second]["review_taxon"] == "Vespa velutina"
    assert (reviewed[third]["review_reviewer"], reviewed[third]["review_w"]) == ("brais", 30.0)
    _, panel, none = app.review_page.review_next("English")
    assert none is None and "Nothing left to review" in panel


def test_a_shared_review_app_needs_the_operators_password(tmp_path, monkeypatch):
    """Refused before any model is loaded (the model paths here do not exist)."""
    import pytest

    import gradio_app

    monkeypatch.delenv("TAXOLENS_APP_PASSWORD", raising=False)
    args = ["--detector", str(tmp_path / "none.pt"), "--classifier", str(tmp_path / "none.pt"),
            "--store-url", str(tmp_path / "s.sqlite"), "--host", "0.0.0.0"]
    with pytest.raises(ValueError, match="needs a password"):
        gradio_app.main(args)
