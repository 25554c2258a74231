"""The Compare tab: one image through two models (bundled, or this session's fine-tuned one), their overlays
in a before/after slider, the map of pixels where they disagree and the disagreeing share per class; the
named API endpoint `compare`."""

import gradio as gr

from segdemo.app.sessions import model_menu, request_folder, segmenter_for
from segdemo.serving.compare import DISAGREE_COLOR, compare_models
from segdemo.serving.registry import DEFAULT_MODEL, default_model_name, served_models
from segdemo.ui.components import FreeDropdown, ImageUpload
from segdemo.ui.handlers import api_doc, session_key, user_errors

HOW_TO = ("Pick two models and drop an image: drag the slider to see model A's overlay (left) against model B's "
          "(right). With the session's fine-tuned model as B and its base model as A, this shows what "
          "fine-tuning changed. Classes are matched by name.")


def comparison_note(comparison):
    title_a, title_b = comparison.titles
    return (f"A: **{title_a}** · B: **{title_b}** · they disagree on **{100 * comparison.disagreement:.1f}%** of "
            f"the pixels (rgb{DISAGREE_COLOR} in the map). Per class: the share of the pixels either model gives "
            "that class on which the other says something else (1 − IoU of the two masks).")


@api_doc
@user_errors
def compare(image, model_a=DEFAULT_MODEL, model_b=DEFAULT_MODEL, request: gr.Request = None):
    """Segment one image with two models and show where they disagree.

    Args:
        image: The image ({image_formats}).
        model_a: The first model: a served model ({model_names}) or the session's fine-tuned model ({finetuned}).
        model_b: The second model, from the same choices.

    Returns:
        model A's and model B's overlays (two PNGs, for a before/after slider)
        the image with the pixels where the models disagree in magenta (PNG)
        per class, the share of the pixels either model gives it on which they disagree (1 - IoU)
        a note with the share of all pixels on which they disagree
    """
    key = session_key(request)
    comparison = compare_models(image, segmenter_for(model_a, key), segmenter_for(model_b, key), request_folder(key),
                                (model_a, model_b))
    return (comparison.overlays, comparison.disagreement_map, comparison.class_disagreement,
            comparison_note(comparison))


def build_compare_tab():
    models = served_models()
    choices = model_menu()
    default = default_model_name(models)
    gr.Markdown(HOW_TO)
    with gr.Row():
        model_a = FreeDropdown(choices, value=default, allow_custom_value=True, label="Model A (slider left)",
                               elem_id="compare-model-a")
        model_b = FreeDropdown(choices, value=next((name for name in models if name != default), default),
                               allow_custom_value=True, label="Model B (slider right)", elem_id="compare-model-b")
    with gr.Row(equal_height=True):
        image = ImageUpload(type="filepath", image_mode=None, label="Image", sources=["upload", "clipboard"],
                            elem_id="compare-image")
        slider = gr.ImageSlider(type="filepath", format="png", label="Overlays: A | B", interactive=False,
                                elem_id="compare-slider")
    with gr.Row():
        disagreement = gr.Image(format="png", label="Where they disagree (magenta)", interactive=False,
                                elem_id="compare-disagreement")
        with gr.Column():
            shares = gr.Label(label="Disagreeing share per class", show_heading=False, elem_id="compare-shares")
            note = gr.Markdown(label="What differs between the two models", elem_id="compare-note")
    run = gr.Button("Compare", variant="primary", elem_id="compare-run")
    inputs, outputs = [image, model_a, model_b], [slider, disagreement, shares, note]
    run.click(compare, inputs, outputs, api_name="compare", concurrency_limit=2)
    image.upload(compare, inputs, outputs, api_visibility="undocumented", concurrency_limit=2)
