"""Serving: the `Segmenter` (resize to the model's size -> one compiled `tf.function` -> probabilities resized
back to the original resolution -> argmax) and the rendering of its result (colour mask, probability map,
overlay, class areas)."""

import contextlib
import ctypes
import gc
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from segdemo.cards import class_colors, input_wh
from segdemo.data import resize_image
from segdemo.lazy import LazyModule

tf = LazyModule("tensorflow")  # imported by the first Segmenter, not by the page (see serving.BackgroundStartup)

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


def mirror_mean_probabilities(model, batch):
    """Softmax of `model` (inference mode) on a (n, h, w, 3) batch averaged with that of the mirrored
    images, mirrored back: one model call on both."""
    count = tf.shape(batch)[0]
    logits = model(tf.concat([batch, tf.reverse(batch, axis=[2])], axis=0), training=False)
    return (tf.nn.softmax(logits[:count]) + tf.reverse(tf.nn.softmax(logits[count:]), axis=[2])) / 2.0


class Segmenter:
    """Predicts with a Keras segmentation model described by its card.

    Every call goes through one `tf.function` traced once for the fixed input shape (1, h, w, 3) and a
    dynamic output size, so no request retraces. Its graph is frozen (weights become constants), which
    lets TensorFlow's graph optimiser fold each BatchNorm into its convolution: about 20% faster on CPU,
    same results to float rounding. `tta` averages the prediction with that of the mirrored image (two
    forward passes); None: as the card's `flip_tta` says (a fine-tune sets it)."""

    def __init__(self, model, card, tta=None, freeze=True):
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        self.model, self.card = model, card
        self.tta = bool(card.get("flip_tta", False)) if tta is None else tta
        self.size = input_wh(card)  # (width, height), as PIL and `resize_image` take it
        self.classes = list(card["classes"])
        self.palette = palette_lut(class_colors(card))
        width, height = self.size
        self._compiled = tf.function(
            self._forward,
            input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32), tf.TensorSpec([2], tf.int32)],
        )
        # freeze=False: the plain traced function, for one-off scoring where freezing (1-3 s) would not pay off
        self._frozen = convert_variables_to_constants_v2(self._compiled.get_concrete_function()) if freeze \
            else self._compiled
        self._freeze = freeze
        self._batch_graphs = None  # (model on BATCH_SIZE images, probabilities -> labels), built on first use
        self._batch_lock = threading.Lock()

    def _probabilities(self, batch):
        """Softmax of a (n, h, w, 3) batch, averaged with the mirrored images' when `tta`."""
        if not self.tta:
            return tf.nn.softmax(self.model(batch, training=False))
        return mirror_mean_probabilities(self.model, batch)

    @staticmethod
    def _labels(probs, out_size):
        """Class indices at `out_size` (h, w): probabilities resized first, then argmax."""
        full = tf.image.resize(probs, out_size, method="bilinear")
        return tf.cast(tf.argmax(full, axis=-1), tf.uint8)

    def _forward(self, batch, out_size):
        probs = self._probabilities(batch)[0]
        return probs, self._labels(probs, out_size)

    def warm_up(self):
        """Trace and run once so the first user does not pay for it."""
        self.predict(np.zeros((self.size[1], self.size[0], 3), np.uint8))
        return self

    def predict(self, image):
        """Segment an HxWx3 uint8 RGB image of any size."""
        started = time.perf_counter()
        height, width = image.shape[:2]
        resized = resize_image(image, self.size)
        batch = tf.convert_to_tensor(resized[None].astype(np.float32))
        prepared = time.perf_counter()
        probs, labels = self._frozen(batch, tf.constant([height, width], tf.int32))
        labels, probs = labels.numpy(), probs.numpy()
        done = time.perf_counter()
        return Prediction(labels, probs, {"preprocess": prepared - started, "model": done - prepared})

    def batch_graphs(self):
        """The compiled pair the batch path uses, built (and frozen) once: the model on a fixed
        (BATCH_SIZE, h, w, 3) batch, and probabilities (h, w, C) -> labels at any output size."""
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        with self._batch_lock:
            if self._batch_graphs is None:
                width, height = self.size
                model = tf.function(self._probabilities,
                                    input_signature=[tf.TensorSpec([BATCH_SIZE, height, width, 3], tf.float32)])
                labels = tf.function(self._labels, input_signature=[
                    tf.TensorSpec([height, width, len(self.classes)], tf.float32), tf.TensorSpec([2], tf.int32)])
                concrete = model.get_concrete_function()
                self._batch_graphs = (convert_variables_to_constants_v2(concrete) if self._freeze else concrete,
                                      labels.get_concrete_function())
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
            for index, image in enumerate(chunk):
                batch[index] = resize_image(image, self.size)
            prepared = time.perf_counter()
            probs = model(tf.convert_to_tensor(batch))
            probs = (probs[0] if isinstance(probs, (list, tuple)) else probs).numpy()
            for image, image_probs in zip(chunk, probs):
                labels = to_labels(tf.convert_to_tensor(image_probs), tf.constant(image.shape[:2], tf.int32))
                labels = (labels[0] if isinstance(labels, (list, tuple)) else labels).numpy()
                predictions.append(Prediction(labels, image_probs, {}))
            share = {"preprocess": (prepared - started) / len(chunk),
                     "model": (time.perf_counter() - prepared) / len(chunk)}
            for prediction in predictions[-len(chunk):]:
                prediction.seconds = dict(share)
        return predictions


