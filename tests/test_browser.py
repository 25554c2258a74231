"""A real headless browser (Debian chromium via Playwright) uploads an image and sees the outputs render.

Set SEGDEMO_SCREENSHOT=path to also save a screenshot of the page (README's screenshot is made this way)."""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUTPUT_IDS = ("class-mask", "probability-map", "overlay")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("SEGDEMO_REQUIRE_BROWSER"),
    reason="Debian chromium is not installed (apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(app_url)
        yield page
        browser.close()


def test_upload_renders_mask_probability_and_overlay(page):
    page.locator("#input-image input[type=file]").set_input_files("examples/chelsea_cat.png")
    for element_id in OUTPUT_IDS:
        image = page.locator(f"#{element_id} img")
        image.wait_for(state="visible", timeout=60_000)
        page.wait_for_function(f"document.querySelector('#{element_id} img').naturalWidth > 0", timeout=30_000)
        assert ".png" in image.get_attribute("src")
    page.get_by_text("Legend:").wait_for()
    page.locator("#class-areas").get_by_text("pet").first.wait_for()
    page.locator("#segment-info").get_by_text("ms").first.wait_for()
    screenshot = os.environ.get("SEGDEMO_SCREENSHOT")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)


def test_bad_upload_shows_a_message_and_keeps_serving(page, tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_text("plain text")
    page.locator("#input-image input[type=file]").set_input_files(str(bad))
    page.get_by_text("not a readable image").first.wait_for(timeout=30_000)
