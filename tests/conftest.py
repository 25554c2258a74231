"""Shared fixtures: offline Hub, quiet TensorFlow, a launched app server, a tiny base model and its pairs
(the helpers they use are in tests/helpers.py, shared with the benchmarks)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from segdemo.models.architectures import build_unet  # noqa: E402
from segdemo.models.cards import ModelCard  # noqa: E402
from tests.helpers import square_pairs, start_app, stop_app  # noqa: E402

SLOW_FIXTURES = {"app_url", "server_log", "page"}  # a launched server or a browser: marked slow by themselves


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def server_log(tmp_path_factory):
    """Where the launched app server writes its log."""
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="session")
def app_url(server_log):
    """Start `python app.py` as a real server on a free local port; yield its URL."""
    process, url, _ = start_app(server_log)
    yield url
    stop_app(process, server_log)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A small classic U-Net 'base model' with a card, as the registry loads any .keras path."""
    import keras

    path = tmp_path_factory.mktemp("base") / "squares.keras"
    keras.utils.set_random_seed(0)  # an untrained base: its predictions (and the "before" mapping) depend on it
    build_unet(2, depth=2, base_filters=8).save(path)
    ModelCard.from_dict({"name": "squares", "classes": ["background", "square"], "colors": [[0, 0, 0], [255, 0, 0]],
                         "input_size": 32, "architecture": "unet"}).save(path)
    return str(path)


@pytest.fixture(scope="module")
def mobile_base(tmp_path_factory):
    """A small MobileNetV2-encoder U-Net (the bundled models' architecture) with a card, at 32x32."""
    import keras

    from segdemo.models.architectures import build_mobilenet_unet

    path = tmp_path_factory.mktemp("mobile") / "mobile.keras"
    keras.utils.set_random_seed(0)
    build_mobilenet_unet(2, input_size=32, decoder_filters=(8, 8, 8, 8)).save(path)
    ModelCard.from_dict({"name": "mobile", "classes": ["background", "square"], "input_size": 32,
                         "architecture": "mobilenet_unet"}).save(path)
    return str(path)


@pytest.fixture(scope="module")
def squares():
    images, masks = square_pairs(12, 32, np.random.default_rng(1))
    return [(f"pair{i}", image, mask) for i, (image, mask) in enumerate(zip(images, masks))]