def palette_lut(colors):
    """(256, 3) uint8 lookup: class index -> colour; indices without a class (e.g. 255) are grey."""
    lut = np.full((256, 3), 128, np.uint8)
    lut[: len(colors)] = np.asarray(colors, np.uint8)
    return lut


def colorize(labels, lut):
    """Class indices -> RGB colour mask by table lookup (vectorised; `np.take` is 4x faster than lut[labels])."""
    return np.take(lut, labels, axis=0)


def sample_strip(image, mask, prediction, lut):
    """Held-out image | its mask | the current prediction (class indices), side by side (the fine-tune
    progress view)."""
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([image, gap, colorize(mask, lut), gap, colorize(prediction, lut)], axis=1)


def grey_map(values, size):
    """Grayscale image (0 black = 0.0, 255 white = 1.0) of (h, w) values in [0, 1], resized to `size` (w, h)."""
    channel = (values * 255.0).round().astype(np.uint8)
    return np.asarray(Image.fromarray(channel).resize(size, Image.BILINEAR))


def probability_map(probs, class_index, size):
    """Grayscale map of one class's probability at `size` (w, h)."""
    return grey_map(probs[:, :, class_index], size)


def uncertainty(probs):
    """Per-pixel uncertainty in [0, 1]: 1 - (top probability - second probability). 0 where the model is sure
    of one class, 1 where two classes tie: the places a correction teaches the most."""
    top_two = np.partition(probs, probs.shape[-1] - 2, axis=-1)[..., -2:]
    return (1.0 - (top_two[..., 1] - top_two[..., 0])).astype(np.float32)


def uncertainty_map(probs, size):
    """Grayscale map of `uncertainty` at `size` (w, h): white = unsure, black = sure."""
    return grey_map(uncertainty(probs), size)


def mean_uncertainty(probs):
    """The image's mean `uncertainty`: orders images least certain first."""
    return float(uncertainty(probs).mean())


def overlay(image, color_mask, opacity):
    """Blend the colour mask over the image; opacity 0 shows the image, 1 the mask."""
    weight = round(float(np.clip(opacity, 0.0, 1.0)) * 256)  # integer blend: 3x faster than float32
    blended = image.astype(np.uint16) * (256 - weight) + color_mask.astype(np.uint16) * weight + 128
    return (blended >> 8).astype(np.uint8)


def class_areas(labels, classes):
    """Share of the image each class covers, {name: fraction}."""
    counts = np.bincount(labels.reshape(-1), minlength=len(classes))[: len(classes)]
    total = max(int(labels.size), 1)
    return {name: float(count) / total for name, count in zip(classes, counts)}


def describe_device():
    """'GPU: <name>' when TensorFlow sees a GPU, else 'CPU (<n> cores)', with ', bfloat16' when the serving
    graphs run in bfloat16 (see `enable_bf16_inference`)."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    bf16 = tf.config.optimizer.get_experimental_options().get("auto_mixed_precision_onednn_bfloat16")
    return f"CPU ({os.cpu_count()} cores{', bfloat16' if bf16 else ''})"


def release_freed_memory():
    """Hand memory that Python and TensorFlow have freed back to the OS. glibc keeps freed blocks in its
    arenas, so without this a model's tracing and freezing (about 170 MB of temporary graph copies) or one
    12-megapixel request stay in the process's RSS for good. No-op where there is no glibc."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_supports_bf16():
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), read from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def enable_bf16_inference(force=False):
    """Let oneDNN run the serving graphs' convolutions in bfloat16 where the CPU supports it (graphs built
    after this call). On this project's 2-core CPU it cuts the pets model from about 27 to 22 ms per image;
    the evaluation JSON moves by under 0.002 mIoU (README, Performance). Off with SEGDEMO_PRECISION=float32,
    on a GPU, and on CPUs without native bfloat16, unless `force` (or SEGDEMO_PRECISION=bf16). Call it in
    serving processes only, never where training runs. Returns the precision in use."""
    precision = "bf16" if force else os.environ.get("SEGDEMO_PRECISION", "auto")
    if precision == "float32":
        return "float32"
    if precision != "bf16" and (tf.config.list_physical_devices("GPU") or not cpu_supports_bf16()):
        return "float32"
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    return "bf16"


@contextlib.contextmanager
def float32_graphs():
    """Build graphs in float32 inside this block (model export must not inherit the bfloat16 rewrite)."""
    option = "auto_mixed_precision_onednn_bfloat16"
    previous = tf.config.optimizer.get_experimental_options().get(option, False)
    tf.config.optimizer.set_experimental_options({option: False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({option: previous})


def enable_gpu_memory_growth():
    """Let TensorFlow allocate GPU memory as needed instead of grabbing the whole card."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass

