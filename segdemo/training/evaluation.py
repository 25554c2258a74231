"""Scoring a Segmenter on labelled pairs: pixel accuracy, IoU and Dice per class, as the app serves it."""

import time

import numpy as np

from segdemo.data.pairs import load_pair
from segdemo.models.cards import binary_mask_classes
from segdemo.training.metrics import confusion_matrix, metrics_from_confusion


def evaluate(segmenter, pairs):
    """Metrics of `segmenter` over `pairs` on disk (read one at a time; black/white masks read as the model's
    card says, as uploads for a fine-tune are)."""
    num_classes = len(segmenter.classes)
    binary = binary_mask_classes(segmenter.card)
    return evaluate_arrays(segmenter, (load_pair(pair, num_classes, binary=binary) for pair in pairs))


def evaluate_arrays(segmenter, images_and_masks, classes=None, label_map=None):
    """Metrics over (HxWx3 image, HxW class-index mask) items at their own resolution, from one confusion
    matrix accumulated over all pixels. `label_map` (an index array) maps the model's classes to `classes`
    (another class set, e.g. a base model scored on a fine-tune's classes)."""
    started = time.perf_counter()
    classes = classes or segmenter.classes
    matrix = np.zeros((len(classes), len(classes)), np.int64)
    count = 0
    for image, mask in images_and_masks:
        labels = segmenter.predict(image).labels
        matrix += confusion_matrix(mask, labels if label_map is None else label_map[labels], len(classes))
        count += 1
    result = metrics_from_confusion(matrix, classes)
    result["pixel_error"] = round(1.0 - result["pixel_acc"], 4) if result["pixel_acc"] is not None else None
    result.update(images=count, seconds=round(time.perf_counter() - started, 1))
    return result
