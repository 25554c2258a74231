"""The training loop and the train / evaluate commands, end to end on a small generated dataset."""

import argparse
import json

import numpy as np
import pytest

from segdemo import evaluate, train
from segdemo.models.architectures import build_unet
from segdemo.training.loop import class_pixel_counts, cosine_schedule, fit, recalibrate_batchnorm
from tests.helpers import square_pairs, write_dataset


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_fit_lowers_the_loss(rng):
    images, masks = square_pairs(16, 32, rng)
    model = build_unet(2, depth=2, base_filters=8)
    history = fit(model, (images, masks), (images[:4], masks[:4]), epochs=6, learning_rate=3e-3, batch_size=4,
                  augment=True, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] * 0.8
    assert "val_pixel_acc" in history.history


def test_cosine_schedule():
    rate = cosine_schedule(1e-3, 10, warmup_epochs=1)
    assert rate(0) == pytest.approx(5e-4) and rate(1) == pytest.approx(1e-3)
    assert rate(9) < rate(5) < rate(1)


def test_class_pixel_counts():
    assert class_pixel_counts(np.array([[0, 1, 1, 255]], np.uint8), 3).tolist() == [1, 2, 0]


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_train_and_evaluate_commands(tmp_path, monkeypatch, capsys, rng):
    images, masks = square_pairs(12, 48, rng)
    write_dataset(tmp_path / "data", images, masks)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "model" / "squares.keras"
    train.main(["--data", "data", "--name", "squares", "--classes", "background", "square",
                "--architecture", "unet", "--depth", "2", "--base-filters", "8", "--input-size", "32",
                "--epochs", "3", "--lr", "3e-3", "--batch-size", "4", "--out", str(out)])
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["classes"] == ["background", "square"] and card["input_size"] == 32
    assert "python -m segdemo.train" in card["training"]["command"]
    assert (tmp_path / "runs" / "squares" / "state.json").exists()  # resumable checkpoints
    capsys.readouterr()

    evaluate.main(["--model", str(out), "--data", "data", "--update-card"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 12 and 0.0 <= result["miou"] <= 1.0
    assert set(result) >= {"pixel_acc", "miou", "per_class_iou", "mdice", "images", "seconds"}
    assert json.loads(out.with_suffix(".json").read_text())["metrics"]["all"]["miou"] == result["miou"]
    assert "## Metrics: all" in out.with_suffix(".md").read_text()


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_train_options_for_street_and_membranes(tmp_path, monkeypatch, capsys, rng):
    """Non-square input, random crops, class weights, elastic deformation, a held-out set kept out of
    training and evaluated by name."""
    images, masks = square_pairs(10, 64, rng)
    write_dataset(tmp_path / "data", images, masks)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "model" / "wide.keras"
    held_out = ["pair8", "pair9"]
    train.main(["--data", "data", "--name", "wide", "--classes", "background", "square",
                "--architecture", "unet", "--depth", "2", "--base-filters", "8", "--input-size", "64x32",
                "--crop", "32", "--class-weights", "median", "--elastic", "--exclude", *held_out,
                "--val-share", "0", "--epochs", "2", "--batch-size", "4", "--examples", "x.png", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "8 train pairs, 0 validation" in printed and "class weights" in printed
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["input_size"] == [64, 32] and card["examples"] == ["x.png"]
    assert "elastic" in card["training"]["recipe"] and "median" in card["training"]["recipe"]
    assert "held out of training: 2 pairs" in card["training"]["recipe"]
    assert "64x32 (width x height" in out.with_suffix(".md").read_text()

    evaluate.main(["--model", str(out), "--data", "data", "--names", *held_out])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images"] == 2 and result["pixel_error"] == pytest.approx(1 - result["pixel_acc"], abs=1e-4)


@pytest.mark.parametrize("text,expected", [("192", 192), ("480x352", (480, 352)), ("64x64", 64)])
def test_parse_size(text, expected):
    assert train.parse_size(text) == expected


@pytest.mark.parametrize("text", ["100", "480x360", "0", "axb"])
def test_parse_size_refuses_bad_sizes(text):
    with pytest.raises((ValueError, argparse.ArgumentTypeError)):
        train.parse_size(text)


def test_batchnorm_recalibration_averages_the_batch_statistics(rng):
    import keras

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.999)(inputs))
    images = rng.normal(100.0, 5.0, (24, 8, 8, 3)).astype("float32")
    assert recalibrate_batchnorm(model, images, batch_size=8) == 1
    layer = model.layers[-1]
    np.testing.assert_allclose(np.asarray(layer.moving_mean), images.mean(axis=(0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), images.var(axis=(0, 1, 2)), rtol=0.1)
    assert layer.momentum == 0.999  # restored
