"""Your own model: `python -m segdemo.card` infers what a model tells and `--check` picks how it was trained,
for small models built the ways users build them (tests/own_models.py), saved as .keras and legacy .h5; the
card serves them through the app, and bad files or cards get messages."""

import json

import numpy as np
import pytest
from PIL import Image

from segdemo.card import cli as card_command
from segdemo.errors import InputError
from segdemo.models.cards import ModelCard
from tests.export_helpers import onnx_predict
from tests.own_models import OWN_MODELS, square_data

CLASSES = {3: ["background", "bright", "red"], 2: ["background", "square"]}
TRAINED_WITH = {  # how tests/own_models.py trains each: (input scale, resize, filter)
    "raw_sigmoid": "0..255", "tanh_logits": "-1..1", "pix2pix": "0..1", "flat_softmax": "0..255",
    "binary_sigmoid": "0..1", "half_resolution": "0..1",
}
# enough training for the scales to tell apart (8 steps are enough for the shapes only); the BatchNorm model
# needs its moving statistics settled (momentum 0.99), or it is served on statistics it never had
CHECK_STEPS = {"pix2pix": 400}
DEFAULT_CHECK_STEPS = 60


def write_pairs(folder, size_wh, binary, count=10, seed=5):
    """images/ + masks/ (class indices) of the squares data, as the Fine-tune tab reads them."""
    images, labels = square_data(count, size_wh, seed=seed)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(folder / "images" / f"p{index}.png")
        mask = ((label > 0) if binary else label).astype(np.uint8)
        Image.fromarray(mask).save(folder / "masks" / f"p{index}.png")
    return folder


@pytest.fixture(scope="module", params=sorted(OWN_MODELS))
def own_model(request, tmp_path_factory):
    """(kind, the trained model, its path as .keras, its path as .h5, the facts it must show)."""
    import keras

    kind = request.param
    builder, facts = OWN_MODELS[kind]
    keras.utils.set_random_seed(0)
    model = builder(steps=CHECK_STEPS.get(kind, DEFAULT_CHECK_STEPS))
    folder = tmp_path_factory.mktemp(kind)
    model.save(folder / f"{kind}.keras")
    model.save(folder / f"{kind}.h5")
    return kind, model, folder / f"{kind}.keras", folder / f"{kind}.h5", facts


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_card_infers_what_the_model_tells(own_model, suffix, capsys):
    kind, _, keras_path, h5_path, (input_size, output, layout, output_size, classes) = own_model
    path = keras_path if suffix == ".keras" else h5_path
    card_command.main([str(path), "--classes", *CLASSES[classes][1 if classes == 2 else 0:],
                       "--input-scale", TRAINED_WITH[kind]])
    out = capsys.readouterr().out
    card = ModelCard.load(path)
    assert card.size == input_size and card.output == output and card.output_layout == layout
    assert card.classes == CLASSES[classes] and card.input_channels == 3
    assert card.input_scale == TRAINED_WITH[kind]
    assert (tuple(card.output_size) if card.output_size else card.size) == output_size
    assert f"inferred input: {input_size[0]}x{input_size[1]} RGB" in out
    assert f"wrote {path.with_suffix('.json')}" in out
    assert json.loads(path.with_suffix(".json").read_text()).get("output", "logits") == output  # absent: default


@pytest.mark.slow
def test_check_picks_the_scale_the_model_was_trained_with(own_model, tmp_path, capsys):
    kind, _, path, _, (input_size, _, _, _, classes) = own_model
    pairs = write_pairs(tmp_path / "pairs", input_size, binary=classes == 2)
    card_command.main([str(path), "--classes", *CLASSES[classes], "--check", str(pairs)])
    out = capsys.readouterr().out
    assert ModelCard.load(path).input_scale == TRAINED_WITH[kind], out
    assert "--check on" in out and "cross-entropy  mean IoU  input scale" in out


def test_without_classes_the_card_names_them_and_warns(tmp_path, capsys):
    import keras

    inputs = keras.Input((16, 24, 3))
    keras.Model(inputs, keras.layers.Conv2D(4, 1)(inputs)).save(tmp_path / "four.keras")
    card_command.main([str(tmp_path / "four.keras"), "--input-scale", "0..1"])
    captured = capsys.readouterr()
    assert ModelCard.load(tmp_path / "four.keras").classes == ["class_0", "class_1", "class_2", "class_3"]
    assert "warning: no --classes" in captured.err and "warning: resize not stated" in captured.err


def test_a_single_sigmoid_channel_is_background_and_the_named_class(tmp_path):
    import keras

    inputs = keras.Input((16, 16, 3))
    keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs)).save(tmp_path / "one.keras")
    card_command.main([str(tmp_path / "one.keras"), "--classes", "cell", "--input-scale", "0..1"])
    card = ModelCard.load(tmp_path / "one.keras")
    assert card.classes == ["background", "cell"] and card.output == "sigmoid_binary"


def test_an_output_the_card_cannot_explain_is_refused(tmp_path):
    import keras

    from segdemo.serving.segmenter import Segmenter

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(5, 1)(inputs))
    model.save(tmp_path / "five.keras")
    with pytest.raises(SystemExit, match="5 classes, but 3 names were given"):
        card_command.main([str(tmp_path / "five.keras"), "--classes", "a", "b", "c", "--input-scale", "0..1"])
    with pytest.raises(InputError, match="output has 5 channels, but its card explains 3"):
        Segmenter(model, ModelCard("five", ["a", "b", "c"], 16), freeze=False)


