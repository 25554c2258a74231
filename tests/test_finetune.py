"""Fine-tuning core and command on a tiny model and generated data."""

import json
import threading

import numpy as np
import pytest
from PIL import Image

from segdemo import finetune
from segdemo.cards import save_card
from segdemo.data import InputError
from segdemo.finetune import FinetuneOptions, run_finetune, save_result
from segdemo.models import build_unet
from tests.test_training import square_pairs, write_dataset


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A small classic U-Net 'base model' with a card, as the registry loads any .keras path."""
    path = tmp_path_factory.mktemp("base") / "squares.keras"
    build_unet(2, depth=2, base_filters=8).save(path)
    save_card({"name": "squares", "classes": ["background", "square"], "colors": [[0, 0, 0], [255, 0, 0]],
               "input_size": 32, "architecture": "unet"}, path)
    return str(path)


@pytest.fixture(scope="module")
def squares():
    images, masks = square_pairs(12, 32, np.random.default_rng(1))
    return [(f"pair{i}", image, mask) for i, (image, mask) in enumerate(zip(images, masks))]


def test_same_classes_has_before_and_after_and_learns(tiny_base, squares):
    events = []
    result = run_finetune(squares, FinetuneOptions(base=tiny_base, epochs=6, learning_rate=3e-3, val_share=0.25),
                          on_event=lambda kind, *rest: events.append(kind))
    assert result.before is not None and result.after["images"] == 3
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert events.count("epoch") == len(result.history["loss"]) and "batch" in events
    assert result.card["base_model"] == "squares" and result.card["classes"] == ["background", "square"]


def test_non_square_base_model_keeps_its_input_size(tmp_path, squares):
    path = tmp_path / "wide.keras"
    build_unet(2, depth=2, base_filters=4).save(path)
    save_card({"name": "wide", "classes": ["background", "square"], "input_size": [64, 32],
               "architecture": "unet"}, path)
    result = run_finetune(squares, FinetuneOptions(base=str(path), epochs=1, val_share=0.25))
    assert result.card["input_size"] == [64, 32] and result.before is not None


def test_new_classes_reinitialise_the_head(tiny_base, squares):
    result = run_finetune(squares, FinetuneOptions(base=tiny_base, epochs=1, classes=["sky", "plane", "cloud"]))
    assert result.before is None  # the base model cannot be scored on other classes
    assert result.model.output_shape[-1] == 3 and result.card["classes"] == ["sky", "plane", "cloud"]


def test_stop_event_ends_training_early(tiny_base, squares):
    stop = threading.Event()

    def stop_after_first_epoch(kind, epoch, *rest):
        if kind == "epoch":
            stop.set()

    result = run_finetune(squares, FinetuneOptions(base=tiny_base, epochs=20, patience=50),
                          on_event=stop_after_first_epoch, stop_event=stop)
    assert result.stopped_early and len(result.history["loss"]) <= 2
    assert result.after is not None  # best weights so far are kept and scored


@pytest.mark.parametrize("options,message", [
    (dict(epochs=0), "epochs must be between"),
    (dict(epochs=500), "epochs must be between"),
    (dict(input_size=100), "multiple of 32"),
    (dict(val_share=1.0), "validation share"),
    (dict(classes=["only"]), "at least two class names"),
])
def test_limits_are_enforced_with_messages(tiny_base, squares, options, message):
    with pytest.raises(InputError, match=message):
        run_finetune(squares, FinetuneOptions(base=tiny_base, **options))


def test_too_few_pairs_and_too_many_classes(tiny_base, squares):
    with pytest.raises(InputError, match="at least 2 good pairs"):
        run_finetune(squares[:1], FinetuneOptions(base=tiny_base))
    name, image, mask = squares[0]
    with pytest.raises(InputError, match="class values \\[6\\]"):
        run_finetune([(name, image, mask + 5 * (mask > 0))] + squares[1:], FinetuneOptions(base=tiny_base))


def test_finetune_command_prints_before_after_and_the_model_evaluates(tiny_base, tmp_path, capsys):
    images, masks = square_pairs(8, 40, np.random.default_rng(2))
    write_dataset(tmp_path / "data", images, masks)
    Image.new("RGB", (40, 40)).save(tmp_path / "data" / "images" / "unpaired.jpg")
    out = tmp_path / "tuned.keras"
    finetune.main(["--base", tiny_base, "--data", str(tmp_path / "data"), "--out", str(out), "--epochs", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert any("skipped: unpaired.jpg: no mask found" in line for line in lines)
    result = json.loads(lines[-1])
    assert result["pairs"] == 8 and result["before"]["images"] == result["after"]["images"] == 2
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["metrics"]["held-out (after)"]["miou"] == result["after"]["miou"]

    from segdemo import evaluate

    evaluate.main(["--model", str(out), "--data", str(tmp_path / "data")])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] == 8


def test_saved_result_round_trips(tiny_base, squares, tmp_path):
    result = run_finetune(squares, FinetuneOptions(base=tiny_base, epochs=1))
    path = save_result(result, tmp_path / "m.keras")
    from segdemo.registry import get_segmenter

    assert get_segmenter(str(path)).predict(squares[0][1]).labels.shape == (32, 32)


def test_finetuned_model_round_trips_through_the_push_folder(tiny_base, squares, tmp_path):
    from segdemo.hub import build_push_folder
    from segdemo.registry import get_segmenter

    result = run_finetune(squares, FinetuneOptions(base=tiny_base, epochs=1, classes=["sky", "square"]))
    folder = build_push_folder(save_result(result, tmp_path / "tuned.keras"), tmp_path / "push", "me/tuned")
    loaded = get_segmenter(str(folder / "model.keras"))
    assert loaded.classes == ["sky", "square"] and loaded.card["base_model"] == "squares"
    image = squares[0][1]
    expected = np.asarray(result.model(image[None].astype(np.float32)))[0].argmax(-1)
    assert np.array_equal(loaded.predict(image).labels, expected)
