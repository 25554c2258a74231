"""Batch, compare, the MCP tools and the start-up, through a launched app (`gradio_client`, MCP over HTTP)."""

import asyncio
import csv
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from segdemo.models.cards import ModelCard
from segdemo.serving.registry import served_models
from tests.helpers import batch_zip, start_app, stop_app

pytestmark = pytest.mark.slow
PETS = ModelCard.load(served_models()["pets"])
SMALL_UPLOAD_LIMIT_MB = 1  # the second server's upload limit, so that a refused upload stays small


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_segment_batch_zip_with_good_and_bad_images(client, tmp_path):
    zip_path, csv_path, summary, coco_path = client.predict([handle_file(batch_zip(tmp_path / "batch.zip"))], "pets",
                                                            api_name="/segment_batch")
    assert "3 images segmented" in summary and "2 skipped" in summary
    assert "broken.jpg" in summary and "notes.txt" in summary
    rows = list(csv.DictReader(open(csv_path)))
    assert [row["file"] for row in rows] == ["cat.png", "cup.png", "small.png"]  # ZIP members by path
    classes = PETS.classes
    assert set(rows[0]) == {"file", "width", "height", *[f"share_{c}" for c in classes],
                            *[f"mean_prob_{c}" for c in classes], "mean_uncertainty"}
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        assert {"classes.csv", "model_card.json", "model_card.md", "skipped.txt"} <= names
        assert "broken.jpg" in archive.read("skipped.txt").decode()
        assert list(csv.DictReader(io.StringIO(archive.read("classes.csv").decode()))) == rows
        for row in rows:
            labels = np.asarray(Image.open(io.BytesIO(archive.read(f"classes/{row['file']}"))))
            colour = Image.open(io.BytesIO(archive.read(f"masks/{row['file']}")))
            assert labels.shape == (int(row["height"]), int(row["width"]))
            assert colour.size == (int(row["width"]), int(row["height"]))
            palette = np.asarray(PETS.colors, np.uint8)
            assert np.array_equal(np.asarray(colour.convert("RGB")), palette[labels])
            shares = np.bincount(labels.reshape(-1), minlength=3) / labels.size
            assert np.allclose([float(row[f"share_{c}"]) for c in classes], shares, atol=1e-5)
            assert abs(sum(float(row[f"mean_prob_{c}"]) for c in classes) - 1) < 1e-3
            assert 0.0 <= float(row["mean_uncertainty"]) < 1.0
    assert float(rows[0]["share_pet"]) > 0.5  # the cat


def test_segment_batch_over_the_api_gives_coco_polygons_and_cut_outs(client, tmp_path):
    """COCO read back with pycocotools and rasterised: IoU >= 0.98 with the class-index masks, per class."""
    from pycocotools.coco import COCO

    zip_path, _, _, coco_path = client.predict([handle_file(batch_zip(tmp_path / "batch.zip"))], "pets", "polygon",
                                               1.0, "pet", api_name="/segment_batch")
    coco = COCO(coco_path)
    assert [category["name"] for category in coco.loadCats(coco.getCatIds())] == PETS.classes
    with zipfile.ZipFile(zip_path) as archive:
        for image in coco.loadImgs(coco.getImgIds()):
            stem = Path(image["file_name"]).stem
            labels = np.asarray(Image.open(io.BytesIO(archive.read(f"classes/{stem}.png"))))
            for index, name in enumerate(PETS.classes):
                truth = labels == index
                drawn = np.zeros_like(truth)
                for annotation in coco.loadAnns(coco.getAnnIds(imgIds=image["id"], catIds=[index + 1])):
                    drawn |= coco.annToMask(annotation).astype(bool)
                if truth.any():
                    assert (truth & drawn).sum() / (truth | drawn).sum() >= 0.98, (stem, name)
            cut = Image.open(io.BytesIO(archive.read(f"cutouts/{stem}.png")))
            assert cut.mode == "RGBA" and cut.size == (labels.shape[1], labels.shape[0])
            assert np.array_equal(np.asarray(cut)[..., 3] >= 128, labels == 0)
            assert json.loads(archive.read(f"polygons/{stem}.json"))["classes"] == PETS.classes
    with pytest.raises(Exception, match="less than minimum value 0"):  # the slider's bound, said as such
        client.predict([handle_file(batch_zip(tmp_path / "again.zip"))], "pets", "polygon", -1, "",
                       api_name="/segment_batch")


def test_batch_gallery_orders_by_share_or_least_certain_first():
    from segdemo.serving.batch import LEAST_CERTAIN_FIRST, BatchImage, BatchOutcome

    images = [BatchImage(name, 1, 1, {"pet": share, "background": 1 - share}, {}, unsure)
              for name, share, unsure in (("a", 0.2, 0.30), ("b", 0.9, 0.05), ("c", 0.5, 0.60))]
    outcome = BatchOutcome(images, [], ["pet", "background"])
    assert [item.name for item in outcome.sorted_by("pet")] == ["b", "c", "a"]
    assert [item.name for item in outcome.sorted_by(LEAST_CERTAIN_FIRST)] == ["c", "a", "b"]
    assert [item.name for item in outcome.sorted_by("no such class")] == ["a", "b", "c"]


