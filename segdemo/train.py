"""Train a bundled model from a dataset folder and write it with its model card.

    python -m segdemo.train --data ../shared/datasets/oxford-pets-subset --split trainval --name pets \
        --classes pet background border --out weights/pets.keras

Training runs in two stages: the pretrained encoder frozen (decoder warm-up), then everything trained at a
lower rate. Checkpoints go to runs/<name>/ after every epoch; running the same command again resumes there.
"""

import argparse
import datetime
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from segdemo.card.showcase import parse_colors
from segdemo.data.pairs import find_pairs, load_resized_pairs, split_pairs
from segdemo.models import cards
from segdemo.training.losses import LOSSES, median_frequency_weights

CACHE_DIR = Path("cache")
RUNS_DIR = Path("runs")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder (see segdemo.data.find_pairs)")
    parser.add_argument("--split", default=None, help="split name, e.g. trainval")
    parser.add_argument("--name", required=True, help="model name (also the run folder)")
    parser.add_argument("--title", default=None)
    parser.add_argument("--description", default="")
    parser.add_argument("--classes", nargs="+", required=True, help="class names, index order")
    parser.add_argument("--colors", nargs="*", default=None, help="class colours as r,g,b")
    parser.add_argument("--default-class", default=None, help="class shown in the probability map first")
    parser.add_argument("--examples", nargs="*", default=None, help="files under examples/ shown with the model")
    parser.add_argument("--architecture", default="mobilenet_unet", choices=["mobilenet_unet", "unet"])
    parser.add_argument("--encoder-weights", default=None, help="MobileNetV2 .h5 to initialise the encoder")
    parser.add_argument("--depth", type=int, default=4, help="classic U-Net levels")
    parser.add_argument("--base-filters", type=int, default=32, help="classic U-Net first-level filters")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--input-size", type=parse_size, default=192,
                        help="served input size: one side (square) or WIDTHxHEIGHT, multiples of 32")
    parser.add_argument("--crop", type=parse_size, default=None,
                        help="train on random crops of this size (side or WIDTHxHEIGHT) of the resized images")
    parser.add_argument("--class-weights", default="none", choices=["none", "median", "sqrt_median"],
                        help="median: median-frequency class weights (SegNet) in the cross-entropy; "
                             "sqrt_median: their square roots (milder)")
    parser.add_argument("--final-weights", default="best", choices=["best", "last"],
                        help="keep the epoch with the best validation loss, or the last one")
    parser.add_argument("--recalibrate-bn", action="store_true",
                        help="re-estimate BatchNorm statistics on the training images after training")
    parser.add_argument("--note", action="append", default=[], help="a line for the model card (repeatable)")
    parser.add_argument("--frozen-epochs", type=int, default=5, help="epochs with the encoder frozen")
    parser.add_argument("--epochs", type=int, default=40, help="epochs with everything trainable")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate, frozen stage")
    parser.add_argument("--finetune-lr", type=float, default=3e-4, help="peak learning rate, full stage")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--loss", default="ce_dice", choices=LOSSES)
    parser.add_argument("--val-share", type=float, default=0.1, help="share of pairs held out for selection")
    parser.add_argument("--val-split", default=None, help="a split used for selection instead of --val-share")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--elastic", action="store_true", help="add the U-Net paper's elastic deformation")
    parser.add_argument("--exclude", nargs="*", default=(), help="pair names kept out of training (a test set)")
    parser.add_argument("--threads", type=int, default=0, help="bound TensorFlow CPU threads (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output .keras path; the card is written beside it")
    return parser.parse_args(argv)


