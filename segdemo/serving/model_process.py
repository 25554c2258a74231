"""One model served from a second process while the app process starts, so that a cold start's first answer
does not wait for the app's own TensorFlow import.

In one process the imports follow each other (Gradio about 3 s, then TensorFlow 3.5 s on 2 cores: both hold the
GIL, a thread does not overlap them). `ModelProcess` starts `python -m segdemo.serving.model_process` before the
app imports Gradio; on the other core it imports TensorFlow and loads the model (from the graph cache: about
1 s), then answers `predict` calls over a pipe. `EarlySegmenter` stands in for the model's `Segmenter` meanwhile:
its `predict` goes to the process, anything else (and `predict` once the process is gone) to the app's own
Segmenter. The app hands over and closes the process once its own Segmenter is ready (app.startup).

The two ends are an inherited socket pair between two processes of this app; the messages are NumPy arrays
and tuples of them (pickled: each end trusts only the other)."""

import ctypes
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection

from segdemo.config import PROJECT_ROOT
from segdemo.models.cards import class_colors
from segdemo.serving.drawing import palette_lut

PR_SET_PDEATHSIG = 1  # Linux prctl: the process gets a signal when its parent dies
CLOSE_TIMEOUT_S = 10

log = logging.getLogger(__name__)


class ModelProcessError(RuntimeError):
    """The model process cannot answer (closed, failed to load, or died): serve in process instead."""


class ModelProcess:
    """The process serving the model file `model_path` (with its card): started at once; `wait_ready()` waits
    for its model; `predict(image)` is its Segmenter's, one call at a time; `close()` ends it."""

    def __init__(self, model_path, environment=None):
        self.model_path = str(model_path)
        self.info = None  # from the process once its model answers: device, grid, seconds
        self.error = None  # why it cannot answer
        self.settled = threading.Event()  # ready, or failed
        self._lock = threading.Lock()
        self._connection, child_end = multiprocessing.Pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "segdemo.serving.model_process", str(child_end.fileno()), self.model_path],
            cwd=PROJECT_ROOT, env={**os.environ, **(environment or {})}, pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL, preexec_fn=end_with_parent)
        child_end.close()
        threading.Thread(target=self._await_ready, name="model-process", daemon=True).start()

    def _await_ready(self):
        try:
            status, payload = self._connection.recv()
            if status != "ready":
                raise ModelProcessError(f"the model process could not load {self.model_path}: {payload}")
            self.info = payload
        except (EOFError, OSError, ModelProcessError) as error:
            self.error = error if isinstance(error, ModelProcessError) else ModelProcessError(
                f"the model process ended before its model was ready ({type(error).__name__})")
            log.warning("%s; the app loads the model itself", self.error)
        finally:
            self.settled.set()

    @property
    def ready(self):
        return self.info is not None and self.error is None

    def wait_ready(self, timeout=None):
        """Whether the process's model is ready (waits up to `timeout` seconds for it to settle)."""
        self.settled.wait(timeout)
        return self.ready

    def predict(self, image):
        """The process Segmenter's `Prediction` of an HxWx3 uint8 image; ModelProcessError when it cannot."""
        from segdemo.serving.segmenter import Prediction

        if not self.wait_ready():
            raise self.error
        with self._lock:
            if self.error is not None:
                raise self.error
            try:
                self._connection.send(image)
                status, *payload = self._connection.recv()
            except (EOFError, OSError) as error:
                self.error = ModelProcessError(f"the model process ended ({type(error).__name__})")
                raise self.error from error
        if status != "ok":
            raise ModelProcessError(f"the model process failed: {payload[0]}")
        labels, probs, seconds = payload
        return Prediction(labels, probs, seconds)

    def close(self):
        """End the process (after the call it is answering); later `predict` calls raise ModelProcessError."""
        with self._lock:
            if self.error is None:
                self.error = ModelProcessError("the model process was closed")
            self._connection.close()
        try:
            self.process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def end_with_parent():
    """In the child, before it runs: SIGTERM when the app process dies (Linux; elsewhere it ends at the pipe's
    end, once its model has loaded)."""
    try:
        ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class EarlySegmenter:
    """A model's `Segmenter` as the serving pipeline uses it, while the app's own is loading: the card's facts
    (size, classes, palette, tta), the process's device and grid, and `predict` answered by the `ModelProcess`.
    Any other attribute, and `predict` once the process is gone, come from `load()` (the app's own Segmenter,
    waited for)."""

    def __init__(self, card, process, load):
        self.card, self.io = card, card.io
        self.size, self.classes = card.size, list(card.classes)
        self.palette = palette_lut(class_colors(card))
        self.tta = bool(card.flip_tta)
        self.device, self.grid = process.info["device"], tuple(process.info["grid"])
        self._process, self._load = process, load

    def predict(self, image):
        try:
            return self._process.predict(image)
        except ModelProcessError:
            return self._load().predict(image)

    def __getattr__(self, name):  # only for what __init__ did not set
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._load(), name)


def serve(connection, model_path):
    """The process's work: import TensorFlow, load the model as the app would, say ready, answer until the
    app closes its end."""
    from segdemo.serving.registry import load_segmenter
    from segdemo.serving.runtime import describe_device, start_serving_runtime

    try:
        import_seconds = start_serving_runtime()
        imported = time.perf_counter()
        segmenter = load_segmenter(model_path)
    except Exception as error:  # noqa: BLE001 - told to the app, which then loads the model itself
        connection.send(("failed", f"{type(error).__name__}: {error}"))
        return
    seconds = {"import_tensorflow": import_seconds, "model": time.perf_counter() - imported}
    connection.send(("ready", {"device": describe_device(), "grid": list(segmenter.grid), "seconds": seconds}))
    while True:
        try:
            image = connection.recv()
        except (EOFError, OSError):
            return
        try:
            prediction = segmenter.predict(image)
            reply = ("ok", prediction.labels, prediction.probs, prediction.seconds)
        except Exception as error:  # noqa: BLE001 - the app serves this request itself
            reply = ("error", f"{type(error).__name__}: {error}")
        try:
            connection.send(reply)
        except OSError:
            return


def main(argv=None):
    descriptor, model_path = (argv or sys.argv[1:])[:2]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(Connection(int(descriptor)), model_path)


if __name__ == "__main__":
    main()
