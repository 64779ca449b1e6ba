"""The web app as a person uses it: a real browser (Debian's chromium driven by Playwright) on 127.0.0.1."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.species import species_card
from tests.conftest import shared

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("TAXOLENS_SCREENSHOTS", ROOT / "runs" / "screenshots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_app(tiny_models, *extra):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    det, clf = tiny_models
    port = _free_port()
    # no box reaches score 1.0 with the untrained tiny detector: each photo is classified whole, one card
    cmd = [sys.executable, str(ROOT / "gradio_app.py"), "--detector", str(det), "--classifier", str(clf),
           "--port", str(port), "--score-threshold", "1.0", "--threshold", "0.3", "--classify-whole-photo",
           "--device", "cpu", *map(str, extra)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited: {proc.stderr.read()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not start within 120 s")
    return proc, url


@pytest.fixture(scope="module")
def app_url(tiny_models):
    proc, url = _start_app(tiny_models)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


def test_upload_see_card_switch_language_and_bad_file(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = sorted((shared("hymenoptera") / "val" / "bees").iterdir())[0]
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a photo")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.locator("#upload input[type=file]").set_input_files(str(photo))
        card = page.locator("[data-testid=organism-card]").first
        expect(card).to_be_visible(timeout=60_000)
        expect(page.locator("#boxed img")).to_be_visible(timeout=30_000)
        # the boxed photo comes as a JPEG (encoded in a few ms, not Gradio's slow default WebP)
        assert (page.locator("#boxed img").get_attribute("src") or "").split("?")[0].endswith((".jpeg", ".jpg"))
        text = card.inner_text()
        taxon = next(c for c in ("Apis mellifera", "Formicidae", "Vespa velutina") if c in text)
        assert species_card(taxon, "en")["name"] in text and "Habitat" in text
        page.screenshot(path=str(SCREENSHOTS / "app_english.png"), full_page=True)

        page.get_by_label("Galego").check()
        galician = species_card(taxon, "gl")
        expect(card).to_contain_text(galician["name"], timeout=30_000)
        expect(card).to_contain_text(galician["habitat"][:40])
        expect(page.locator("#identify")).to_have_text("Identificar")
        page.screenshot(path=str(SCREENSHOTS / "app_galician.png"), full_page=True)

        page.locator("#upload button[aria-label*='Clear'], #upload button[aria-label*='clear']").first.click()
        page.locator("#upload input[type=file]").set_input_files(str(text_file))
        message = page.locator("[data-testid=message]")
        expect(message).to_be_visible(timeout=60_000)
        expect(message).to_contain_text("Este ficheiro non se pode usar como foto")
        expect(message).to_contain_text("notes.txt")
        page.screenshot(path=str(SCREENSHOTS / "app_bad_file.png"), full_page=True)
        browser.close()


def test_review_tab_accept_one_correct_one_and_see_both_in_the_export(tiny_models, tmp_path):
    """Keep two photos for review, then as an expert: accept one with the keyboard, correct the other."""
    from playwright.sync_api import expect, sync_playwright

    from review.exports import export_dwc
    from review.store import open_store, stats

    store = tmp_path / "store.sqlite"
    proc, url = _start_app(tiny_models, "--store-url", store)
    photos = sorted((shared("hymenoptera") / "val" / "bees").iterdir())[:2]
    try:
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.locator("#keep input[type=checkbox]").check()
            for n, photo in enumerate(photos, start=1):
                page.locator("#upload input[type=file]").set_input_files(str(photo))
                expect(page.locator("[data-testid=organism-card]").first).to_be_visible(timeout=60_000)
                deadline = time.time() + 60
                while time.time() < deadline and not (store.exists() and stats(open_store(store))["photos"] == n):
                    time.sleep(0.2)
                page.locator("#upload button[aria-label*='Clear'], #upload button[aria-label*='clear']").first.click()
            page.get_by_role("tab", name="Review").click()
            panel = page.locator("#review-panel")
            expect(panel).to_contain_text("2 detections wait for review", timeout=30_000)
            page.locator("#reviewer").locator("textarea, input").first.fill("ana")
            page.locator("#review-panel").click()  # leave the text box, so that the key is a shortcut
            page.keyboard.press("a")
            expect(panel).to_contain_text("Saved: accept by ana", timeout=30_000)
            expect(panel).to_contain_text("1 detections wait for review")
            taxon = page.locator("#review-taxon input")
            taxon.fill("Vespa crabro")
            taxon.press("Enter")
            page.locator("#review-correct").click()
            expect(panel).to_contain_text("Saved: correct by ana", timeout=30_000)
            expect(panel).to_contain_text("Nothing left to review")
            page.screenshot(path=str(SCREENSHOTS / "app_review.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    engine = open_store(store)
    assert export_dwc(engine, tmp_path / "dwc.zip")["HumanObservation"] == 2
    import zipfile
    occurrences = zipfile.ZipFile(tmp_path / "dwc.zip").read("occurrence.txt").decode()
    assert "Vespa crabro" in occurrences and occurrences.count("verified by expert") == 2
    assert occurrences.count("\tana\t") == 2
