"""A real headless browser (Debian chromium via Playwright) uploads an image and sees the outputs render.

Set SEGDEMO_SCREENSHOT=path to also save a screenshot of the page (README's screenshot is made this way)."""

import contextlib
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from segdemo.app.showcase import TITLE
from segdemo.models.cards import ModelCard
from segdemo.serving.registry import served_models

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUTPUT_IDS = ("class-mask", "probability-map", "overlay")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("SEGDEMO_REQUIRE_BROWSER"),
    reason="Debian chromium is not installed (apt-get install -y chromium)",
)]


@contextlib.contextmanager
def browser_page(url, height=1200):
    """A page of headless Debian chromium (Playwright, no browser download) opened at `url`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.goto(url)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def page(app_url):
    with browser_page(app_url) as page:
        yield page


def test_upload_renders_mask_probability_and_overlay(page):
    page.locator("#page-heading").get_by_text(TITLE).first.wait_for(timeout=60_000)
    assert page.title() == TITLE  # the bundled demo's page (a user's showcase: tests/test_browser_showcase.py)
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


def test_page_shows_the_device_once_the_model_is_loaded(page):
    page.wait_for_function("!document.querySelector('#segment-info').innerText.includes('Loading the model')",
                           timeout=120_000)
    text = page.locator("#segment-info").inner_text()
    assert "CPU" in text or "GPU" in text


def test_compare_tab_shows_both_overlays_in_a_slider(page):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-image input[type=file]").set_input_files("examples/chelsea_cat.png")
    page.locator("#compare-note").get_by_text("disagree on").wait_for(timeout=60_000)
    page.wait_for_function("[...document.querySelectorAll('#compare-slider img')].filter(i => i.naturalWidth > 0)"
                           ".length >= 2", timeout=30_000)
    sources = [img.get_attribute("src") for img in page.locator("#compare-slider img").all()]
    assert any("overlay_a" in src for src in sources) and any("overlay_b" in src for src in sources)
    page.wait_for_function("document.querySelector('#compare-disagreement img')?.naturalWidth > 0", timeout=30_000)
    page.locator("#compare-shares").get_by_text("pet").first.wait_for()
    page.get_by_role("tab", name="Segment").click()


def test_batch_tab_zip_gallery_and_sorting(page, tmp_path):
    from tests.helpers import batch_zip

    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-files input[type=file]").set_input_files(batch_zip(tmp_path / "batch.zip"))
    page.locator("#batch-run").click()
    page.locator("#batch-summary").get_by_text("3 images segmented").wait_for(timeout=120_000)
    page.locator("#batch-summary").get_by_text("broken.jpg").first.wait_for()
    page.wait_for_function("document.querySelectorAll('#batch-gallery img').length >= 3", timeout=30_000)
    page.locator("#batch-gallery").get_by_text("cat · pet").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Segment").click()


FINETUNE_STEPS_IN_ORDER = ("#finetune-files", "#check-button", "#train-button", "#metrics-table", "#set-summary",
                           "#retrain-button")  # upload, check, train, result, then the teach loop's section


def quick_training_options(page, steps):
    """Open the Fine-tune tab's Training options and ask for a quick run: `steps` steps at 64 px, no augmentation
    (the plumbing is what these tests check; docs/finetune.md measures the defaults)."""
    page.get_by_text("Training options").click()
    page.get_by_label("Training steps").last.fill(str(steps))
    page.get_by_label("Input size").last.fill("64")
    page.get_by_label("Augmentation").uncheck()


def test_finetune_tab_follows_its_steps_upload_check_train_result(page, tmp_path):
    import zipfile

    from tests.helpers import add_square_pairs

    archive = tmp_path / "pairs.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        add_square_pairs(handle, 6, seed=5)
    page.get_by_role("tab", name="Fine-tune").click()
    tops = [page.locator(selector).first.bounding_box()["y"] for selector in FINETUNE_STEPS_IN_ORDER]
    assert tops == sorted(tops), dict(zip(FINETUNE_STEPS_IN_ORDER, tops))  # the page reads in step order
    primary = [text.strip() for text in page.locator("button.primary:visible").all_inner_texts()]
    assert primary == ["Check pairs", "Train", "Retrain from my current model"], primary  # one per step
    page.locator("#finetune-files input[type=file]").set_input_files(str(archive))  # 1. upload
    page.locator("#check-button").click()  # 2. check
    page.locator("#pairs-report").get_by_text("6 pairs ready").wait_for(timeout=60_000)
    page.locator("#pairs-table span", has_text="p0.jpg").first.wait_for()
    page.locator("#set-summary").get_by_text("6 pairs").wait_for(timeout=30_000)  # the upload joined the set
    quick_training_options(page, 20)
    page.locator("#train-button").click()  # 3. train
    # the options reached the job: the result says its steps (a round's status lasts a fraction of a second at
    # 64 px, too briefly to wait for; the API test sees every round's)
    page.locator("#finetune-status").get_by_text(re.compile(r"Done .*, 20 steps\.")).wait_for(timeout=240_000)
    page.locator("#loss-curve canvas, #loss-curve svg").first.wait_for(timeout=60_000)
    page.wait_for_function("document.querySelector('#sample-prediction img')?.naturalWidth > 0", timeout=60_000)
    page.locator("#metrics-table").get_by_text("mean IoU").wait_for(timeout=60_000)  # 4. the result
    screenshot = os.environ.get("SEGDEMO_FINETUNE_SCREENSHOT")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)


def test_model_selector_switches_legend_classes_and_examples(page):
    titles = {name: ModelCard.load(path).title for name, path in served_models().items()}
    other = next(name for name in titles if name != "pets")
    page.reload()
    page.get_by_text("Examples for pets").first.wait_for(timeout=60_000)
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name=re.compile(re.escape(titles[other]))).click()
    card = ModelCard.load(served_models()[other])
    page.locator(".segdemo-legend").get_by_text(card.classes[-1]).first.wait_for(timeout=60_000)
    page.get_by_text(f"Examples for {other}").first.wait_for(timeout=30_000)
    assert not page.get_by_text("Examples for pets").first.is_visible()


def class_mask_pixels(page):
    """The class mask shown in the Segment tab, as a (H, W, 3) array."""
    import io

    import numpy as np
    from PIL import Image

    source = page.locator("#class-mask img").get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(source).body())).convert("RGB"))


def paint_background_band(page):
    """Open the editor on the last prediction and paint a wide band across the cat's eyes in the background
    class's brush (black)."""
    editor = page.locator("#mask-editor")
    page.locator("#correct-button").click()
    page.wait_for_timeout(3000)  # the prediction loads into the editor's background
    editor.locator("button[aria-label=Brush]").click()
    editor.locator("button[aria-label=Color]").click()
    editor.locator(".swatch button.color").nth(1).click()  # pets: pet, background, border
    box = editor.locator("canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 120, y - 40)
    page.mouse.down()
    for step in range(1, 30):
        page.mouse.move(x - 120 + 8 * step, y - 40 + (step % 2) * 40)  # one event each (~0.4 s in chromium)
    page.mouse.up()
    page.wait_for_timeout(2000)  # the editor sends its layers to the server a moment after the stroke


def test_teach_loop_paint_add_retrain_changes_the_prediction_where_painted(page):
    page.reload()  # a new session: an empty training set
    page.locator("#input-image input[type=file]").set_input_files("examples/chelsea_cat.png")
    page.wait_for_function("document.querySelector('#class-mask img')?.naturalWidth > 0", timeout=60_000)
    band = (slice(110, 150), slice(130, 310))  # inside the painted band, in the 451x300 image
    before = class_mask_pixels(page)[band]
    page.get_by_text("Correct this mask (teach the model)").click()
    paint_background_band(page)
    for count in (1, 2):  # the same correction twice: one pair to train on, one held out
        page.locator("#add-pair-button").click()
        page.locator("#correct-status").get_by_text(f"{count} pairs in your training set").wait_for(timeout=30_000)
    assert "corrected" in page.locator("#correct-status").inner_text()
    page.get_by_role("tab", name="Fine-tune").click()
    page.locator("#set-summary").get_by_text("2 pairs").wait_for(timeout=10_000)
    page.get_by_label("Retrain steps").last.fill("30")  # not RETRAIN_STEPS (100): 30 already learn the band
    page.locator("#retrain-button").click()
    page.locator("#finetune-status").get_by_text(re.compile(r"Done .*, 30 steps\.")).wait_for(timeout=240_000)
    page.get_by_role("tab", name="Segment").click()
    page.locator("#segment-info").get_by_text("fine-tuned").first.wait_for(timeout=60_000)  # redrawn with it
    after = class_mask_pixels(page)[band]
    black_before, black_after = (np.all(pixels == 0, axis=-1).mean() for pixels in (before, after))
    assert black_after > black_before + 0.2, (black_before, black_after)
