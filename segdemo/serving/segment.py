"""The serving pipeline every front end shares (the Segment tab, batch, compare, the API and MCP tools):
decode -> a `Segmenter` -> display-size arrays and class areas -> PNG files written in parallel into the
folder the caller gives. It takes models, not names or sessions: the caller resolves those
(`sessions.segmenter_for`), so a script segments with `run_segmentation(path, segmenter, folder)` and never
imports the web app. UI modules lay out components and format these results."""

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segdemo.data.images import IMAGE_FORMATS, display_size, load_image, resize_image, resize_mask
from segdemo.errors import InputError
from segdemo.limits import DISPLAY_MAX_SIDE
from segdemo.serving.cutout import class_index_of, cutout_rgba
from segdemo.serving.drawing import colorize, grey_map, overlay, probability_map
from segdemo.serving.png import png_bytes
from segdemo.serving.segmenter import class_areas, uncertainty

# The output PNGs are written in parallel: zlib releases the GIL, so the 4 files take about the time of the
# largest (the overlay) instead of their sum.
PNG_WRITERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="png-writer")
LARGE_IMAGE_PIXELS = 4_000_000  # after requests this large, freed memory is handed back to the OS
STEPS = ("decode", "preprocess", "model", "postprocess", "encode")  # the handler's timed steps, in order


@dataclass
class SegmentResult:
    """What one segmentation keeps for re-rendering and correcting: the display-size image and labels, the
    probabilities, the uncertainty map being written."""

    segmenter: object
    display_image: np.ndarray
    display_labels: np.ndarray
    prediction: object
    mask_write: Future  # the class-index PNG being written; its result is the path
    notes: list
    areas: dict
    seconds: dict  # decode, preprocess, model, postprocess, encode
    folder: Path  # where this request's output files go
    uncertainty_write: Future = None  # the uncertainty map PNG (display size) being written
    mean_uncertainty: float = 0.0  # of the whole image, 0 (sure) to 1
    source: str = ""  # the image file it came from: a cut-out of the same file reuses the prediction

    @property
    def uncertainty_file(self):
        return self.uncertainty_write.result()

    @property
    def mask_file(self):
        return self.mask_write.result()


def write_png(array, folder, name, palette=None):
    """Encode an output image as PNG ourselves: lossless (class colours survive), fast compression, and a
    file path for Gradio, which copies files into its cache atomically (unlike arrays it encodes itself,
    whose cache file can be read half-written when two requests produce the same image). With a palette
    ((256, 3) colours), `array` holds class indices and the file is a palette PNG: one byte per pixel
    instead of three, so about 3x less to compress, and the same colours on screen."""
    path = Path(folder) / f"{name}.png"
    path.write_bytes(png_bytes(array, palette))
    return str(path)


def require_image(image_source):
    if image_source is None or (isinstance(image_source, str) and not image_source):
        raise InputError(f"No image given: drag, paste or upload a photo ({IMAGE_FORMATS}).")


def run_segmentation(image_source, segmenter, folder):
    """Decode, predict with `segmenter`, and prepare everything the outputs need; their PNG files go into
    `folder`. Raises InputError for bad input."""
    require_image(image_source)
    folder = Path(folder)
    started = time.perf_counter()
    image = load_image(image_source)
    decoded = time.perf_counter()
    prediction = segmenter.predict(image)
    predicted = time.perf_counter()
    height, width = image.shape[:2]
    size = display_size(width, height, DISPLAY_MAX_SIDE)
    display_image, display_labels = resize_image(image, size), resize_mask(prediction.labels, size)
    areas = class_areas(prediction.labels, segmenter.classes)
    per_pixel = uncertainty(prediction.probs)  # once: its map and its mean (6 ms for street's 11 classes)
    # at the model's resolution (the detail it has) in the image's aspect: about 1 ms to resize and encode against
    # 6 at display size, and a file 5x smaller to copy and send (docs/performance.md); the browser scales it up
    unsure = grey_map(per_pixel, display_size(width, height, max(per_pixel.shape)))
    postprocessed = time.perf_counter()
    stem = Path(image_source).stem if isinstance(image_source, (str, Path)) else "image"
    mask_write = PNG_WRITERS.submit(write_png, prediction.labels, folder, f"{stem}_classes")
    uncertainty_write = PNG_WRITERS.submit(write_png, unsure, folder, "uncertainty")
    notes = [f"{width}×{height} px, resized to {segmenter.size[0]}×{segmenter.size[1]} for the model; "
             "the mask is mapped back to the original size"]
    if size != (width, height):
        notes.append(f"shown at {size[0]}×{size[1]}; the downloaded mask is full size")
    seconds = {"decode": decoded - started, **prediction.seconds,
               "postprocess": postprocessed - predicted, "encode": time.perf_counter() - postprocessed}
    return SegmentResult(segmenter, display_image, display_labels, prediction, mask_write, notes, areas, seconds,
                         folder, uncertainty_write, float(per_pixel.mean()),
                         str(image_source) if isinstance(image_source, (str, Path)) else "")


def render(result, class_name, opacity, folder):
    """PNG paths of (colour mask, probability map, overlay) for a result, a class and an opacity, written to
    `folder`, and the seconds it took: {"postprocess": drawing, "encode": the PNG files, the result's
    class-index mask included}."""
    started = time.perf_counter()
    segmenter = result.segmenter
    color_mask = colorize(result.display_labels, segmenter.palette)
    classes = segmenter.classes
    class_index = classes.index(class_name) if class_name in classes else classes.index(segmenter.card.shown_class)
    height, width = result.display_labels.shape
    prob = probability_map(result.prediction.probs, class_index, (width, height))
    blended = overlay(result.display_image, color_mask, opacity)
    drawn = time.perf_counter()
    writes = [PNG_WRITERS.submit(write_png, result.display_labels, folder, "class_mask", segmenter.palette),
              PNG_WRITERS.submit(write_png, prob, folder, f"probability_{classes[class_index]}"),
              PNG_WRITERS.submit(write_png, blended, folder, "overlay")]
    paths = tuple(write.result() for write in writes)
    result.mask_write.result()  # started before the drawing; usually done by now
    result.uncertainty_write.result()
    return paths, {"postprocess": drawn - started, "encode": time.perf_counter() - drawn}


def segment_and_render(image_source, segmenter, probability_class, opacity, folder):
    """The whole `segment` handler's work: (result with every step's seconds, the three output PNG paths)."""
    result = run_segmentation(image_source, segmenter, folder)
    paths, seconds = render(result, probability_class, opacity, folder)
    for step, value in seconds.items():
        result.seconds[step] += value
    return result, paths


def cutout_file(image_source, segmenter, class_name, edge, folder, last=None):
    """The full-size RGBA PNG of the image with one class kept (`class_name`; empty: the model's main class) and
    the rest transparent, its alpha the class's probability ("soft") or its mask ("sharp"), written to
    `folder`. `last`: a SegmentResult whose prediction is reused when it is this file's with this model."""
    require_image(image_source)
    index = class_index_of(segmenter.classes, class_name, segmenter.card.shown_class)
    image = load_image(image_source)
    reuse = last is not None and last.segmenter is segmenter and last.source == str(image_source)
    prediction = last.prediction if reuse else segmenter.predict(image)
    stem = Path(image_source).stem if isinstance(image_source, (str, Path)) else "image"
    return write_png(cutout_rgba(image, prediction, index, edge), folder, f"{stem}_cutout_{index}")
