"""The `Segmenter`: resize to the model's size -> one compiled `tf.function` (frozen graph, fixed input shape)
-> probabilities resized back to the original resolution -> argmax; and what a prediction says of itself
(class areas, per-pixel uncertainty)."""

import threading
import time
from dataclasses import dataclass

import numpy as np

from segdemo.cards import class_colors
from segdemo.data import resize_image
from segdemo.drawing import palette_lut
from segdemo.lazy import LazyModule

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
        self.tta = bool(card.flip_tta) if tta is None else tta
        self.size = card.size  # (width, height), as PIL and `resize_image` take it
        self.classes = list(card.classes)
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

