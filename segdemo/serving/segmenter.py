"""The `Segmenter`: resize to the model's size as its card says -> one compiled `tf.function` (frozen graph,
fixed input shape: scaling, the model, its output decoded into class probabilities) -> probabilities
resized back to the original resolution -> argmax; and what a prediction says of itself (class areas,
per-pixel uncertainty)."""

import threading
import time
from dataclasses import dataclass

import numpy as np

from segdemo.compat import LazyModule, freeze_concrete_function
from segdemo.errors import InputError
from segdemo.models.cards import class_colors, size_wh
from segdemo.models.facts import single_output
from segdemo.models.resizing import grid_box
from segdemo.serving.drawing import palette_lut

tf = LazyModule("tensorflow")  # imported by the first Segmenter, not by the page (see startup.BackgroundStartup)

BATCH_SIZE = 8  # images per model call in `predict_batch` (a fixed shape: no retracing, the last batch padded)


@dataclass
class Prediction:
    """One image's segmentation: full-resolution class indices and model-resolution probabilities."""

    labels: np.ndarray  # (H, W) uint8 class index per pixel, at the input's resolution
    probs: np.ndarray  # (h, w, C) float32 softmax at the model's input size
    seconds: dict  # time per step: preprocess, model (incl. resize back + argmax)

    @property
    def size(self):
        return self.labels.shape[1], self.labels.shape[0]


def mirror_mean(probabilities, batch):
    """`probabilities(batch)` averaged with that of the mirrored images, mirrored back: one call on both."""
    count = tf.shape(batch)[0]
    probs = probabilities(tf.concat([batch, tf.reverse(batch, axis=[2])], axis=0))
    return (probs[:count] + tf.reverse(probs[count:], axis=[2])) / 2.0


def mirror_mean_probabilities(model, batch):
    """Softmax of a logits `model` (inference mode) on a (n, h, w, 3) batch averaged with that of the mirrored
    images (the fine-tune's validation rounds score what the served model does)."""
    return mirror_mean(lambda images: tf.nn.softmax(model(images, training=False)), batch)


def output_grid(model, card):
    """(width, height) of the model's output grid: the card's `output_size`, else the output's own spatial
    shape, else the input size. Raises InputError when the output's channels do not fit the card."""
    shape = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else tuple(model.output_shape)
    channels = shape[-1]
    if channels is not None and channels != card.output_channels:
        expected = f"{card.output_channels} ({card.output}: " + (
            "one channel)" if card.output_channels == 1 else f"one per class: {', '.join(card.classes)})")
        raise InputError(f"the model's output has {channels} channels, but its card explains {expected}; give "
                         "the class names in output order (python -m segdemo.card MODEL --classes ...)")
    if card.output_size:
        return size_wh(card.output_size)
    if card.output_layout == "spatial" and len(shape) == 4 and shape[1] and shape[2]:
        return int(shape[2]), int(shape[1])
    return card.size


