"""The fine-tune recipe, built to give the same result for any seed on ~20 pairs of a domain the base never saw:
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
- a user's own model (its card not in the bundled form: scaled inputs, softmax/sigmoid/one-channel/flattened/
  coarser outputs, no layer named "logits") is trained as its `adapt.training_form`: the same model taking 0..255
  RGB and returning logits at the input size, its last convolution the "logits" head (replaced for new classes,
  where its structure allows: else an InputError the tab shows); its pairs are resized as its card says, at its
  own input size when that is fixed;
- the result is served as the mean of the image's and its mirror's prediction (`flip_tta`, on the card; the
  training flips images too): +0.002 to +0.012 foreground IoU for a second forward pass, and the validation
  rounds score it the same way.
"""

import datetime
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from segdemo.compat import all_layers
from segdemo.data.images import resize_image, resize_mask
from segdemo.data.masks import IGNORE_INDEX
from segdemo.data.pairs import split_pairs
from segdemo.errors import InputError
from segdemo.finetune.adapt import fixed_input_size, is_bundled_form, training_form
from segdemo.finetune.events import FinetuneSummary, RoundDone, StepDone
from segdemo.finetune.options import FinetuneOptions, check_pair_count, target_card
from segdemo.finetune.probe import init_head_by_probe
from segdemo.finetune.scoring import score_base
from segdemo.models import cards
from segdemo.models.cards import size_value, size_wh

MAX_DEFAULT_AREA = 192 * 192  # a larger base input (street: 480x352) is scaled down to this area by default
ROUNDS = 10  # validation rounds (curve points, sample predictions) over a run
WARMUP_SHARE = 0.1  # of the steps, linear warm-up of the learning rate
FINAL_LR_SHARE = 0.02  # cosine decay ends at this share of the peak learning rate
FINETUNED_SUFFIX = "-finetuned"

PRELOADED_BASES = {}  # resolved path -> model loaded ahead of the job (see `preload_bases`)
PREPARED_MODELS = {}  # training_key -> (model, schedule) traced ahead of the job (see `prepare_training_model`)


def preload_bases(paths, job_waiting=lambda: False):
    """Load base models before a job needs them (the fine-tune worker does this while it waits: ~1.3 s
    of Train's time to first figures); stops early once `job_waiting()`."""
    from segdemo.models.files import load_model_file

    for path in paths:
        if job_waiting():
            return
        PRELOADED_BASES[str(Path(path).resolve())] = load_model_file(path)


def load_base_model(path):
    """The base model at `path`: a preloaded one (each is used once: a fine-tune copies it) or loaded now."""
    from segdemo.models.files import load_model_file

    preloaded = PRELOADED_BASES.pop(str(Path(path).resolve()), None)
    return preloaded if preloaded is not None else load_model_file(path)


