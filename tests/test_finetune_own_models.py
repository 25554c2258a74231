"""Fine-tuning a user's own model (tests/own_models.py: six ways users build them): its training form
(`finetune.adapt`) starts from the model's own served predictions, keeps its classes or replaces its last
convolution, trains with the recipe, saves and reloads in safe mode and serves as it trained; a head that
cannot be replaced is refused with the tab's message."""

import numpy as np
import pytest

from segdemo.errors import InputError
from segdemo.finetune.adapt import is_bundled_form, training_form
from segdemo.finetune.options import FinetuneOptions
from segdemo.finetune.recipe import run_finetune
from segdemo.finetune.result import save_result
from segdemo.models.cards import ModelCard
from segdemo.serving.segmenter import Segmenter
from tests.own_models import OWN_MODELS, square_data

# the input scale each builder trained with (what `python -m segdemo.card --check` finds for them)
INPUT_SCALES = {"raw_sigmoid": "0..255", "tanh_logits": "-1..1", "pix2pix": "0..1", "flat_softmax": "0..255",
                "binary_sigmoid": "0..1", "half_resolution": "0..1"}
CLASSES = ["background", "bright", "red"]
FAST = {"tanh_logits", "pix2pix", "flat_softmax", "binary_sigmoid"}  # the others: marked slow


def kinds(fast=FAST):
    return [name if name in fast else pytest.param(name, marks=pytest.mark.slow) for name in OWN_MODELS]


def own_card(name):
    """The card `python -m segdemo.card` writes for an OWN_MODELS kind."""
    _, (size, kind, layout, output_size, count) = OWN_MODELS[name]
    classes = CLASSES[:1] + ["square"] if count == 2 else CLASSES
    return ModelCard(name=name, classes=classes, input_size=list(size), input_scale=INPUT_SCALES[name], output=kind,
                     output_layout=layout, output_size=None if output_size == size else list(output_size))


@pytest.fixture(scope="module")
def own_models(tmp_path_factory):
    """{kind: (model, card, path)}, built (trained 2 steps) and saved with their cards when first asked for."""
    import keras

    folder, built = tmp_path_factory.mktemp("own"), {}

    def get(name):
        if name not in built:
            keras.utils.set_random_seed(0)
            model = OWN_MODELS[name][0](steps=2)
            path = folder / f"{name}.keras"
            model.save(path)
            own_card(name).save(path)
            built[name] = (model, own_card(name), str(path))
        return built[name]

    return get


def pairs_for(card, count=10, seed=5):
    """Square pairs at the card's size with its classes (two classes: either square is the foreground)."""
    images, labels = square_data(count, card.size, seed=seed)
    if len(card.classes) == 2:
        labels = (labels > 0).astype(np.int32)
    return [(f"p{i}", image, label.astype(np.uint8)) for i, (image, label) in enumerate(zip(images, labels))]


def untied(probs):
    """Where the served probabilities have one top class (a raw-0..255 sigmoid model saturates: ties)."""
    top_two = np.sort(probs, axis=-1)[..., -2:]
    return top_two[..., 1] > top_two[..., 0] + 1e-6


@pytest.mark.parametrize("name", kinds())
def test_training_form_starts_from_the_served_predictions(own_models, name):
    model, card, _ = own_models(name)
    assert not is_bundled_form(model, card)
    form, form_card = training_form(model, card)
    assert form.get_layer("logits") is not None and form.output_shape[1:3] == (card.size[1], card.size[0])
    assert (form_card.input_scale, form_card.output, form_card.output_layout, form_card.output_size,
            form_card.input_channels) == ("0..255", "logits", "spatial", None, 3)
    images, _ = square_data(4, card.size, seed=3)
    served = [Segmenter(model, card, freeze=False).predict(image) for image in images]
    trained = np.asarray(form(images.astype(np.float32), training=False)).argmax(-1)
    for prediction, labels in zip(served, trained):
        if prediction.probs.shape[:2] != labels.shape:
            # a coarser grid: the Segmenter resizes probabilities, the form its logits (the loss needs logits);
            # the argmax can differ where two classes meet between grid cells
            assert (prediction.labels == labels).mean() > 0.98
            continue
        where = untied(prediction.probs)
        assert where.mean() > 0.95
        assert np.array_equal(prediction.labels[where], labels[where])
    # the form served from its own card predicts what it trains on
    again = np.stack([Segmenter(form, form_card, freeze=False).predict(image).labels for image in images])
    assert np.array_equal(again, trained)


