"""The Segment tab: upload any image -> input, colour class mask, probability map, overlay, class areas,
a download of the class-index mask, and the named API endpoint `segment`."""

import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from segdemo.cards import class_colors
from segdemo.data import InputError, load_image, resize_image, resize_mask
from segdemo.inference import (
    class_areas,
    colorize,
    describe_device,
    overlay,
    probability_map,
)
from segdemo.registry import DEFAULT_MODEL, bundled_models, get_segmenter
from segdemo.ui.components import ImageUpload
from segdemo.ui.handlers import user_errors
from segdemo.ui.sessions import (
    RESULTS,
    forget_session,
    request_folder,
    segmenter_for,
    session_key,
)

DISPLAY_MAX_SIDE = 1600  # outputs shown in the browser are at most this wide/high; the download is full size
DEFAULT_OPACITY = 0.5
PNG_COMPRESS_LEVEL = 1  # masks compress well even at level 1, and it is several times faster than the default
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class SegmentResult:
    """What one segmentation keeps for re-rendering: the display-size image and labels, the probabilities."""

    segmenter: object
    display_image: np.ndarray
    display_labels: np.ndarray
    prediction: object
    mask_file: str
    info: str
    areas: dict


def display_size(width, height):
    scale = min(1.0, DISPLAY_MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def write_png(array, folder, name):
    """Encode an output image as PNG ourselves: lossless (class colours survive), fast compression, and a
    file path for Gradio, which copies files into its cache atomically (unlike arrays it encodes itself,
    whose cache file can be read half-written when two requests produce the same image)."""
    path = folder / f"{name}.png"
    Image.fromarray(array).save(path, compress_level=PNG_COMPRESS_LEVEL)
    return str(path)


def run_segmentation(image_source, model_name, key="anonymous"):
    """Decode, predict, and prepare everything the outputs need. Raises InputError for bad input."""
    if image_source is None or image_source == "":
        raise InputError("No image given: drag, paste or upload a photo (JPEG, PNG, WebP, BMP, GIF, TIFF).")
    segmenter = segmenter_for(model_name, key)  # loaded once, outside the timings
    started = time.perf_counter()
    image = load_image(image_source)
    decoded = time.perf_counter()
    prediction = segmenter.predict(image)
    height, width = image.shape[:2]
    size = display_size(width, height)
    if size == (width, height):
        display_image, display_labels = image, prediction.labels
    else:
        display_image, display_labels = resize_image(image, size), resize_mask(prediction.labels, size)
    stem = Path(image_source).stem if isinstance(image_source, (str, Path)) else "image"
    mask_file = write_png(prediction.labels, request_folder(key), f"{stem}_classes")  # pixel value = class
    notes = [f"{width}×{height} px, resized to {segmenter.size}×{segmenter.size} for the model; "
             "the mask is mapped back to the original size"]
    if size != (width, height):
        notes.append(f"shown at {size[0]}×{size[1]}; the downloaded mask is full size")
    seconds = {"decode": decoded - started, **prediction.seconds, "total": time.perf_counter() - started}
    info = (f"**{segmenter.card.get('title', model_name)}** on {describe_device()} · model "
            f"{seconds['model'] * 1000:.0f} ms · total {seconds['total'] * 1000:.0f} ms  \n" + "; ".join(notes))
    return SegmentResult(segmenter, display_image, display_labels, prediction, mask_file, info,
                         class_areas(prediction.labels, segmenter.classes))


def render(result, class_name, opacity, key):
    """PNG paths of (colour mask, probability map, overlay) for a result, a class and an opacity."""
    segmenter = result.segmenter
    color_mask = colorize(result.display_labels, segmenter.palette)
    classes = segmenter.classes
    class_index = classes.index(class_name) if class_name in classes else classes.index(default_class(segmenter))
    height, width = result.display_labels.shape
    prob = probability_map(result.prediction.probs, class_index, (width, height))
    blended = overlay(result.display_image, color_mask, opacity)
    folder = request_folder(key)
    return tuple(write_png(array, folder, name) for array, name in
                 ((color_mask, "class_mask"), (prob, f"probability_{classes[class_index]}"), (blended, "overlay")))


def default_class(segmenter):
    return segmenter.card.get("default_class") or segmenter.classes[-1]


@user_errors
def segment(image, model_name=DEFAULT_MODEL, probability_class="", opacity=DEFAULT_OPACITY,
            request: gr.Request = None):
    """Segment an image. Returns the colour class mask, the probability map of `probability_class`,
    the overlay, the share of the image per class, a note with timings and device, and the class-index
    mask PNG (pixel value = class index, full resolution)."""
    key = session_key(request)
    result = run_segmentation(image, model_name, key)
    RESULTS.put(key, result)
    color_mask, prob, blended = render(result, probability_class, opacity, key)
    return color_mask, prob, blended, result.areas, result.info, result.mask_file


@user_errors
def rerender(probability_class, opacity, request: gr.Request = None):
    """Redraw the probability map and overlay of the session's last result (no model call)."""
    key = session_key(request)
    result = RESULTS.get(key)
    if result is None:
        return gr.skip(), gr.skip()
    _, prob, blended = render(result, probability_class, opacity, key)
    return prob, blended


def legend_html(card):
    """Colour swatches with class names."""
    items = "".join(
        f'<span style="display:inline-flex;align-items:center;margin-right:14px">'
        f'<span style="width:14px;height:14px;border:1px solid #888;margin-right:5px;'
        f'background:rgb({r},{g},{b})"></span>{name}</span>'
        for name, (r, g, b) in zip(card["classes"], class_colors(card))
    )
    return f'<div class="segdemo-legend"><b>Legend:</b> {items}</div>'


@user_errors
def select_model(model_name, image, opacity, request: gr.Request = None):
    """Switch model: update the class choices and the legend, and re-run on the current image."""
    segmenter = segmenter_for(model_name, session_key(request))
    choices = gr.Dropdown(choices=segmenter.classes, value=default_class(segmenter))
    legend = legend_html(segmenter.card)
    if not image:
        return choices, legend, *[gr.skip()] * 6
    return choices, legend, *segment(image, model_name, default_class(segmenter), opacity, request)


def example_images():
    return [[str(path)] for path in sorted(EXAMPLES_DIR.glob("*.png"))]


def build_segment_tab(demo):
    """Lay out the tab inside an open `gr.Blocks` and wire its events. Returns the model dropdown (the
    Fine-tune tab switches it to the session's fine-tuned model)."""
    models = list(bundled_models())
    model_name = DEFAULT_MODEL if DEFAULT_MODEL in models else models[0]
    segmenter = get_segmenter(model_name)
    with gr.Row():
        model_choice = gr.Dropdown(models, value=model_name, label="Model", scale=1)
        class_choice = gr.Dropdown(segmenter.classes, value=default_class(segmenter),
                                   label="Probability map of class", scale=1)
        opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", scale=2)
    with gr.Row(equal_height=True):
        image = ImageUpload(type="filepath", image_mode=None, label="Input: drag, paste or upload an image",
                         sources=["upload", "clipboard", "webcam"], elem_id="input-image")
        color_mask = gr.Image(format="png", label="Class mask (argmax)", interactive=False, elem_id="class-mask")
        prob = gr.Image(format="png", label="Probability map (white = 1)", interactive=False,
                        image_mode="L", elem_id="probability-map")
    legend = gr.HTML(legend_html(segmenter.card))
    with gr.Row():
        blended = gr.Image(format="png", label="Overlay", interactive=False, elem_id="overlay")
        with gr.Column():
            areas = gr.Label(label="Share of the image per class", show_heading=False, elem_id="class-areas")
            info = gr.Markdown(f"Device: {describe_device()}", elem_id="segment-info")
            mask_file = gr.File(label="Class-index mask (PNG, pixel value = class index)", interactive=False)
    gr.Examples(example_images(), inputs=[image], label="Examples (CC0 / public domain, see examples/SOURCES.md)")

    outputs = [color_mask, prob, blended, areas, info, mask_file]
    image.change(segment, [image, model_choice, class_choice, opacity], outputs, api_name="segment",
                 concurrency_limit=4)
    for control in (class_choice, opacity):
        control.change(rerender, [class_choice, opacity], [prob, blended], api_visibility="undocumented",
                       concurrency_limit=4)
    model_choice.change(select_model, [model_choice, image, opacity], [class_choice, legend, *outputs],
                        api_visibility="undocumented")
    demo.unload(forget_session)  # registered once, here: it clears every tab's session state
    return model_choice