def test_a_letterboxed_model_is_served_on_the_image_s_own_part(tmp_path):
    """A letterbox card: the prediction for a wide image covers the image only (the grey bars are cut)."""
    import keras

    from segdemo.serving.segmenter import Segmenter

    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    kernel = np.array([[[[1.0, -1.0], [0.0, 0.0], [0.0, 0.0]]]], np.float32)  # red channel - 128: bright or dark
    model.set_weights([kernel, np.array([-128.0, 128.0], np.float32)])
    image = np.zeros((20, 80, 3), np.uint8)
    image[:, 40:] = 255  # right half bright: class 0 there (red channel above the grey fill), class 1 left
    served = Segmenter(model, ModelCard("box", ["bright", "dark"], 32, resize="letterbox"), freeze=False)
    prediction = served.predict(image)
    assert prediction.labels.shape == (20, 80) and prediction.probs.shape[0] < 32  # the bars are cut
    assert (prediction.labels[:, :35] == 1).all() and (prediction.labels[:, 45:] == 0).all()


@pytest.mark.slow
def test_your_own_model_exports_to_onnx_as_its_card_says(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime (requirements-dev.txt) checks the export")
    from segdemo import export
    from segdemo.models.preprocessing import scale_pixels
    from segdemo.serving.segmenter import Segmenter

    builder, _ = OWN_MODELS["tanh_logits"]
    model = builder()
    model.save(tmp_path / "own.keras")
    card_command.main([str(tmp_path / "own.keras"), "--classes", *CLASSES[3], "--input-scale", "-1..1"])
    served = Segmenter(model, ModelCard.load(tmp_path / "own.keras"), freeze=False)
    export.export_model(served, tmp_path / "exported.onnx")
    card = ModelCard.load(tmp_path / "exported.onnx")
    assert card.export == {"input": "'image': N x 32 x 48 x 3 float32 (NHWC), RGB scaled to -1..1 (x / 127.5 - 1)",
                           "output": "'logits': N x 32 x 48 x 3 float32 logits"}
    images, _ = square_data(4, (48, 32), seed=3)
    batch = scale_pixels(images.astype(np.float32), "-1..1")
    agree = (onnx_predict(tmp_path / "exported.onnx", batch).argmax(-1) == model.predict(batch, verbose=0)
             .argmax(-1)).mean()
    assert agree >= 0.99


def test_a_hub_repository_in_keras_layout_gets_its_card_from_the_options(tmp_path, monkeypatch):
    """`app.py --model "hf://owner/name --classes ... --input-scale ..."`: the repository (here a local folder
    in Keras 3's layout standing in for the Hub's snapshot) is linked, described and served by its name."""
    import zipfile

    import huggingface_hub

    from segdemo.models import hub
    from segdemo.serving.registry import get_segmenter, listed_models

    builder, _ = OWN_MODELS["tanh_logits"]
    model = builder()
    model.save(tmp_path / "archive.keras")
    snapshot = tmp_path / "snapshot"
    with zipfile.ZipFile(tmp_path / "archive.keras") as archive:  # config.json, model.weights.h5, metadata.json
        archive.extractall(snapshot)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **_: str(snapshot))
    monkeypatch.setattr(hub, "HUB_MODELS_DIR", tmp_path / "links")
    with pytest.raises(InputError, match="has no segdemo card: give segdemo.card's options"):
        card_command.local_model_path("hf://someone/road-unet")
    path = card_command.local_model_path("hf://someone/road-unet --classes background bright red --input-scale -1..1")
    card = ModelCard.load(path)
    assert card.name == "road-unet" and card.input_scale == "-1..1" and card.size == (48, 32)
    assert listed_models([path]) == {"road-unet": tmp_path / "links" / "someone__road-unet"}
    image, _ = square_data(1, (48, 32), seed=4)
    served = get_segmenter(path).predict(image[0]).labels
    expected = model.predict(image.astype(np.float32) / 127.5 - 1, verbose=0)[0].argmax(-1)
    assert (served == expected).mean() > 0.99


def test_a_model_that_rescales_itself_keeps_0_255_under_the_check(tmp_path, capsys):
    """A Rescaling layer first tells the scale: the check scores resize and filter only."""
    import keras

    inputs = keras.Input((32, 48, 3))
    outputs = keras.layers.Conv2D(3, 1)(keras.layers.Rescaling(1 / 255)(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "rescales.keras")
    pairs = write_pairs(tmp_path / "pairs", (48, 32), binary=False, count=4)
    card_command.main([str(tmp_path / "rescales.keras"), "--classes", *CLASSES[3], "--check", str(pairs)])
    out = capsys.readouterr().out
    assert "inferred input scale 0..255: the model rescales its pixels itself" in out
    assert ModelCard.load(tmp_path / "rescales.keras").input_scale == "0..255"
    table = out.split("--check on")[1]
    assert " 0..1 " not in table and " imagenet " not in table  # the scale was not scored
