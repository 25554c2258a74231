"""The Segment tab: upload any image -> input, colour class mask, probability map, overlay, class areas,
a download of the class-index mask, and the named API endpoint `segment`."""

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np

from segdemo.cards import class_colors, load_card
from segdemo.data import InputError, load_image, resize_image, resize_mask
from segdemo.inference import (
    class_areas,
    colorize,
    describe_device,
    overlay,
    probability_map,
    release_freed_memory,
)
from segdemo.png import png_bytes
from segdemo.registry import (
    DEFAULT_MODEL,
    bundled_models,
    default_model_name,
    model_choices,
)
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
# The output PNGs are written in parallel: zlib releases the GIL, so the 4 files take about the time of the
# largest (the overlay) instead of their sum.
PNG_WRITERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="png-writer")
LARGE_IMAGE_PIXELS = 4_000_000  # after requests this large, freed memory is handed back to the OS
STEPS = ("decode", "preprocess", "model", "postprocess", "encode")  # the handler's timed steps, in order
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class SegmentResult:
    """What one segmentation keeps for re-rendering: the display-size image and labels, the probabilities."""

    segmenter: object
    display_image: np.ndarray
    display_labels: np.ndarray
    prediction: object
    mask_write: Future  # the class-index PNG being written; its result is the path
    notes: list
    areas: dict
    seconds: dict  # decode, preprocess, model, postprocess, encode
    folder: Path  # where this request's output files go

    @property
    def mask_file(self):
        return self.mask_write.result()


def display_size(width, height):
    scale = min(1.0, DISPLAY_MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def write_png(array, folder, name, palette=None):
    """Encode an output image as PNG ourselves: lossless (class colours survive), fast compression, and a
    file path for Gradio, which copies files into its cache atomically (unlike arrays it encodes itself,
    whose cache file can be read half-written when two requests produce the same image). With a palette
    ((256, 3) colours), `array` holds class indices and the file is a palette PNG: one byte per pixel
    instead of three, so about 3x less to compress, and the same colours on screen."""
    path = folder / f"{name}.png"
    path.write_bytes(png_bytes(array, palette))
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
    predicted = time.perf_counter()
    height, width = image.shape[:2]
    size = display_size(width, height)
    display_image, display_labels = resize_image(image, size), resize_mask(prediction.labels, size)
    areas = class_areas(prediction.labels, segmenter.classes)
    postprocessed = time.perf_counter()
    stem = Path(image_source).stem if isinstance(image_source, (str, Path)) else "image"
    folder = request_folder(key)
    mask_write = PNG_WRITERS.submit(write_png, prediction.labels, folder, f"{stem}_classes")
    notes = [f"{width}×{height} px, resized to {segmenter.size[0]}×{segmenter.size[1]} for the model; "
             "the mask is mapped back to the original size"]
    if size != (width, height):
        notes.append(f"shown at {size[0]}×{size[1]}; the downloaded mask is full size")
    seconds = {"decode": decoded - started, **prediction.seconds,
               "postprocess": postprocessed - predicted, "encode": time.perf_counter() - postprocessed}
    return SegmentResult(segmenter, display_image, display_labels, prediction, mask_write, notes, areas, seconds,
                         folder)


def render(result, class_name, opacity, folder):
    """PNG paths of (colour mask, probability map, overlay) for a result, a class and an opacity, written to
    `folder`, and the seconds it took: {"postprocess": drawing, "encode": the PNG files, the result's
    class-index mask included}."""
    started = time.perf_counter()
    segmenter = result.segmenter
    color_mask = colorize(result.display_labels, segmenter.palette)
    classes = segmenter.classes
    class_index = classes.index(class_name) if class_name in classes else classes.index(default_class(segmenter))
    height, width = result.display_labels.shape
    prob = probability_map(result.prediction.probs, class_index, (width, height))
    blended = overlay(result.display_image, color_mask, opacity)
    drawn = time.perf_counter()
    writes = [PNG_WRITERS.submit(write_png, result.display_labels, folder, "class_mask", segmenter.palette),
              PNG_WRITERS.submit(write_png, prob, folder, f"probability_{classes[class_index]}"),
              PNG_WRITERS.submit(write_png, blended, folder, "overlay")]
    paths = tuple(write.result() for write in writes)
    result.mask_write.result()  # started before the drawing; usually done by now
    return paths, {"postprocess": drawn - started, "encode": time.perf_counter() - drawn}


def timing_note(result, model_name):
    """The info line: model, device, and where the handler's time went."""
    seconds = result.seconds
    total = sum(seconds.values())
    steps = " · ".join(f"{step} {seconds[step] * 1000:.0f}" for step in STEPS)
    return (f"**{result.segmenter.card.get('title', model_name)}** on {describe_device()} · model "
            f"{seconds['model'] * 1000:.0f} ms · total {total * 1000:.0f} ms ({steps} ms)  \n"
            + "; ".join(result.notes))


def default_class(segmenter_or_card):
    card = getattr(segmenter_or_card, "card", segmenter_or_card)
    return card.get("default_class") or card["classes"][-1]


def segment_and_render(image_source, model_name, probability_class, opacity, key="anonymous"):
    """The whole `segment` handler's work: (result with every step's seconds, the three output PNG paths)."""
    result = run_segmentation(image_source, model_name, key)
    paths, seconds = render(result, probability_class, opacity, result.folder)
    for step, value in seconds.items():
        result.seconds[step] += value
    return result, paths


@user_errors
def segment(image, model_name=DEFAULT_MODEL, probability_class="", opacity=DEFAULT_OPACITY,
            request: gr.Request = None):
    """Segment an image. Returns the colour class mask, the probability map of `probability_class`,
    the overlay, the share of the image per class, a note with timings and device, and the class-index
    mask PNG (pixel value = class index, full resolution)."""
    key = session_key(request)
    result, (color_mask, prob, blended) = segment_and_render(image, model_name, probability_class, opacity, key)
    RESULTS.put(key, result)
    if result.prediction.labels.size >= LARGE_IMAGE_PIXELS:
        release_freed_memory()  # a large image's temporary arrays would otherwise stay in the RSS
    return color_mask, prob, blended, result.areas, timing_note(result, model_name), result.mask_file


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
        for name, (r, g, b) in zip(card["classes"], class_colors(card))
    )
    return f'<div class="segdemo-legend"><b>Legend:</b> {items}</div>'


