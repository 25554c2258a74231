"""Segmentation metrics from a confusion matrix: pixel accuracy, per-class and mean IoU (Jaccard) and Dice.

Accumulate one confusion matrix over a whole evaluation set, then derive every metric from it, so that
metrics are exact over all pixels rather than averages of per-image figures.
"""

import numpy as np

from segdemo.data.masks import IGNORE_INDEX


def confusion_matrix(y_true, y_pred, num_classes):
    """(num_classes, num_classes) int64 counts, rows = true class, cols = predicted; pixels whose true label
    is outside 0..num_classes-1 (e.g. 255 = ignore) are not counted."""
    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(-1).astype(np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"label and prediction sizes differ: {y_true.shape} vs {y_pred.shape}")
    counted = (y_true >= 0) & (y_true < num_classes) & (y_true != IGNORE_INDEX)
    index = y_true[counted] * num_classes + np.clip(y_pred[counted], 0, num_classes - 1)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(matrix, class_names=None):
    """Pixel accuracy, per-class and mean IoU and Dice. Classes absent from both labels and predictions
    have no IoU (None) and are left out of the means."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    labelled = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    union = labelled + predicted - true_positive
    present = union > 0
    iou = np.where(present, true_positive / np.maximum(union, 1), np.nan)
    dice = np.where(present, 2 * true_positive / np.maximum(labelled + predicted, 1), np.nan)
    names = class_names or [str(index) for index in range(len(matrix))]

    def per_class(values):
        return {name: (None if np.isnan(value) else round(float(value), 4)) for name, value in zip(names, values)}

    total = matrix.sum()
    return {
        "pixel_acc": round(float(true_positive.sum() / total), 4) if total else None,
        "miou": round(float(np.nanmean(iou)), 4) if present.any() else None,
        "mdice": round(float(np.nanmean(dice)), 4) if present.any() else None,
        "per_class_iou": per_class(iou),
        "per_class_dice": per_class(dice),
    }
