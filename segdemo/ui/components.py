"""Gradio components adapted to segdemo's needs."""

import gradio as gr

from segdemo.data.images import open_image
from segdemo.errors import InputError


class ImageUpload(gr.Image):
    """An image input that turns unreadable uploads into a clear message instead of Gradio's generic
    preprocessing error. Use it with type="filepath", image_mode=None: the handler then gets the uploaded
    file untouched, and segdemo's reader applies EXIF orientation and converts every mode.

    (No __init__ of its own: Gradio builds the frontend config from the constructor's signature.)"""

    is_template = True  # rendered by the frontend as a plain Image

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception:  # noqa: BLE001 - any decoder failure becomes a user message
            name = getattr(payload, "orig_name", None) or "the upload"
            try:
                open_image(payload.path)
            except InputError as error:
                raise gr.Error(str(error).replace(payload.path, name)) from None
            raise gr.Error(f"{name} could not be read as an image; accepted: JPEG, PNG, BMP, GIF, TIFF, WebP") \
                from None


class FreeDropdown(gr.Dropdown):
    """A dropdown whose value over the API is any string, which its handler checks (with a message that lists
    what is accepted): a model named by an API caller may be the session's own one that the page's list does not
    show yet, and a class may be another model's than the page shows. Use it with allow_custom_value=True; the
    page offers the choices as usual.

    (No __init__ of its own: Gradio builds the frontend config from the constructor's signature.)"""

    is_template = True  # rendered by the frontend as a plain Dropdown

    def api_info(self):
        return {"type": "string"}  # not an enum of the page's choices: the API and MCP schemas take any name


class StreamedFrame(gr.Image):
    """A webcam input for `.stream`: a frame arrives as a JPEG data URL at the camera's resolution; it is passed
    on undecoded, so `serving.live.shrink_frame` decodes it already shrunk (JPEG draft mode) instead of decoding
    it whole and resizing. Anything else is preprocessed as by gr.Image.

    (No __init__ of its own: Gradio builds the frontend config from the constructor's signature.)"""

    is_template = True  # rendered by the frontend as a plain Image

    def preprocess(self, payload):
        url = getattr(payload, "url", None)
        if isinstance(url, str) and url.startswith("data:image/"):
            return url
        return super().preprocess(payload)
