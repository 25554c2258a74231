"""A fine-tune's training: the new head's linear probe, then `fit` over validation rounds, each round's
figures and sample prediction as events, Stop after the current step."""

import math
from dataclasses import dataclass

from segdemo.finetune.events import RoundDone, StepDone
from segdemo.finetune.probe import init_head_by_probe

ROUNDS = 10  # validation rounds (curve points, sample predictions) over a run


@dataclass
class TrainingRun:
    """What `train` did: each round's logs, the steps run, whether Stop ended it."""

    rounds: list
    steps_run: int
    stopped: bool


def step_plan(steps):
    """(rounds, steps per round, steps): at most ROUNDS rounds of equal length, the steps asked for or up to a
    round's worth more."""
    round_steps = math.ceil(steps / ROUNDS)
    rounds = math.ceil(steps / round_steps)
    return rounds, round_steps, rounds * round_steps


def train(training, data, num_classes, options, on_event=None, stop_event=None):
    """Train `training` (a `network.TrainingModel`) on `data` (a `data.TrainingData`) as `options` say;
    `on_event(event, model)` gets a StepDone after every step and a RoundDone after every validation round.
    Returns a TrainingRun."""
    import keras

    from segdemo.training.loop import ValidationIoU

    keras.utils.set_random_seed(options.seed)
    if training.new_head:
        init_head_by_probe(training.model, data.train_images, data.train_masks, num_classes, options.seed)
    rounds, round_steps, steps = step_plan(options.steps)
    training.schedule.set(options.learning_rate, steps)
    batches = training.batches(data.train_images, data.train_masks, options)
    validation = ValidationIoU(data.val_images, data.val_masks, num_classes, loss=training.fitted.loss,
                               flip_tta=options.flip_tta, model=training.scored())
    progress = progress_callback(on_event, steps, rounds, stop_event, validation)
    history = training.fitted.fit(batches, epochs=rounds, steps_per_epoch=round_steps,
                                  callbacks=[validation, progress], verbose=0)  # validation's logs first
    logs = history.history
    stopped = bool(stop_event is not None and stop_event.is_set())
    return TrainingRun([{k: logs[k][i] for k in logs} for i in range(len(logs["loss"]))], progress.step, stopped)


def progress_callback(on_event, steps, rounds, stop_event, validation):
    """Keras callback: StepDone after each step, RoundDone after each round (with the model and the
    `validation` callback's prediction of the first held-out pair), and the end of training after the current
    step once `stop_event` is set (the Stop button)."""
    import keras

    class _Progress(keras.callbacks.Callback):
        step = 0

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if on_event:
                on_event(StepDone(self.step, steps), self.model)
            if stop_event is not None and stop_event.is_set():
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if on_event:
                logs = {k: (None if v is None else float(v)) for k, v in (logs or {}).items()}
                on_event(RoundDone(epoch + 1, rounds, self.step, steps, logs, prediction=validation.predictions[0]),
                         self.model)

    return _Progress()
