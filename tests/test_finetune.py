"""Fine-tuning core and command on a tiny model and generated data."""

import json
import threading

import numpy as np
import pytest
from PIL import Image

from segdemo import limits
from segdemo.data.pairs import split_pairs
from segdemo.errors import InputError
from segdemo.finetune import network, probe, training
from segdemo.finetune.__main__ import main as finetune_main
from segdemo.finetune.events import RoundDone, StepDone
from segdemo.finetune.options import FinetuneOptions
from segdemo.finetune.recipe import run_finetune
from segdemo.finetune.result import save_result
from segdemo.models.architectures import build_unet
from segdemo.models.cards import ModelCard
from tests.helpers import square_pairs, write_dataset


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_same_classes_has_before_and_after_and_learns(tiny_base, squares):
    events = []
    model, summary = run_finetune(squares, FinetuneOptions(base=tiny_base, steps=16, learning_rate=3e-3,
                                                           val_share=0.25),
                                  on_event=lambda event, model: events.append(event))
    assert summary.before["images"] == summary.after["images"] == 3 and summary.before_note == ""
    assert summary.history[-1]["loss"] < summary.history[0]["loss"]
    rounds = [e for e in events if isinstance(e, RoundDone)]
    assert [e.round for e in rounds] == list(range(1, len(rounds) + 1)) == [r + 1 for r in range(len(summary.history))]
    assert 1 < len(rounds) <= training.ROUNDS and rounds[-1].step == 16
    assert {"loss", "val_loss", "val_miou", "val_pixel_acc"} <= set(rounds[0].logs)
    assert [e.step for e in events if isinstance(e, StepDone)] == list(range(1, 17)) and summary.steps_run == 16
    assert summary.card.base_model == "squares" and summary.card.classes == ["background", "square"]


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_every_batchnorm_is_frozen_so_training_and_serving_agree(tiny_base, squares):
    model, summary = run_finetune(squares, FinetuneOptions(base=tiny_base, steps=8, val_share=0.25))
    import keras

    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and not any(layer.trainable for layer in norms)
    batch = np.stack([image for _, image, _ in squares[:4]]).astype(np.float32)
    assert np.allclose(model(batch, training=True), model(batch, training=False), atol=1e-5)


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_non_square_base_model_keeps_its_input_size(tmp_path, squares):
    from segdemo.serving.segmenter import Segmenter

    path = tmp_path / "wide.keras"
    build_unet(2, depth=2, base_filters=4).save(path)
    ModelCard.from_dict({"name": "wide", "classes": ["background", "square"], "input_size": [64, 32],
                         "architecture": "unet"}).save(path)
    model, summary = run_finetune(squares, FinetuneOptions(base=str(path), steps=2, val_share=0.25))
    assert summary.card.input_size == [64, 32] and summary.before is not None
    assert model(np.zeros((1, 32, 64, 3), np.float32)).shape == (1, 32, 64, 2)  # height 32, width 64
    served = Segmenter(model, summary.card, freeze=False)
    wide = np.concatenate([squares[0][1], squares[1][1]], axis=1)  # 32 x 64, the card's aspect
    for image in (wide, squares[0][1]):  # served at the card's 64 x 32 and back to each image's own size
        prediction = served.predict(image)
        assert served.size == (64, 32) and prediction.labels.shape == image.shape[:2]
        assert prediction.probs.shape == (32, 64, 2) and set(np.unique(prediction.labels)) <= {0, 1}


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_new_classes_get_a_probed_head_and_a_mapped_before(tiny_base, squares):
    model, summary = run_finetune(squares, FinetuneOptions(base=tiny_base, steps=2, classes=["sky", "plane", "cloud"]))
    assert model.output_shape[-1] == 3 and summary.card.classes == ["sky", "plane", "cloud"]
    assert summary.before["images"] == summary.after["images"]
    assert summary.before_note.startswith("base classes mapped") and "background → sky" in summary.before_note


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 5000).astype(np.uint8)
    features = rng.normal(0, 1, (5000, 4)) + 3 * np.eye(4)[labels] + 7  # class c lifts feature c
    kernel, bias = probe.fit_linear_probe(features, labels, 3, seed=0)
    assert ((features @ kernel + bias).argmax(1) == labels).mean() > 0.95


def test_split_is_chosen_by_name_not_seed_or_order():
    names = [f"img{i}" for i in range(20)]
    train, held = split_pairs(names, 0.2)
    assert len(held) == 4 and sorted(train + held) == list(range(20))
    reversed_names = names[::-1]
    _, held_reversed = split_pairs(reversed_names, 0.2)
    assert {reversed_names[i] for i in held_reversed} == {names[i] for i in held}
    assert split_pairs(names[:2], 0.01) == ([1], [0]) or split_pairs(names[:2], 0.01) == ([0], [1])
    assert split_pairs(names, 0) == (list(range(20)), [])  # the train command may keep no validation pairs


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_stop_event_ends_training_early(tiny_base, squares):
    stop = threading.Event()

    def stop_after_first_round(event, model):
        if isinstance(event, RoundDone):
            stop.set()

    _, summary = run_finetune(squares, FinetuneOptions(base=tiny_base, steps=400),
                              on_event=stop_after_first_round, stop_event=stop)
    assert summary.stopped_by_user and summary.steps_run <= 2 * 400 // training.ROUNDS
    assert summary.card.training["stopped_by_user"] and summary.after is not None