def resize_pairs(images_and_masks, size, resize="stretch", resize_filter="antialias"):
    """(images, masks) at `size` as the card's `resize` and `resize_filter` say (a user's model is trained as it is
    served): letterboxed masks are IGNORE_INDEX where the image does not reach."""
    if (resize, resize_filter) == ("stretch", "antialias"):
        images = np.stack([resize_image(image, size) for image, _ in images_and_masks])
        masks = np.stack([resize_mask(mask, size) for _, mask in images_and_masks])
        return images, masks
    from segdemo.models.resizing import resize_for_model

    images, masks = [], []
    for image, mask in images_and_masks:
        pixels, (left, top, right, bottom) = resize_for_model(image, size, resize, resize_filter)
        images.append(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        canvas = np.full((size[1], size[0]), IGNORE_INDEX, np.uint8)
        canvas[top:bottom, left:right] = resize_mask(mask, (right - left, bottom - top))
        masks.append(canvas)
    return np.stack(images), np.stack(masks)


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

    for layer in all_layers(model, include_self=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def set_trainable_part(model, freeze_encoder):
    """What "freeze the encoder" trains: the bundled models' MobileNetV2 encoder, or a user model's nested
    encoder Model named "encoder" (the TF segmentation tutorial's), frozen or not as asked; a user model
    without one trains all its layers (BatchNorm frozen all the same) whatever `freeze_encoder` says: on 20
    square pairs (tests/own_models.tanh_logits_unet pretrained on squares_data, new classes, 60 steps, seeds
    0-2) all layers gave held-out IoU 0.9992/0.9992/1.0, the head and the convolution before it alone
    0.9984/0.9976/0.9976: no steadier, slightly lower. Layers a user froze in their model stay frozen."""
    from segdemo.models.architectures import set_encoder_trainable

    set_encoder_trainable(model, not freeze_encoder)  # its BatchNorm layers stay frozen (tested)


def training_key(base_path, classes_count, same_classes, size, options):
    """What a traced training step depends on (the learning rate and length do not: `StepSchedule`)."""
    return (str(Path(base_path).resolve()), classes_count, same_classes, size_wh(size), options.batch_size,
            options.freeze_encoder, options.loss)


def build_training_model(base_model, same_classes, num_classes, options, card=None, classes=None, size=None):
    """A trainable copy of the base (BatchNorm frozen, the encoder as `options` say) compiled with a
    StepSchedule. Returns (model, schedule). A `card` not in the bundled form (a user's model): its
    `adapt.training_form` at `size` for `classes` is trained."""
    from segdemo.training.loop import StepSchedule, compile_model

    if card is not None and not is_bundled_form(base_model, card):
        model, _ = training_form(base_model, card, classes, size)  # a copy, its head replaced for new classes
    else:
        model = finetune_model(base_model, same_classes, num_classes)  # a copy: the base model stays as it is
    freeze_batchnorm(model)
    set_trainable_part(model, options.freeze_encoder)
    schedule = StepSchedule(warmup_share=WARMUP_SHARE, final_share=FINAL_LR_SHARE)
    compile_model(model, schedule, options.loss)
    return model, schedule


def prepare_training_model(base_path, classes=None, options=None):
    """Build the model a job on the base at `base_path` with `classes` (None: the base's) and `options` (the
    tab's defaults) would train, trace its training step by one step on blank images, then reset its weights
    and optimizer: a job that matches starts ~6 s sooner (the fine-tune worker does this while it waits)."""
    import keras

    from segdemo.training.loop import train_dataset

    options = options or FinetuneOptions()
    card = cards.ModelCard.load(base_path)
    classes = list(classes or card.classes)
    same_classes = classes == list(card.classes)
    base_model = PRELOADED_BASES.get(str(Path(base_path).resolve()))  # left for the job, which takes it
    base_model = base_model if base_model is not None else load_base_model(base_path)
    size = training_size(options, card.size, base_model, card)
    model, schedule = build_training_model(base_model, same_classes, len(classes), options, card, classes, size)
    weights = model.get_weights()
    count = 2 * options.batch_size  # whole batches, as a job's 16 training pairs give
    blank = np.zeros((count, size[1], size[0], 3), np.uint8), np.zeros((count, size[1], size[0]), np.uint8)
    model.fit(train_dataset(*blank, options.batch_size, augment=options.augment, parallel=False).repeat(),
              epochs=1, steps_per_epoch=1, verbose=0)
    model.set_weights(weights)
    for variable in model.optimizer.variables:  # a fresh Adam: step 0, no moments
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    PREPARED_MODELS[training_key(base_path, len(classes), same_classes, size, options)] = (model, schedule)


def training_model(base_model, base_path, same_classes, num_classes, size, options, card=None, classes=None):
    """(model, schedule) for a job: the prepared one that matches (each is used once) or one built now."""
    key = training_key(base_path, num_classes, same_classes, size, options)
    return PREPARED_MODELS.pop(key, None) or build_training_model(base_model, same_classes, num_classes, options,
                                                                  card, classes, size)


def training_size(options, base_size, base_model=None, card=None):
    """(width, height) a fine-tune trains and serves at: the options' input size, else `default_input_size`.
    A user's model with fixed input sides (not in the bundled form) trains at those, never scaled down; another
    input size asked for is an InputError."""
    if base_model is not None and card is not None and not is_bundled_form(base_model, card):
        fixed = fixed_input_size(base_model)
        if fixed is not None:
            if options.input_size and size_wh(options.input_size) != fixed:
                raise InputError(f"this model takes {fixed[0]}x{fixed[1]} images only; leave the input size at 0 "
                                 "(the model's own)")
            return fixed
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
    """The fine-tuned model's card: the base's architecture, normalisation and resizing (a user's model keeps
    its `resize` and `resize_filter`; its input scale and output decoding are inside the fine-tuned model), the
    new classes (or the base's with their colours and black/white reading), the training size; a teach-loop
    round keeps its name."""
    again = base_card.name.endswith(FINETUNED_SUFFIX)  # a teach-loop round continues a fine-tuned model
    return cards.ModelCard(
        name=base_card.name if again else f"{base_card.name}{FINETUNED_SUFFIX}",
        title=base_card.display_title if again else f"{base_card.display_title}, fine-tuned",
        description=f"Fine-tuned from {base_card.name} on {pair_count} pairs.",
        classes=list(classes),
        colors=base_card.colors if same_classes else [list(c) for c in cards.DEFAULT_COLORS[:len(classes)]],
        default_class=base_card.default_class if same_classes else cards.default_class_name(classes),
        binary_mask=base_card.binary_mask if same_classes else None,
        input_size=size_value(size),
        architecture=base_card.architecture,
        architecture_args=dict(base_card.architecture_args),
        normalisation=base_card.normalisation,
        resize=base_card.resize,
        resize_filter=base_card.resize_filter,
        flip_tta=flip_tta,
        base_model=base_card.name,
        date=datetime.date.today().isoformat(),
    )


def run_finetune(pairs_data, options, on_event=None, stop_event=None):
    """Fine-tune on decoded pairs [(name, image, mask)] (masks already class indices). Returns
    (model, FinetuneSummary).

    `on_event(event, model)` gets a StepDone after every step and a RoundDone after every validation round;
    setting `stop_event` ends training after the current step."""
    import keras

    from segdemo.models.architectures import set_encoder_trainable
    from segdemo.serving.registry import resolve_model_path
    from segdemo.serving.segmenter import Segmenter
    from segdemo.training.evaluation import evaluate_arrays
    from segdemo.training.loop import ValidationIoU, train_dataset

    options.check()
    check_pair_count(len(pairs_data))
    started = time.perf_counter()
    base_path = resolve_model_path(options.base)
    base = Segmenter(load_base_model(base_path), cards.ModelCard.load(base_path), freeze=False)  # scores pairs once
    bundled = is_bundled_form(base.model, base.card)  # else a user's model: its `adapt.training_form` trains
    classes = list(options.classes) if options.classes else list(base.classes)
    same_classes = classes == list(base.classes)
    num_classes = len(classes)
    for name, _, mask in pairs_data:
        extra = [int(v) for v in np.unique(mask) if num_classes <= v != IGNORE_INDEX]
        if extra:
            raise InputError(f"{name}: mask has class values {extra} but only {num_classes} classes are defined")
    size = training_size(options, base.size, base.model, base.card)
    train_idx, val_idx = split_pairs([name for name, _, _ in pairs_data], options.val_share)
    resizing = (base.card.resize, base.card.resize_filter)
    train_arrays = resize_pairs([pairs_data[i][1:] for i in train_idx], size, *resizing)
    val_arrays = resize_pairs([pairs_data[i][1:] for i in val_idx], size, *resizing)
    val_full = [pairs_data[i][1:] for i in val_idx]  # original resolution, for before/after metrics
    keras.utils.set_random_seed(options.seed)
    new_card = new_card_for(base.card, classes, same_classes, size, len(pairs_data), options.flip_tta)
    model, schedule = training_model(base.model, base_path, same_classes, num_classes, size, options, base.card,
                                     classes)
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
    before, before_note = score_base(base, size, val_full, train_arrays, classes, same_classes, bundled)
    set_encoder_trainable(model, True)
    after = evaluate_arrays(Segmenter(model, new_card, freeze=False), val_full)
    seconds = time.perf_counter() - started
    new_card.training = {
        "data": f"{len(pairs_data)} uploaded pairs: {len(train_idx)} train, {len(val_idx)} held out "
                f"({', '.join(pairs_data[i][0] for i in val_idx[:10])})",
        "recipe": {k: v for k, v in asdict(options).items() if k != "classes"},
        "steps_run": steps_run,
        "stopped_by_user": stopped,
        "wall_time_seconds": round(seconds, 1),
    }
    new_card.metrics = {"held-out (after)": after, "held-out (before, base model)": before}
    rounds_logs = [{k: history.history[k][i] for k in history.history} for i in range(len(history.history["loss"]))]
    summary = FinetuneSummary(new_card, before, after, rounds_logs, seconds, stopped,
                              [pairs_data[i][0] for i in val_idx], steps_run, before_note)
    return model, summary


def save_result(model, summary, path):
    """Write the fine-tuned `.keras` file and its card beside it; records the path in the summary."""
    from segdemo.models.files import save_keras_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_keras_model(model, path)
    summary.card.save(path)
    summary.model_path = str(path)
    return path


def load_training_pairs(source, base_card, classes=None, split=None, limit=0):
    """Read pairs for a fine-tune from a folder or ZIP, masks read for the target classes (black/white as
    `cards.binary_mask_classes` says). Returns ([(name, image, mask)], [problems])."""
    from segdemo.data.uploads import read_pairs_source, validate_and_load

    card = target_card(base_card, classes)
    pairs, problems = read_pairs_source(source, split)
    if limit:
        pairs = pairs[:limit]
    reports, loaded = validate_and_load(pairs, len(card.classes), cards.class_colors(card),
                                        cards.binary_mask_classes(card))
    return loaded, problems + [f"{r.name}: {r.problem}" for r in reports if r.problem]
