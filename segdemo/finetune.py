"""Fine-tune a model on a few image/mask pairs: the logic behind the Fine-tune tab and the command

    python -m segdemo.finetune --base pets --data DIR --out PATH [options]

which prints the before/after metrics on the held-out pairs as one JSON object on its last line.

The recipe is built to give the same result for any seed on ~20 pairs of a domain the base never saw:
- every BatchNorm layer runs in inference mode (its statistics frozen): with a few hundred steps the moving
  averages never catch up with the batch statistics, so the network trained and the network served would
  disagree (validation curves that say nothing, results that depend on the seed);
- a new class set gets a new head (the last 1x1 convolution) initialised by a linear probe: logistic
  regression on the features the head reads, over the training pixels, so training starts from a sensible
  classifier instead of a random one;
- a fixed number of optimizer steps (not epochs: 20 or 200 pairs cost the same), warm-up then cosine decay,
  on whole images at the served size (random windows of them lost 0.06 IoU: the context matters), a larger
  base input scaled down to MAX_DEFAULT_AREA;
- held-out pairs are chosen from the pair names, not the seed;
- the result is served as the mean of the image's and its mirror's prediction (`flip_tta`, on the card; the
  training flips images too): +0.002 to +0.012 foreground IoU for a second forward pass, and the validation
  rounds score it the same way.
"""

import argparse
import datetime
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segdemo import cards
from segdemo.cards import size_value, size_wh
from segdemo.data import IGNORE_INDEX, InputError, resize_image, resize_mask, split_pairs
from segdemo.losses import LOSSES

MIN_PAIRS = 2  # at least one to train on and one held out
MAX_PAIRS = 200
MAX_STEPS = 2000
MAX_BATCH_SIZE = 16
MAX_INPUT_SIZE = 512
BINARY_CLASSES = ("background", "object")
MAX_DEFAULT_AREA = 192 * 192  # a larger base input (street: 480x352) is scaled down to this area by default
ROUNDS = 10  # validation rounds (curve points, sample predictions) over a run
WARMUP_SHARE = 0.1  # of the steps, linear warm-up of the learning rate
FINAL_LR_SHARE = 0.02  # cosine decay ends at this share of the peak learning rate
PROBE_PIXELS = 30_000  # training pixels the head's linear probe is fitted on
PROBE_ITERATIONS = 300
PROBE_LEARNING_RATE = 0.1
FINETUNED_SUFFIX = "-finetuned"


@dataclass
class FinetuneOptions:
    """Training options with the defaults the tab shows."""

    base: str = "pets"
    steps: int = 200
    learning_rate: float = 1e-3
    batch_size: int = 2  # BatchNorm is frozen, so small batches cost nothing in statistics
    input_size: int = 0  # 0: the base model's input size
    val_share: float = 0.2
    augment: bool = True
    loss: str = "ce_dice"
    freeze_encoder: bool = True
    flip_tta: bool = True  # served (and validated) as the mean of the image's and its mirror's prediction
    classes: list = None  # None: keep the base model's classes
    seed: int = 0

    def check(self):
        """Raise InputError for values outside the stated limits."""
        if not 1 <= self.steps <= MAX_STEPS:
            raise InputError(f"steps must be between 1 and {MAX_STEPS} (got {self.steps})")
        if not 1e-6 <= self.learning_rate <= 1e-1:
            raise InputError(f"learning rate must be between 1e-6 and 0.1 (got {self.learning_rate})")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise InputError(f"batch size must be between 1 and {MAX_BATCH_SIZE} (got {self.batch_size})")
        if self.input_size and not (32 <= self.input_size <= MAX_INPUT_SIZE and self.input_size % 32 == 0):
            raise InputError(f"input size must be a multiple of 32 from 32 to {MAX_INPUT_SIZE} (got {self.input_size})")
        if not 0.0 < self.val_share < 1.0:
            raise InputError(f"validation share must be between 0 and 1 (got {self.val_share})")
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)} (got {self.loss})")
        if self.classes is not None and len(self.classes) < 2:
            raise InputError("a new class set needs at least two class names")


