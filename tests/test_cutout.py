"""Cut-outs and virtual backgrounds (serving.cutout) on hand-made predictions: no model, no TensorFlow. A
`Prediction` here is what the Segmenter gives: probabilities on a coarse grid of another shape than the image,
and labels = the argmax of those probabilities resized bilinearly to the image's full (non-square) size."""

import io

import numpy as np
import pytest
from PIL import Image

from segdemo.errors import InputError
from segdemo.serving.cutout import (
    BACKGROUNDS,
    BLUR,
    EDGES,
    NONE,
    PLAIN,
    SHARP,
    SOFT,
    VirtualBackground,
    class_alpha,
    class_index_of,
    class_odds,
    color_rgb,
    cutout_rgba,
    edge_radius,
    replace_background,
)
from segdemo.serving.png import png_bytes
from segdemo.serving.segmenter import Prediction

WIDTH, HEIGHT = 200, 120  # the image: wider than tall
GRID = (40, 56)  # (h, w) of the probabilities: another resolution and aspect


def full_size(channel):
    return np.asarray(Image.fromarray(channel.astype(np.float32), "F").resize((WIDTH, HEIGHT), Image.BILINEAR))


def disc_prediction(far_doubt=0.0):
    """Class 0 ("person") a disc in the left half, class 1 background, class 2 a faint third class. `far_doubt`:
    the person's probability in the far right corner (the model unsure there; still background by argmax)."""
    rows, cols = np.mgrid[0:GRID[0], 0:GRID[1]]
    distance = np.hypot((rows - 20) / 12.0, (cols - 18) / 12.0)
    person = 1.0 / (1.0 + np.exp(6.0 * (distance - 1.0)))  # ~1 inside, ~0 outside, a smooth rim
    person[:10, 44:] = np.maximum(person[:10, 44:], far_doubt)
    third = np.full(GRID, 0.05)
    probs = np.stack([person * 0.95, (1.0 - person) * 0.95, third], axis=-1).astype(np.float32)
    probs /= probs.sum(axis=-1, keepdims=True)
    labels = np.argmax(np.stack([full_size(probs[..., c]) for c in range(3)], axis=-1), axis=-1).astype(np.uint8)
    return Prediction(labels, probs, {})


