"""A user's showcase in a real headless browser: a small model made here, described with segdemo.card's showcase
options and served alone (`SEGDEMO_MODELS` + `SEGDEMO_ONLY`, as a Space's variables do) shows its title in the
page and the browser tab, its description, its examples and its colours; segdemo's own words are in the About
tab. (The bundled page's title is checked in tests/test_browser.py.)

Set SEGDEMO_SHOWCASE_SCREENSHOT=path to save a screenshot of the page (docs/showcase.png is made this way)."""

import io
import os

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from segdemo.card import cli as card_command
from tests.helpers import start_app, stop_app
from tests.test_browser import browser_page, pytestmark  # noqa: F401 - slow, and skipped without chromium

TITLE = "Road cracks"
COLORS = [(40, 40, 40), (255, 140, 0)]


def crack_photo(path, seed):
    """A grey 'concrete' photo with a dark crack."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(150, 200, (120, 160, 3), dtype=np.uint8))
    ImageDraw.Draw(image).line([(10, 20 + 10 * seed), (80, 60), (150, 100 - 5 * seed)], fill=(30, 30, 30), width=5)
    image.save(path)


@pytest.fixture(scope="module")
def showcase_url(tmp_path_factory):
    import keras

    from segdemo.models.architectures import build_unet

    folder = tmp_path_factory.mktemp("showcase")
    model = folder / "cracks.keras"
    keras.utils.set_random_seed(0)
    build_unet(2, input_size=64, depth=2, base_filters=4).save(model)
    examples = folder / "photos"
    examples.mkdir()
    for seed in range(2):
        crack_photo(examples / f"wall_{seed}.png", seed)
    (folder / "about.md").write_text("Finds **cracks** in concrete walls: drop a photo of a wall.\n")
    card_command.main([str(model), "--classes", "concrete", "crack", "--input-scale", "0..1", "--title", TITLE,
                       "--description", str(folder / "about.md"), "--main-class", "crack", "--examples",
                       str(examples), "--colors", *[",".join(map(str, color)) for color in COLORS]])
    log_path = folder / "server.log"
    process, url, _ = start_app(log_path, SEGDEMO_MODELS=str(model), SEGDEMO_ONLY="1")
    yield url
    stop_app(process, log_path)


@pytest.fixture(scope="module")
def page(showcase_url):
    with browser_page(showcase_url, height=1100) as page:
        yield page


def test_the_page_is_about_the_users_model(page):
    page.locator("#page-heading").get_by_text(TITLE).first.wait_for(timeout=60_000)
    assert page.title() == TITLE
    assert "Finds cracks in concrete walls" in page.locator("#page-heading").inner_text()
    assert "U-Net semantic segmentation" not in page.locator("#page-heading").inner_text()
    page.get_by_text("Examples for cracks").first.wait_for(timeout=30_000)
    assert page.get_by_text("chelsea_cat").count() == 0  # not our examples
    legend = page.locator(".segdemo-legend")
    for name, (r, g, b) in zip(("concrete", "crack"), COLORS):
        swatch = legend.locator("span", has_text=name).locator("span").first
        assert f"rgb({r},{g},{b})" in swatch.get_attribute("style")
    assert page.get_by_label("Probability map of class").input_value() == "crack"  # its main class


def test_an_example_segments_in_the_models_colours(page, showcase_url):
    page.locator(".gallery-item, button.gallery").first.click()
    mask = page.locator("#class-mask img")
    mask.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("document.querySelector('#class-mask img').naturalWidth > 0", timeout=30_000)
    pixels = np.asarray(Image.open(io.BytesIO(httpx.get(mask.get_attribute("src")).content)).convert("RGB"))
    assert {tuple(color) for color in np.unique(pixels.reshape(-1, 3), axis=0)} <= set(COLORS)
    screenshot = os.environ.get("SEGDEMO_SHOWCASE_SCREENSHOT")
    if screenshot:
        page.screenshot(path=screenshot, full_page=False)


def test_segdemos_own_words_are_in_the_about_tab(page):
    page.get_by_role("tab", name="About").click()
    about = page.locator("#about-segdemo")
    about.wait_for(state="visible", timeout=30_000)
    assert "Made with segdemo" in about.inner_text() and "Road cracks" in about.inner_text()
    page.get_by_role("tab", name="Segment").click()