def test_grayscale_and_imagenet_inputs_are_done_by_the_form():
    import keras

    from segdemo.models.preprocessing import scale_pixels, to_grayscale

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same", activation="softmax")(
        keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)))
    card = ModelCard("gray", CLASSES, 16, input_scale="imagenet", input_channels=1, output="softmax")
    form, _ = training_form(model, card)
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype(np.float32)
    expected = np.log(np.asarray(model(scale_pixels(to_grayscale(images), "imagenet"))))
    got = np.asarray(form(images))
    np.testing.assert_allclose(got - got.mean(-1, keepdims=True), expected - expected.mean(-1, keepdims=True),
                               atol=1e-4)  # logits, up to the per-pixel constant softmax ignores


@pytest.mark.parametrize("name", kinds({"tanh_logits", "flat_softmax"}))
@pytest.mark.parametrize("classes", [None, ["background", "thing"]])
def test_finetune_keeps_or_replaces_the_classes_and_serves(own_models, name, classes):
    _, card, path = own_models(name)
    pairs = pairs_for(card)
    if classes:
        pairs = [(n, image, (mask > 0).astype(np.uint8)) for n, image, mask in pairs]
    model, summary = run_finetune(pairs, FinetuneOptions(base=path, steps=20, learning_rate=3e-3, val_share=0.2,
                                                         classes=classes, augment=False))
    losses = [r["loss"] for r in summary.history]  # 10 rounds of 2 steps
    if classes:  # the probe starts the new head close to its best: the held-out pairs show what was learnt
        assert summary.after["miou"] > summary.before["miou"] + 0.1, (summary.before, summary.after)
    else:
        assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert summary.card.classes == (classes or card.classes) and summary.card.base_model == name
    assert summary.card.input_scale == "0..255" and summary.card.output == "logits"
    assert summary.before["images"] == summary.after["images"] == 2
    if classes:
        assert summary.before_note.startswith("base classes mapped")
    labels = Segmenter(model, summary.card, freeze=False).predict(pairs[0][1][:20]).labels  # any image size
    assert labels.shape == (20, card.size[0]) and labels.max() < len(summary.card.classes)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["raw_sigmoid", "pix2pix", "binary_sigmoid", "half_resolution"])
def test_every_kind_fine_tunes_to_new_classes(own_models, name):
    _, card, path = own_models(name)
    pairs = [(n, image, (mask > 0).astype(np.uint8)) for n, image, mask in pairs_for(card)]
    model, summary = run_finetune(pairs, FinetuneOptions(base=path, steps=20, learning_rate=3e-3,
                                                         classes=["background", "thing"], augment=False))
    # the probe starts the new head close to its best (its first round's loss is already low, then noisy at 2
    # steps a round): what was learnt shows on the held-out pairs, against the base's classes mapped to the new
    assert summary.after["miou"] > summary.before["miou"] + 0.1, (summary.before, summary.after)
    assert summary.after["per_class_iou"]["thing"] > 0.6, summary.after
    assert model.get_layer("logits").output.shape[-1] == 2 and model.output_shape[-1] == 2


def test_pix2pix_new_head_keeps_the_resolution_and_is_probed(own_models):
    import keras

    from segdemo.finetune.probe import init_head_by_probe

    model, card, _ = own_models("pix2pix")
    form, _ = training_form(model, card, ["background", "thing"])
    head = form.get_layer("logits")
    assert isinstance(head, keras.layers.Conv2DTranspose) and tuple(head.strides) == (2, 2)
    assert form.output_shape == (None, 32, 32, 2)
    images, masks = (np.stack(x) for x in zip(*[(i, m > 0) for _, i, m in pairs_for(card)]))
    init_head_by_probe(form, images, masks.astype(np.uint8), 2, seed=0)
    predicted = np.asarray(form(images.astype(np.float32))).argmax(-1)
    assert (predicted == masks).mean() > 0.8  # the probe alone separates bright/red squares from the dark ground


