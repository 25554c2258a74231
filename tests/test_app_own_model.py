"""Your own model through the app: models built the ways users build them, described by segdemo.card and
served with SEGDEMO_MODELS (app.py --model) answer `segment` over gradio_client as they do in process; a
model uploaded in the About tab serves its own session only; bad model files get messages and the app keeps
serving."""

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from segdemo.app.sessions import UPLOADED_CHOICE
from segdemo.card import cli as card_command
from segdemo.models.cards import ModelCard
from segdemo.models.files import load_model_file
from segdemo.serving.segmenter import Segmenter
from tests.helpers import start_app, stop_app
from tests.own_models import OWN_MODELS, lambda_marker_model, square_data

SCALES = {"raw_sigmoid": "0..255", "tanh_logits": "-1..1", "pix2pix": "0..1", "flat_softmax": "0..255",
          "binary_sigmoid": "0..1", "half_resolution": "0..1"}


def class_names(kind):
    return ["square"] if OWN_MODELS[kind][1][-1] == 2 else ["background", "bright", "red"]


@pytest.fixture(scope="module")
def own_models(tmp_path_factory):
    """{kind: model path} of the six kinds, each with the card segdemo.card writes (named own-<kind>)."""
    import keras

    folder = tmp_path_factory.mktemp("own")
    paths = {}
    for kind, (builder, _) in OWN_MODELS.items():
        keras.utils.set_random_seed(0)
        path = folder / (f"{kind}.h5" if kind == "raw_sigmoid" else f"{kind}.keras")  # one legacy HDF5 file
        builder().save(path)
        card_command.main([str(path), "--classes", *class_names(kind), "--input-scale", SCALES[kind],
                           "--name", f"own-{kind}"])
        paths[kind] = path
    return paths


@pytest.fixture(scope="module")
def own_app(own_models, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("own_app") / "server.log"
    process, url, _ = start_app(log_path, SEGDEMO_MODELS=",".join(str(path) for path in own_models.values()))
    yield url
    stop_app(process, log_path)


@pytest.fixture(scope="module")
def square_image(tmp_path_factory):
    image, _ = square_data(1, (96, 64), seed=9)
    path = tmp_path_factory.mktemp("image") / "squares.png"
    Image.fromarray(image[0]).save(path)
    return path


@pytest.mark.slow
def test_each_kind_is_served_by_name_as_in_process(own_app, own_models, square_image):
    client = Client(own_app, verbose=False)
    image = np.asarray(Image.open(square_image).convert("RGB"))
    for kind, path in own_models.items():
        card = ModelCard.load(path)
        *_, areas, info, mask_path = client.predict(handle_file(str(square_image)), f"own-{kind}",
                                                    api_name="/segment")
        served = np.asarray(Image.open(mask_path))
        expected = Segmenter(load_model_file(path), card, freeze=False).predict(image).labels
        assert served.shape == image.shape[:2] and set(np.unique(served)) <= set(range(len(card.classes))), kind
        assert (served == expected).mean() > 0.98, kind  # the same preprocessing and decoding as in process
        assert {item["label"] for item in areas["confidences"]} == set(card.classes), kind


# the upload's options after the pairs: channel order, dataset mean and std, threshold, white class, output,
# replaced layers (segdemo.card's), left open
MORE_OPTIONS = ("check with the pairs", "", "", None, "", "", "")


@pytest.mark.slow
def test_an_uploaded_model_serves_its_session_only(own_app, own_models, square_image):
    owner, other = Client(own_app, verbose=False), Client(own_app, verbose=False)
    report, _ = owner.predict(handle_file(str(own_models["tanh_logits"])), "background, bright, red", "-1..1",
                              "stretch", "antialias", [], *MORE_OPTIONS, api_name="/upload_model")
    assert "Serving your model" in report and "inferred input: 48x32 RGB" in report
    *_, info, mask_path = owner.predict(handle_file(str(square_image)), UPLOADED_CHOICE, api_name="/segment")
    assert "Uploaded: tanh_logits.keras" in info and np.asarray(Image.open(mask_path)).shape == (64, 96)
    with pytest.raises(Exception, match="no uploaded model yet"):
        other.predict(handle_file(str(square_image)), UPLOADED_CHOICE, api_name="/segment")


@pytest.mark.slow
def test_an_upload_without_a_stated_scale_needs_pairs(own_app, own_models):
    client = Client(own_app, verbose=False)
    with pytest.raises(Exception, match="Say how the model's input pixels were scaled"):
        client.predict(handle_file(str(own_models["pix2pix"])), "background, bright, red",
                       "check with the pairs", "stretch", "antialias", [], *MORE_OPTIONS,
                       api_name="/upload_model")


@pytest.mark.slow
def test_bad_model_uploads_get_messages_and_the_app_keeps_serving(own_app, tmp_path, square_image):
    import keras

    client = Client(own_app, verbose=False)
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_bytes(b"these are not the weights you are looking for")
    weights = tmp_path / "weights_only.weights.h5"
    inputs = keras.Input((16, 16, 3))
    small = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    small.save_weights(weights)
    weights_h5 = weights.rename(tmp_path / "weights_only.h5")
    marker = tmp_path / "code_ran"
    lambda_marker_model(str(marker)).save(tmp_path / "lambda.keras")
    marker.unlink(missing_ok=True)
    four = keras.Input((16, 16, 4))
    keras.Model(four, keras.layers.Conv2D(2, 1)(four)).save(tmp_path / "four_channels.keras")
    five = keras.Model(inputs, keras.layers.Conv2D(5, 1)(inputs))
    five.save(tmp_path / "five_outputs.keras")
    cases = [(not_a_model, "not a Keras model file"), (weights_h5, "holds weights only"),
             (tmp_path / "lambda.keras", r"hold code \(writes_a_file, .*writes_a_file=OP in 'Replace layers'"),
             (tmp_path / "four_channels.keras", "4-channel"),
             (tmp_path / "five_outputs.keras", "5 classes, but 3 names were given")]
    for path, message in cases:
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(path)), "a, b, c", "0..1", "stretch", "antialias", [], *MORE_OPTIONS,
                           api_name="/upload_model")
    # the Lambda swapped for a built-in layer as the message says: served, and its code still never ran
    report, _ = client.predict(handle_file(str(tmp_path / "lambda.keras")), "a, b", "0..255", "stretch", "antialias",
                               [], "rgb", "", "", None, "", "", "writes_a_file=identity", api_name="/upload_model")
    assert "Serving your model" in report
    assert not marker.exists()  # the Lambda never ran
    *_, info, _ = client.predict(handle_file(str(square_image)), "pets", api_name="/segment")
    assert "Pets" in info  # still serving


def test_an_upload_over_the_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from segdemo.app import uploaded_models
    from segdemo.errors import InputError

    monkeypatch.setattr(uploaded_models, "MAX_UPLOADED_MODEL_BYTES", 1000)
    big = tmp_path / "big.keras"
    big.write_bytes(b"\0" * 2000)
    with pytest.raises(InputError, match="an uploaded model may be at most 0.001 MB"):
        uploaded_models.upload_model("test-over-limit", big, "a, b", "0..1")
