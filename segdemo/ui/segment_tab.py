"""The Segment tab: upload any image -> input, colour class mask, probability map, uncertainty map, overlay,
class areas, a download of the class-index mask, and the named API endpoint `segment`. The teach loop's
correction panel (ui/teach.py) is laid out below it by `build_demo`."""

from dataclasses import dataclass

import gradio as gr

from segdemo.app.sessions import RESULTS, model_menu, request_folder, segmenter_for
from segdemo.app.startup import LOADING_MESSAGE, STARTUP
from segdemo.config import EXAMPLES_DIR
from segdemo.models.cards import ModelCard, class_colors, example_files
from segdemo.serving.cutout import EDGES, SOFT
from segdemo.serving.registry import DEFAULT_MODEL, default_model_name, served_models
from segdemo.serving.runtime import release_freed_memory
from segdemo.serving.segment import LARGE_IMAGE_PIXELS, STEPS, cutout_file, render, segment_and_render
from segdemo.ui.components import FreeDropdown, ImageUpload
from segdemo.ui.handlers import api_doc, session_key, user_errors

DEFAULT_OPACITY = 0.5


def timing_note(result, model_name):
    """The info line: model, device, and where the handler's time went."""
    seconds = result.seconds
    total = sum(seconds.values())
    steps = " · ".join(f"{step} {seconds[step] * 1000:.0f}" for step in STEPS)
    mirrored = " (mean with the mirrored image)" if result.segmenter.tta else ""
    return (f"**{(result.segmenter.card.title or model_name)}** on {result.segmenter.device} · model{mirrored} "
            f"{seconds['model'] * 1000:.0f} ms · total {total * 1000:.0f} ms ({steps} ms) · mean uncertainty "
            f"{result.mean_uncertainty:.3f}  \n" + "; ".join(result.notes))


@api_doc
@user_errors
def segment(image, model_name=DEFAULT_MODEL, probability_class="", opacity=DEFAULT_OPACITY,
            request: gr.Request = None):
    """Segment an image: label every pixel with a class of the chosen U-Net model.
    Served models and their classes: {models}.

    Args:
        image: The image to segment ({image_formats}, up to {megapixels}).
        model_name: A served model ({model_names}) or the session's fine-tuned model ({finetuned}).
        probability_class: The class whose probability map is returned, one of the model's classes (default: the
            model's main class).
        opacity: How strongly the colour mask covers the image in the overlay, 0 to 1.

    Returns:
        the colour class mask (PNG)
        the probability map of `probability_class` (grey PNG, white = probability 1)
        the uncertainty map (grey PNG at the model's resolution, white = unsure: 1 - the margin between the two
            likeliest classes)
        the overlay of the colour mask on the image (PNG)
        the share of the image per class
        a note with timings and device
        the class-index mask (PNG, pixel value = class index, full resolution)
    """
    key = session_key(request)
    segmenter = segmenter_for(model_name, key)  # loaded once, outside the timings
    result, (color_mask, prob, blended) = segment_and_render(image, segmenter, probability_class, opacity,
                                                             request_folder(key))
    RESULTS.put(key, result)
    STARTUP.first_answer()  # the spare fine-tune worker may start now
    if result.prediction.labels.size >= LARGE_IMAGE_PIXELS:
        release_freed_memory()  # a large image's temporary arrays would otherwise stay in the RSS
    return (color_mask, prob, result.uncertainty_file, blended, result.areas, timing_note(result, model_name),
            result.mask_file)


@api_doc
@user_errors
def cutout(image, model_name=DEFAULT_MODEL, class_name="", edge=SOFT, request: gr.Request = None):
    """Cut one class out of an image: the image at full size as an RGBA PNG, transparent where the class is not
    (background removal for a pet or a person model). Served models and their classes: {models}.

    Args:
        image: The image ({image_formats}, up to {megapixels}).
        model_name: A served model ({model_names}) or the session's fine-tuned model ({finetuned}).
        class_name: The class kept, one of the model's classes (default: the model's main class).
        edge: "soft": the class's probability is the alpha at its edge (smooth, as background removal gives);
            "sharp": its mask (255 or 0).

    Returns:
        the cut-out: RGBA PNG at the image's full size, alpha = how much each pixel is the class
    """
    key = session_key(request)
    segmenter = segmenter_for(model_name, key)
    return cutout_file(image, segmenter, class_name, edge, request_folder(key), RESULTS.get(key))


@user_errors
def rerender(probability_class, opacity, request: gr.Request = None):
    """Redraw the probability map and overlay of the session's last result (no model call)."""
    key = session_key(request)
    result = RESULTS.get(key)
    if result is None:
        return gr.skip(), gr.skip()
    (_, prob, blended), _ = render(result, probability_class, opacity, request_folder(key))
    return prob, blended


def legend_html(card):
    """Colour swatches with class names."""
    items = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:14px">'
        f'<span style="width:14px;height:14px;border:1px solid #888;margin-right:5px;'
        f'background:rgb({r},{g},{b})"></span>{name}</span>'
        for name, (r, g, b) in zip(card.classes, class_colors(card))
    )
    return f'<div class="segdemo-legend"><b>Legend:</b> {items}</div>'