def test_segment_batch_without_any_good_image_says_why(client, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"plain text")
    with pytest.raises(Exception, match="No image in the batch could be segmented: bad.png"):
        client.predict([handle_file(str(bad))], "pets", api_name="/segment_batch")


def test_compare_two_models_through_the_api(client):
    (overlay_a, overlay_b), disagreement, shares, note = client.predict(
        handle_file("examples/chelsea_cat.png"), "pets", "street", api_name="/compare")
    for path in (overlay_a, overlay_b, disagreement):
        assert path.endswith(".png") and Image.open(path).size == (451, 300)
    by_class = {item["label"]: item["confidence"] for item in shares["confidences"]}
    assert "pet" in by_class and all(0.0 <= value <= 1.0 for value in by_class.values())
    assert by_class["pet"] == 1.0  # street has no class "pet": every pet pixel disagrees
    assert "disagree on" in note


def test_compare_a_model_with_itself_agrees_everywhere(client):
    _, disagreement, shares, note = client.predict(handle_file("examples/chelsea_cat.png"), "pets", "pets",
                                                   api_name="/compare")
    assert all(item["confidence"] == 0.0 for item in shares["confidences"])
    assert "**0.0%**" in note
    assert not np.any(np.all(np.asarray(Image.open(disagreement).convert("RGB")) == (255, 0, 255), axis=-1))


def mcp_call(url, action):
    """Run `action(session)` in an MCP client session over the app's streamable HTTP endpoint."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def run():
        async with streamablehttp_client(f"{url}gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await action(session)

    return asyncio.run(run())


def data_url(path):
    """A file as a base64 data URL (the MCP server refuses to fetch URLs of private hosts such as 127.0.0.1)."""
    import base64

    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


MCP_TOOLS = {"segment", "cutout", "segment_batch", "compare", "segment_video", "add_training_pair", "check_pairs",
             "finetune", "retrain", "export_model"}


def test_mcp_lists_the_tools_and_segments_with_a_street_class(app_url):
    async def list_and_call(session):
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        image = data_url("examples/rocket_launch.jpg")
        result = await session.call_tool("segment", {"image": image, "model_name": "street",
                                                     "probability_class": "Sky", "opacity": 0.5})
        return tools, result

    tools, result = mcp_call(app_url, list_and_call)
    assert set(tools) == MCP_TOOLS  # the API's names; no UI events, nothing that takes a token
    parameters = tools["segment"].inputSchema["properties"]
    assert set(parameters) == {"image", "model_name", "probability_class", "opacity"}
    assert "enum" not in parameters["probability_class"] and "enum" not in parameters["model_name"]
    assert "pet, background, border" in parameters["model_name"]["description"] or \
        "pet, background, border" in tools["segment"].description
    assert "class-index mask" in tools["segment"].description
    assert not result.isError, result.content
    images = [item for item in result.content if getattr(item, "type", "") == "image"]
    assert len(images) >= 4 and all(item.mimeType == "image/png" for item in images)  # masks and maps as images
    text = " ".join(getattr(item, "text", "") for item in result.content)
    assert "Sky" in text and "Road" in text and "probability_Sky" in text  # the street class's map, by name


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    """A second server, started for this module, with a small upload limit."""
    log_path = tmp_path_factory.mktemp("fresh") / "server.log"
    process, url, _ = start_app(log_path, SEGDEMO_MAX_UPLOAD_MB=str(SMALL_UPLOAD_LIMIT_MB))
    yield url, log_path
    stop_app(process, log_path)


def test_request_right_after_start_waits_for_the_model(fresh_app):
    url, log_path = fresh_app
    client = Client(url, verbose=False)  # at once: the model is still loading in the background
    *_, info, mask_path = client.predict(handle_file("examples/chelsea_cat.png"), "pets", "pet", 0.5,
                                         api_name="/segment")
    assert Image.open(mask_path).size == (451, 300) and "Pets" in info
    log = log_path.read_text()
    assert re.search(r"ready (on|[0-9.]+ s after the app process started)", log) and "Traceback" not in log


def test_upload_over_the_limit_is_refused_with_a_message(fresh_app, tmp_path):
    import httpx

    url, _ = fresh_app
    large = tmp_path / "large.png"
    large.write_bytes(b"\0" * (SMALL_UPLOAD_LIMIT_MB * 1_000_000 + 1))
    client = Client(url, verbose=False)  # gradio_client reads the limit from the app and refuses first
    with pytest.raises(Exception, match="exceeds the maximum file size of 1000000 bytes"):
        client.predict(handle_file(str(large)), "pets", "pet", 0.5, api_name="/segment")
    with open(large, "rb") as handle:  # a raw upload is refused by the server while it streams in
        response = httpx.post(f"{url}gradio_api/upload", files={"files": handle}, timeout=30)
    assert response.status_code == 413 and "exceeded maximum allowed size of 1000000 bytes" in response.text
    # an upload under the limit is still served
    assert client.predict(handle_file("examples/coffee_cup.png"), "pets", "pet", 0.5, api_name="/segment")
