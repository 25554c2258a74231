"""Models by name: the served ones are the bundled models in weights/ (each `<name>.keras` with its
`<name>.json` card), the model files the app's configuration lists (`app.py --model`, SEGDEMO_MODELS: any Keras
model file with a card `python -m segdemo.card` wrote beside it) and the Hub model it names (SEGDEMO_HUB_REPO).
On the command line a model is also a path. Each model is loaded once (in Keras safe mode, `models.files`),
lazily, and warmed up. The configuration is given once (`configure`, by app.py); a script or command that gives
none gets `AppConfig.from_environment()`, read on first use."""

import collections
import functools
import logging
import threading
import time
from pathlib import Path

from segdemo.config import AppConfig
from segdemo.errors import InputError
from segdemo.models.cards import MODEL_SUFFIX, CardError, ModelCard, card_path

DEFAULT_MODEL = "pets"
MODEL_FILE_SUFFIXES = (MODEL_SUFFIX, ".h5", ".hdf5")  # and SavedModel folders
LOADED_MODELS_CACHE = 3  # models kept in memory at once (each 150-200 MB once run: bench/model_memory.py)

log = logging.getLogger(__name__)
_config = None
_config_lock = threading.Lock()


def configure(config):
    """Serve what `config` (an `AppConfig`) says from now on; returns it."""
    global _config
    with _config_lock:
        _config = config
    _load_segmenter.cache_clear()
    return config


def current_config():
    """The configuration given to `configure`, else the environment's (read once)."""
    global _config
    with _config_lock:
        if _config is None:
            _config = AppConfig.from_environment()
        return _config


def served_models():
    """{name: path} of the models served: the model files in weights/ that have a card, by name (none with
    `only`), then the configuration's model files and its Hub model (see segdemo.models.hub), each under its
    card's name (replacing a bundled model of that name)."""
    return dict(models_of(current_config()))


@functools.lru_cache(maxsize=8)
def models_of(config):
    models = {} if config.only else {
        path.stem: path for path in sorted(config.weights_dir.iterdir())
        if path.suffix in MODEL_FILE_SUFFIXES and card_path(path).exists()}
    models.update(listed_models(config.model_files))
    models.update(resolved_hub_models(config.hub_repo, config.hub_revision))
    return models


def listed_models(paths):
    """{card name: path} of the model files `paths` that have a card; a file without one is logged and left
    out (`check_listed_models` refuses it at start-up)."""
    models = {}
    for item in paths:
        try:
            models[ModelCard.load(item).name] = Path(item)
        except (FileNotFoundError, CardError) as error:
            log.error("SEGDEMO_MODELS: %s is not served: %s", item, error)
    return models


@functools.lru_cache(maxsize=4)
def resolved_hub_models(repo_id, revision):
    """The Hub model, fetched once per process (bounded wait, falls back to {} with a log line)."""
    from segdemo.models.hub import hub_models

    return hub_models(repo_id, revision or None)


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


def model_choices():
    """(label, name) pairs of the served models: each one's card title (else its name)."""
    return [(ModelCard.load(path).title or name, name) for name, path in served_models().items()]


@functools.lru_cache(maxsize=1)
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


def load_segmenter(path, tta=None, cache_dir=None):
    """A warmed-up `Segmenter` of the model file at `path` and its card (not cached: `get_segmenter` is). Its
    frozen graphs come from the graph cache (`cache_dir`, default: the configuration's) when it holds them for
    this file, card and TensorFlow: then the Keras model is only loaded when something needs it (an export, a
    fine-tune); otherwise they are built and stored there."""
    from segdemo.models.files import load_model_file
    from segdemo.serving.graph_cache import GraphCache

    card = ModelCard.load(path)
    cache_dir = current_config().graph_cache_dir if cache_dir is None else cache_dir
    resolved_tta = bool(card.flip_tta) if tta is None else tta
    cache = GraphCache(cache_dir, path, card, resolved_tta) if cache_dir and Path(path).exists() else None
    started = time.perf_counter()
    if cache is not None and cache.grid() is not None:
        segmenter = serving_segmenter(None, card, tta, cache=cache, load_model=lambda: load_model_file(path))
        log.info("model %s served from the graph cache in %.1f s", Path(path).name, time.perf_counter() - started)
        return segmenter
    segmenter = serving_segmenter(load_model_file(path), card, tta, cache=cache)
    log.info("model %s loaded, traced and frozen in %.1f s", Path(path).name, time.perf_counter() - started)
    return segmenter


def serving_segmenter(model, card, tta=None, cache=None, load_model=None):
    """A warmed-up `Segmenter` of a loaded model (or of `cache`'s graphs, the model loaded by `load_model`
    when needed), the memory its tracing held handed back. A cached graph that fails its first run is dropped:
    the Segmenter is built from the model then."""
    from segdemo.serving.runtime import release_freed_memory
    from segdemo.serving.segmenter import Segmenter

    try:
        segmenter = Segmenter(model, card, tta=tta, cache=cache, load_model=load_model).warm_up()
    except Exception as error:  # noqa: BLE001 - a cached graph that does not run: built from the model instead
        if model is not None:
            raise
        log.warning("graph cache: the cached graph of %s failed (%s); building it", card.name, error)
        cache.clear()
        segmenter = Segmenter(load_model(), card, tta=tta, cache=cache).warm_up()
    release_freed_memory()
    return segmenter
