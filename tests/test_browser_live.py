"""The Live tab's webcam in a real headless Chromium whose camera is a fake device playing a file this test writes:
two seconds of the cat, two of the coffee cup, each panning slowly, looping. The class mask the page shows must
follow it (the pet's colour covers much of the frame, then almost none), and the stats line must count frames."""

import re
import time

import numpy as np
import pytest
from PIL import Image

from segdemo.models.cards import ModelCard, class_colors
from tests.helpers import EXAMPLES, write_y4m
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, pytestmark  # noqa: F401 - slow, skipped without chromium

FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
SECONDS = 25  # at most, watching the page
PET_SHARE_JS = """(colour) => {
  const img = document.querySelector('#live-mask img');
  if (!img || !img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let hits = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - colour[0]) < 8 && Math.abs(data[i + 1] - colour[1]) < 8
        && Math.abs(data[i + 2] - colour[2]) < 8) hits++;
  }
  return hits / (data.length / 4);
}"""


def feed(path):
    frames = [np.asarray(Image.open(EXAMPLES / name).convert("RGB").resize((640, 480)))
              for name in ("chelsea_cat.png", "coffee_cup.png")]
    moving = [np.roll(frames[index // 20], 6 * (index % 20), axis=1) for index in range(40)]  # a slow pan each
    return write_y4m(path, moving, fps=10)


@pytest.fixture(scope="module")
def camera_page(app_url, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    video = feed(tmp_path_factory.mktemp("camera") / "feed.y4m")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *CHROMIUM_ARGS, *FAKE_CAMERA, f"--use-file-for-fake-video-capture={video}"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(app_url)
        yield page
        browser.close()


def frames_counted(page):
    match = re.search(r"(?<![\d.])(\d+) frames(?!/)", page.locator("#live-stats").inner_text())  # not "6.5 frames/s"
    return int(match.group(1)) if match else 0


def test_webcam_overlay_follows_the_camera_and_the_stats_count_frames(camera_page):
    page = camera_page
    pet_colour = list(class_colors(ModelCard.load("weights/pets.json"))[0])
    page.get_by_role("tab", name="Live").click()
    page.get_by_text("Click to Access Webcam").click()
    page.locator("#live-camera button", has_text="Record").first.click()
    page.wait_for_function("document.querySelector('#live-output img')?.naturalWidth > 0", timeout=60_000)
    shares, sources, started = [], set(), time.perf_counter()
    while time.perf_counter() - started < SECONDS:
        share = page.evaluate(PET_SHARE_JS, pet_colour)
        if share is not None:
            shares.append(share)
        sources.add(page.locator("#live-output img").get_attribute("src"))
        if shares and max(shares) > 0.3 and min(shares) < 0.05 and len(sources) > 10:
            break
        time.sleep(0.2)
    assert max(shares) > 0.3, shares  # the cat's frames: the pet covers much of the mask
    assert min(shares) < 0.05, shares  # the cup's frames: no pet
    assert len(sources) > 10  # the overlay keeps changing with the feed
    counts = [frames_counted(page)]
    while time.perf_counter() - started < SECONDS + 10 and counts[-1] < counts[0] + 5:
        time.sleep(0.3)
        counts.append(frames_counted(page))
    stats = page.locator("#live-stats").inner_text()
    assert counts[-1] >= counts[0] + 5 and counts[-1] > 5, (counts, stats)  # the line counts the frames
    assert re.search(r"\d+\.\d frames/s · model \d+ ms/frame", stats), stats
    page.locator("#live-camera button", has_text="Stop").first.click()


def start_stream(page):
    page.get_by_role("tab", name="Live").click()
    access = page.get_by_text("Click to Access Webcam")
    if access.count():
        access.click()
    page.locator("#live-camera button", has_text="Record").first.click()


def test_two_people_streaming_at_once_both_get_frames(camera_page):
    """Two sessions (two pages of their own) stream together: both overlays arrive and both counts grow."""
    first = camera_page
    second = first.context.browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
    try:
        second.goto(first.url)
        for page in (first, second):
            start_stream(page)
        for page in (first, second):
            page.wait_for_function("document.querySelector('#live-output img')?.naturalWidth > 0", timeout=60_000)
        starts = [frames_counted(page) for page in (first, second)]
        deadline = time.perf_counter() + SECONDS
        while time.perf_counter() < deadline and not all(
                frames_counted(page) >= start + 5 for page, start in zip((first, second), starts)):
            time.sleep(0.3)
        counts = [frames_counted(page) for page in (first, second)]
        assert all(count >= start + 5 for count, start in zip(counts, starts)), (starts, counts)
    finally:
        for page in (first, second):
            stop = page.locator("#live-camera button", has_text="Stop")
            if stop.count():
                stop.first.click()
        second.context.close()