@pytest.mark.parametrize("options,message", [
    (dict(steps=0), "steps must be between"),
    (dict(steps=limits.MAX_STEPS + 1), "steps must be between"),
    (dict(batch_size=limits.MAX_BATCH_SIZE + 1), "batch size must be between"),
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


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_finetune_command_prints_before_after_and_the_model_evaluates(tiny_base, tmp_path, capsys):
    images, masks = square_pairs(8, 40, np.random.default_rng(2))
    write_dataset(tmp_path / "data", images, masks)  # black/white masks: white = square
    Image.new("RGB", (40, 40)).save(tmp_path / "data" / "images" / "unpaired.jpg")
    out = tmp_path / "tuned.keras"
    finetune_main(["--base", tiny_base, "--data", str(tmp_path / "data"), "--out", str(out), "--steps", "8"])
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
    model, summary = run_finetune(squares, FinetuneOptions(base=tiny_base, steps=2))
    path = save_result(model, summary, tmp_path / "m.keras")
    from segdemo.serving.registry import get_segmenter

    assert summary.model_path == str(path)
    assert get_segmenter(str(path)).predict(squares[0][1]).labels.shape == (32, 32)


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_finetuned_model_round_trips_through_the_push_folder(tiny_base, squares, tmp_path):
    import keras

    from segdemo.models.hub import build_push_folder
    from segdemo.serving.registry import get_segmenter

    model, summary = run_finetune(squares, FinetuneOptions(base=tiny_base, steps=2, classes=["sky", "square"]))
    folder = build_push_folder(save_result(model, summary, tmp_path / "tuned.keras"), tmp_path / "push", "me/tuned")
    loaded = get_segmenter(str(folder / "model.keras"))
    assert loaded.classes == ["sky", "square"] and loaded.card.base_model == "squares"
    image = squares[0][1]
    batch = np.stack([image, image[:, ::-1]]).astype(np.float32)
    probs = np.asarray(keras.ops.softmax(model(batch)))
    expected = (probs[0] + probs[1][:, ::-1]).argmax(-1)  # served as the mean with the mirror's prediction
    assert loaded.tta and np.array_equal(loaded.predict(image).labels, expected)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_a_new_foreground_is_learned_for_any_seed(tiny_base, seed):
    """Two new classes on a base that never saw squares: the held-out square IoU is high for both seeds."""
    images, masks = square_pairs(20, 32, np.random.default_rng(10))
    pairs = [(f"p{i}", image, mask) for i, (image, mask) in enumerate(zip(images, masks))]
    _, summary = run_finetune(pairs, FinetuneOptions(base=tiny_base, steps=120, learning_rate=3e-3,
                                                     classes=["background", "thing"], seed=seed))
    assert summary.after["per_class_iou"]["thing"] > 0.8, summary.after


def test_a_preloaded_base_is_used_once_and_preloading_stops_for_a_job(tiny_base, monkeypatch):
    monkeypatch.setattr(network, "PRELOADED_BASES", {})
    network.preload_bases([tiny_base], job_waiting=lambda: True)
    assert network.PRELOADED_BASES == {}  # a job was waiting: nothing loaded
    network.preload_bases([tiny_base])
    preloaded = next(iter(network.PRELOADED_BASES.values()))
    assert network.load_base_model(tiny_base) is preloaded and network.PRELOADED_BASES == {}
    fresh = network.load_base_model(tiny_base)  # the preloaded one was handed out: loaded again
    assert fresh is not preloaded and fresh.count_params() == preloaded.count_params()


@pytest.mark.parametrize("classes", [pytest.param(None, marks=pytest.mark.slow),
                                     pytest.param(["background", "thing"], marks=pytest.mark.slow)])
def test_a_prepared_model_trains_as_a_fresh_one_and_is_used_once(tiny_base, squares, monkeypatch, classes):
    """The worker traces a job's model ahead (one step on blank images, then weights and optimizer reset):
    the job that takes it follows the same losses as one that builds its model."""
    monkeypatch.setattr(network, "PREPARED_MODELS", {})
    options = FinetuneOptions(base=tiny_base, steps=6, learning_rate=3e-3, val_share=0.25, augment=False,
                              classes=classes)
    fresh_model, fresh = run_finetune(squares, options)
    network.prepare_training_model(tiny_base, classes, options)
    prepared_model = next(iter(network.PREPARED_MODELS.values())).model
    taken_model, taken = run_finetune(squares, options)
    assert taken_model is prepared_model and network.PREPARED_MODELS == {}
    assert [round(r["loss"], 5) for r in taken.history] == [round(r["loss"], 5) for r in fresh.history]
    assert taken.after == {**fresh.after, "seconds": taken.after["seconds"]}
    network.prepare_training_model(tiny_base, classes, options)
    other = FinetuneOptions(**{**options.__dict__, "batch_size": 4})  # a different traced step: not taken
    base = network.load_base(tiny_base)  # two classes, as the new class set has
    built = network.training_model(tiny_base, base, classes or base.classes, (32, 32), other).model
    assert built is not prepared_model and len(network.PREPARED_MODELS) == 1


def test_step_schedule_warms_up_then_decays_and_can_be_reset():
    from segdemo.training.loop import StepSchedule

    schedule = StepSchedule(1e-3, 100, warmup_share=0.1, final_share=0.02)
    rates = [float(schedule(step)) for step in range(101)]
    assert rates[0] == pytest.approx(1e-5) and rates[10] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(rates[:10], rates[1:11])) and all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[100] == pytest.approx(2e-5)
    schedule.set(2e-3, 20)
    assert float(schedule(2)) == pytest.approx(2e-3) and float(schedule(20)) == pytest.approx(4e-5)


def test_validation_figures_come_from_one_forward_pass_with_the_loss(rng):
    import keras

    from segdemo.training.loop import ValidationIoU
    from segdemo.training.losses import make_loss

    images, masks = square_pairs(4, 32, rng)
    model = build_unet(2, depth=2, base_filters=8)
    logs = {}
    callback = ValidationIoU(images, masks, 2, batch_size=3, loss=make_loss("ce"))
    callback.set_model(model)
    callback.on_epoch_end(0, logs)
    logits = model(images.astype(np.float32), training=False)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(masks, logits)
    assert abs(logs["val_loss"] - float(expected)) < 1e-4  # batches of 3 and 1, weighted by their size
    predicted = np.asarray(logits).argmax(-1)
    assert abs(logs["val_pixel_acc"] - (predicted == masks).mean()) < 1e-3 and 0 <= logs["val_miou"] <= 1


def test_flip_validation_scores_what_the_served_model_predicts(rng):
    from segdemo.serving.segmenter import Segmenter
    from segdemo.training.evaluation import evaluate_arrays
    from segdemo.training.loop import ValidationIoU
    from segdemo.training.losses import make_loss

    images, masks = square_pairs(4, 32, rng)
    model = build_unet(2, depth=2, base_filters=8)
    logs = {}
    callback = ValidationIoU(images, masks, 2, batch_size=3, loss=make_loss("ce"), flip_tta=True)
    callback.set_model(model)
    callback.on_epoch_end(0, logs)
    served = Segmenter(model, ModelCard("t", ["a", "b"], 32, flip_tta=True), freeze=False)
    assert served.tta
    assert np.array_equal(callback.predictions, np.stack([served.predict(image).labels for image in images]))
    assert logs["val_miou"] == pytest.approx(evaluate_arrays(served, list(zip(images, masks)))["miou"], abs=1e-3)
    probs = np.stack([served.predict(image).probs for image in images])
    expected = -np.log(np.take_along_axis(probs, masks[..., None].astype(int), -1) + 1e-7).mean()
    assert logs["val_loss"] == pytest.approx(expected, rel=1e-3)  # cross-entropy of the averaged probabilities


def test_an_unfrozen_encoder_keeps_its_batchnorm_frozen(mobile_base):
    """What `fit` trains with the encoder unfrozen: the encoder's convolutions, never a BatchNorm's weights (its
    statistics neither: the layers run in inference mode). Checked on the network a job builds, not by training
    it: the trainable weights are what the traced step updates."""
    import keras

    from segdemo.models.architectures import ENCODER_NAME

    base = network.load_base(mobile_base)
    options = FinetuneOptions(base=mobile_base, steps=2, freeze_encoder=False, val_share=0.25)
    training = network.build_training_model(base.model, base.card, base.classes, (32, 32), options)
    trained = {id(weight) for weight in training.fitted.trainable_weights}
    encoder = training.model.get_layer(ENCODER_NAME)
    convolutions = [layer for layer in encoder._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    batchnorms = [layer for layer in training.model._flatten_layers()
                  if isinstance(layer, keras.layers.BatchNormalization)]
    assert convolutions and batchnorms
    assert all(id(layer.kernel) in trained for layer in convolutions)
    assert not any(id(weight) in trained for layer in batchnorms for weight in layer.weights)
    frozen = network.build_training_model(base.model, base.card, base.classes, (32, 32),
                                          FinetuneOptions(**{**options.__dict__, "freeze_encoder": True}))
    kernels = {id(layer.kernel) for layer in frozen.model.get_layer(ENCODER_NAME)._flatten_layers()
               if isinstance(layer, keras.layers.Conv2D)}
    assert kernels and not kernels & {id(weight) for weight in frozen.fitted.trainable_weights}  # the contrast
