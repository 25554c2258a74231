"""Losses on sparse labels and confusion-matrix metrics, checked against hand-computed values."""

import keras
import numpy as np
import pytest

from segdemo.training.losses import dice_loss, make_loss, median_frequency_weights, sparse_cross_entropy
from segdemo.training.metrics import confusion_matrix, metrics_from_confusion


def test_seed_set_example():
    """The seed's example: A = {1,2,3,4}, B = {3,4,5,6,7}: |A∩B| = 2, |A∪B| = 7."""
    universe = np.arange(10)
    a, b = np.isin(universe, [1, 2, 3, 4]), np.isin(universe, [3, 4, 5, 6, 7])
    metrics = metrics_from_confusion(confusion_matrix(a.astype(int), b.astype(int), 2))
    assert metrics["per_class_iou"]["1"] == pytest.approx(2 / 7, abs=1e-4) == pytest.approx(0.2857, abs=1e-4)
    assert metrics["per_class_dice"]["1"] == pytest.approx(4 / 9, abs=1e-4) == pytest.approx(0.4444, abs=1e-4)


def test_hand_computed_masks():
    truth = np.array([[0, 0, 1], [1, 2, 2], [255, 2, 0]])
    pred = np.array([[0, 1, 1], [1, 2, 0], [1, 2, 0]])
    matrix = confusion_matrix(truth, pred, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]  # the 255 pixel is not counted
    result = metrics_from_confusion(matrix, ["a", "b", "c"])
    assert result["pixel_acc"] == pytest.approx(6 / 8, abs=1e-4)
    # IoU a: 2 / (3 + 3 - 2), b: 2 / (2 + 3 - 2), c: 2 / (3 + 2 - 2)
    assert result["per_class_iou"] == pytest.approx({"a": 0.5, "b": 0.6667, "c": 0.6667}, abs=1e-4)
    assert result["per_class_dice"] == pytest.approx({"a": 0.6667, "b": 0.8, "c": 0.8}, abs=1e-4)
    assert result["miou"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3, abs=1e-4)


def test_absent_class_is_left_out_of_the_mean():
    result = metrics_from_confusion(confusion_matrix([0, 1], [0, 1], 3))
    assert result["per_class_iou"]["2"] is None and result["miou"] == 1.0


def logits_for(labels, num_classes, confidence=8.0):
    return (np.eye(num_classes)[labels] * confidence).astype("float32")


def test_cross_entropy_matches_keras_and_ignores_255():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, (2, 4, 5))
    logits = rng.normal(size=(2, 4, 5, 3)).astype("float32")
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    loss = sparse_cross_entropy()
    assert float(loss(labels, logits)) == pytest.approx(float(expected), rel=1e-5)
    ignored = labels.copy()
    ignored[0] = 255
    expected_rest = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels[1:], logits[1:])
    assert float(loss(ignored, logits)) == pytest.approx(float(expected_rest), rel=1e-5)


def test_class_weights_scale_pixels():
    labels = np.array([[[0, 1]]])
    logits = np.zeros((1, 1, 2, 2), "float32")  # every pixel: CE = ln 2
    assert float(sparse_cross_entropy([1.0, 3.0])(labels, logits)) == pytest.approx(np.log(2), rel=1e-5)
    wrong_on_class_1 = np.array([[[[5, 0], [5, 0]]]], "float32")
    unweighted = float(sparse_cross_entropy()(labels, wrong_on_class_1))
    weighted = float(sparse_cross_entropy([1.0, 3.0])(labels, wrong_on_class_1))
    assert weighted > unweighted  # the misclassified class-1 pixel counts three times


def test_dice_loss_perfect_and_wrong():
    labels = np.array([[[0, 1], [2, 2]]])
    assert float(dice_loss(labels, logits_for(labels, 3, 30.0))) == pytest.approx(0.0, abs=1e-3)
    assert float(dice_loss(labels, logits_for((labels + 1) % 3, 3, 30.0))) > 0.7
    assert float(make_loss("ce_dice")(labels, logits_for(labels, 3))) < 0.01


def test_median_frequency_weights():
    weights = median_frequency_weights([100, 10, 0, 1])
    assert weights[2] == 0 and weights[3] > weights[1] > weights[0]
