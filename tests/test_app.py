"""The launched app through `gradio_client`: the named `segment` endpoint and its error messages."""

import io

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from segdemo.models.cards import ModelCard, class_colors
from segdemo.serving.registry import served_models

pytestmark = pytest.mark.slow  # every test here talks to a launched server

@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_api_lists_segment(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert "/segment" in endpoints
    parameters = [p["parameter_name"] for p in endpoints["/segment"]["parameters"]]
    assert parameters == ["image", "model_name", "probability_class", "opacity"]


def test_segment_returns_pngs_with_class_colours(client):
    color_path, prob_path, unsure_path, overlay_path, areas, info, mask_path = client.predict(
        handle_file("examples/chelsea_cat.png"), "pets", "pet", 0.5, api_name="/segment")
    for path in (color_path, prob_path, unsure_path, overlay_path, mask_path):
        assert path.endswith(".png")  # lossless: class colours survive
    color_mask = np.asarray(Image.open(color_path).convert("RGB"))
    classes = np.asarray(Image.open(mask_path))
    assert color_mask.shape[:2] == classes.shape == (300, 451)
    assert Image.open(prob_path).mode == "L"
    unsure = np.asarray(Image.open(unsure_path))
    # at the model's resolution (pets: 192 px) in the image's aspect; unsure at edges, sure elsewhere
    assert unsure.shape == (128, 192) and unsure.max() > 128 > unsure.min()
    mean_uncertainty = float(info.split("mean uncertainty ")[1].split()[0])
    assert 0.0 < mean_uncertainty < 0.5
    # every pixel carries exactly its class's colour (pets card: pet red, background black, border yellow)
    palette = np.array([[230, 25, 75], [0, 0, 0], [255, 225, 25]], np.uint8)
    assert np.array_equal(color_mask, palette[classes])
    shares = {item["label"]: item["confidence"] for item in areas["confidences"]}
    assert set(shares) == {"pet", "background", "border"} and shares["pet"] > 0.5
    assert "CPU" in info or "GPU" in info


def test_segment_without_downloads_returns_urls_of_the_same_files(app_url, client):
    """README's API tip: Client(URL, download_files=False) gives each output file's URL, and what the URL
    serves is the file the downloading client gets."""
    urls_only = Client(app_url, verbose=False, download_files=False)
    image = handle_file("examples/coffee_cup.png")
    outputs = urls_only.predict(image, "pets", "pet", 0.5, api_name="/segment")
    files = [outputs[index] for index in (0, 1, 2, 3, 6)]
    assert all(file["url"].startswith(app_url) and file["url"].endswith(".png") for file in files)
    with httpx.Client() as http:
        served = np.asarray(Image.open(io.BytesIO(http.get(files[-1]["url"]).content)))
    downloaded = np.asarray(Image.open(client.predict(image, "pets", "pet", 0.5, api_name="/segment")[6]))
    assert served.shape == downloaded.shape == (400, 600) and np.array_equal(served, downloaded)


def test_cutout_keeps_the_class_at_full_size_with_its_probability_as_alpha(client):
    image = handle_file("examples/chelsea_cat.png")
    *_, mask_path = client.predict(image, "pets", "pet", 0.5, api_name="/segment")
    labels = np.asarray(Image.open(mask_path))
    sharp = Image.open(client.predict(image, "pets", "pet", "sharp", api_name="/cutout"))
    soft = Image.open(client.predict(image, "pets", "", "soft", api_name="/cutout"))  # "": the main class, pet
    assert sharp.mode == soft.mode == "RGBA" and sharp.size == soft.size == (451, 300)
    pixels = np.asarray(Image.open("examples/chelsea_cat.png").convert("RGB"))
    for cut in (sharp, soft):
        assert np.array_equal(np.asarray(cut)[..., :3], pixels)
    alpha_sharp, alpha_soft = np.asarray(sharp)[..., 3], np.asarray(soft)[..., 3]
    assert np.array_equal(alpha_sharp, np.where(labels == 0, 255, 0))  # pet is class 0
    assert np.array_equal(alpha_soft >= 128, labels == 0)  # the soft edge agrees with the mask
    assert 0 < np.mean((alpha_soft > 0) & (alpha_soft < 255)) < 0.2  # and is soft only near the border
    with pytest.raises(Exception, match=r"unknown class 'tail'; this model's classes: pet, background, border"):
        client.predict(image, "pets", "tail", "soft", api_name="/cutout")


@pytest.mark.parametrize("name", list(served_models()))
def test_every_bundled_model_serves_its_examples_with_its_card_colours(client, name):
    card = ModelCard.load(served_models()[name])
    example = f"examples/{(card.examples or ['chelsea_cat.png'])[0]}"
    color_path, _, _, _, areas, info, mask_path = client.predict(
        handle_file(example), name, card.default_class, 0.5, api_name="/segment")
    classes = np.asarray(Image.open(mask_path))
    palette = np.asarray(class_colors(card), np.uint8)
    assert np.array_equal(np.asarray(Image.open(color_path).convert("RGB")), palette[classes])
    assert {item["label"] for item in areas["confidences"]} == set(card.classes)
    assert card.title in info
    width, height = card.size
    assert f"resized to {width}×{height} for the model" in info


def test_odd_image_through_the_api(client, tmp_path):
    path = tmp_path / "tall.png"
    Image.new("LA", (1, 300), (128, 200)).save(path)
    *_, mask_path = client.predict(handle_file(str(path)), "pets", "border", 1.0, api_name="/segment")
    assert Image.open(mask_path).size == (1, 300)


@pytest.mark.parametrize("payload,message", [
    (b"this is text, not a picture", "not a readable image"),
    (b"", "not a readable image"),
])
def test_bad_upload_gives_a_clear_message(client, tmp_path, payload, message):
    path = tmp_path / "upload.png"
    path.write_bytes(payload)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(path)), "pets", "pet", 0.5, api_name="/segment")
    # and the server still serves
    assert client.predict(handle_file("examples/coffee_cup.png"), "pets", "pet", 0.5, api_name="/segment")


