"""The app's start-up: TensorFlow and the default model load in a background thread while the page is
already served; requests that need a model wait for it (`sessions.segmenter_for` does). The spare fine-tune
worker starts after the first answer (`after_first_answer`), not beside it."""

import logging
import os
import threading
import time
from pathlib import Path

from segdemo.errors import InputError
from segdemo.limits import SPARE_WORKER_DELAY_S

STARTUP_WAIT_S = 600  # how long a request that arrives during start-up waits for the model
LOADING_MESSAGE = "Loading the model… (TensorFlow and the default model load once, after the page is up)"

log = logging.getLogger(__name__)


class BackgroundStartup:
    """TensorFlow and the default model, loaded in a thread so that the page is served as soon as Gradio is
    up. `expect(name)` (when the app is built) makes requests wait; `start()` (once the server is up, or by
    the first request that arrives before that) loads. Requests that need a model call `wait()` first
    (sessions.segmenter_for does): one that arrives early waits for the load instead of failing. With no
    `expect`, there is nothing to wait for (scripts and tests that use the pipeline in process)."""

    def __init__(self):
        self.done = threading.Event()
        self.done.set()
        self.answered = threading.Event()  # a request was answered, or the Fine-tune tab opened (first_answer)
        self.error = None
        self.model_name = None
        self._thread = None
        self._lock = threading.Lock()

    def expect(self, model_name):
        self.model_name = model_name
        self.done.clear()

    def start(self):
        with self._lock:
            if self._thread is None and self.model_name is not None:
                self._thread = threading.Thread(target=self._load, args=(self.model_name,), name="model-startup",
                                                daemon=True)
                self._thread.start()

    def _load(self, model_name):
        from segdemo.compat import import_tensorflow_without_keras
        from segdemo.serving.registry import get_segmenter
        from segdemo.serving.runtime import describe_device, enable_bf16_inference, enable_gpu_memory_growth

        started = time.perf_counter()
        try:
            import_tensorflow_without_keras()  # Keras only when a model file is read (not on a graph cache hit)
            imported = time.perf_counter()
            enable_gpu_memory_growth()
            enable_bf16_inference()  # before any model is loaded: it applies to graphs built afterwards
            get_segmenter(model_name)  # loaded and warmed before the first request is answered
            done = time.perf_counter()
            log.info("model %s ready on %s after %.1f s in the background", model_name, describe_device(),
                     done - started)
            age = process_age()
            log.info("startup profile: background load started %.2f s after the process, import tensorflow %.2f "
                     "s, model %s %.2f s, ready %.2f s after the process started", age - (done - started),
                     imported - started, model_name, done - imported, age)
        except Exception as error:  # noqa: BLE001 - logged; requests then load (and report) it themselves
            self.error = error
            log.exception("loading %s in the background failed", model_name)
        finally:
            self.done.set()

    @property
    def ready(self):
        return self.done.is_set()

    def first_answer(self):
        """A request was answered (or the Fine-tune tab opened): what waits for it (the spare worker) may go."""
        self.answered.set()

    def wait(self, timeout=STARTUP_WAIT_S):
        if not self.done.is_set():
            self.start()
        if not self.done.wait(timeout):
            raise InputError("The model is still loading; please try again in a minute.")


def after_first_answer(startup, action, delay_s=SPARE_WORKER_DELAY_S):
    """Run `action()` once the default model is loaded and then a request has been answered (or the Fine-tune
    tab opened), or `delay_s` after the model loaded when nobody asks for anything: on 2 cores, a second
    TensorFlow process starting beside the first answer delays it."""
    startup.done.wait()
    startup.answered.wait(delay_s)
    action()


def process_age():
    """Seconds since this process started (Linux: /proc; elsewhere the seconds since this module loaded)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _LOADED


_LOADED = time.perf_counter()
STARTUP = BackgroundStartup()
