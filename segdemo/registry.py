"""Models by name: the bundled ones in weights/ (each `<name>.keras` with its `<name>.json` card), or any
`.keras` path with a card beside it. Each model is loaded once, lazily, and warmed up."""

import collections
import functools
import logging
import threading
from pathlib import Path

from segdemo.cards import MODEL_SUFFIX, ModelCard, card_path
from segdemo.data import InputError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "pets"
LOADED_MODELS_CACHE = 3  # models kept in memory at once (each 150-200 MB once run: bench/model_memory.py)

log = logging.getLogger(__name__)


def bundled_models():
    """{name: path} of the models served: those in weights/ that have a card, sorted by name, and the one
    SEGDEMO_HUB_REPO names (see segdemo.hub), which replaces a bundled model of the same name."""
    models = {path.stem: path for path in sorted(WEIGHTS_DIR.glob(f"*{MODEL_SUFFIX}")) if card_path(path).exists()}
    models.update(resolved_hub_models())
    return models


def default_model_name(models):
    """The model a page opens with: `DEFAULT_MODEL` when served, else the first."""
    return DEFAULT_MODEL if DEFAULT_MODEL in models else next(iter(models))


def model_choices(extra=()):
    """(label, name) pairs for model dropdowns: each served model's card title, then `extra` names."""
    choices = [(ModelCard.load(path).title or name, name) for name, path in bundled_models().items()]
    return choices + [(name, name) for name in extra]


@functools.lru_cache(maxsize=1)
def resolved_hub_models():
    """The Hub model, fetched once per process (bounded wait, falls back to {} with a log line)."""
    from segdemo.hub import hub_models

    return hub_models()


def resolve_model_path(name_or_path):
    """A bundled model's name, or a path to a `.keras` file with a card beside it."""
    models = bundled_models()
    if name_or_path in models:
        return models[name_or_path]
    path = Path(name_or_path)
    if path.suffix == MODEL_SUFFIX and path.is_file():
        if not card_path(path).exists():
            raise InputError(f"{path} has no model card {card_path(path).name} beside it")
        return path
    raise InputError(f"unknown model {name_or_path!r}; bundled models: {', '.join(models) or 'none'}")


def load_keras_model(path):
    """Load a `.keras` file in Keras safe mode (no arbitrary code from Lambda layers)."""
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # corrupt zip, wrong format, unsafe layer ...  # noqa: BLE001
        raise InputError(f"{Path(path).name} is not a loadable Keras model ({type(error).__name__}: {error})") from None


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
    """A warmed-up `Segmenter` of the `.keras` file at `path` and its card (not cached: `get_segmenter` is)."""
    from segdemo.runtime import release_freed_memory
    from segdemo.segmenter import Segmenter

    segmenter = Segmenter(load_keras_model(path), ModelCard.load(path), tta=tta).warm_up()
    release_freed_memory()
    return segmenter