def parse_size(text):
    """'192' -> 192; '480x352' -> (480, 352) (width, height)."""
    parts = [int(part) for part in str(text).lower().split("x")]
    if len(parts) not in (1, 2) or min(parts) < 32 or any(part % 32 for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give one side or WIDTHxHEIGHT, multiples of 32")
    return parts[0] if len(parts) == 1 or parts[0] == parts[1] else tuple(parts)


def cached_arrays(pairs, size, num_classes, binary):
    """Decoded, resized pairs, cached in cache/ so repeated runs skip JPEG decoding."""
    key = hashlib.sha1(json.dumps([[str(p.image), str(p.mask), p.encoding] for p in pairs] + [size, binary]).encode())
    path = CACHE_DIR / f"pairs_{key.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as stored:
            return stored["images"], stored["masks"]
    images, masks = load_resized_pairs(pairs, size, num_classes, binary=binary)
    CACHE_DIR.mkdir(exist_ok=True)
    np.savez(path, images=images, masks=masks)
    return images, masks


def load_data(args):
    """(train arrays, validation arrays or None, number of training pairs) at the card's input size; black/white
    masks read as the card will say (white -> the default class), so evaluation agrees."""
    pairs = [pair for pair in find_pairs(args.data, args.split).pairs if pair.name not in set(args.exclude)]
    num_classes = len(args.classes)
    binary = cards.binary_mask_classes(cards.ModelCard(args.name, args.classes, args.input_size,
                                                       default_class=args.default_class)) or (0, 1)
    images, masks = cached_arrays(pairs, args.input_size, num_classes, binary)
    if args.val_split:
        train_idx = np.arange(len(pairs))
        val_data = cached_arrays(find_pairs(args.data, args.val_split).pairs, args.input_size, num_classes, binary)
    else:
        train_idx, val_idx = (np.array(part, int) for part in split_pairs([p.name for p in pairs], args.val_share))
        val_data = (images[val_idx], masks[val_idx]) if len(val_idx) else None
    return (images[train_idx], masks[train_idx]), val_data


def loss_class_weights(args, masks):
    """Median-frequency class weights (or their square roots) as `--class-weights` asks, else None."""
    from segdemo.training.loop import class_pixel_counts

    if args.class_weights not in ("median", "sqrt_median"):
        return None
    weights = median_frequency_weights(class_pixel_counts(masks, len(args.classes)))
    if args.class_weights == "sqrt_median":
        weights = np.sqrt(weights)
    print("class weights:", dict(zip(args.classes, np.round(weights, 3).tolist())), flush=True)
    return weights


def architecture_args(args):
    """The architecture's arguments as the card records them."""
    arch_args = {"dropout": args.dropout}
    if args.architecture == "unet":
        arch_args.update(depth=args.depth, base_filters=args.base_filters)
    return arch_args


def train_stages(args, model, train_data, val_data, class_weights, run_dir):
    """Train the stages (encoder frozen, then all layers; the plain U-Net has one) with a checkpoint per epoch,
    resuming an interrupted run from `run_dir`; then load the final weights the options ask for."""
    import keras

    from segdemo.models.architectures import set_encoder_trainable
    from segdemo.training.loop import EpochState, fit

    state_path, last_path, best_path = run_dir / "state.json", run_dir / "last.weights.h5", run_dir / "best.weights.h5"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"stage": None, "epoch": 0}
    if state["stage"] and last_path.exists():
        model.load_weights(last_path)
        print(f"resuming after {state['stage']} epoch {state['epoch']}", flush=True)
    save_last = keras.callbacks.ModelCheckpoint(last_path, save_weights_only=True)
    stages = [("frozen", args.frozen_epochs, args.lr, False), ("full", args.epochs, args.finetune_lr, True)]
    if args.architecture == "unet":
        stages = [("full", args.epochs, args.lr, True)]
    done_stages = {"frozen": [], "full": ["frozen"]}.get(state["stage"], [])
    for stage, epochs, learning_rate, trainable in stages:
        if stage in done_stages or epochs == 0:
            continue
        initial = state["epoch"] if state["stage"] == stage else 0
        if initial >= epochs:
            continue
        set_encoder_trainable(model, trainable)
        callbacks = [save_last, EpochState(state_path, stage)]
        if stage == "full" and val_data is not None:
            callbacks.append(keras.callbacks.ModelCheckpoint(best_path, monitor="val_loss", save_best_only=True,
                                                             save_weights_only=True))
        print(f"stage {stage}: {epochs} epochs at lr {learning_rate}", flush=True)
        fit(model, train_data, val_data, epochs, learning_rate, loss=args.loss, class_weights=class_weights,
            batch_size=args.batch_size, augment=not args.no_augment, callbacks=callbacks, initial_epoch=initial,
            crop=cards.size_wh(args.crop) if args.crop else None, elastic=args.elastic,
            warmup_epochs=1 if stage == "full" and args.architecture == "mobilenet_unet" else 0)
    if args.final_weights == "best" and best_path.exists():
        model.load_weights(best_path)
    elif last_path.exists():
        model.load_weights(last_path)
    set_encoder_trainable(model, True)
    log = json.loads(state_path.read_text())["log"] if state_path.exists() else []
    return sum(max(0.0, b["time"] - a["time"]) for a, b in zip(log, log[1:]) if b["time"] - a["time"] < 3600)


