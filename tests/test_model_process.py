"""The default model's process while the app starts (serving/model_process.py, app/startup.py): it answers what
the app's own Segmenter would, stands in only for the default model and only until the app's own is ready,
and a process that fails, dies or is closed leaves requests to the app's own; app.py starts it and hands over."""

import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdemo.app.startup import BackgroundStartup
from segdemo.config import MODEL_PROCESS_ENV, AppConfig
from segdemo.models.cards import ModelCard
from segdemo.serving.model_process import EarlySegmenter, ModelProcess, ModelProcessError
from segdemo.serving.registry import load_segmenter
from tests.helpers import start_app, stop_app

READY_TIMEOUT_S = 180


@pytest.fixture
def image(rng):
    return rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)


@pytest.fixture
def cache_env(tmp_path):
    # float32 as in this test process (the app's two processes both use bfloat16 where the CPU has it)
    return {"SEGDEMO_GRAPH_CACHE": str(tmp_path / "graphs"), "SEGDEMO_PRECISION": "float32"}


def test_the_process_answers_what_the_app_would_then_hands_over(tiny_base, cache_env, image):
    process = ModelProcess(tiny_base, cache_env)
    try:
        assert process.wait_ready(READY_TIMEOUT_S), process.error
        assert process.info["grid"] == [32, 32] and process.info["device"].startswith(("CPU", "GPU"))
        assert set(process.info["seconds"]) == {"import_tensorflow", "model"}
        own = load_segmenter(tiny_base, cache_dir=cache_env["SEGDEMO_GRAPH_CACHE"])  # the graph the process wrote
        loads = []
        early = EarlySegmenter(ModelCard.load(tiny_base), process, lambda: loads.append(1) or own)
        expected, answered = own.predict(image), early.predict(image)
        np.testing.assert_array_equal(answered.labels, expected.labels)
        np.testing.assert_allclose(answered.probs, expected.probs, atol=1e-6)
        assert answered.labels.shape == (50, 70) and set(answered.seconds) == {"preprocess", "model"}
        assert (early.classes, early.size, early.grid) == (own.classes, own.size, own.grid) and not loads
        assert early.predict_batch([image])[0].labels.shape == (50, 70) and loads  # anything else: the app's own
    finally:
        process.close()
    assert process.process.poll() is not None  # ended
    with pytest.raises(ModelProcessError):
        process.predict(image)
    np.testing.assert_array_equal(early.predict(image).labels, expected.labels)  # served by the app's own now


def test_a_process_that_cannot_load_or_dies_leaves_requests_to_the_app(tmp_path, tiny_base, cache_env, image):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a model")
    ModelCard.load(tiny_base).save(broken)
    failed = ModelProcess(broken, cache_env)
    assert not failed.wait_ready(READY_TIMEOUT_S)
    assert "could not load" in str(failed.error) and "broken.keras" in str(failed.error)
    with pytest.raises(ModelProcessError):
        failed.predict(image)
    failed.close()

    process = ModelProcess(tiny_base, cache_env)
    assert process.wait_ready(READY_TIMEOUT_S), process.error
    process.process.kill()
    process.process.wait()
    with pytest.raises(ModelProcessError, match="ended"):
        process.predict(image)
    process.close()


class FakeProcess:
    """What BackgroundStartup reads of a ModelProcess, without starting one."""

    def __init__(self, ready=True):
        self.settled = threading.Event()
        self.info = {"device": "CPU (test)", "grid": [32, 32], "seconds": {"import_tensorflow": 0, "model": 0}}
        self.ready, self.closed = ready, False

    def wait_ready(self, timeout=None):
        self.settled.wait(timeout)
        return self.ready

    def close(self):
        self.closed = True


def test_startup_lends_the_process_to_the_default_model_until_its_own_is_ready(monkeypatch, tiny_base):
    from segdemo.serving import registry

    monkeypatch.setattr(registry, "resolve_model_path", lambda name: Path(tiny_base))
    startup, process = BackgroundStartup(), FakeProcess()
    startup.expect("squares")
    startup.model_process = process
    loaded = threading.Event()
    monkeypatch.setattr(startup, "_load", lambda name: (loaded.wait(10), startup.done.set()))
    process.settled.set()
    early = startup.early_segmenter("squares")
    assert isinstance(early, EarlySegmenter) and early.device == "CPU (test)" and early.classes == ["background",
                                                                                                  "square"]
    assert startup.device() == "CPU (test)"
    assert startup.early_segmenter("other") is None  # another model waits for the app
    startup.first_answer()
    loaded.set()  # the app's own model is ready: the handover closes the process
    assert startup.done.wait(10)
    deadline = time.monotonic() + 10
    while not process.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.closed and startup.early_segmenter("squares") is None


def test_a_process_that_failed_is_not_lent():
    startup, process = BackgroundStartup(), FakeProcess(ready=False)
    startup.expect("squares")
    startup.model_process = process
    startup._thread = threading.current_thread()  # no handover thread in this test
    process.settled.set()
    assert startup.early_segmenter("squares") is None


def test_the_process_can_be_turned_off():
    assert AppConfig.from_environment({}).model_process
    off = AppConfig.from_environment({MODEL_PROCESS_ENV: "off"})
    assert not off.model_process and not AppConfig.from_environment(off.environment()).model_process


def class_index_mask(path):
    return np.asarray(Image.open(path))


def test_app_py_answers_from_the_process_then_from_itself(tmp_path):
    log_path = tmp_path / "app.log"
    server, url, _ = start_app(log_path)
    try:
        from gradio_client import Client, handle_file

        photo = str(Path(__file__).resolve().parent.parent / "examples" / "chelsea_cat.png")
        client = Client(url, verbose=False)
        first = client.predict(handle_file(photo), "pets", "pet", 0.5, api_name="/segment")
        log = log_path.read_text()
        assert "model process ready" in log and "the app serves pets itself now" not in log
        assert set(first[4]["confidences"][0]) == {"label", "confidence"}
        assert {item["label"] for item in first[4]["confidences"]} == {"pet", "background", "border"}
        assert "Pets" in first[5] and re.search(r"on (CPU|GPU)", first[5])
        assert not loads_tensorflow(server.pid)  # the app process answered without importing it
        children = child_pids(server.pid)  # the model process (the spare fine-tune worker waits for the handover)
        assert len(children) == 1
        deadline = time.monotonic() + 120
        while "the app serves pets itself now" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "the app serves pets itself now; model process closed" in log_path.read_text()
        assert gone(children) == children and loads_tensorflow(server.pid)  # the app serves it itself
        second = client.predict(handle_file(photo), "pets", "pet", 0.5, api_name="/segment")
        before, after = class_index_mask(first[6]), class_index_mask(second[6])
        assert before.shape == after.shape == (300, 451)
        assert (before == after).mean() > 0.999  # the same frozen graph, in another process
        assert {item["label"]: round(item["confidence"], 2) for item in first[4]["confidences"]} == \
            {item["label"]: round(item["confidence"], 2) for item in second[4]["confidences"]}
    finally:
        stop_app(server, log_path)


def loads_tensorflow(pid):
    return "libtensorflow_framework" in Path(f"/proc/{pid}/maps").read_text()


def child_pids(pid):
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def gone(pids):
    return {pid for pid in pids if not Path(f"/proc/{pid}").exists() or is_zombie(pid)}


def is_zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


if os.name != "posix":  # /proc and pass_fds
    pytestmark = pytest.mark.skip("the model process is started with POSIX facilities")
