"""Fine-tune a model on a few image/mask pairs: the logic behind the Fine-tune tab and the command

    python -m segdemo.finetune --base pets --data DIR --out PATH [options]

which prints the before/after metrics on the held-out pairs as one JSON object on its last line.
Keeping the base model's classes fine-tunes every layer's weights from the base; a new class set
re-initialises the head (the last 1x1 convolution).
"""

import argparse
import datetime
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from segdemo import cards
from segdemo.cards import size_value, size_wh
from segdemo.data import InputError, resize_image, resize_mask
from segdemo.losses import LOSSES

MAX_PAIRS = 200
MAX_EPOCHS = 50
MAX_INPUT_SIZE = 512
MIN_PAIRS = 2  # at least one to train on and one held out
BINARY_CLASSES = ("background", "object")


@dataclass
class FinetuneOptions:
    """Training options with the defaults the tab shows."""

    base: str = "pets"
    epochs: int = 10
    learning_rate: float = 5e-4
    batch_size: int = 4
    input_size: int = 0  # 0: the base model's input size
    val_share: float = 0.2
    augment: bool = True
    loss: str = "ce_dice"
    freeze_encoder: bool = True
    classes: list = None  # None: keep the base model's classes
    seed: int = 0
    patience: int = 5  # early stopping on validation loss

    def check(self):
        """Raise InputError for values outside the stated limits."""
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise InputError(f"epochs must be between 1 and {MAX_EPOCHS} (got {self.epochs})")
        if not 1e-6 <= self.learning_rate <= 1e-1:
            raise InputError(f"learning rate must be between 1e-6 and 0.1 (got {self.learning_rate})")
        if not 1 <= self.batch_size <= 32:
            raise InputError(f"batch size must be between 1 and 32 (got {self.batch_size})")
        if self.input_size and not (32 <= self.input_size <= MAX_INPUT_SIZE and self.input_size % 32 == 0):
            raise InputError(f"input size must be a multiple of 32 from 32 to {MAX_INPUT_SIZE} (got {self.input_size})")
        if not 0.0 < self.val_share < 1.0:
            raise InputError(f"validation share must be between 0 and 1 (got {self.val_share})")
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)} (got {self.loss})")
        if self.classes is not None and len(self.classes) < 2:
            raise InputError("a new class set needs at least two class names")


@dataclass
class FinetuneResult:
    model: object
    card: dict
    before: dict  # metrics of the base model on the held-out pairs (None when the classes differ)
    after: dict
    history: dict
    seconds: float
    stopped_early: bool = False
    val_names: list = field(default_factory=list)


def split_pairs(count, val_share, seed):
    """Deterministic (train, val) indices with at least one of each."""
    order = np.random.default_rng(seed).permutation(count)
    val_count = min(max(1, round(count * val_share)), count - 1)
    return sorted(order[val_count:].tolist()), sorted(order[:val_count].tolist())


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
    features = head.input
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(features)
    return keras.Model(model.input, logits, name=model.name)


def stop_on_event_callback(event):
    """Keras callback that ends training after the current batch once `event` is set (the Stop button)."""
    import keras

    class _Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if event is not None and event.is_set():
                self.model.stop_training = True

    return _Stop()


