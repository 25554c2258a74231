"""The serving pipeline every front end shares (the Segment tab, batch, compare, the API and MCP tools):
decode -> `Segmenter` -> display-size arrays and class areas -> PNG files written in parallel, and the
start-up that loads TensorFlow and the default model in a background thread while the page is already served.

UI modules lay out components and format these results; nothing here knows about the page."""

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segdemo.data import InputError, display_size, load_image, resize_image, resize_mask
from segdemo.inference import class_areas, colorize, grey_map, overlay, probability_map, uncertainty
from segdemo.png import png_bytes
from segdemo.sessions import request_folder, segmenter_for

DISPLAY_MAX_SIDE = 1600  # outputs shown in the browser are at most this wide/high; the download is full size
# The output PNGs are written in parallel: zlib releases the GIL, so the 4 files take about the time of the
# largest (the overlay) instead of their sum.
PNG_WRITERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="png-writer")
LARGE_IMAGE_PIXELS = 4_000_000  # after requests this large, freed memory is handed back to the OS
STEPS = ("decode", "preprocess", "model", "postprocess", "encode")  # the handler's timed steps, in order
STARTUP_WAIT_S = 600  # how long a request that arrives during start-up waits for the model
LOADING_MESSAGE = "Loading the model… (TensorFlow and the default model load once, after the page is up)"

log = logging.getLogger(__name__)


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


def default_class(segmenter_or_card):
    """The class whose probability map a model shows first (its card's choice, else its last class)."""
    card = getattr(segmenter_or_card, "card", segmenter_or_card)
    return card.get("default_class") or card["classes"][-1]


def require_image(image_source):
    if image_source is None or image_source == "":
        raise InputError("No image given: drag, paste or upload a photo (JPEG, PNG, WebP, BMP, GIF, TIFF).")


def run_segmentation(image_source, model_name, key="anonymous"):
    """Decode, predict, and prepare everything the outputs need. Raises InputError for bad input."""
    require_image(image_source)
    segmenter = segmenter_for(model_name, key)  # loaded once, outside the timings
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
    unsure = grey_map(per_pixel, size)
    postprocessed = time.perf_counter()
    stem = Path(image_source).stem if isinstance(image_source, (str, Path)) else "image"
    folder = request_folder(key)
    mask_write = PNG_WRITERS.submit(write_png, prediction.labels, folder, f"{stem}_classes")
    uncertainty_write = PNG_WRITERS.submit(write_png, unsure, folder, "uncertainty")
    notes = [f"{width}×{height} px, resized to {segmenter.size[0]}×{segmenter.size[1]} for the model; "
             "the mask is mapped back to the original size"]
    if size != (width, height):
        notes.append(f"shown at {size[0]}×{size[1]}; the downloaded mask is full size")
    seconds = {"decode": decoded - started, **prediction.seconds,
               "postprocess": postprocessed - predicted, "encode": time.perf_counter() - postprocessed}
    return SegmentResult(segmenter, display_image, display_labels, prediction, mask_write, notes, areas, seconds,
                         folder, uncertainty_write, float(per_pixel.mean()))


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
    result.uncertainty_write.result()
    return paths, {"postprocess": drawn - started, "encode": time.perf_counter() - drawn}


def segment_and_render(image_source, model_name, probability_class, opacity, key="anonymous"):
    """The whole `segment` handler's work: (result with every step's seconds, the three output PNG paths)."""
    result = run_segmentation(image_source, model_name, key)
    paths, seconds = render(result, probability_class, opacity, result.folder)
    for step, value in seconds.items():
        result.seconds[step] += value
    return result, paths


class BackgroundStartup:
    """TensorFlow and the default model, loaded in a thread so that the page is served as soon as Gradio is
    up. `expect(name)` (when the app is built) makes requests wait; `start()` (once the server is up, or by
    the first request that arrives before that) loads. Requests that need a model call `wait()` first
    (sessions.segmenter_for does): one that arrives early waits for the load instead of failing. With no
    `expect`, there is nothing to wait for (scripts and tests that use the pipeline in process)."""

    def __init__(self):
        self.done = threading.Event()
        self.done.set()
        self.error = None
        self.model_name = None
        self._thread = None
        self._lock = threading.Lock()

    def expect(self, model_name):
        self.model_name = model_name
        self.done.clear()

    def start(self):
        with self._lock:
            if self._thread is None and self.model_name is not None:
                self._thread = threading.Thread(target=self._load, args=(self.model_name,), name="model-startup",
                                                daemon=True)
                self._thread.start()

    def _load(self, model_name):
        from segdemo.inference import describe_device, enable_bf16_inference, enable_gpu_memory_growth
        from segdemo.registry import get_segmenter

        started = time.perf_counter()
        try:
            enable_gpu_memory_growth()
            enable_bf16_inference()  # before any model is loaded: it applies to graphs built afterwards
            get_segmenter(model_name)  # loaded and warmed before the first request is answered
            log.info("model %s ready on %s after %.1f s in the background", model_name, describe_device(),
                     time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - logged; requests then load (and report) it themselves
            self.error = error
            log.exception("loading %s in the background failed", model_name)
        finally:
            self.done.set()

    @property
    def ready(self):
        return self.done.is_set()

    def wait(self, timeout=STARTUP_WAIT_S):
        if not self.done.is_set():
            self.start()
        if not self.done.wait(timeout):
            raise InputError("The model is still loading; please try again in a minute.")


STARTUP = BackgroundStartup()
