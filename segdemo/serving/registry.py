"""Models by name: the served ones are the bundled models in weights/ (each `<name>.keras` with its
`<name>.json` card), the models SEGDEMO_MODELS lists (`app.py --model`: any Keras model file with a card
`python -m segdemo.card` wrote beside it) and the one SEGDEMO_HUB_REPO names. On the command line a model is
also a path. Each model is loaded once (in Keras safe mode, `model_files`), lazily, and warmed up."""

import collections
import functools
import logging
import os
import threading
from pathlib import Path

from segdemo.config import WEIGHTS_DIR
from segdemo.errors import InputError
from segdemo.models.cards import MODEL_SUFFIX, CardError, ModelCard, card_path

DEFAULT_MODEL = "pets"
MODELS_ENV = "SEGDEMO_MODELS"  # comma-separated model files to serve (app.py --model)
ONLY_ENV = "SEGDEMO_ONLY"  # set: serve only those, not the bundled models (app.py --only)
MODEL_FILE_SUFFIXES = (MODEL_SUFFIX, ".h5", ".hdf5")  # and SavedModel folders
LOADED_MODELS_CACHE = 3  # models kept in memory at once (each 150-200 MB once run: bench/model_memory.py)

log = logging.getLogger(__name__)


def served_models():
    """{name: path} of the models served: the model files in weights/ that have a card, by name (none when
    SEGDEMO_ONLY is set), then those SEGDEMO_MODELS lists and the one SEGDEMO_HUB_REPO names (see segdemo.models.hub),
    each under its card's name (replacing a bundled model of that name)."""
    models = {} if os.environ.get(ONLY_ENV) else {
        path.stem: path for path in sorted(WEIGHTS_DIR.iterdir())
        if path.suffix in MODEL_FILE_SUFFIXES and card_path(path).exists()}
    models.update(listed_models(os.environ.get(MODELS_ENV, "")))
    models.update(resolved_hub_models())
    return models


@functools.lru_cache(maxsize=8)
def listed_models(listing):
    """{card name: path} of the comma-separated model files in `listing` that have a card; a file without one
    is logged and left out (`check_listed_models` refuses it at start-up)."""
    models = {}
    for item in filter(None, (part.strip() for part in listing.split(","))):
        try:
            models[ModelCard.load(item).name] = Path(item)
        except (FileNotFoundError, CardError) as error:
            log.error("SEGDEMO_MODELS: %s is not served: %s", item, error)
    return models


def check_listed_models(paths):
    """Raise InputError for a model file (a path) that cannot be served as it is: no such file, or no valid
    card beside it (with the command that writes one)."""
    for item in paths:
        path = Path(item)
        if not path.exists():
            raise InputError(f"{item}: no such model file")
        try:
            ModelCard.load(path)
        except FileNotFoundError:
            raise InputError(f"{item} has no card {card_path(path).name} beside it: describe the model once with "
                             f"python -m segdemo.card {item} --classes NAME ...") from None
        except CardError as error:
            raise InputError(f"{item}: {error}") from None


def default_model_name(models):
    """The model a page opens with: `DEFAULT_MODEL` when served, else the first."""
    return DEFAULT_MODEL if DEFAULT_MODEL in models else next(iter(models))


def model_choices(extra=()):
    """(label, name) pairs for model dropdowns: each served model's card title, then `extra` names."""
    choices = [(ModelCard.load(path).title or name, name) for name, path in served_models().items()]
    return choices + [(name, name) for name in extra]


@functools.lru_cache(maxsize=1)
def resolved_hub_models():
    """The Hub model, fetched once per process (bounded wait, falls back to {} with a log line)."""
    from segdemo.models.hub import hub_models

    return hub_models()


def resolve_model_path(name_or_path):
    """A served model's name, or (command line and internal use only: the web names models) a path to a model
    file (.keras, .h5, a SavedModel folder) with a card beside it."""
    models = served_models()
    if name_or_path in models:
        return models[name_or_path]
    path = Path(name_or_path)
    if path.exists() and (path.suffix in MODEL_FILE_SUFFIXES or path.is_dir()):
        check_listed_models([path])
        return path
    raise InputError(f"unknown model {name_or_path!r}; served models: {', '.join(models) or 'none'}")


def save_keras_model(model, path):
    """Save weights and architecture only: a compiled model would also store its optimizer state
    (Adam's two moments triple the file)."""
    import keras

    clean = keras.Model.from_config(model.get_config())  # uncompiled: no optimizer, no loss
    clean.set_weights(model.get_weights())
    clean.save(path)


_model_locks = collections.defaultdict(threading.Lock)  # per model: two first requests for one model load it
_model_locks_guard = threading.Lock()  # once; requests for other models are not held up


def get_segmenter(name_or_path, tta=None):
    """The warmed-up `Segmenter` of a model (cached); `tta` None: as its card says."""
    with _model_locks_guard:
        lock = _model_locks[(name_or_path, tta)]
    with lock:
        return _load_segmenter(name_or_path, tta)


@functools.lru_cache(maxsize=LOADED_MODELS_CACHE)
def _load_segmenter(name_or_path, tta=None):
    path = resolve_model_path(name_or_path)
    segmenter = load_segmenter(path, tta)
    log.info("loaded model %s from %s", name_or_path, path)
    return segmenter


def load_segmenter(path, tta=None):
    """A warmed-up `Segmenter` of the model file at `path` and its card (not cached: `get_segmenter` is)."""
    from segdemo.models.files import load_model_file

    return serving_segmenter(load_model_file(path), ModelCard.load(path), tta)


def serving_segmenter(model, card, tta=None):
    """A warmed-up `Segmenter` of a loaded model, the memory its tracing held handed back."""
    from segdemo.serving.runtime import release_freed_memory
    from segdemo.serving.segmenter import Segmenter

    segmenter = Segmenter(model, card, tta=tta).warm_up()
    release_freed_memory()
    return segmenter