class Segmenter:
    """Predicts with a Keras segmentation model the way its card says it was trained.

    The image is resized to the card's input size (`resize`: stretched or letterboxed, `resize_filter`) in
    NumPy; one `tf.function`, traced once for the fixed input shape (1, h, w, 3), converts to grayscale when
    the model takes one channel, scales the pixels (`input_scale`), runs the model, decodes its output into
    class probabilities (`output`, `output_layout`: logits, softmax, sigmoids, one channel, flattened), keeps
    the part of the grid the image covers and resizes it to the image's size before the argmax. No request
    retraces. Its graph is frozen (weights become constants), which lets TensorFlow's graph optimiser fold each
    BatchNorm into its convolution: about 20% faster on CPU, same results to float rounding. `tta` averages
    the prediction with that of the mirrored image (two forward passes); None: as the card's `flip_tta` says
    (a fine-tune sets it)."""

    def __init__(self, model, card, tta=None, freeze=True, cache=None, load_model=None):
        # model None: `load_model()` loads it when first needed (a graph `cache` (serving.graph_cache) that holds
        # this model's graphs serves without it: no Keras import, no model file read at start-up)
        self.card, self.io = card, card.io
        self._model = None if model is None else single_output(model, card.output_name)[0]
        self._load_model, self._model_lock = load_model, threading.Lock()
        self.tta = bool(card.flip_tta) if tta is None else tta
        self.cache = cache
        self.size = card.size  # (width, height), as PIL and `resize_image` take it
        cached_grid = cache.grid() if cache is not None and model is None else None
        self.grid = cached_grid or output_grid(self.model, card)  # (width, height) of the model's output
        self.classes = list(card.classes)
        self.palette = palette_lut(class_colors(card))
        width, height = self.size
        self._compiled = tf.function(self._forward, input_signature=[
            tf.TensorSpec([1, height, width, 3], tf.float32), tf.TensorSpec([4], tf.int32),
            tf.TensorSpec([2], tf.int32)])
        # freeze=False: the plain traced function, for one-off scoring where freezing (1-3 s) would not pay off
        self._frozen = self._serving_graph("single", self._compiled.get_concrete_function) if freeze \
            else self._compiled
        self._freeze = freeze
        self._batch_graphs = None  # (model on BATCH_SIZE images, probabilities -> labels), built on first use
        self._batch_lock = threading.Lock()

    @property
    def device(self):
        """What it runs on ('CPU (2 cores, bfloat16)', 'GPU: <name>')."""
        from segdemo.serving.runtime import describe_device

        return describe_device()

    @property
    def model(self):
        """The Keras model (loaded on first use when the Segmenter was built from cached graphs)."""
        return self.loaded_model()

    def loaded_model(self):
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    self._model = single_output(self._load_model(), self.card.output_name)[0]
        return self._model

    def _serving_graph(self, kind, concrete):
        """The frozen function `kind` ("single", "batch"): from the graph cache, else `concrete()` frozen (and
        stored in the cache)."""
        cached = self.cache.load(kind) if self.cache is not None else None
        if cached is not None:
            return cached
        self.loaded_model()  # outside the trace: a model loaded inside it would freeze its initial weights
        frozen = freeze_concrete_function(concrete())
        if self.cache is not None:
            self.cache.save(kind, frozen, self.grid)
        return frozen

    def _decoded(self, batch):
        """Class probabilities of a (n, h, w, 3) batch of 0..255 RGB pixels, as the card describes the model."""
        return self.io.probabilities(self.model(self.io.model_input(batch), training=False), self.grid[::-1])

    def _probabilities(self, batch):
        """`_decoded`, averaged with the mirrored images' when `tta`."""
        return mirror_mean(self._decoded, batch) if self.tta else self._decoded(batch)

    @staticmethod
    def _labels(probs, box, out_size):
        """The probabilities inside `box` (left, top, right, bottom on the grid) and the class indices at
        `out_size` (h, w): probabilities resized first, then argmax."""
        probs = probs[box[1]:box[3], box[0]:box[2]]
        full = tf.image.resize(probs, out_size, method="bilinear")
        return probs, tf.cast(tf.argmax(full, axis=-1), tf.uint8)

    def _forward(self, batch, box, out_size):
        return self._labels(self._probabilities(batch)[0], box, out_size)

    def _prepare(self, image):
        """(the image at the model's size, float32 0..255 RGB; where it lies on the output grid)."""
        pixels, box = self.io.resize_image(image, self.size)
        return pixels, np.asarray(grid_box(box, self.size, self.grid), np.int32)

    def warm_up(self):
        """Trace and run once so the first user does not pay for it."""
        self.predict(np.zeros((self.size[1], self.size[0], 3), np.uint8))
        return self

    def predict(self, image):
        """Segment an HxWx3 uint8 RGB image of any size."""
        started = time.perf_counter()
        height, width = image.shape[:2]
        pixels, box = self._prepare(image)
        batch = tf.convert_to_tensor(pixels[None])
        prepared = time.perf_counter()
        probs, labels = self._frozen(batch, tf.constant(box), tf.constant([height, width], tf.int32))
        labels, probs = labels.numpy(), probs.numpy()
        done = time.perf_counter()
        return Prediction(labels, probs, {"preprocess": prepared - started, "model": done - prepared})

    def batch_graphs(self):
        """The compiled pair the batch path uses, built (and frozen) once: the model on a fixed
        (BATCH_SIZE, h, w, 3) batch, and probabilities on the grid -> the image's part and its labels."""
        with self._batch_lock:
            if self._batch_graphs is None:
                if not self._freeze:
                    self.loaded_model()  # outside the trace (see _serving_graph)
                width, height = self.size
                grid_w, grid_h = self.grid
                model = tf.function(self._probabilities,
                                    input_signature=[tf.TensorSpec([BATCH_SIZE, height, width, 3], tf.float32)])
                labels = tf.function(self._labels, input_signature=[
                    tf.TensorSpec([grid_h, grid_w, len(self.classes)], tf.float32), tf.TensorSpec([4], tf.int32),
                    tf.TensorSpec([2], tf.int32)])
                self._batch_graphs = (self._serving_graph("batch", model.get_concrete_function) if self._freeze
                                      else model.get_concrete_function(), labels.get_concrete_function())
        return self._batch_graphs

    def predict_batch(self, images):
        """Segment a list of HxWx3 uint8 RGB images of any sizes: the model runs on batches of BATCH_SIZE
        (the last one padded, so the graph always sees the same shape); each image's probabilities are
        then resized to its own size and argmaxed, as `predict` does. Returns one Prediction per image."""
        model, to_labels = self.batch_graphs()
        predictions = []
        for start in range(0, len(images), BATCH_SIZE):
            chunk = images[start:start + BATCH_SIZE]
            started = time.perf_counter()
            batch = np.zeros((BATCH_SIZE, self.size[1], self.size[0], 3), np.float32)
            boxes = []
            for index, image in enumerate(chunk):
                batch[index], box = self._prepare(image)
                boxes.append(box)
            prepared = time.perf_counter()
            probs = model(tf.convert_to_tensor(batch))
            probs = probs[0] if isinstance(probs, (list, tuple)) else probs
            for image, image_probs, box in zip(chunk, tf.unstack(probs)[:len(chunk)], boxes):
                cropped, labels = to_labels(image_probs, tf.constant(box), tf.constant(image.shape[:2], tf.int32))
                predictions.append(Prediction(labels.numpy(), cropped.numpy(), {}))
            share = {"preprocess": (prepared - started) / len(chunk),
                     "model": (time.perf_counter() - prepared) / len(chunk)}
            for prediction in predictions[-len(chunk):]:
                prediction.seconds = dict(share)
        return predictions


def uncertainty(probs):
    """Per-pixel uncertainty in [0, 1]: 1 - (top probability - second probability). 0 where the model is sure
    of one class, 1 where two classes tie: the places a correction teaches the most."""
    top_two = np.partition(probs, probs.shape[-1] - 2, axis=-1)[..., -2:]
    return (1.0 - (top_two[..., 1] - top_two[..., 0])).astype(np.float32)


def mean_uncertainty(probs):
    """The image's mean `uncertainty`: orders images least certain first."""
    return float(uncertainty(probs).mean())


def class_areas(labels, classes):
    """Share of the image each class covers, {name: fraction}."""
    counts = np.bincount(labels.reshape(-1), minlength=len(classes))[: len(classes)]
    total = max(int(labels.size), 1)
    return {name: float(count) / total for name, count in zip(classes, counts)}