def test_decompression_bomb_refused(client, tmp_path):
    path = tmp_path / "bomb.png"
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    with pytest.raises(Exception, match="too large"):
        client.predict(handle_file(str(path)), "pets", "pet", 0.5, api_name="/segment")


def test_export_endpoint_writes_model_and_card(client):
    model_path, card_path = client.predict("pets", "Keras (.keras)", api_name="/export_model")
    assert model_path.endswith("pets.keras") and card_path.endswith("pets.json")
    assert '"classes"' in open(card_path).read()


@pytest.mark.parametrize("name", [str(served_models()["street"].resolve()), "../weights/street", "hf://someone/unet",
                                  "street.keras"])
def test_models_over_the_web_are_names_never_paths(client, name):
    """A path, `..` or a Hub URI from an API caller is an unknown model, and the message lists the models."""
    for call in (lambda: client.predict(handle_file("examples/chelsea_cat.png"), name, api_name="/segment"),
                 lambda: client.predict(handle_file("examples/chelsea_cat.png"), handle_file("examples/cameraman.png"),
                                        name, api_name="/add_training_pair"),
                 lambda: client.predict(handle_file("examples/chelsea_cat.png"), name, "pets", api_name="/compare")):
        with pytest.raises(Exception, match=r"unknown model .*the models of this session: membranes, pets, street"):
            call()


def test_every_parameter_after_the_image_has_a_default(client):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/segment", "/cutout", "/segment_batch", "/compare", "/segment_video", "/add_training_pair",
                 "/check_pairs", "/finetune", "/retrain", "/export_model"):
        parameters = endpoints[name]["parameters"]
        first_optional = 2 if name in ("/add_training_pair",) else 0 if name in ("/retrain", "/export_model") else 1
        missing = [p["parameter_name"] for p in parameters[first_optional:] if not p["parameter_has_default"]]
        assert not missing, (name, missing)
    *_, info, _ = client.predict(handle_file("examples/chelsea_cat.png"), api_name="/segment")  # all defaults
    assert "Pets" in info
