"""Per-browser-session state kept on the server (gr.State would deep-copy models and arrays): bounded LRU
stores keyed by Gradio's session hash, emptied when the session's tab closes."""

import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

import gradio as gr

SESSIONS_DIR = Path(tempfile.gettempdir()) / "segdemo_sessions"  # <session key>/ holds a session's files
SESSION_FILES_MAX_AGE_S = 6 * 3600  # folders untouched this long are removed even if the tab never closed
SWEEP_INTERVAL_S = 600
OUTPUT_FILES_TTL_S = 120
OUTPUT_SWEEP_INTERVAL_S = 10  # how often one session's old output folders are looked for


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


def session_key(request):
    """The browser session (or API client) a request belongs to."""
    return getattr(request, "session_hash", None) or "anonymous"


FINETUNED_CHOICE = "my fine-tuned model (this session)"
RESULTS = SessionStore(capacity=64)  # last segmentation per session, for re-rendering without the model
FINETUNED_MODELS = SessionStore(capacity=4)  # each holds a Segmenter (150-200 MB: bench/model_memory.py)
STOP_EVENTS = SessionStore(capacity=64)  # a session's running fine-tune job (the Stop button stops it)
BATCHES = SessionStore(capacity=16)  # last batch per session (its gallery is re-sorted without the model)
TRAINING_SETS = SessionStore(capacity=32)  # corrected + uploaded pairs per session (at most 200 of <= 640 px)
EDITING = SessionStore(capacity=64)  # the result a session's mask editor was opened on


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


def forget_session(request: gr.Request):
    """On tab close: drop everything the session held, files included."""
    key = session_key(request)
    for store in (RESULTS, FINETUNED_MODELS, STOP_EVENTS, BATCHES, TRAINING_SETS, EDITING):
        store.pop(key)
    shutil.rmtree(SESSIONS_DIR / key, ignore_errors=True)
    _last_output_sweep.pop(SESSIONS_DIR / key / "outputs", None)


def training_set_of(key):
    """The session's training set (created empty on first use)."""
    from segdemo.corrections import TrainingSet

    training_set = TRAINING_SETS.get(key)
    if training_set is None:
        training_set = TrainingSet()
        TRAINING_SETS.put(key, training_set)
    return training_set


def segmenter_for(model_name, key):
    """The Segmenter a request asked for: a bundled model, or this session's own fine-tuned one."""
    from segdemo.data import InputError
    from segdemo.registry import DEFAULT_MODEL, get_segmenter
    from segdemo.serving import STARTUP

    STARTUP.wait()  # a request that arrives while the app starts waits for TensorFlow and the default model
    if model_name == FINETUNED_CHOICE:
        finetuned = FINETUNED_MODELS.get(key)
        if finetuned is None:
            raise InputError("This session has no fine-tuned model (yet): train one in the Fine-tune tab, "
                             "or pick a bundled model.")
        return finetuned.segmenter
    return get_segmenter(model_name or DEFAULT_MODEL)
