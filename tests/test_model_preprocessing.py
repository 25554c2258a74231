"""The preprocessing and output decoding a card describes: resizes (stretch/letterbox, PIL's antialiased
bilinear or tf.image.resize's), pixel scales, grayscale, and decoding each output kind to probabilities."""

import numpy as np
import pytest
from PIL import Image

from segdemo.data.images import resize_image
from segdemo.models.preprocessing import INPUT_SCALES, output_probabilities, scale_pixels, to_grayscale
from segdemo.models.resizing import LETTERBOX_FILL, grid_box, letterbox_box, resize_for_model

AFFINE_SCALES = ("0..255", "0..1", "-1..1", "imagenet")  # the fixed ranges (per-image and mean-std: their tests)


def photo(height=37, width=53, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(48, 32), (80, 60), (53, 37)])
def test_stretch_antialias_is_pil_bilinear(size):
    image = photo()
    resized, box = resize_for_model(image, size)
    assert resized.dtype == np.float32 and resized.shape == (size[1], size[0], 3)
    np.testing.assert_array_equal(resized, resize_image(image, size).astype(np.float32))
    assert box == (0, 0, *size)


@pytest.mark.parametrize("size", [(48, 32), (128, 96), (53, 37), (20, 70)])
def test_stretch_bilinear_is_tf_image_resize(size):
    import tensorflow as tf

    image = photo()
    resized, _ = resize_for_model(image, size, resize_filter="bilinear")
    expected = tf.image.resize(image, (size[1], size[0]), method="bilinear", antialias=False).numpy()
    np.testing.assert_allclose(resized, expected, atol=1e-3)


def test_letterbox_box_for_landscape_and_portrait():
    assert letterbox_box((200, 100), (64, 64)) == (0, 16, 64, 48)  # landscape: bands above and below
    assert letterbox_box((100, 200), (64, 64)) == (16, 0, 48, 64)  # portrait: bands left and right
    assert letterbox_box((300, 100), (48, 32)) == (0, 8, 48, 24)
    assert letterbox_box((100, 300), (48, 32)) == (19, 0, 29, 32)  # 10.67 px wide -> 10, centred
    assert letterbox_box((96, 64), (48, 32)) == (0, 0, 48, 32)  # same aspect: no padding


def test_letterbox_pads_with_grey_and_keeps_the_image_inside_the_box():
    image = photo(50, 100)
    resized, box = resize_for_model(image, (64, 64), resize="letterbox")
    left, top, right, bottom = box
    assert box == (0, 16, 64, 48)
    assert (resized[:top] == LETTERBOX_FILL).all() and (resized[bottom:] == LETTERBOX_FILL).all()
    np.testing.assert_array_equal(resized[top:bottom, left:right], resize_image(image, (64, 32)).astype(np.float32))
    portrait, box = resize_for_model(photo(100, 50), (64, 64), resize="letterbox", resize_filter="bilinear")
    assert box == (16, 0, 48, 64) and (portrait[:, :16] == LETTERBOX_FILL).all()


def test_grid_box_maps_the_letterbox_box_to_the_output_grid():
    assert grid_box((0, 16, 64, 48), (64, 64), (64, 64)) == (0, 16, 64, 48)  # output at the input's size
    # a model whose output is at half the input resolution: scaled outwards, 9.5..14.5 -> 9..15
    assert grid_box((19, 0, 29, 32), (64, 64), (32, 32)) == (9, 0, 15, 16)
    assert grid_box((32, 32, 32, 32), (64, 64), (8, 8)) == (4, 4, 5, 5)  # an empty box: still one cell


def test_scale_pixels_on_numpy_and_tensorflow():
    import tensorflow as tf

    x = np.array([[[0.0, 127.5, 255.0]]], np.float32)
    np.testing.assert_allclose(scale_pixels(x, "0..255"), x)
    np.testing.assert_allclose(scale_pixels(x, "0..1"), [[[0, 0.5, 1]]])
    np.testing.assert_allclose(scale_pixels(x, "-1..1"), [[[-1, 0, 1]]])
    np.testing.assert_allclose(scale_pixels(x, "imagenet"),
                               [[[-0.485 / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225]]], rtol=1e-5)
    for scale in AFFINE_SCALES:
        np.testing.assert_allclose(scale_pixels(tf.constant(x), scale).numpy(), scale_pixels(x, scale), rtol=1e-6)
    assert scale_pixels(np.full((2, 2, 1), 255.0, np.float32), "imagenet").shape == (2, 2, 1)
    with pytest.raises(ValueError, match="unknown input scale"):
        scale_pixels(x, "0..65535")


def test_grayscale_is_pil_luma():
    image = photo()
    gray = to_grayscale(image.astype(np.float32))
    assert gray.shape == (*image.shape[:2], 1)
    assert np.abs(gray[..., 0] - np.asarray(Image.fromarray(image).convert("L"), np.float32)).max() <= 0.51