def training_recipe(args):
    """The training recipe in one line, for the card."""
    kept = "last epoch" if args.final_weights == "last" else "epoch with the best validation loss"
    recalibrated = "; BatchNorm statistics re-estimated on the training images at the served size" \
        if args.recalibrate_bn else ""
    return (f"{args.frozen_epochs if args.architecture != 'unet' else 0} epochs encoder frozen "
            f"(Adam {args.lr}), {args.epochs} epochs all layers (Adam, cosine from "
            f"{args.finetune_lr if args.architecture != 'unet' else args.lr}), loss {args.loss}, "
            f"class weights {args.class_weights}, batch {args.batch_size}"
            f"{f', random {args.crop} crops' if args.crop else ''}, augmentation "
            f"{'off' if args.no_augment else 'flip/rotate/zoom/shift + colour jitter'}"
            f"{' + elastic deformation' if args.elastic and not args.no_augment else ''}"
            f"{f'; held out of training: {len(args.exclude)} pairs' if args.exclude else ''}; "
            f"weights of the {kept} kept{recalibrated}")


def training_card(args, argv, train_count, val_count, wall_seconds):
    """The trained model's card: what it is, how it was trained, on what (metrics come from segdemo.evaluate)."""
    return cards.ModelCard(
        name=args.name,
        title=args.title or args.name,
        description=args.description,
        classes=list(args.classes),
        colors=parse_colors(args.colors, args.classes) if args.colors else None,
        default_class=cards.default_class_name(args.classes, args.default_class),
        examples=args.examples or None,
        input_size=cards.size_value(args.input_size),
        architecture=args.architecture,
        architecture_args=architecture_args(args),
        normalisation="inside the model: RGB 0..255 -> [-1, 1] (Rescaling layer)",
        ignore_index=255,
        date=datetime.date.today().isoformat(),
        training={
            "command": "python -m segdemo.train " + shlex.join(sys.argv[1:] if argv is None else argv),
            "data": f"{args.data} split {args.split or 'all'}: {train_count} train, {val_count} validation"
                    + (f" (split {args.val_split})" if args.val_split else ""),
            "encoder_init": args.encoder_weights or "random",
            "recipe": training_recipe(args),
            "wall_time_minutes": round(wall_seconds / 60, 1),
        },
        notes=list(args.note or []),
    )


def main(argv=None):
    args = parse_args(argv)
    from segdemo.training.loop import limit_threads

    limit_threads(args.threads)
    import keras

    from segdemo.models.architectures import build_model
    from segdemo.models.files import save_keras_model
    from segdemo.training.loop import recalibrate_batchnorm

    keras.utils.set_random_seed(args.seed)
    started = time.time()
    train_data, val_data = load_data(args)
    val_count = len(val_data[0]) if val_data is not None else 0
    class_weights = loss_class_weights(args, train_data[1])
    print(f"{len(train_data[0])} train pairs, {val_count} validation; loaded in "
          f"{time.time() - started:.0f}s", flush=True)
    init_args = {"encoder_weights": args.encoder_weights} if args.architecture == "mobilenet_unet" else {}
    model = build_model(args.architecture, len(args.classes), **architecture_args(args), **init_args)
    run_dir = RUNS_DIR / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    wall = train_stages(args, model, train_data, val_data, class_weights, run_dir)
    if args.recalibrate_bn:
        print(f"BatchNorm statistics re-estimated over {len(train_data[0])} training images: "
              f"{recalibrate_batchnorm(model, train_data[0], args.batch_size)} layers", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_keras_model(model, out)
    card = training_card(args, argv, len(train_data[0]), val_count, wall)
    card.save(out)
    print(json.dumps({"model": str(out), "wall_time_minutes": card.training["wall_time_minutes"]}))


if __name__ == "__main__":
    main()