def check_pair_count(count):
    if count < MIN_PAIRS:
        raise InputError(f"need at least {MIN_PAIRS} good pairs (one to train on, one held out); got {count}")
    if count > MAX_PAIRS:
        raise InputError(f"at most {MAX_PAIRS} pairs per fine-tune; got {count}")


# --- the job's events and result (what the worker process sends the app) ----------------------------------


@dataclass
class StepDone:
    """One optimizer step finished."""

    step: int
    steps: int


@dataclass
class RoundDone:
    """A validation round: the curves' values so far and (from the worker) a sample prediction PNG."""

    round: int
    rounds: int
    step: int
    steps: int
    logs: dict
    sample: str = ""
    # the first held-out pair's predicted class indices at the training size (in process only, not sent:
    # the worker draws the sample from it rather than running the model again)
    prediction: np.ndarray = field(default=None, repr=False, compare=False)


@dataclass
class FinetuneSummary:
    """What a fine-tune produced, apart from the model itself."""

    card: dict
    before: dict  # the base model on the held-out pairs (new classes: its classes mapped, see before_note)
    after: dict
    history: list  # logs of each round
    seconds: float
    stopped_by_user: bool
    held_out: list
    steps_run: int
    before_note: str = ""
    model_path: str = ""


@dataclass
class Finished:
    summary: FinetuneSummary


@dataclass
class Failed:
    message: str
    input_error: bool = True  # False: a bug; `details` holds the traceback for the log
    details: str = ""


PRELOADED_BASES = {}  # resolved path -> model loaded ahead of the job (see `preload_bases`)
PREPARED_MODELS = {}  # training_key -> (model, schedule) traced ahead of the job (see `prepare_training_model`)


def preload_bases(paths, job_waiting=lambda: False):
    """Load base models before a job needs them (the fine-tune worker does this while it waits: ~1.3 s
    of Train's time to first figures); stops early once `job_waiting()`."""
    from segdemo.registry import load_keras_model

    for path in paths:
        if job_waiting():
            return
        PRELOADED_BASES[str(Path(path).resolve())] = load_keras_model(path)


def load_base_model(path):
    """The base model at `path`: a preloaded one (each is used once: a fine-tune copies it) or loaded now."""
    from segdemo.registry import load_keras_model

    preloaded = PRELOADED_BASES.pop(str(Path(path).resolve()), None)
    return preloaded if preloaded is not None else load_keras_model(path)


def resize_pairs(images_and_masks, size):
    images = np.stack([resize_image(image, size) for image, _ in images_and_masks])
    masks = np.stack([resize_mask(mask, size) for _, mask in images_and_masks])
    return images, masks


def finetune_model(base_model, same_classes, num_classes):
    """A trainable copy of the base model; with a new class set, its head is replaced."""
    import keras

    model = keras.models.clone_model(base_model)
    model.set_weights(base_model.get_weights())
    if same_classes:
        return model
    head = model.get_layer("logits")
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(head.input)
    return keras.Model(model.input, logits, name=model.name)


def freeze_batchnorm(model):
    """Every BatchNorm layer to inference mode with frozen statistics (see the module's docstring)."""
    import keras

    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def training_key(base_path, classes_count, same_classes, size, options):
    """What a traced training step depends on (the learning rate and length do not: `StepSchedule`)."""
    return (str(Path(base_path).resolve()), classes_count, same_classes, size_wh(size), options.batch_size,
            options.freeze_encoder, options.loss)