def select_model(model_names):
    """The handler of a model switch: update the class choices, the legend and the examples shown, and
    re-run on the current image. `model_names` lists the models that have an examples group, in order."""

    @user_errors
    def handler(model_name, image, opacity, request: gr.Request = None):
        segmenter = segmenter_for(model_name, session_key(request))
        choices = gr.Dropdown(choices=segmenter.classes, value=segmenter.card.shown_class)
        shown = examples_model(segmenter.card, model_names)
        groups = [gr.Column(visible=name == shown) for name in model_names]
        outputs = segment(image, model_name, segmenter.card.shown_class, opacity, request) if image else [gr.skip()] * 7
        return choices, legend_html(segmenter.card), *groups, *outputs

    return handler


def examples_model(card, model_names):
    """Whose examples go with a model: its own, or for a fine-tuned model its base model's."""
    for name in (card.name, card.base_model):
        if name in model_names:
            return name
    return model_names[0]


@dataclass
class SegmentTab:
    """The components other tabs read or update: the model dropdown (switched to the session's fine-tuned
    model), the info line (the device, once the model has loaded) and the inputs and outputs of `segment` (a
    retrain redraws them)."""

    model_choice: gr.Dropdown
    info: gr.Markdown
    image: gr.Image
    class_choice: gr.Dropdown
    opacity: gr.Slider
    outputs: list


def build_segment_tab():
    """Lay out the tab inside an open `gr.Blocks` and wire its events; returns a SegmentTab."""
    models = served_models()
    model_name = default_model_name(models)
    card = ModelCard.load(models[model_name])  # build_demo has loaded this model; the others load on first use
    with gr.Row():
        # free values over the API: the session's own model, or a class of another model than the page shows
        model_choice = FreeDropdown(model_menu(), value=model_name, allow_custom_value=True, label="Model", scale=1)
        class_choice = FreeDropdown(card.classes, value=card.shown_class, allow_custom_value=True,
                                    label="Probability map of class", scale=1)
        opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", scale=2)
    with gr.Row(equal_height=True):
        image = ImageUpload(type="filepath", image_mode=None, label="Input: drag, paste or upload an image",
                         sources=["upload", "clipboard", "webcam"], elem_id="input-image")
        color_mask = gr.Image(format="png", label="Class mask (argmax)", interactive=False, elem_id="class-mask")
        prob = gr.Image(format="png", label="Probability map (white = 1)", interactive=False,
                        image_mode="L", elem_id="probability-map")
        unsure = gr.Image(format="png", label="Uncertainty (white = unsure: where to correct)", interactive=False,
                          image_mode="L", elem_id="uncertainty-map")
    legend = gr.HTML(legend_html(card))
    with gr.Row():
        blended = gr.Image(format="png", label="Overlay", interactive=False, elem_id="overlay")
        with gr.Column():
            areas = gr.Label(label="Share of the image per class", show_heading=False, elem_id="class-areas")
            info = gr.Markdown(LOADING_MESSAGE, label="Model, device and timings", elem_id="segment-info")
            mask_file = gr.File(label="Class-index mask (PNG, pixel value = class index)", interactive=False)
    with gr.Accordion("Cut-out: the class on a transparent background", open=False, elem_id="cutout-panel"):
        with gr.Row():
            edge = gr.Radio(list(EDGES), value=SOFT, label="Edge", elem_id="cutout-edge",
                            info="soft: the class's probability as alpha; sharp: its mask")
            cut = gr.Button("Cut out the class of the probability map", elem_id="cutout-button")
        cut_image = gr.Image(type="filepath", format="png", label="Cut-out (RGBA PNG, full size)", interactive=False,
                             elem_id="cutout")
    example_groups = []
    for name, path in models.items():  # one group per model; the selected model's is visible
        with gr.Column(visible=name == model_name) as group:
            examples = example_files(ModelCard.load(path), path)
            bundled = " (free to redistribute, see examples/SOURCES.md)" if all(
                example.parent == EXAMPLES_DIR for example in examples) else ""
            if examples:
                gr.Examples([[str(example)] for example in examples], inputs=[image],
                            label=f"Examples for {name}{bundled}")
        example_groups.append(group)

    outputs = [color_mask, prob, unsure, blended, areas, info, mask_file]
    image.change(segment, [image, model_choice, class_choice, opacity], outputs, api_name="segment",
                 concurrency_limit=4)
    cut.click(cutout, [image, model_choice, class_choice, edge], cut_image, api_name="cutout", concurrency_limit=4)
    for control in (class_choice, opacity):
        control.change(rerender, [class_choice, opacity], [prob, blended], api_visibility="undocumented",
                       concurrency_limit=4)
    model_choice.change(select_model(list(models)), [model_choice, image, opacity],
                        [class_choice, legend, *example_groups, *outputs], api_visibility="undocumented")
    return SegmentTab(model_choice, info, image, class_choice, opacity, outputs)
