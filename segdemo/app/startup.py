"""The app's start-up. `python app.py` first starts a second process that imports TensorFlow and loads the default
model (serving.model_process) while the app imports Gradio; the page is served, and until the app's own Segmenter
is ready, the default model's requests are answered by that process (`early_segmenter`). The app loads its own
in a background thread once the process has answered (or HANDOVER_DELAY_S after it is ready), then closes the
process. Without the process (scripts, tests in process, SEGDEMO_MODEL_PROCESS=off) requests wait for the
background load (`sessions.segmenter_for` does). The spare fine-tune worker starts after the first answer
(`after_first_answer`), not beside it."""

import logging
import os
import threading
import time
from pathlib import Path

from segdemo.errors import InputError
from segdemo.limits import SPARE_WORKER_DELAY_S

STARTUP_WAIT_S = 600  # how long a request that arrives during start-up waits for the model
HANDOVER_DELAY_S = 10  # the app loads its own model this long after the model process is ready, if nobody asks
HANDOVER_QUIET_S = 2  # and after this long without a request: its TensorFlow import holds the GIL, slowing answers
PROCESS_POLL_S = 0.05
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
        self.model_process = None  # serving.model_process.ModelProcess of the default model, until handed over
        self._early = None  # its EarlySegmenter
        self._last_activity = 0.0  # time.monotonic() of the last request started or answered
        self._needed = threading.Event()  # a request waits for the app's own model: no more waiting to hand over
        self._thread = None
        self._lock = threading.Lock()

    def expect(self, model_name):
        self.model_name = model_name
        self.done.clear()

    def start_model_process(self, config):
        """Start the default model's process (before Gradio is imported: it loads on the other core meanwhile)."""
        from segdemo.serving.model_process import ModelProcess
        from segdemo.serving.registry import configure, default_model_name, served_models

        configure(config)
        models = served_models()
        self.expect(default_model_name(models))
        self.model_process = ModelProcess(models[self.model_name], config.environment())

    def start(self):
        with self._lock:
            if self._thread is None and self.model_name is not None:
                target = self._load if self.model_process is None else self._hand_over
                self._thread = threading.Thread(target=target, args=(self.model_name,), name="model-startup",
                                                daemon=True)
                self._thread.start()

    def _hand_over(self, model_name):
        """Load the app's own model once the process has answered (or is idle, or failed), then close it."""
        process = self.model_process
        if process.wait_ready(STARTUP_WAIT_S):
            log.info("startup profile: model process ready %.2f s after the app process started (its import "
                     "tensorflow %.2f s, model %.2f s) on %s", process_age(), process.info["seconds"]
                     ["import_tensorflow"], process.info["seconds"]["model"], process.info["device"])
            deadline = time.monotonic() + HANDOVER_DELAY_S
            while not self._needed.wait(PROCESS_POLL_S):  # a request needs the app's own: at once
                now = time.monotonic()
                if (self.answered.is_set() or now >= deadline) and now - self._last_activity >= HANDOVER_QUIET_S:
                    break
        self._load(model_name)
        process.close()
        log.info("the app serves %s itself now; model process closed", model_name)

    def early_segmenter(self, name):
        """The model process's stand-in (`EarlySegmenter`) for `name` while the app's own Segmenter loads;
        None when there is none (another model, no process, it failed, or the app's own is ready)."""
        process = self.model_process
        if process is None or name != self.model_name or self.done.is_set():
            return None
        self._last_activity = time.monotonic()
        self.start()
        while not process.settled.wait(PROCESS_POLL_S):
            if self.done.is_set():
                return None
        if not process.ready or self.done.is_set():
            return None
        with self._lock:
            if self._early is None:
                from segdemo.models.cards import ModelCard
                from segdemo.serving.model_process import EarlySegmenter
                from segdemo.serving.registry import get_segmenter, resolve_model_path

                def own_segmenter():
                    self.wait()
                    return get_segmenter(name)

                self._early = EarlySegmenter(ModelCard.load(resolve_model_path(name)), process, own_segmenter)
            return self._early

    def device(self):
        """What the default model runs on, once it answers (the model process's, or the app's own): None when
        loading it failed."""
        early = self.early_segmenter(self.model_name) if self.model_name else None
        if early is not None:
            return early.device
        self.wait()
        if self.error is not None:
            return None
        from segdemo.serving.runtime import describe_device

        return describe_device()

    def _load(self, model_name):
        from segdemo.serving.registry import get_segmenter
        from segdemo.serving.runtime import describe_device, start_serving_runtime

        started = time.perf_counter()
        try:
            start_serving_runtime()
            imported = time.perf_counter()
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
        self._last_activity = time.monotonic()
        self.answered.set()

    def wait(self, timeout=STARTUP_WAIT_S):
        if not self.done.is_set():
            self._needed.set()
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
