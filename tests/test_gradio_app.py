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


@pytest.fixture(scope="module")
def app_url(tiny_models):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it: apt-get install chromium)")
    det, clf = tiny_models
    port = _free_port()
    # no box reaches score 1.0 with the untrained tiny detector: each photo is classified whole, one card
    cmd = [sys.executable, str(ROOT / "gradio_app.py"), "--detector", str(det), "--classifier", str(clf),
           "--port", str(port), "--score-threshold", "1.0", "--threshold", "0.3", "--classify-whole-photo",
           "--device", "cpu"]
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
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_upload_see_card_switch_language_and_bad_file(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = sorted((shared("hymenoptera") / "val" / "bees").iterdir())[0]
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a photo")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(app_url)
        page.locator("#upload input[type=file]").set_input_files(str(photo))
        card = page.locator("[data-testid=organism-card]").first
        expect(card).to_be_visible(timeout=60_000)
        expect(page.locator("#boxed img")).to_be_visible(timeout=30_000)
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