def test_output_decoding_for_each_kind():
    raw = np.array([[[[2.0, 0.0, -1.0]]]], np.float32)  # (1, 1, 1, 3)
    logits = output_probabilities(raw, "logits", "spatial", None, 3).numpy()
    np.testing.assert_allclose(logits, np.exp(raw) / np.exp(raw).sum(-1, keepdims=True), rtol=1e-5)
    softmax = np.array([[[[0.7, 0.2, 0.1]]]], np.float32)
    np.testing.assert_allclose(output_probabilities(softmax, "softmax", "spatial", None, 3).numpy(), softmax)
    sigmoids = np.array([[[[0.9, 0.6, 0.1]], [[0.0, 0.0, 0.0]]]], np.float32)  # (1, 2, 1, 3)
    normalised = output_probabilities(sigmoids, "sigmoid", "spatial", None, 3).numpy()
    np.testing.assert_allclose(normalised.sum(-1), 1.0, rtol=1e-5)
    assert normalised[0, 0, 0].argmax() == 0 and np.allclose(normalised[0, 1, 0], 1 / 3)
    binary = np.array([[[[0.2]], [[0.7]]]], np.float32)
    two = output_probabilities(binary, "sigmoid_binary", "spatial", None, 2).numpy()
    np.testing.assert_allclose(two[0, :, 0], [[0.8, 0.2], [0.3, 0.7]], rtol=1e-6)
    logit = output_probabilities(np.array([[[[0.0]], [[3.0]]]], np.float32), "logits_binary", "spatial", None, 2)
    np.testing.assert_allclose(logit.numpy()[0, :, 0, 1], [0.5, 1 / (1 + np.exp(-3))], rtol=1e-6)
    with pytest.raises(ValueError, match="has 3 channels, not 1"):
        output_probabilities(binary, "softmax", "spatial", None, 3)


def test_flat_outputs_are_read_back_as_a_grid():
    import tensorflow as tf

    grid = np.random.default_rng(0).uniform(0, 1, (2, 4, 6, 3)).astype(np.float32)  # (N, h=4, w=6, C)
    flat = grid.reshape(2, 24, 3)
    decoded = output_probabilities(flat, "softmax", "flat", (4, 6), 3).numpy()
    np.testing.assert_array_equal(decoded, grid)
    compiled = tf.function(lambda x: output_probabilities(x, "logits", "flat", (4, 6), 3),
                           input_signature=[tf.TensorSpec([2, 24, 3], tf.float32)])
    assert compiled(flat).shape == (2, 4, 6, 3)


def brightness_data(count, size_wh=(48, 32), seed=0):
    """Flat patches of random grey levels; a pixel is class 1 where its grey is above mid-grey. The threshold
    a model learns lies at a different raw brightness under each input scale, so only the right scale reads
    it back."""
    rng = np.random.default_rng(seed)
    width, height = size_wh
    levels = rng.integers(0, 256, (count, height // 8, width // 8, 1))
    grey = np.repeat(np.repeat(levels, 8, 1), 8, 2)
    images = np.repeat(grey, 3, axis=3).astype(np.uint8)
    return images, (grey[..., 0] >= 128).astype(np.int32)


def accuracy(model, images, labels, input_scale):
    probs = output_probabilities(model(scale_pixels(images.astype(np.float32), input_scale)), "logits",
                                 "spatial", None, 2).numpy()
    return float((probs.argmax(-1) == labels).mean())


@pytest.mark.slow
def test_scoring_with_the_right_input_scale_beats_the_wrong_ones():
    """What a card check relies on: a model trained (as its author did) on one input scale scores best when
    served with that scale."""
    import keras

    train_images, train_labels = brightness_data(64, seed=0)
    test_images, test_labels = brightness_data(16, seed=1)
    for trained_on in AFFINE_SCALES:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((32, 48, 3))
        model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))  # per-pixel logits: a learnt threshold
        model.compile(optimizer=keras.optimizers.Adam(0.2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(scale_pixels(train_images.astype(np.float32), trained_on), train_labels, batch_size=8,
                  epochs=5, verbose=0)  # 40 steps
        scores = {scale: accuracy(model, test_images, test_labels, scale) for scale in AFFINE_SCALES}
        best = max(scores, key=scores.get)
        assert best == trained_on, (trained_on, scores)
        assert all(scores[trained_on] > scores[other] + 0.02 for other in AFFINE_SCALES if other != trained_on), \
            (trained_on, scores)


def test_model_io_is_one_definition_read_by_serving_training_and_words():
    """The card's preprocessing as ModelIO: its Keras layers compute what the serving arithmetic computes, and it
    states itself in words from the same tables."""
    import keras

    from segdemo.models.cards import ModelCard
    from segdemo.models.preprocessing import ModelIO

    rng = np.random.default_rng(3)
    pixels = rng.uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    for channels in (3, 1):
        for scale in INPUT_SCALES:
            stats = {"input_mean": [120.0, 110.0, 100.0], "input_std": [60.0, 50.0, 70.0]} \
                if scale == "mean-std" else {}
            io = ModelCard("m", ["a", "b"], 8, input_scale=scale, input_channels=channels, **stats).io
            inputs = keras.Input((5, 7, 3))
            layers = keras.Model(inputs, io.input_layers(inputs))
            assert np.allclose(np.asarray(layers(pixels)), np.asarray(io.model_input(pixels)), atol=1e-4), scale
            assert INPUT_SCALES[scale].words.split(" (")[0] in io.input_words()
    flat = ModelIO(2, output="sigmoid_binary", output_layout="flat")
    assert flat.output_channels == 1
    outputs = rng.normal(size=(1, 6, 1)).astype(np.float32)
    inputs = keras.Input((6, 1))
    logits = keras.Model(inputs, flat.logits_layers(inputs, (3, 2)))(outputs)
    expected = np.asarray(flat.probabilities(1 / (1 + np.exp(-outputs)), (2, 3)))
    assert np.allclose(np.asarray(keras.ops.softmax(logits)), expected, atol=1e-5)
    assert flat.describe() == ["pixels: RGB 0..255 (not normalised), stretched to the input size, antialiased "
                               "bilinear (PIL; tf.image.resize(..., antialias=True))",
                               "output: one sigmoid channel (the foreground probability, foreground above the "
                               "threshold 0.5), flattened to (pixels, channels), read back as a grid"]
