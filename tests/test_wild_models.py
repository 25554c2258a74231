"""Models as people have them (issue 27): Keras 2.0-era HDF5 files, Lambda layers, BGR and standardised inputs,
dataset statistics, one-channel and multi-output heads; each described with segdemo.card and served as its
author ran it. The old files are written by tests/legacy_models.py with h5py."""

import json

import keras
import numpy as np
import pytest
from legacy_models import PY36_LAMBDA_DIV_255, PY36_LAMBDA_RESIZE, write_keras2_h5

from segdemo.card import cli as card_command
from segdemo.card.bytecode import scan_marshal
from segdemo.card.lambdas import describe_lambdas, file_config
from segdemo.errors import InputError
from segdemo.models.cards import ModelCard, binary_mask_classes
from segdemo.models.files import load_model_file
from segdemo.serving.segmenter import Segmenter
from segdemo.training.evaluation import evaluate_arrays

SIDE = 32


def small_sequential(first=None):
    layers = [keras.Input((SIDE, SIDE, 3))] + ([first] if first else []) + [
        keras.layers.Conv2D(6, 3, padding="same", activation="relu", kernel_initializer="he_normal"),
        keras.layers.BatchNormalization(),
        keras.layers.Conv2D(3, 1, activation="softmax")]
    keras.utils.set_random_seed(1)
    model = keras.Sequential(layers)
    model.layers[-2].moving_mean.assign(np.linspace(-0.2, 0.3, 6).astype("float32"))  # not the defaults
    return model


def small_unet():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    down = keras.layers.MaxPooling2D()(x)
    down = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(down)
    up = keras.layers.UpSampling2D()(down)
    x = keras.layers.Concatenate(axis=3)([up, x])
    return keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x))


def photos(count=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, SIDE, SIDE, 3)).astype(np.uint8)


@pytest.mark.parametrize("list_form", [True, False])
def test_keras2_sequential_hdf5_loads_with_its_weights(tmp_path, list_form):
    model = small_sequential()
    path = write_keras2_h5(model, tmp_path / "old.h5", list_form=list_form)
    with pytest.raises(TypeError if list_form else ValueError):
        keras.saving.load_model(path, compile=False)  # what Keras 3 alone does with it
    loaded = load_model_file(path)
    x = photos().astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_keras2_functional_hdf5_is_described_with_what_was_upgraded_and_ignored(tmp_path, capsys):
    model = small_unet()
    path = write_keras2_h5(model, tmp_path / "unet.h5")
    card_command.main([str(path), "--classes", "membrane", "cell", "--input-scale", "0..1"])
    out = capsys.readouterr().out
    assert "saved by Keras 2.0.8" in out and "dice_coef_loss" in out and "ignored" in out
    card = ModelCard.load(path)
    assert any("compile settings" in note for note in card.notes)
    served = Segmenter(load_model_file(path), card, freeze=False)
    image = photos(1)[0]
    expected = np.asarray(model(image[None].astype("float32") / 255.0))[0, ..., 0] > 0.5
    assert (served.predict(image).labels == expected).mean() == 1.0


def test_a_lambdas_stored_code_is_read_not_run():
    names, constants = scan_marshal(PY36_LAMBDA_RESIZE)
    assert names[:3] == ["tf", "image", "resize"] and 128.0 in constants
    assert scan_marshal(PY36_LAMBDA_DIV_255) == ([], [255.0])


def test_first_layer_lambda_replaced_by_scale_is_served_as_the_model_fed_unit_pixels(tmp_path, capsys):
    with_lambda = small_sequential(keras.layers.Rescaling(1 / 255, name="lambda_1"))
    path = write_keras2_h5(with_lambda, tmp_path / "lambda.h5", lambdas={"lambda_1": PY36_LAMBDA_DIV_255})
    with pytest.raises(InputError, match="contains a Lambda layer .*--replace-layer lambda_1=OP"):
        load_model_file(path)
    facts = describe_lambdas(file_config(path))
    assert [(f.name, f.first, f.constants, f.suggestion) for f in facts] == [
        ("lambda_1", True, [255.0], "scale:0.00392156862745098")]
    with pytest.raises(SystemExit, match="--replace-layer lambda_1=scale:0.00392156862745098"):
        card_command.main([str(path), "--classes", "a", "b", "c"])
    assert "its stored code mentions no names; constants 255" in capsys.readouterr().out
    card_command.main([str(path), "--classes", "a", "b", "c", "--replace-layer",
                       "lambda_1=scale:0.00392156862745098"])
    new = tmp_path / "lambda_segdemo.keras"
    assert new.exists() and "Lambda" not in json.dumps(file_config(new))
    served = Segmenter(load_model_file(new), ModelCard.load(new), freeze=False)
    # the same weights without the Lambda, fed x / 255 as its author's pipeline did
    plain = small_sequential()
    plain.set_weights(with_lambda.get_weights())
    reference = Segmenter(plain, ModelCard("plain", ["a", "b", "c"], SIDE, input_scale="0..1"), freeze=False)
    for image in photos(4, seed=3):
        assert (served.predict(image).labels == reference.predict(image).labels).mean() == 1.0