def photo():
    """A textured RGB image (a blur changes it everywhere)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    return np.stack([(cols * 7) % 256, (rows * 11) % 256, ((rows + cols) * 13) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def prediction():
    return disc_prediction()


def test_alpha_is_full_size_uint8_for_every_edge(prediction):
    for edge in EDGES:
        alpha = class_alpha(prediction, 0, edge)
        assert alpha.shape == (HEIGHT, WIDTH) and alpha.dtype == np.uint8
        assert set(np.unique(alpha)) >= {0, 255}  # both the class and the rest are there
    with pytest.raises(InputError, match="soft, sharp"):
        class_alpha(prediction, 0, "feathered")


def test_sharp_alpha_is_the_class_mask(prediction):
    for class_index in (0, 1):
        alpha = class_alpha(prediction, class_index, SHARP)
        assert np.array_equal(alpha, np.where(prediction.labels == class_index, 255, 0))
    assert class_alpha(prediction, 2, SHARP).max() == 0  # a class that wins nowhere: all transparent


def test_soft_alpha_agrees_with_the_labels_and_is_soft_only_at_the_edge(prediction):
    soft, inside = class_alpha(prediction, 0, SOFT), prediction.labels == 0
    assert soft[inside].min() >= 128 and soft[~inside].max() <= 127  # the soft edge is centred on the sharp one
    assert soft[60, 90] == 255 and soft[10, 190] == 0  # the disc's centre and the far corner
    edge = (soft > 0) & (soft < 255)
    assert edge.sum() > 50  # a soft rim exists ...
    radius = edge_radius(prediction.labels.shape, GRID)
    rows, cols = np.nonzero(edge)
    border_rows, border_cols = np.nonzero((inside ^ np.roll(inside, 1, axis=1)) | (inside ^ np.roll(inside, 1, axis=0)))
    for row, col in zip(rows[::7], cols[::7]):  # ... and lies within the band around the border
        assert np.min(np.hypot(border_rows - row, border_cols - col)) <= radius * 1.5  # a square box: √2


def test_soft_alpha_is_zero_far_from_the_class_even_where_the_model_doubts():
    doubtful = disc_prediction(far_doubt=0.45)  # the person at 45% in the far corner: background by argmax
    assert (doubtful.labels[:20, 170:] == 1).all()
    assert class_alpha(doubtful, 0, SOFT)[:20, 170:].max() == 0


def test_class_odds_are_the_probability_for_two_classes_and_one_half_at_a_tie():
    two = np.array([[[0.3, 0.7], [0.9, 0.1]]], np.float32)
    np.testing.assert_allclose(class_odds(two, 0), [[0.3, 0.9]], atol=1e-6)
    three = np.array([[[0.4, 0.4, 0.2], [0.4, 0.3, 0.3]]], np.float32)
    np.testing.assert_allclose(class_odds(three, 0), [[0.5, 0.4 / 0.7]], atol=1e-6)


def test_cutout_is_the_image_with_the_class_as_alpha(prediction):
    image = photo()
    for edge in EDGES:
        rgba = cutout_rgba(image, prediction, 0, edge)
        assert rgba.shape == (HEIGHT, WIDTH, 4)
        assert np.array_equal(rgba[..., :3], image)
        assert np.array_equal(rgba[..., 3], class_alpha(prediction, 0, edge))
    decoded = np.asarray(Image.open(io.BytesIO(png_bytes(rgba))))
    assert decoded.shape == (HEIGHT, WIDTH, 4) and np.array_equal(decoded, rgba)  # a PNG keeps it as it is
    with pytest.raises(ValueError, match="differ in size"):
        cutout_rgba(image[:50], prediction, 0)


def test_plain_background_is_the_colour_where_alpha_is_zero_and_the_image_where_it_is_full(prediction):
    image, alpha = photo(), class_alpha(prediction, 0, SOFT)
    out = replace_background(image, alpha, PLAIN, color="#ff8000")
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[alpha == 0] == (255, 128, 0)).all()
    assert np.array_equal(out[alpha == 255], image[alpha == 255])
    rim = (alpha > 0) & (alpha < 255)  # between the two, in proportion
    expected = (image[rim] * (alpha[rim, None] / 255.0) + np.array([255, 128, 0]) * (1 - alpha[rim, None] / 255.0))
    assert np.abs(out[rim] - expected).max() <= 1.5


def test_blurred_background_differs_from_the_image_only_outside_the_class(prediction):
    image, alpha = photo(), class_alpha(prediction, 0, SHARP)
    out = replace_background(image, alpha, BLUR, blur_radius=8)
    assert np.array_equal(out[alpha == 255], image[alpha == 255])
    outside = alpha == 0
    assert np.abs(out[outside].astype(int) - image[outside]).mean() > 20  # the texture is blurred away
    assert out[outside].std(axis=0).max() < image[outside].std(axis=0).max()
    assert np.array_equal(replace_background(image, alpha, NONE), image)
    with pytest.raises(InputError, match="none, plain, blur"):
        replace_background(image, alpha, "beach")
    assert BACKGROUNDS == (NONE, PLAIN, BLUR)


def test_virtual_background_draws_at_any_size_from_the_grid(prediction):
    small = np.asarray(Image.fromarray(prediction.labels).resize((100, 60), Image.NEAREST))
    image = np.asarray(Image.fromarray(photo()).resize((100, 60)))
    drawn = VirtualBackground(0, PLAIN, (0, 0, 255)).draw(image, small, prediction.probs)
    assert drawn.shape == (60, 100, 3)
    assert (drawn[small != 0] != image[small != 0]).any() and (drawn[5, 95] == (0, 0, 255)).all()
    assert np.array_equal(drawn[30, 45], image[30, 45])  # the disc's centre
    with pytest.raises(InputError):
        VirtualBackground(0, "beach")


def test_colours_and_class_names_from_the_api():
    assert color_rgb("#00b140") == color_rgb("#00B140FF") == color_rgb("rgb(0, 177, 64)") == (0, 177, 64)
    assert color_rgb("rgba(255, 127.6, 0, 0.5)") == (255, 128, 0) and color_rgb("#fff") == (255, 255, 255)
    assert color_rgb(None) == color_rgb("") == (0, 177, 64) and color_rgb([1, 2, 3]) == (1, 2, 3)
    for bad in ("green", "#12345", "rgb(1, 2)"):
        with pytest.raises(InputError, match="not a colour"):
            color_rgb(bad)
    classes = ["pet", "background", "border"]
    assert class_index_of(classes, "border", "pet") == 2 and class_index_of(classes, "", "pet") == 0
    with pytest.raises(InputError, match="pet, background, border"):
        class_index_of(classes, "person", "pet")
