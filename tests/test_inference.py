"""Segmenter: any input size, no retracing, rendering helpers; the bundled model on a shipped photo."""

import numpy as np
import pytest

from segdemo.data.images import load_image
from segdemo.models.architectures import build_unet
from segdemo.models.cards import ModelCard
from segdemo.serving.drawing import colorize, grey_map, overlay, palette_lut, probability_map
from segdemo.serving.registry import get_segmenter
from segdemo.serving.segmenter import Segmenter, class_areas, mean_uncertainty, uncertainty

TINY_CARD = ModelCard.from_dict({"name": "tiny", "classes": ["background", "thing"],
                                 "colors": [[0, 0, 0], [255, 0, 0]], "input_size": 32, "architecture": "unet"})


@pytest.fixture(scope="module")
def tiny_segmenter():
    return Segmenter(build_unet(2, depth=2, base_filters=4), TINY_CARD).warm_up()


@pytest.mark.parametrize("height,width", [(1, 1), (37, 1001), (1001, 37), (32, 32), (300, 451)])
def test_any_size_maps_back_to_original_resolution(tiny_segmenter, height, width):
    prediction = tiny_segmenter.predict(np.zeros((height, width, 3), np.uint8))
    assert prediction.labels.shape == (height, width) and prediction.labels.dtype == np.uint8
    assert prediction.probs.shape == (32, 32, 2)
    np.testing.assert_allclose(prediction.probs.sum(-1), 1.0, atol=1e-4)


def test_non_square_input_size():
    card = TINY_CARD.replace(input_size=[64, 32])  # width x height
    segmenter = Segmenter(build_unet(2, depth=2, base_filters=4), card).warm_up()
    assert segmenter.size == (64, 32)
    prediction = segmenter.predict(np.zeros((360, 480, 3), np.uint8))
    assert prediction.labels.shape == (360, 480) and prediction.probs.shape == (32, 64, 2)
    assert segmenter._compiled.experimental_get_tracing_count() == 1


def test_one_trace_for_all_sizes(tiny_segmenter):
    for shape in [(5, 7, 3), (64, 20, 3), (100, 100, 3)]:
        tiny_segmenter.predict(np.zeros(shape, np.uint8))
    assert tiny_segmenter._compiled.experimental_get_tracing_count() == 1


def test_flip_tta_averages_with_the_mirrored_prediction(rng):
    model = build_unet(2, depth=2, base_filters=4)
    plain, tta = Segmenter(model, TINY_CARD), Segmenter(model, TINY_CARD, tta=True)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    expected = (plain.predict(image).probs + plain.predict(image[:, ::-1]).probs[:, ::-1]) / 2
    np.testing.assert_allclose(tta.predict(image).probs, expected, atol=1e-5)
    from_card = Segmenter(model, TINY_CARD.replace(flip_tta=True))  # a fine-tune's card asks for it
    assert from_card.tta and not Segmenter(model, TINY_CARD.replace(flip_tta=True), tta=False).tta
    np.testing.assert_allclose(from_card.predict(image).probs, expected, atol=1e-5)


def test_rendering_helpers():
    labels = np.array([[0, 1], [1, 255]], np.uint8)
    lut = palette_lut([(0, 0, 0), (255, 0, 0)])
    colors = colorize(labels, lut)
    assert colors[0, 1].tolist() == [255, 0, 0] and colors[1, 1].tolist() == [128, 128, 128]
    image = np.full((2, 2, 3), 100, np.uint8)
    assert overlay(image, colors, 0.0).tolist() == image.tolist()
    assert overlay(image, colors, 1.0).tolist() == colors.tolist()
    assert overlay(image, colors, 0.5)[0, 1].tolist() == [178, 50, 50]
    probs = np.zeros((4, 4, 2), np.float32)
    probs[..., 1] = 1.0
    assert probability_map(probs, 1, (7, 3)).shape == (3, 7) and probability_map(probs, 1, (7, 3)).min() == 255
    assert class_areas(labels, ["bg", "fg"]) == {"bg": 0.25, "fg": 0.5}


def test_uncertainty_is_one_minus_the_top_two_margin():
    probs = np.array([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]], [[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]], np.float32)
    assert uncertainty(probs) == pytest.approx(np.array([[0.0, 1.0], [0.8, 0.7]]))
    assert mean_uncertainty(probs) == pytest.approx(0.625)
    grey = grey_map(uncertainty(probs), (4, 6))  # (w, h)
    assert grey.shape == (6, 4) and grey.dtype == np.uint8
    assert grey[0, 0] == 0 and grey[0, -1] == 255  # sure is black, a tie is white


def test_model_file_with_card_loads_through_registry(tmp_path):
    path = tmp_path / "tiny.keras"
    build_unet(2, depth=2, base_filters=4).save(path)
    TINY_CARD.save(path)
    segmenter = get_segmenter(str(path))
    assert segmenter.predict(np.zeros((10, 10, 3), np.uint8)).labels.shape == (10, 10)
    assert (tmp_path / "tiny.md").read_text().startswith("# tiny")


def test_bundled_pets_model_finds_the_cat():
    """Sanity: on the shipped CC0 cat photo, the pet class covers the cat's body and not the corners."""
    segmenter = get_segmenter("pets")
    image = load_image("examples/chelsea_cat.png")  # 451x300, the cat fills the centre
    labels = segmenter.predict(image).labels
    pet = segmenter.classes.index("pet")
    centre = labels[100:250, 150:350]
    assert (centre == pet).mean() > 0.8
    coffee = get_segmenter("pets").predict(load_image("examples/coffee_cup.png")).labels
    assert (coffee == pet).mean() < (centre == pet).mean()


def test_the_uncertainty_map_is_at_the_models_resolution_in_the_images_aspect(tiny_segmenter, tmp_path):
    from PIL import Image

    from segdemo.serving.segment import run_segmentation

    photo = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 800, 3), dtype=np.uint8)).save(photo)
    result = run_segmentation(str(photo), tiny_segmenter, tmp_path)
    unsure = np.asarray(Image.open(result.uncertainty_file))
    assert unsure.shape == (12, 32)  # the model's 32 px on the long side, 800x300's aspect
    expected = grey_map(uncertainty(result.prediction.probs), (32, 12))
    np.testing.assert_array_equal(unsure, expected)
    assert result.mean_uncertainty == pytest.approx(mean_uncertainty(result.prediction.probs))