def build_training_model(base_model, same_classes, num_classes, options):
    """A trainable copy of the base (BatchNorm frozen, the encoder as `options` say) compiled with a
    StepSchedule. Returns (model, schedule)."""
    from segdemo.models import set_encoder_trainable
    from segdemo.training import StepSchedule, compile_model

    model = finetune_model(base_model, same_classes, num_classes)  # a copy: the base model stays as it is
    freeze_batchnorm(model)
    set_encoder_trainable(model, not options.freeze_encoder)  # its BatchNorm layers stay frozen (tested)
    schedule = StepSchedule(warmup_share=WARMUP_SHARE, final_share=FINAL_LR_SHARE)
    compile_model(model, schedule, options.loss)
    return model, schedule


def prepare_training_model(base_path, classes=None, options=None):
    """Build the model a job on the base at `base_path` with `classes` (None: the base's) and `options` (the
    tab's defaults) would train, trace its training step by one step on blank images, then reset its weights
    and optimizer: a job that matches starts ~6 s sooner (the fine-tune worker does this while it waits)."""
    import keras

    from segdemo.training import train_dataset

    options = options or FinetuneOptions()
    card = cards.load_card(base_path)
    classes = list(classes or card["classes"])
    same_classes = classes == list(card["classes"])
    size = training_size(options, cards.input_wh(card))
    base_model = PRELOADED_BASES.get(str(Path(base_path).resolve()))  # left for the job, which takes it
    base_model = base_model if base_model is not None else load_base_model(base_path)
    model, schedule = build_training_model(base_model, same_classes, len(classes), options)
    weights = model.get_weights()
    count = 2 * options.batch_size  # whole batches, as a job's 16 training pairs give
    blank = np.zeros((count, size[1], size[0], 3), np.uint8), np.zeros((count, size[1], size[0]), np.uint8)
    model.fit(train_dataset(*blank, options.batch_size, augment=options.augment, parallel=False).repeat(),
              epochs=1, steps_per_epoch=1, verbose=0)
    model.set_weights(weights)
    for variable in model.optimizer.variables:  # a fresh Adam: step 0, no moments
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    PREPARED_MODELS[training_key(base_path, len(classes), same_classes, size, options)] = (model, schedule)


def training_model(base_model, base_path, same_classes, num_classes, size, options):
    """(model, schedule) for a job: the prepared one that matches (each is used once) or one built now."""
    key = training_key(base_path, num_classes, same_classes, size, options)
    return PREPARED_MODELS.pop(key, None) or build_training_model(base_model, same_classes, num_classes, options)


def head_features(model, images, batch_size=8):
    """The features the head (`logits`) reads, for (N, H, W, 3) images: (N, H, W, D) float32."""
    import keras

    extractor = keras.Model(model.input, model.get_layer("logits").input)
    return np.concatenate([np.asarray(extractor(images[i: i + batch_size].astype(np.float32), training=False))
                           for i in range(0, len(images), batch_size)])


