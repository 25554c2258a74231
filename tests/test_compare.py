"""Compare's core: two Segmenters on one image, titled by their cards (or the names given), class disagreement
in one class space."""

import keras
import numpy as np
from PIL import Image

from segdemo.models.cards import ModelCard
from segdemo.serving.compare import compare_models
from segdemo.serving.segmenter import Segmenter


def constant_model(bias):
    """A 16x16 two-class model that answers class argmax(bias) everywhere."""
    inputs = keras.Input((16, 16, 3))
    head = keras.layers.Conv2D(2, 1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(bias))
    return keras.Model(inputs, head(inputs))


def test_compare_titles_come_from_the_cards_not_the_class_names(tmp_path):
    untitled = ModelCard(name="first", classes=["background", "object"], input_size=16)
    titled = ModelCard(name="second", classes=["background", "object"], input_size=16, title="Second model")
    a = Segmenter(constant_model([1.0, 0.0]), untitled, freeze=False)
    b = Segmenter(constant_model([0.0, 1.0]), titled, freeze=False)
    image = Image.fromarray(np.full((20, 30, 3), 120, np.uint8))
    comparison = compare_models(image, a, b, tmp_path, names=("pets", "my model"))
    assert comparison.titles == ("pets", "Second model")
    assert comparison.disagreement == 1.0  # background everywhere against object everywhere
    assert comparison.class_disagreement == {"background": 1.0, "object": 1.0}