def select_model(model_names):
    """The handler of a model switch: update the class choices, the legend and the examples shown, and
    re-run on the current image. `model_names` lists the models that have an examples group, in order."""

    @user_errors
    def handler(model_name, image, opacity, request: gr.Request = None):
        segmenter = segmenter_for(model_name, session_key(request))
        choices = gr.Dropdown(choices=segmenter.classes, value=default_class(segmenter))
        shown = examples_model(segmenter.card, model_names)
        groups = [gr.Column(visible=name == shown) for name in model_names]
        outputs = segment(image, model_name, default_class(segmenter), opacity, request) if image else [gr.skip()] * 6
        return choices, legend_html(segmenter.card), *groups, *outputs

    return handler


def examples_model(card, model_names):
    """Whose examples go with a model: its own, or for a fine-tuned model its base model's."""
    for name in (card.get("name"), card.get("base_model")):
        if name in model_names:
            return name
    return model_names[0]


def example_images(card):
    """The example files a card lists (under examples/), or every example when it lists none."""
    listed = card.get("examples")
    paths = [EXAMPLES_DIR / name for name in listed] if listed else sorted(EXAMPLES_DIR.glob("*.png"))
    return [[str(path)] for path in paths if path.is_file()]


def build_segment_tab(demo):
    """Lay out the tab inside an open `gr.Blocks` and wire its events. Returns the model dropdown (the
    Fine-tune tab switches it to the session's fine-tuned model)."""
    models = bundled_models()
    model_name = default_model_name(models)
    card = load_card(models[model_name])  # build_demo has loaded this model; the others load on first use
    with gr.Row():
        model_choice = gr.Dropdown(model_choices(), value=model_name, label="Model", scale=1)
        # custom values: an API caller may name a class of another model than the page shows (checked in render)
        class_choice = gr.Dropdown(card["classes"], value=default_class(card), allow_custom_value=True,
                                   label="Probability map of class", scale=1)
        opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity", scale=2)
    with gr.Row(equal_height=True):
        image = ImageUpload(type="filepath", image_mode=None, label="Input: drag, paste or upload an image",
                         sources=["upload", "clipboard", "webcam"], elem_id="input-image")
        color_mask = gr.Image(format="png", label="Class mask (argmax)", interactive=False, elem_id="class-mask")
        prob = gr.Image(format="png", label="Probability map (white = 1)", interactive=False,
                        image_mode="L", elem_id="probability-map")
    legend = gr.HTML(legend_html(card))
    with gr.Row():
        blended = gr.Image(format="png", label="Overlay", interactive=False, elem_id="overlay")
        with gr.Column():
            areas = gr.Label(label="Share of the image per class", show_heading=False, elem_id="class-areas")
            info = gr.Markdown(f"Device: {describe_device()}", elem_id="segment-info")
            mask_file = gr.File(label="Class-index mask (PNG, pixel value = class index)", interactive=False)
    example_groups = []
    for name, path in models.items():  # one group per model; the selected model's is visible
        with gr.Column(visible=name == model_name) as group:
            gr.Examples(example_images(load_card(path)), inputs=[image],
                        label=f"Examples for {name} (free to redistribute, see examples/SOURCES.md)")
        example_groups.append(group)

    outputs = [color_mask, prob, blended, areas, info, mask_file]
    image.change(segment, [image, model_choice, class_choice, opacity], outputs, api_name="segment",
                 concurrency_limit=4)
    for control in (class_choice, opacity):
        control.change(rerender, [class_choice, opacity], [prob, blended], api_visibility="undocumented",
                       concurrency_limit=4)
    model_choice.change(select_model(list(models)), [model_choice, image, opacity],
                        [class_choice, legend, *example_groups, *outputs], api_visibility="undocumented")
    demo.unload(forget_session)  # registered once, here: it clears every tab's session state
    return model_choice