def nested_head_model():
    """The head inside a Sequential block used as the last layer (a nested block's convolution)."""
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(layers.Rescaling(1 / 255)(inputs))
    head = keras.Sequential([layers.Conv2D(8, 3, padding="same", activation="relu"),
                             layers.Conv2D(3, 1, activation="softmax")], name="head_block")
    return keras.Model(inputs, head(x), name="nested_head")


def test_a_nested_head_keeps_its_classes_but_cannot_be_replaced(tmp_path):
    model = nested_head_model()
    card = ModelCard("nested", CLASSES, 32, output="softmax")
    form, _ = training_form(model, card)  # keeping the classes works: the nested head is made linear
    images, _ = square_data(2, (32, 32), seed=1)
    served = np.stack([Segmenter(model, card, freeze=False).predict(image).labels for image in images])
    assert np.array_equal(np.asarray(form(images.astype(np.float32))).argmax(-1), served)
    with pytest.raises(InputError, match="last convolution is inside a nested block.*keep the model's classes"):
        training_form(model, card, ["background", "thing"])
    path = tmp_path / "nested.keras"
    model.save(path)
    card.save(path)
    pairs = [(f"p{i}", image, np.zeros((32, 32), np.uint8)) for i, image in enumerate(images)]
    with pytest.raises(InputError, match="inside a nested block"):
        run_finetune(pairs, FinetuneOptions(base=str(path), steps=1, classes=["background", "thing"]))


def test_a_fixed_input_model_refuses_another_input_size(own_models):
    _, card, path = own_models("tanh_logits")
    with pytest.raises(InputError, match="takes 48x32 images only"):
        run_finetune(pairs_for(card, 4), FinetuneOptions(base=path, steps=1, input_size=64))


def test_saved_finetune_loads_in_safe_mode_and_serves_as_trained(own_models, tmp_path):
    from segdemo.models.files import load_model_file

    _, card, path = own_models("binary_sigmoid")
    pairs = pairs_for(card)
    model, summary = run_finetune(pairs, FinetuneOptions(base=path, steps=4, classes=["ground", "thing"]))
    saved = save_result(model, summary, tmp_path / "tuned.keras")
    loaded = load_model_file(saved)  # safe mode and the config check: built-in layers only
    loaded_card = ModelCard.load(saved).validate()
    assert loaded_card.classes == ["ground", "thing"] and loaded_card.flip_tta
    image = pairs[0][1]
    trained = Segmenter(model, summary.card, freeze=False).predict(image)
    served = Segmenter(loaded, loaded_card).predict(image)
    np.testing.assert_allclose(served.probs, trained.probs, atol=1e-5)
    assert np.array_equal(served.labels, trained.labels)
    # a second round (the teach loop) starts from the fine-tuned model, now in the bundled form
    assert is_bundled_form(loaded, loaded_card)


@pytest.mark.parametrize("options", [
    {"channel_order": "bgr", "input_scale": "per-image"},
    {"channel_order": "bgr", "input_scale": "mean-std", "input_mean": [120.0, 110.0, 90.0],
     "input_std": [60.0, 55.0, 50.0]},
    {"output": "sigmoid_binary", "threshold": 0.3},
    {"output": "linear_binary", "threshold": 0.2},
])
def test_the_form_trains_what_the_card_serves_for_the_newer_options(options):
    """BGR, per-image standardisation, dataset statistics and one-channel thresholds (issue 27): the training
    form's argmax is the served labels."""
    import keras

    keras.utils.set_random_seed(4)
    binary = options.get("output", "logits") != "logits"
    inputs = keras.Input((16, 16, 3))
    hidden = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    activation = {"sigmoid_binary": "sigmoid", "linear_binary": "relu"}.get(options.get("output"))
    model = keras.Model(inputs, keras.layers.Conv2D(1 if binary else 3, 1, activation=activation)(hidden))
    card = ModelCard("newer", ["background", "square"] if binary else CLASSES, 16, **options)
    form, form_card = training_form(model, card)
    images = np.random.default_rng(2).integers(0, 256, (3, 16, 16, 3)).astype(np.uint8)
    served = Segmenter(model, card, freeze=False)
    trained = np.asarray(form(images.astype(np.float32), training=False)).argmax(-1)
    for image, labels in zip(images, trained):
        prediction = served.predict(image)
        where = untied(prediction.probs)
        assert where.mean() > 0.9 and np.array_equal(prediction.labels[where], labels[where])
    assert form_card.channel_order == "rgb" and form_card.threshold is None
