"""A session's state, kept on the server (gr.State would deep-copy models and arrays): its results, its
training set, its fine-tuned model and running job, and its files, in bounded LRU stores keyed by the
session's key (Gradio's session hash: ui/ turns a request into it), emptied when the session ends. Models are
named, never given as paths: a session sees the served models and its own fine-tuned one."""

import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from segdemo.app.startup import STARTUP
from segdemo.data.training_set import TrainingSet
from segdemo.errors import InputError
from segdemo.serving.registry import (
    default_model_name,
    get_segmenter,
    load_segmenter,
    model_choices,
    served_models,
    serving_segmenter,
)

SESSIONS_DIR = Path(tempfile.gettempdir()) / "segdemo_sessions"  # <session key>/ holds a session's files
SESSION_FILES_MAX_AGE_S = 6 * 3600  # folders untouched this long are removed even if the tab never closed
SWEEP_INTERVAL_S = 600
OUTPUT_FILES_TTL_S = 120
OUTPUT_SWEEP_INTERVAL_S = 10  # how often one session's old output folders are looked for
FINETUNED_CHOICE = "my fine-tuned model (this session)"  # the name a session's own fine-tuned model goes by
UPLOADED_CHOICE = "my uploaded model (this session)"  # and the model it uploaded in the About tab
ANONYMOUS = "anonymous"  # the key of a request that belongs to no session (scripts, tests)


class SessionStore:
    """{session key: value}, least recently used out beyond `capacity`; thread-safe."""

    def __init__(self, capacity):
        self.capacity, self._items, self._lock = capacity, OrderedDict(), threading.Lock()

    def put(self, key, value):
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def pop(self, key):
        with self._lock:
            return self._items.pop(key, None)

    def __len__(self):
        return len(self._items)

    def __contains__(self, key):
        with self._lock:
            return key in self._items


RESULTS = SessionStore(capacity=64)  # last segmentation per session, for re-rendering without the model
FINETUNED_MODELS = SessionStore(capacity=4)  # each holds a Segmenter (150-200 MB: bench/model_memory.py)
UPLOADED_MODELS = SessionStore(capacity=4)  # a model uploaded in the About tab, as a SessionModel
RUNNING_JOBS = SessionStore(capacity=64)  # a session's running fine-tune job (jobs.Job: the Stop button stops it)
BATCHES = SessionStore(capacity=16)  # last batch per session (its gallery is re-sorted without the model)
TRAINING_SETS = SessionStore(capacity=32)  # corrected + uploaded pairs per session (at most 200 of <= 640 px)
EDITING = SessionStore(capacity=64)  # the result a session's mask editor was opened on
LIVE_STREAMS = SessionStore(capacity=16)  # a session's webcam stream: smoothing state, frame counts (serving.live)
STORES = (RESULTS, FINETUNED_MODELS, UPLOADED_MODELS, RUNNING_JOBS, BATCHES, TRAINING_SETS, EDITING, LIVE_STREAMS)
OWN_MODELS = {FINETUNED_CHOICE: FINETUNED_MODELS, UPLOADED_CHOICE: UPLOADED_MODELS}  # name -> the session's store
LOADER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-model")  # see SessionModel


class SessionModel:
    """A session's own model (fine-tuned, or uploaded): its card, the Segmenter serving it and the files offered
    for download (model, card JSON, card Markdown). The Segmenter is loaded, frozen and warmed up on a thread
    (~2.6 s), so a finished fine-tune shows that much sooner; a request that uses the model before then waits."""

    def __init__(self, model_path, card, files, model=None):
        self.card, self.files = card, files  # the card is the one saved beside model_path
        self.model_path = str(model_path)
        # `model`: the Keras model of that file, already loaded (an upload was checked with it): not read again
        self._segmenter = LOADER.submit(load_segmenter, model_path) if model is None else \
            LOADER.submit(serving_segmenter, model, card)

    @property
    def segmenter(self):
        return self._segmenter.result()