def test_lambdas_that_resize_and_take_a_channel_are_replaced(tmp_path):
    inputs = keras.Input((SIDE, SIDE, 3))
    first = keras.layers.Cropping2D(((0, 0), (0, 2)), data_format="channels_first", name="take_red")(inputs)
    smaller = keras.layers.Resizing(16, 16, name="shrink")(first)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same", name="logits")(smaller))
    path = write_keras2_h5(model, tmp_path / "fn.h5", lambdas={"take_red": PY36_LAMBDA_DIV_255,
                                                                "shrink": PY36_LAMBDA_RESIZE})
    card_command.main([str(path), "--classes", "a", "b", "--input-scale", "0..255", "--replace-layer",
                       "take_red=channels:0:1", "--replace-layer", "shrink=resize:16:16"])
    replaced = load_model_file(tmp_path / "fn_segdemo.keras")
    x = photos().astype("float32")
    np.testing.assert_allclose(np.asarray(replaced(x)), np.asarray(model(x)), atol=1e-5)


def pixel_task(count, seed, order="rgb"):
    """Images of random colour blocks; a pixel is class 1 where red beats blue. Inputs in `order`."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (count, 4, 4, 3)).astype(np.uint8)
    images = blocks.repeat(SIDE // 4, 1).repeat(SIDE // 4, 2)
    labels = (images[..., 0].astype(int) > images[..., 2].astype(int)).astype(np.uint8)
    fed = images[..., ::-1] if order == "bgr" else images
    return images, fed.astype("float32") / 255.0, labels


def brightness_task(count, seed):
    """A pixel is class 1 where it is brighter than its image's mean: the absolute level varies per image."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(20, 200, (count, 1, 1, 1))
    images = np.clip(base + rng.normal(0, 30, (count, SIDE, SIDE, 1)), 0, 255).repeat(3, -1).astype(np.uint8)
    gray = images[..., 0].astype(float)
    labels = (gray > gray.mean(axis=(1, 2), keepdims=True)).astype(np.uint8)
    return images, labels


