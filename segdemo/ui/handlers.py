"""What every event handler shares: bad input becomes a message for the user, never a traceback."""

import functools
import inspect
import logging

import gradio as gr

from segdemo.data import InputError

UNEXPECTED = ("Something went wrong on our side while processing this request; it was logged. "
              "Your uploads and results so far are kept: please try again or with other input.")

log = logging.getLogger(__name__)


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