def fit_linear_probe(features, labels, num_classes, seed):
    """Multinomial logistic regression (full-batch Adam on standardised features). Returns (kernel (D, C),
    bias (C,)) acting on the raw features."""
    rng = np.random.default_rng(seed)
    counted = np.flatnonzero(labels != IGNORE_INDEX)
    chosen = rng.choice(counted, min(PROBE_PIXELS, counted.size), replace=False)
    x, y = features[chosen].astype(np.float64), labels[chosen].astype(np.int64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    onehot = np.eye(num_classes)[y]
    prior = onehot.mean(0) + 1e-3
    weights, bias = np.zeros((z.shape[1], num_classes)), np.log(prior / prior.sum())
    moments = [np.zeros_like(weights), np.zeros_like(bias), np.zeros_like(weights), np.zeros_like(bias)]
    for t in range(1, PROBE_ITERATIONS + 1):
        logits = z @ weights + bias
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(1, keepdims=True)
        error = (probs - onehot) / len(y)
        grads = (z.T @ error + 1e-4 * weights, error.sum(0))
        for i, (param, grad) in enumerate(zip((weights, bias), grads)):  # Adam
            moments[i] = 0.9 * moments[i] + 0.1 * grad
            moments[i + 2] = 0.999 * moments[i + 2] + 0.001 * grad ** 2
            param -= PROBE_LEARNING_RATE * (moments[i] / (1 - 0.9 ** t)) / (
                np.sqrt(moments[i + 2] / (1 - 0.999 ** t)) + 1e-8)
    kernel = weights / std[:, None]
    return kernel, bias - mean / std @ weights


def init_head_by_probe(model, images, masks, num_classes, seed):
    features = head_features(model, images)
    kernel, bias = fit_linear_probe(features.reshape(-1, features.shape[-1]), masks.reshape(-1), num_classes,
                                    seed)
    head = model.get_layer("logits")
    head.set_weights([kernel.reshape(1, 1, *kernel.shape).astype(np.float32), bias.astype(np.float32)])


def base_class_mapping(base_model, images, masks, num_classes):
    """For a new class set: each base class -> the new class its predictions overlap most on the training
    pairs (an index array), so the base model can be scored on the new classes."""
    from segdemo.metrics import confusion_matrix

    base_classes = base_model.output_shape[-1]
    overlap = np.zeros((num_classes, base_classes), np.int64)
    for start in range(0, len(images), 8):
        predicted = np.asarray(base_model(images[start: start + 8].astype(np.float32), training=False)).argmax(-1)
        overlap += confusion_matrix(masks[start: start + 8], predicted, max(num_classes, base_classes))[
            :num_classes, :base_classes]
    return overlap.argmax(0)


def score_base(base, size, val_full, train_arrays, classes, same_classes):
    """The base model's metrics on the held-out pairs at `size` ("before"), and a note: for a new class set its
    classes are mapped to the new ones by overlap on the training pairs."""
    from segdemo.evaluate import evaluate_arrays
    from segdemo.inference import Segmenter

    scorer = base if size == base.size else Segmenter(base.model, {**base.card, "input_size": size_value(size)},
                                                      freeze=False)
    if same_classes:
        return evaluate_arrays(scorer, val_full), ""
    mapping = base_class_mapping(base.model, *train_arrays, len(classes))
    note = "base classes mapped to the new ones by overlap on the training pairs: " + ", ".join(
        f"{name} → {classes[mapping[i]]}" for i, name in enumerate(base.classes))
    return evaluate_arrays(scorer, val_full, classes=classes, label_map=mapping), note


def training_size(options, base_size):
    """(width, height) a fine-tune trains and serves at: the options' input size, else `default_input_size`."""
    return size_wh(options.input_size or default_input_size(base_size))


def default_input_size(base_size):
    """The base's input size, scaled down (aspect kept, sides multiples of 32) when larger than
    MAX_DEFAULT_AREA: a few hundred steps at 480x352 would not fit the time a demo has."""
    width, height = size_wh(base_size)
    scale = min(1.0, (MAX_DEFAULT_AREA / (width * height)) ** 0.5)
    return tuple(max(32, int(round(side * scale / 32)) * 32) for side in (width, height))


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


def new_card_for(base_card, classes, same_classes, size, pair_count, flip_tta):
    num_classes = len(classes)
    again = base_card["name"].endswith(FINETUNED_SUFFIX)  # a teach-loop round continues a fine-tuned model
    return {
        **{k: base_card[k] for k in ("architecture", "architecture_args", "normalisation") if k in base_card},
        "name": base_card["name"] if again else f"{base_card['name']}{FINETUNED_SUFFIX}",
        "title": base_card.get("title", base_card["name"]) if again else
        f"{base_card.get('title', base_card['name'])}, fine-tuned",
        "description": f"Fine-tuned from {base_card['name']} on {pair_count} pairs.",
        "classes": classes,
        "colors": base_card.get("colors") if same_classes else [list(c) for c in cards.DEFAULT_COLORS[:num_classes]],
        "default_class": base_card.get("default_class") if same_classes else cards.default_class_name(classes),
        **({"binary_mask": base_card["binary_mask"]} if same_classes and "binary_mask" in base_card else {}),
        "input_size": size_value(size),
        "flip_tta": flip_tta,
        "base_model": base_card["name"],
        "date": datetime.date.today().isoformat(),
    }


def run_finetune(pairs_data, options, on_event=None, stop_event=None):
    """Fine-tune on decoded pairs [(name, image, mask)] (masks already class indices). Returns
    (model, FinetuneSummary).

    `on_event(event, model)` gets a StepDone after every step and a RoundDone after every validation round;
    setting `stop_event` ends training after the current step."""
    import keras

    from segdemo.evaluate import evaluate_arrays
    from segdemo.inference import Segmenter
    from segdemo.models import set_encoder_trainable
    from segdemo.registry import resolve_model_path
    from segdemo.training import ValidationIoU, train_dataset

    options.check()
    check_pair_count(len(pairs_data))
    started = time.perf_counter()
    base_path = resolve_model_path(options.base)
    base = Segmenter(load_base_model(base_path), cards.load_card(base_path), freeze=False)  # scores 4-40 pairs once
    classes = list(options.classes) if options.classes else list(base.classes)
    same_classes = classes == list(base.classes)
    num_classes = len(classes)
    for name, _, mask in pairs_data:
        extra = [int(v) for v in np.unique(mask) if num_classes <= v != IGNORE_INDEX]
        if extra:
            raise InputError(f"{name}: mask has class values {extra} but only {num_classes} classes are defined")
    size = training_size(options, base.size)
    train_idx, val_idx = split_pairs([name for name, _, _ in pairs_data], options.val_share)
    train_arrays = resize_pairs([pairs_data[i][1:] for i in train_idx], size)
    val_arrays = resize_pairs([pairs_data[i][1:] for i in val_idx], size)
    val_full = [pairs_data[i][1:] for i in val_idx]  # original resolution, for before/after metrics
    keras.utils.set_random_seed(options.seed)
    new_card = new_card_for(base.card, classes, same_classes, size, len(pairs_data), options.flip_tta)
    model, schedule = training_model(base.model, base_path, same_classes, num_classes, size, options)
    if not same_classes:
        init_head_by_probe(model, *train_arrays, num_classes, options.seed)
    round_steps = math.ceil(options.steps / ROUNDS)
    rounds = math.ceil(options.steps / round_steps)  # at most ROUNDS
    steps = rounds * round_steps  # the steps asked for, or up to a round's worth more
    schedule.set(options.learning_rate, steps)
    train = train_dataset(*train_arrays, options.batch_size, augment=options.augment, seed=options.seed,
                          parallel=False).repeat()
    validation = ValidationIoU(*val_arrays, num_classes, loss=model.loss, flip_tta=options.flip_tta)
    callbacks = [validation,  # before the callback that reads its logs
                 progress_callback(on_event, steps, rounds, stop_event, validation)]
    history = model.fit(train, epochs=rounds, steps_per_epoch=round_steps, callbacks=callbacks, verbose=0)
    steps_run = callbacks[1].step
    stopped = bool(stop_event is not None and stop_event.is_set())
    # the base is scored after training, not before it: the first curves reach the screen a second sooner
    before, before_note = score_base(base, size, val_full, train_arrays, classes, same_classes)
    set_encoder_trainable(model, True)
    after = evaluate_arrays(Segmenter(model, new_card, freeze=False), val_full)
    seconds = time.perf_counter() - started
    new_card["training"] = {
        "data": f"{len(pairs_data)} uploaded pairs: {len(train_idx)} train, {len(val_idx)} held out "
                f"({', '.join(pairs_data[i][0] for i in val_idx[:10])})",
        "recipe": {k: v for k, v in asdict(options).items() if k != "classes"},
        "steps_run": steps_run,
        "stopped_by_user": stopped,
        "wall_time_seconds": round(seconds, 1),
    }
    new_card["metrics"] = {"held-out (after)": after, "held-out (before, base model)": before}
    rounds_logs = [{k: history.history[k][i] for k in history.history} for i in range(len(history.history["loss"]))]
    summary = FinetuneSummary(new_card, before, after, rounds_logs, seconds, stopped,
                              [pairs_data[i][0] for i in val_idx], steps_run, before_note)
    return model, summary


def save_result(model, summary, path):
    """Write the fine-tuned `.keras` file and its card beside it; records the path in the summary."""
    from segdemo.registry import save_keras_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_keras_model(model, path)
    cards.save_card(summary.card, path)
    summary.model_path = str(path)
    return path


def target_card(base_card, classes=None):
    """The card a fine-tune's masks are read with: the base's, or a new class set's."""
    if not classes or list(classes) == list(base_card["classes"]):
        return base_card
    return {"classes": list(classes), "default_class": cards.default_class_name(list(classes))}


def load_training_pairs(source, base_card, classes=None, split=None, limit=0):
    """Read pairs for a fine-tune from a folder or ZIP, masks read for the target classes (black/white as
    `cards.binary_mask_classes` says). Returns ([(name, image, mask)], [problems])."""
    from segdemo.uploads import read_pairs_source, validate_and_load

    card = target_card(base_card, classes)
    pairs, problems = read_pairs_source(source, split)
    if limit:
        pairs = pairs[:limit]
    reports, loaded = validate_and_load(pairs, len(card["classes"]), cards.class_colors(card),
                                        cards.binary_mask_classes(card))
    return loaded, problems + [f"{r.name}: {r.problem}" for r in reports if r.problem]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = FinetuneOptions()
    parser.add_argument("--base", default=defaults.base, help="bundled model name or .keras path")
    parser.add_argument("--data", required=True, help="folder (images/+masks/ etc.), ZIP, or folder of loose files")
    parser.add_argument("--split", default=None)
    parser.add_argument("--out", required=True, help="output .keras path")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--val-share", type=float, default=defaults.val_share)
    parser.add_argument("--loss", default=defaults.loss, choices=LOSSES)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--unfreeze-encoder", action="store_true")
    parser.add_argument("--no-flip-tta", action="store_true", help="serve without averaging with the mirror image")
    parser.add_argument("--classes", nargs="+", default=None,
                        help="new class names (a new head); black/white masks: black -> 'background', white -> "
                             "the last other class")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--push-to", default=None, help="Hub model repo id to push to (token from HF_TOKEN)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from segdemo.registry import resolve_model_path

    options = FinetuneOptions(base=args.base, steps=args.steps, learning_rate=args.lr, batch_size=args.batch_size,
                              input_size=args.input_size, val_share=args.val_share, augment=not args.no_augment,
                              loss=args.loss, freeze_encoder=not args.unfreeze_encoder, flip_tta=not args.no_flip_tta,
                              classes=args.classes, seed=args.seed)
    base_card = cards.load_card(resolve_model_path(args.base))
    pairs_data, problems = load_training_pairs(args.data, base_card, args.classes, args.split, args.limit)
    for problem in problems:
        print(f"skipped: {problem}")
    started = time.perf_counter()

    def log_round(event, model):
        if isinstance(event, RoundDone):
            print(f"round {event.round}/{event.rounds} (step {event.step}): "
                  + ", ".join(f"{k} {v:.4f}" for k, v in event.logs.items() if v is not None), flush=True)

    model, summary = run_finetune(pairs_data, options, on_event=log_round, stop_event=threading.Event())
    save_result(model, summary, args.out)
    pushed = None
    if args.push_to:
        import os
        import tempfile

        from segdemo.hub import build_push_folder, push_folder

        with tempfile.TemporaryDirectory() as folder:
            pushed = push_folder(build_push_folder(args.out, folder, args.push_to), args.push_to,
                                 os.environ.get("HF_TOKEN"))
    print(json.dumps({"model": str(args.out), "pushed_to": pushed, "pairs": len(pairs_data),
                      "held_out": summary.held_out, "before": summary.before, "before_note": summary.before_note,
                      "after": summary.after, "steps_run": summary.steps_run,
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