def absolute_brightness_task(count, seed):
    """A pixel is class 1 where its grey level is above 100: a threshold that moves with the input's scale."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (count, 4, 4, 1)).repeat(3, -1).astype(np.uint8)
    images = blocks.repeat(SIDE // 4, 1).repeat(SIDE // 4, 2)
    return images, (images[..., 0] > 100).astype(np.uint8)


def trained_pixel_model(inputs, labels):
    keras.utils.set_random_seed(0)
    x = keras.Input(inputs.shape[1:])
    model = keras.Model(x, keras.layers.Conv2D(2, 1)(x))
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(inputs, labels, batch_size=8, epochs=8, verbose=0)
    return model


def write_pairs(folder, images, labels):
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(folder / "images" / f"{index:02d}.png")
        Image.fromarray(label).save(folder / "masks" / f"{index:02d}.png")
    return folder


@pytest.mark.slow
def test_check_picks_bgr_and_per_image_standardisation(tmp_path):
    images, fed, labels = pixel_task(48, 0, "bgr")
    bgr = trained_pixel_model(fed, labels)
    bgr.save(tmp_path / "bgr.keras")
    test_images, _, test_labels = pixel_task(12, 1)
    card_command.main([str(tmp_path / "bgr.keras"), "--classes", "blue", "red", "--input-scale", "0..1",
                       "--resize", "stretch", "--resize-filter", "antialias",
                       "--check", str(write_pairs(tmp_path / "colour_pairs", test_images, test_labels))])
    assert ModelCard.load(tmp_path / "bgr.keras").channel_order == "bgr"

    images, labels = brightness_task(48, 0)
    from segdemo.models.preprocessing import standardise_per_image

    standardised = trained_pixel_model(standardise_per_image(images.astype("float32") / 255.0), labels)
    standardised.save(tmp_path / "standardised.keras")
    test_images, test_labels = brightness_task(12, 1)
    card_command.main([str(tmp_path / "standardised.keras"), "--classes", "dark", "bright", "--resize", "stretch",
                       "--resize-filter", "antialias", "--channel-order", "rgb",
                       "--check", str(write_pairs(tmp_path / "bright_pairs", test_images, test_labels))])
    card = ModelCard.load(tmp_path / "standardised.keras")
    assert card.input_scale == "per-image"
    served = Segmenter(standardised, card, freeze=False)
    assert evaluate_arrays(served, list(zip(test_images, test_labels)))["pixel_acc"] > 0.95


def test_dataset_statistics_are_served_as_stated(tmp_path):
    model = small_sequential()
    model.save(tmp_path / "stats.keras")
    card_command.main([str(tmp_path / "stats.keras"), "--classes", "a", "b", "c", "--input-mean", "0.5,0.4,0.3",
                       "--input-std", "0.2,0.25,0.3", "--resize", "stretch", "--resize-filter", "antialias",
                       "--channel-order", "bgr"])
    card = ModelCard.load(tmp_path / "stats.keras")
    assert card.input_scale == "mean-std" and np.allclose(card.input_mean, [127.5, 102.0, 76.5])
    image = photos(1)[0]
    x = (image[..., ::-1].astype("float32") / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.3]
    expected = np.asarray(model(x[None].astype("float32")))[0].argmax(-1)
    assert (Segmenter(model, card, freeze=False).predict(image).labels == expected).mean() == 1.0
    assert "BGR" in card.io.input_words() and "mean 127.5, 102, 76.5" in card.io.input_words()


def test_single_sigmoid_model_reads_white_as_its_class_and_evaluates_on_black_white_masks(tmp_path):
    model = small_unet()
    model.save(tmp_path / "membranes.keras")
    card_command.main([str(tmp_path / "membranes.keras"), "--classes", "membrane", "cell", "--input-scale", "0..1",
                       "--resize", "stretch", "--resize-filter", "antialias"])
    card = ModelCard.load(tmp_path / "membranes.keras")
    assert binary_mask_classes(card) == (0, 1)
    images = photos(2)
    served = Segmenter(model, card, freeze=False)
    masks = [served.predict(image).labels for image in images]  # its own predictions: perfect scores
    result = evaluate_arrays(served, list(zip(images, masks)))
    assert result["pixel_acc"] == 1.0
    card_command.main([str(tmp_path / "membranes.keras"), "--classes", "membrane", "cell", "--input-scale", "0..1",
                       "--white", "membrane"])
    assert binary_mask_classes(ModelCard.load(tmp_path / "membranes.keras")) == (1, 0)


def test_threshold_linear_output_and_one_of_several_outputs(tmp_path):
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    aux = keras.layers.Conv2D(1, 1, activation="relu", name="aux")(keras.layers.MaxPooling2D()(x))
    main = keras.layers.Conv2D(1, 1, activation="relu", name="main")(x)
    model = keras.Model(inputs, [aux, main])
    model.save(tmp_path / "deep.keras")
    with pytest.raises(SystemExit, match="2 outputs .*--output NAME"):
        card_command.main([str(tmp_path / "deep.keras"), "--classes", "object"])
    card_command.main([str(tmp_path / "deep.keras"), "--classes", "object", "--output", "main", "--threshold", "0.2",
                       "--input-scale", "0..1"])
    card = ModelCard.load(tmp_path / "deep.keras")
    assert (card.output, card.output_name, card.threshold) == ("linear_binary", "main", 0.2)
    image = photos(1)[0]
    expected = np.asarray(model(image[None].astype("float32") / 255.0)[1])[0, ..., 0] > 0.2
    assert (Segmenter(model, card, freeze=False).predict(image).labels == expected).mean() == 1.0


@pytest.mark.slow
def test_check_scores_the_replacements_of_a_first_layer_lambda(tmp_path, capsys):
    images, labels = absolute_brightness_task(48, 0)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIDE, SIDE, 3))
    scaled = keras.layers.Rescaling(1 / 255, name="lambda_1")(inputs)  # written to the file as a Lambda
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="logits")(scaled))
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images.astype("float32"), labels, batch_size=8, epochs=8, verbose=0)
    path = write_keras2_h5(model, tmp_path / "scaled.h5", lambdas={"lambda_1": PY36_LAMBDA_DIV_255})
    test_images, test_labels = absolute_brightness_task(12, 1)
    card_command.main([str(path), "--classes", "dark", "bright", "--resize", "stretch", "--resize-filter", "antialias",
                       "--channel-order", "rgb", "--check", str(write_pairs(tmp_path / "pairs", test_images,
                                                                                test_labels))])
    out = capsys.readouterr().out
    assert "replaced lambda_1=scale:0.00392156862745098" in out, out
    card = ModelCard.load(tmp_path / "scaled_segdemo.keras")
    served = Segmenter(load_model_file(tmp_path / "scaled_segdemo.keras"), card, freeze=False)
    for image in test_images:  # what its author's model (the Lambda dividing by 255 inside) predicts
        expected = np.asarray(model(image[None].astype("float32")))[0].argmax(-1)
        assert (served.predict(image).labels == expected).mean() == 1.0
