"""The network a fine-tune trains: a copy of the base (a user's model in its `adapt.training_form`), BatchNorm
frozen, the encoder frozen or not, a new head for a new class set, compiled with a `StepSchedule`; with the
cached recipe only the part after the frozen layers is fitted (`features.py`). The fine-tune worker loads the
bases and traces a matching network while it waits (`preload_bases`, `prepare_training_model`)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segdemo.compat import all_layers
from segdemo.errors import InputError
from segdemo.finetune.adapt import fixed_input_size, is_bundled_form, training_form
from segdemo.finetune.options import FinetuneOptions
from segdemo.models import cards
from segdemo.models.cards import size_wh

MAX_DEFAULT_AREA = 192 * 192  # a larger base input (street: 480x352) is scaled down to this area by default
WARMUP_SHARE = 0.1  # of the steps, linear warm-up of the learning rate
FINAL_LR_SHARE = 0.02  # cosine decay ends at this share of the peak learning rate
CACHED_VIEWS = 64  # views of the training pairs whose frozen part's outputs are cached, in all ...
MAX_VIEWS_PER_PAIR = 16  # ... and at most per pair

PRELOADED_BASES = {}  # resolved path -> model loaded ahead of the job (see `preload_bases`)
PREPARED_MODELS = {}  # training_key -> TrainingModel traced ahead of the job (see `prepare_training_model`)


def preload_bases(paths, job_waiting=lambda: False):
    """Load base models before a job needs them (the fine-tune worker does this while it waits: ~1.3 s
    of Train's time to first figures); stops early once `job_waiting()`."""
    from segdemo.models.files import load_model_file

    for path in paths:
        if job_waiting():
            return
        if str(Path(path).resolve()) not in PRELOADED_BASES:
            PRELOADED_BASES[str(Path(path).resolve())] = load_model_file(path)


def load_base_model(path):
    """The base model at `path`: a preloaded one (each is used once: a fine-tune copies it) or loaded now."""
    from segdemo.models.files import load_model_file

    preloaded = PRELOADED_BASES.pop(str(Path(path).resolve()), None)
    return preloaded if preloaded is not None else load_model_file(path)


def load_base(path):
    """The base model at `path` with its card, as a Segmenter (it scores the "before" figures)."""
    from segdemo.serving.segmenter import Segmenter

    return Segmenter(load_base_model(path), cards.ModelCard.load(path), freeze=False)


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


def training_key(base_path, classes, size, options):
    """What a traced training step depends on (the learning rate and length do not: `StepSchedule`)."""
    return (str(Path(base_path).resolve()), tuple(classes), size_wh(size), options.batch_size, options.freeze_encoder,
            options.loss, options.recipe, options.augment)


@dataclass
class TrainingModel:
    """What a fine-tune trains: `model` (served afterwards) and the part of it `fit` trains (`fitted`): with the
    cached recipe, the layers after its frozen part (`frozen`, run once per view: `finetune/features.py`);
    else `model` itself (`frozen` None)."""

    model: object
    schedule: object
    fitted: object
    frozen: object = None
    new_head: bool = False  # a new class set's head, to start from a linear probe (`probe.py`)
    forward: object = None  # `frozen` traced, once (`features.traced_forward`)

    def batches(self, images, masks, options):
        """Endless training batches of (images, masks) at the training size, as `fitted` takes them."""
        from segdemo.finetune.features import cached_features, feature_batches, traced_forward, training_views
        from segdemo.training.loop import train_dataset

        if self.frozen is None:
            return train_dataset(images, masks, options.batch_size, augment=options.augment, seed=options.seed,
                                 parallel=False).repeat()
        views = view_count(len(images)) if options.augment else 1
        images, masks = training_views(images, masks, views, options.seed)
        self.forward = self.forward or traced_forward(self.frozen)
        return feature_batches(cached_features(self.forward, images), masks, options.batch_size, options.seed)

    def scored(self):
        """What the validation rounds call on the held-out images: `model`, or with the cached recipe (after
        `batches`) the frozen part once per image batch and the trained part each round (`features.FrozenOnce`)."""
        from segdemo.finetune.features import FrozenOnce

        return self.model if self.frozen is None or self.forward is None else FrozenOnce(self.forward, self.fitted)


def view_count(pairs):
    """Views cached per training pair: about CACHED_VIEWS in all, at least the image and its mirror."""
    return max(2, min(MAX_VIEWS_PER_PAIR, CACHED_VIEWS // max(1, pairs)))


def build_training_model(base_model, card, classes, size, options):
    """A trainable copy of the base (BatchNorm frozen, the encoder as `options` say) for `classes` at `size`,
    the part `fit` trains compiled with a StepSchedule: a TrainingModel. A base whose `card` is not in the
    bundled form (a user's model): its `adapt.training_form` is trained."""
    from segdemo.finetune.features import split_at_frozen
    from segdemo.training.loop import StepSchedule, compile_model

    same_classes = list(classes) == list(card.classes)
    if not is_bundled_form(base_model, card):
        model, _ = training_form(base_model, card, classes, size)  # a copy, its head replaced for new classes
    else:
        model = finetune_model(base_model, same_classes, len(classes))  # a copy: the base model stays as it is
    freeze_batchnorm(model)
    set_trainable_part(model, options.freeze_encoder)
    schedule = StepSchedule(warmup_share=WARMUP_SHARE, final_share=FINAL_LR_SHARE)
    frozen, fitted = (split_at_frozen(model) if options.recipe == "cached" else None) or (None, model)
    compile_model(fitted, schedule, options.loss)
    fitted.optimizer.build(fitted.trainable_variables)  # its slots made eagerly: inside fit's trace they cost more
    return TrainingModel(model, schedule, fitted, frozen, new_head=not same_classes)


def prepare_training_model(base_path, classes=None, options=None):
    """Build the model a job on the base at `base_path` with `classes` (None: the base's) and `options` (the
    tab's defaults) would train, trace its training step by one step on blank images, then reset its weights
    and optimizer: a job that matches starts ~6 s sooner (the fine-tune worker does this while it waits). One
    already prepared for the same key is kept."""
    import keras

    options = options or FinetuneOptions()
    card = cards.ModelCard.load(base_path)
    classes = list(classes or card.classes)
    base_model = PRELOADED_BASES.get(str(Path(base_path).resolve()))  # left for the job, which takes it
    base_model = base_model if base_model is not None else load_base_model(base_path)
    size = training_size(options, card.size, base_model, card)
    key = training_key(base_path, classes, size, options)
    if key in PREPARED_MODELS:
        return
    training = build_training_model(base_model, card, classes, size, options)
    weights = training.model.get_weights()
    count = 2 * options.batch_size  # whole batches, as a job's 16 training pairs give
    blank = np.zeros((count, size[1], size[0], 3), np.uint8), np.zeros((count, size[1], size[0]), np.uint8)
    training.fitted.fit(training.batches(*blank, options), epochs=1, steps_per_epoch=1, verbose=0)
    training.model.set_weights(weights)
    for variable in training.fitted.optimizer.variables:  # a fresh Adam: step 0, no moments
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))
    PREPARED_MODELS[key] = training


def training_model(base_path, base, classes, size, options):
    """The TrainingModel for a job on `base` (a Segmenter) loaded from `base_path`: the prepared one that
    matches (each is used once) or one built now."""
    prepared = PREPARED_MODELS.pop(training_key(base_path, classes, size, options), None)
    return prepared or build_training_model(base.model, base.card, classes, size, options)


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