def report_callback(on_epoch, steps_per_epoch):
    """Keras callback reporting (epoch, batch, logs, model) after each batch and epoch to `on_epoch`."""
    import keras

    class _Report(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            on_epoch("batch", self.epoch, batch + 1, logs or {}, self.model)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            on_epoch("epoch", epoch, steps_per_epoch, logs or {}, self.model)

    return _Report()


def run_finetune(pairs_data, options, on_event=None, stop_event=None):
    """Fine-tune on decoded pairs [(name, image, mask)] (masks already class indices). Returns FinetuneResult.

    `on_event(kind, epoch, step, logs, model)` is called after every batch ("batch") and epoch ("epoch");
    setting `stop_event` ends training after the current batch, keeping the best weights so far."""
    import keras

    from segdemo.evaluate import evaluate_arrays
    from segdemo.inference import Segmenter
    from segdemo.models import set_encoder_trainable
    from segdemo.registry import load_keras_model, resolve_model_path
    from segdemo.training import ValidationIoU, fit, steps_per_epoch

    options.check()
    if len(pairs_data) < MIN_PAIRS:
        raise InputError(f"need at least {MIN_PAIRS} good pairs (one to train on, one held out); got {len(pairs_data)}")
    if len(pairs_data) > MAX_PAIRS:
        raise InputError(f"at most {MAX_PAIRS} pairs per fine-tune; got {len(pairs_data)}")
    started = time.perf_counter()
    base_path = resolve_model_path(options.base)
    base = Segmenter(load_keras_model(base_path), cards.load_card(base_path), freeze=False)  # scores 4-40 pairs once
    base_card = base.card
    classes = list(options.classes) if options.classes else list(base.classes)
    same_classes = classes == list(base.classes)
    num_classes = len(classes)
    for name, _, mask in pairs_data:
        labels = np.unique(mask)
        extra = [int(v) for v in labels if v >= num_classes and v != 255]
        if extra:
            raise InputError(f"{name}: mask has class values {extra} but only {num_classes} classes are defined")
    size = size_wh(options.input_size or base.size)
    train_idx, val_idx = split_pairs(len(pairs_data), options.val_share, options.seed)
    train_arrays = resize_pairs([pairs_data[i][1:] for i in train_idx], size)
    val_arrays = resize_pairs([pairs_data[i][1:] for i in val_idx], size)
    val_full = [pairs_data[i][1:] for i in val_idx]  # original resolution, for before/after metrics

    keras.utils.set_random_seed(options.seed)
    new_card = {
        **{k: base_card[k] for k in ("architecture", "architecture_args", "normalisation") if k in base_card},
        "name": f"{base_card['name']}-finetuned",
        "title": f"{base_card.get('title', base_card['name'])}, fine-tuned",
        "description": f"Fine-tuned from {base_card['name']} on {len(pairs_data)} uploaded pairs.",
        "classes": classes,
        "colors": base_card.get("colors") if same_classes else
        [list(c) for c in cards.DEFAULT_COLORS[:num_classes]],
        "default_class": base_card.get("default_class") if same_classes else classes[-1],
        "input_size": size_value(size),
        "base_model": base_card["name"],
        "date": datetime.date.today().isoformat(),
    }
    before = None
    if same_classes:  # the base model scored on the same held-out pairs, at the same input size
        scorer = base if size == base.size else Segmenter(base.model, {**base_card, "input_size": size_value(size)},
                                                          freeze=False)
        before = evaluate_arrays(scorer, val_full)

    model = finetune_model(base.model, same_classes, num_classes)  # a copy: the base model stays as it is
    set_encoder_trainable(model, not options.freeze_encoder)
    steps = steps_per_epoch(len(train_idx), options.batch_size)
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=options.patience,
                                                   restore_best_weights=True)
    callbacks = [
        ValidationIoU(*val_arrays, num_classes),  # before the callbacks that read val_miou / val_mdice
        early_stopping,
        stop_on_event_callback(stop_event),
    ]
    if on_event:
        callbacks.append(report_callback(on_event, steps))
    history = fit(model, train_arrays, val_arrays, options.epochs, options.learning_rate, loss=options.loss,
                  batch_size=options.batch_size, augment=options.augment, callbacks=callbacks, verbose=0)
    stopped = bool(stop_event is not None and stop_event.is_set())
    if stopped:
        restore_best(model, early_stopping)
    set_encoder_trainable(model, True)
    after = evaluate_arrays(Segmenter(model, new_card, freeze=False), val_full)
    seconds = time.perf_counter() - started
    new_card["training"] = {
        "data": f"{len(pairs_data)} uploaded pairs: {len(train_idx)} train, {len(val_idx)} held out "
                f"({', '.join(pairs_data[i][0] for i in val_idx[:10])})",
        "recipe": {k: v for k, v in asdict(options).items() if k != "classes"},
        "epochs_run": len(history.history.get("loss", [])),
        "stopped_by_user": stopped,
        "wall_time_seconds": round(seconds, 1),
    }
    new_card["metrics"] = {"held-out (after)": after}
    if before:
        new_card["metrics"]["held-out (before, base model)"] = before
    return FinetuneResult(model, new_card, before, after, history.history, seconds, stopped,
                          [pairs_data[i][0] for i in val_idx])


def restore_best(model, early_stopping):
    """EarlyStopping restores its best weights only at a natural end; do it too when the user stopped."""
    best = getattr(early_stopping, "best_weights", None)
    if best is not None:
        model.set_weights(best)


def save_result(result, path):
    """Write the fine-tuned `.keras` file and its card beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    from segdemo.registry import save_keras_model

    save_keras_model(result.model, path)
    cards.save_card(result.card, path)
    return path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = FinetuneOptions()
    parser.add_argument("--base", default=defaults.base, help="bundled model name or .keras path")
    parser.add_argument("--data", required=True, help="folder (images/+masks/ etc.), ZIP, or folder of loose files")
    parser.add_argument("--split", default=None)
    parser.add_argument("--out", required=True, help="output .keras path")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--val-share", type=float, default=defaults.val_share)
    parser.add_argument("--loss", default=defaults.loss, choices=LOSSES)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--unfreeze-encoder", action="store_true")
    parser.add_argument("--classes", nargs="+", default=None, help="new class names (re-initialises the head)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--push-to", default=None, help="Hub model repo id to push to (token from HF_TOKEN)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from segdemo.registry import get_segmenter
    from segdemo.uploads import read_pairs_source, validate_and_load

    options = FinetuneOptions(base=args.base, epochs=args.epochs, learning_rate=args.lr,
                              batch_size=args.batch_size,
                              input_size=args.input_size, val_share=args.val_share, augment=not args.no_augment,
                              loss=args.loss, freeze_encoder=not args.unfreeze_encoder, classes=args.classes,
                              seed=args.seed)
    classes = args.classes or get_segmenter(args.base).classes
    pairs, problems = read_pairs_source(args.data, args.split)
    if args.limit:
        pairs = pairs[: args.limit]
    reports, pairs_data = validate_and_load(pairs, len(classes), get_segmenter(args.base).card.get("colors"))
    for problem in problems + [f"{r.name}: {r.problem}" for r in reports if r.problem]:
        print(f"skipped: {problem}")
    started = time.perf_counter()

    def log_epoch(kind, epoch, step, logs, model):
        if kind == "epoch":
            print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()), flush=True)

    result = run_finetune(pairs_data, options, on_event=log_epoch, stop_event=threading.Event())
    save_result(result, args.out)
    pushed = None
    if args.push_to:
        import os
        import tempfile

        from segdemo.hub import build_push_folder, push_folder

        with tempfile.TemporaryDirectory() as folder:
            pushed = push_folder(build_push_folder(args.out, folder, args.push_to), args.push_to,
                                 os.environ.get("HF_TOKEN"))
    print(json.dumps({"model": str(args.out), "pushed_to": pushed, "pairs": len(pairs_data),
                      "held_out": result.val_names,
                      "before": result.before, "after": result.after,
                      "epochs_run": result.card["training"]["epochs_run"],
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