def session_folder(key):
    """A folder for one session's files (downloads), removed when the session ends or goes stale."""
    if time.time() - _last_sweep[0] > SWEEP_INTERVAL_S:
        sweep_stale_sessions()
    folder = SESSIONS_DIR / key
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def request_folder(key):
    """A new folder for one request's output files, under the session's folder. Earlier requests' folders
    are removed after OUTPUT_FILES_TTL_S: by then Gradio has copied what it serves into its own cache."""
    outputs = session_folder(key) / "outputs"
    outputs.mkdir(exist_ok=True)
    if time.time() - _last_output_sweep.get(outputs, 0.0) > OUTPUT_SWEEP_INTERVAL_S:  # not on every request
        _last_output_sweep[outputs] = time.time()
        remove_stale_folders(outputs, OUTPUT_FILES_TTL_S)
    folder = outputs / uuid.uuid4().hex[:16]
    folder.mkdir()
    return folder


_last_sweep = [0.0]
_last_output_sweep = {}  # outputs folder -> time of its last sweep


def sweep_stale_sessions(max_age=SESSION_FILES_MAX_AGE_S, root=SESSIONS_DIR):
    """Remove session folders not modified for `max_age` seconds (sessions whose unload never came)."""
    _last_sweep[0] = time.time()
    remove_stale_folders(root, max_age)


def remove_stale_folders(root, max_age):
    """Remove the entries of `root` not modified for `max_age` seconds."""
    if not root.is_dir():
        return
    now = time.time()
    for folder in root.iterdir():
        try:
            if now - folder.stat().st_mtime > max_age:
                shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:
            pass


def forget_session(key):
    """When a session ends: drop everything it held, files included."""
    for store in STORES:
        store.pop(key)
    shutil.rmtree(SESSIONS_DIR / key, ignore_errors=True)
    _last_output_sweep.pop(SESSIONS_DIR / key / "outputs", None)


def training_set_of(key):
    """The session's training set (created empty on first use)."""
    training_set = TRAINING_SETS.get(key)
    if training_set is None:
        training_set = TrainingSet()
        TRAINING_SETS.put(key, training_set)
    return training_set


def own_model(name, key):
    """The session's own model called `name` (a SessionModel), or None."""
    return OWN_MODELS[name].get(key) if name in OWN_MODELS else None


def model_menu():
    """(label, name) pairs every model menu offers, in one order: each served model under its card's title, then
    the session's own models by name (a session without one is told how to get it when it picks one)."""
    return [*model_choices(), *((name, name) for name in OWN_MODELS)]


def session_models(key):
    """The names a session can use: the served models, then its own (fine-tuned, uploaded) ones."""
    return [*served_models(), *(name for name in OWN_MODELS if own_model(name, key) is not None)]


def check_model_name(model_name, key):
    """`model_name` when the session has it ("" is the default model), else InputError listing its models.
    Over the web a model is a name, never a path or a Hub URI."""
    if not model_name:
        return default_model_name(served_models())
    if model_name in served_models():
        return model_name
    if model_name in OWN_MODELS:
        if own_model(model_name, key) is None:
            how = ("train one in the Fine-tune tab (or with the retrain API)" if model_name == FINETUNED_CHOICE
                   else "upload one in the About tab")
            kind = "fine-tuned model" if model_name == FINETUNED_CHOICE else "uploaded model"
            raise InputError(f"This session has no {kind} yet: {how}, or pick a served model: "
                             + ", ".join(served_models()) + ".")
        return model_name
    raise InputError(f"unknown model {str(model_name)[:100]!r}; the models of this session: "
                     f"{', '.join(session_models(key))}")


def segmenter_for(model_name, key):
    """The Segmenter a request asked for by name: a served model, or the session's own fine-tuned one."""
    name = check_model_name(model_name, key)
    early = STARTUP.early_segmenter(name)  # while the app starts, the default model's process answers
    if early is not None:
        return early
    STARTUP.wait()  # else a request that arrives while the app starts waits for TensorFlow and the default model
    if name in OWN_MODELS:
        return own_model(name, key).segmenter
    return get_segmenter(name)


def base_for(model_name, key):
    """(base a fine-tune starts from: a served model's name or the session's own model file, its card).
    Empty `model_name`: the session's fine-tuned model when there is one (a teach-loop round continues it),
    else the default model."""
    if not model_name and FINETUNED_MODELS.get(key) is not None:
        model_name = FINETUNED_CHOICE
    name = check_model_name(model_name, key)
    if name in OWN_MODELS:
        model = own_model(name, key)
        return model.model_path, model.card
    return name, segmenter_for(name, key).card
