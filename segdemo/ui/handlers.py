"""What every event handler shares: the session a request belongs to, bad input as a message for the user
(never a traceback), and API docstrings written from the code's facts (models, limits), not copied into them."""

import functools
import inspect
import logging

import gradio as gr

from segdemo.app.sessions import ANONYMOUS, FINETUNED_CHOICE
from segdemo.data.images import IMAGE_FORMATS
from segdemo.errors import InputError
from segdemo.limits import MAX_BATCH_IMAGES, MAX_BATCH_SIZE, MAX_STEPS, RETRAIN_STEPS, learning_rate_range, megapixels
from segdemo.serving.video_io import accepted

UNEXPECTED = ("Something went wrong on our side while processing this request; it was logged. "
              "Your uploads and results so far are kept: please try again or with other input.")
DOCUMENTED = []  # handlers whose docstrings hold {fact} placeholders (see `api_doc`)

log = logging.getLogger(__name__)


def session_key(request):
    """The browser session (or API client) a request belongs to: the key of its state in `segdemo.app.sessions`."""
    return getattr(request, "session_hash", None) or ANONYMOUS


def upload_paths(files):
    """The server paths of what a File component passed (one file or a list; Gradio's file objects or paths)."""
    if not files:
        return []
    return [getattr(item, "name", item) for item in (files if isinstance(files, list) else [files])]


def user_errors(handler):
    """Wrap a handler (plain or generator): InputError becomes a gr.Error with its message; any other
    exception is logged with its traceback and the user gets a generic gr.Error."""

    def translate(error):
        if isinstance(error, gr.Error):
            return error
        if isinstance(error, InputError):
            return gr.Error(str(error))
        log.exception("handler %s failed", handler.__name__, exc_info=error)
        return gr.Error(UNEXPECTED)

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)  # keeps the signature, which names the API's parameters
        def wrapped_generator(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - translated
                raise translate(error) from None

        return wrapped_generator

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - translated
            raise translate(error) from None

    return wrapped


def api_doc(handler):
    """Mark an API handler whose docstring names facts as {placeholders}: `document_handlers` fills them in
    (the API page and the MCP tools show the result)."""
    handler.doc_template = handler.__doc__
    DOCUMENTED.append(handler)
    return handler


def doc_facts(cards):
    """{placeholder: text} for API docstrings; `cards` maps each served model's name to its card."""
    models = "; ".join(f'"{name}" ({(card.title or name)}: {", ".join(card.classes)})'
                       for name, card in cards.items())
    return {"models": models, "model_names": ", ".join(f'"{name}"' for name in cards),
            "finetuned": f'"{FINETUNED_CHOICE}"', "image_formats": IMAGE_FORMATS, "megapixels": megapixels(),
            "max_batch_images": str(MAX_BATCH_IMAGES), "max_steps": str(MAX_STEPS),
            "max_batch_size": str(MAX_BATCH_SIZE), "learning_rates": learning_rate_range(),
            "retrain_steps": str(RETRAIN_STEPS), "video_limits": accepted()}


def document_handlers(cards):
    """Fill in every `api_doc` handler's docstring from the served models' cards and the limits."""
    facts = doc_facts(cards)
    for handler in DOCUMENTED:
        doc = handler.doc_template
        for name, text in facts.items():
            doc = doc.replace("{" + name + "}", text)
        handler.__doc__ = doc
