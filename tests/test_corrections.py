"""The teach loop's data: editor layers -> class indices, and the session's training set."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from segdemo.data.training_set import STORED_MAX_SIDE, TrainingSet, class_histogram
from segdemo.data.uploads import read_pairs_source, validate_and_load
from segdemo.errors import InputError
from segdemo.limits import MAX_PAIRS
from segdemo.serving.mask_editor import EDITOR_MAX_SIDE, MASK_OPACITY, brush_colors, editor_to_labels, editor_value

COLORS = [(230, 25, 75), (0, 0, 0), (255, 225, 25)]  # pets: pet, background, border
CLASSES = ("pet", "background", "border")


def prediction(height=120, width=160):
    labels = np.ones((height, width), np.uint8)  # background
    labels[30:90, 40:120] = 0  # a pet
    return labels


def paint(layer, box, color, alpha, antialias=True):
    """A stroke as a browser canvas draws it: `color` at `alpha` over the layer, with soft (blended) edges."""
    height, width = layer.shape[:2]
    scale = 4 if antialias else 1  # supersampled ellipse -> grey coverage at the edge
    cover = Image.new("L", (width * scale, height * scale))
    ImageDraw.Draw(cover).ellipse([v * scale for v in box], fill=255)
    coverage = np.asarray(cover.resize((width, height), Image.BOX), np.float64) / 255.0 * alpha / 255.0
    old_alpha = layer[:, :, 3] / 255.0
    new_alpha = coverage + old_alpha * (1 - coverage)
    rgb = (np.asarray(color, np.float64) * coverage[..., None]
           + layer[:, :, :3] * (old_alpha * (1 - coverage))[..., None]) / np.maximum(new_alpha, 1e-6)[..., None]
    layer[:, :, :3] = rgb.round().clip(0, 255)
    layer[:, :, 3] = (new_alpha * 255).round()
    return coverage


def test_editor_value_is_the_prediction_over_the_image_at_most_1024_px():
    image = np.full((1500, 3000, 3), 200, np.uint8)
    labels = np.zeros((1500, 3000), np.uint8)
    labels[:, 1500:] = 2
    value = editor_value(image, labels, COLORS)
    background = value["background"]
    assert background.shape == (512, EDITOR_MAX_SIDE, 3) and value["layers"] == []  # the editor adds one layer
    left, right = background[0, 0].astype(int), background[0, -1].astype(int)
    expected_left = 200 * (1 - MASK_OPACITY) + np.array(COLORS[0]) * MASK_OPACITY
    assert np.abs(left - expected_left).max() <= 2 and right[2] < left[2]  # pet red vs border yellow tint


def test_brushes_are_the_class_colours():
    assert [color for color, _ in brush_colors(COLORS)] == ["#e6194b", "#000000", "#ffe119"]


def test_painted_strokes_become_exact_classes_and_edges_never_invent_one():
    predicted = prediction()
    layer = np.zeros((120, 160, 4), np.uint8)  # the editor's empty layer
    # paint "border" (yellow) across the pet's edge and "pet" (red) into the background, soft edges
    cover_border = paint(layer, (20, 20, 80, 60), COLORS[2], 153)
    cover_pet = paint(layer, (120, 80, 150, 110), COLORS[0], 153)
    labels = editor_to_labels([layer], predicted, COLORS, (160, 120))
    assert labels.shape == (120, 160) and set(np.unique(labels)) <= {0, 1, 2}
    assert np.all(labels[cover_border > 0.5] == 2) and np.all(labels[cover_pet > 0.5] == 0)
    untouched = (cover_border == 0) & (cover_pet == 0)
    assert np.array_equal(labels[untouched], predicted[untouched])
    edge = (cover_border > 0) & (cover_border <= 0.5)  # a soft edge: its old class or the painted one
    assert np.all((labels[edge] == 2) | (labels[edge] == predicted[edge]))


def test_erased_pixels_return_to_the_prediction_and_sizes_map_back():
    predicted = prediction()
    layer = np.zeros((120, 160, 4), np.uint8)
    layer[:, :, :3] = COLORS[2]
    layer[:, 80:, 3] = 255  # the right half painted border; the left half painted, then erased (alpha 0)
    labels = editor_to_labels([layer], np.zeros_like(predicted) + 1, COLORS, (320, 240))  # prediction: background
    assert labels.shape == (240, 320)
    assert np.all(labels[:, :160] == 1) and np.all(labels[:, 160:] == 2)
    small = np.asarray(Image.fromarray(layer).resize((80, 60), Image.NEAREST))  # a layer of another size
    assert np.array_equal(editor_to_labels([small], predicted, COLORS, (160, 120))[:, 100:], labels[::2, ::2][:, 100:])


def test_empty_or_erased_corrections_are_refused():
    predicted = prediction()
    with pytest.raises(InputError, match="Correct this mask"):
        editor_to_labels([], predicted, COLORS, (160, 120))
    with pytest.raises(InputError, match="Correct this mask"):
        editor_to_labels(None, predicted, COLORS, (160, 120))
    erased = np.zeros((120, 160, 4), np.uint8)
    erased[:, :, :3] = COLORS[0]
    erased[:, :, 3] = 10  # the faint remains of an erased stroke
    with pytest.raises(InputError, match="erased"):
        editor_to_labels([erased], predicted, COLORS, (160, 120))


def test_training_set_add_remove_clear_and_limits():
    training_set = TrainingSet()
    image = np.zeros((1280, 960, 3), np.uint8)
    mask = np.zeros((1280, 960), np.uint8)
    mask[600:] = 2
    pair = training_set.add(image, mask, CLASSES, COLORS)
    assert pair.name == "corrected_001" and max(pair.image.shape[:2]) == STORED_MAX_SIDE
    assert pair.image.shape[:2] == pair.mask.shape
    assert class_histogram(pair.mask, CLASSES)["border"] == pytest.approx(680 / 1280, abs=0.01)
    with pytest.raises(InputError, match="same size"):
        training_set.add(image, mask[:100], CLASSES, COLORS)
    with pytest.raises(InputError, match=r"class values \[7, 9\]"):
        training_set.add(image, mask + 7, CLASSES, COLORS)
    training_set.add(image, mask, CLASSES, COLORS)
    assert [p.name for p in training_set.pairs] == ["corrected_001", "corrected_002"]
    with pytest.raises(InputError, match="no pair 5"):
        training_set.remove(4)
    training_set.remove(0)
    assert [p.name for p in training_set.pairs] == ["corrected_002"]  # nothing else lost by the errors
    training_set.clear()
    assert training_set.pairs == []
    small = np.zeros((8, 8, 3), np.uint8)
    for _ in range(MAX_PAIRS):
        training_set.add(small, np.zeros((8, 8), np.uint8), CLASSES, COLORS)
    with pytest.raises(InputError, match="full"):
        training_set.add(small, np.zeros((8, 8), np.uint8), CLASSES, COLORS)


def test_uploaded_and_corrected_pairs_form_one_set_by_classes():
    training_set = TrainingSet()
    image, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    training_set.add(image, mask, CLASSES, COLORS)
    training_set.replace_uploaded([("a", image, mask), ("b", image, mask)], ("background", "object"), COLORS[:2])
    training_set.replace_uploaded([("c", image, mask)], CLASSES, COLORS)  # a new upload replaces the last one
    fitting, other = training_set.for_classes(CLASSES)
    assert [name for name, _, _ in fitting] == ["corrected_001", "c"] and other == []
    assert [name for name, _, _ in training_set.corrected_for(CLASSES)] == ["corrected_001"]
    assert training_set.corrected_for(("background", "object")) == []
    assert "2 pairs" in training_set.summary() and "1 corrected, 1 uploaded" in training_set.summary()


def test_the_set_downloads_as_a_zip_the_finetune_reads_back(tmp_path):
    training_set = TrainingSet()
    rng = np.random.default_rng(1)
    masks = []
    for _ in range(3):
        mask = rng.integers(0, 3, (40, 60)).astype(np.uint8)
        masks.append(mask)
        training_set.add(rng.integers(0, 255, (40, 60, 3), np.uint8), mask, CLASSES, COLORS)
    path = tmp_path / "set.zip"
    path.write_bytes(training_set.zip_bytes())
    with zipfile.ZipFile(path) as archive:
        assert "images/corrected_001.png" in archive.namelist() and "classes.txt" in archive.namelist()
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(archive.read("masks/corrected_002.png")))), masks[1])
    pairs, problems = read_pairs_source(path)
    reports, loaded = validate_and_load(pairs, 3, COLORS)
    assert not problems and all(r.ok for r in reports)
    assert [np.array_equal(mask, expected) for (_, _, mask), expected in zip(loaded, masks)] == [True] * 3
