"""Segmentation losses on sparse labels (HxW class indices; 255 = ignore) and per-pixel logits.

Keras `fit` refuses `class_weight` for masks, so class weighting is done here, per pixel.
Written with `keras.ops` so they run on any Keras backend.
"""

import numpy as np

from segdemo.compat import LazyModule
from segdemo.data.masks import IGNORE_INDEX

ops = LazyModule("keras.ops")  # Keras imports TensorFlow: not with the page (see segdemo.compat)

DICE_SMOOTH = 1.0


def valid_labels(y_true):
    """(labels with ignored pixels set to 0, float mask of counted pixels)."""
    y_true = ops.cast(y_true, "int32")
    if len(y_true.shape) == 4:
        y_true = ops.squeeze(y_true, -1)
    valid = ops.not_equal(y_true, IGNORE_INDEX)
    return ops.where(valid, y_true, 0), ops.cast(valid, "float32")


def sparse_cross_entropy(class_weights=None):
    """Mean sparse categorical cross-entropy over counted pixels, each pixel weighted by its class weight."""
    weights = None if class_weights is None else ops.convert_to_tensor(class_weights, "float32")

    def loss(y_true, y_pred):
        labels, valid = valid_labels(y_true)
        per_pixel = ops.sparse_categorical_crossentropy(labels, ops.cast(y_pred, "float32"), from_logits=True)
        pixel_weights = valid if weights is None else valid * ops.take(weights, labels)
        return ops.sum(per_pixel * pixel_weights) / ops.maximum(ops.sum(pixel_weights), 1.0)

    loss.__name__ = "sparse_ce"
    return loss


def dice_loss(y_true, y_pred):
    """1 - mean over classes of the soft Dice between softmax probabilities and the labels."""
    labels, valid = valid_labels(y_true)
    num_classes = y_pred.shape[-1]
    probs = ops.softmax(ops.cast(y_pred, "float32"), axis=-1) * valid[..., None]
    onehot = ops.one_hot(labels, num_classes) * valid[..., None]
    axes = (0, 1, 2)
    intersection = ops.sum(probs * onehot, axis=axes)
    total = ops.sum(probs, axis=axes) + ops.sum(onehot, axis=axes)
    dice = (2.0 * intersection + DICE_SMOOTH) / (total + DICE_SMOOTH)
    return 1.0 - ops.mean(dice)


def ce_dice(class_weights=None):
    """Cross-entropy + Dice: CE gives stable per-pixel gradients, Dice counters class imbalance."""
    cross_entropy = sparse_cross_entropy(class_weights)

    def loss(y_true, y_pred):
        return cross_entropy(y_true, y_pred) + dice_loss(y_true, y_pred)

    loss.__name__ = "ce_dice"
    return loss


LOSSES = ("ce", "dice", "ce_dice")


def make_loss(name, class_weights=None):
    """The loss function called `name` (one of `LOSSES`)."""
    if name == "ce":
        return sparse_cross_entropy(class_weights)
    if name == "dice":
        return dice_loss
    if name == "ce_dice":
        return ce_dice(class_weights)
    raise ValueError(f"unknown loss {name!r}; choose from {LOSSES}")


def median_frequency_weights(class_counts):
    """Class weights median(freq) / freq(c) (SegNet's balancing); absent classes get weight 0."""
    counts = np.asarray(class_counts, dtype=np.float64)
    present = counts > 0
    freq = counts / max(counts.sum(), 1.0)
    weights = np.zeros_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights.astype("float32")


__all__ = ["make_loss", "sparse_cross_entropy", "dice_loss", "ce_dice", "median_frequency_weights"]
