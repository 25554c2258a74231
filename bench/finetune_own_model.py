"""Fine-tuning a user's own model on 20 pairs of a new domain, against the same model trained the tutorial's way on
the same pairs, in the same run.

    python bench/finetune_own_model.py [--shared ../shared] [--seeds 0 1 2] [--pets-epochs 6]

The user's model is built the way the TF segmentation tutorial builds one (tests/own_models.pix2pix_unet, larger):
[0, 1] inputs at 128x128, an encoder keras.Model nested as a layer, nested Sequential pix2pix upsample blocks,
a final Conv2DTranspose to logits, no layer named "logits"; trained here on Oxford pets trimaps (3 classes) for
a few epochs (cached in runs/own_model/) and given the card `python -m segdemo.card` would write (0..1, logits,
stretch, bilinear filter). Then, on the ISBI 2012 membranes domain (bench/finetune_robustness.py's
membranes-from-pets: cell interior = white vs membrane, 16 training pairs, 4 held out by the app, 10 other
slices scored at full resolution) with the new classes background/object, for each seed:
- ours: `run_finetune` at the tab's defaults (its training form: BatchNorm frozen, the new head by a probe, the
  nested encoder frozen, 200 steps, flip TTA as the card says);
- baseline: the tutorial's way on the same 16 pairs: the same pets model, its last Conv2DTranspose replaced by
  a new 2-class one, the encoder frozen, Adam 1e-3, sparse cross-entropy from logits, flips, batch 4, 40 epochs,
  BatchNorm in training mode, served plainly.
Prints min / median / max foreground IoU and seconds per method, then one JSON line."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ROOT, print_json, print_table  # noqa: E402
from finetune_robustness import build_domain, foreground_iou, score_pairs, summarise  # noqa: E402

SIZE = 128
PETS_CLASSES = ["pet", "background", "border"]  # the tutorial's trimap - 1
NEW_CLASSES = ["background", "object"]
DOMAIN = "membranes-from-pets"
MODEL_DIR = ROOT / "runs" / "own_model"
BASELINE_EPOCHS = 40
BASELINE_BATCH = 4


def upsample_block(filters):
    import keras
    from keras import layers

    return keras.Sequential([layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False),
                             layers.BatchNormalization(), layers.Dropout(0.3), layers.ReLU()])


def build_user_model(num_classes=3, size=SIZE):
    """The tutorial's shape: a nested encoder Model (5 strided conv blocks, skips at 1/2..1/16), pix2pix blocks."""
    import keras
    from keras import layers

    encoder_input = keras.Input((size, size, 3))
    x, skips = encoder_input, []
    for filters in (16, 32, 48, 64, 96):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        skips.append(x)
    encoder = keras.Model(encoder_input, skips, name="encoder")
    inputs = keras.Input((size, size, 3))
    skips = encoder(inputs)
    x = skips[-1]
    for filters, skip in zip((64, 48, 32, 16), reversed(skips[:-1])):
        x = layers.Concatenate()([upsample_block(filters)(x), skip])
    outputs = layers.Conv2DTranspose(num_classes, 3, strides=2, padding="same")(x)
    return keras.Model(inputs, outputs, name="tutorial_unet")


def tutorial_dataset(images, masks, batch, seed, flips=True):
    """The tutorial's input pipeline: tf.image.resize (bilinear, no antialias) to 128, /255, random flips."""
    import tensorflow as tf

    def prepare(image, mask):
        image = tf.image.resize(tf.cast(image, tf.float32), (SIZE, SIZE)) / 255.0
        mask = tf.image.resize(mask[..., None], (SIZE, SIZE), method="nearest")
        return image, mask

    def flip(image, mask):
        if not flips:
            return image, mask
        both = tf.concat([image, tf.cast(mask, tf.float32)], -1)
        both = tf.image.random_flip_left_right(both, seed=seed)
        return both[..., :3], tf.cast(both[..., 3:], mask.dtype)

    dataset = tf.data.Dataset.from_generator(lambda: zip(images, masks), output_signature=(
        tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((None, None), tf.uint8)))
    return dataset.map(prepare).cache().shuffle(len(images), seed=seed).map(flip).batch(batch)


def pets_model(shared, epochs):
    """The user's model, trained on Oxford pets trainval at 128x128 (cached), saved with its card."""
    import keras

    from segdemo.data.pairs import find_pairs, load_pair
    from segdemo.models.cards import ModelCard

    path = MODEL_DIR / f"pets_tutorial_e{epochs}.keras"
    if path.exists():
        return path
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    pairs = find_pairs(Path(shared) / "datasets" / "oxford-pets-subset", "trainval").pairs
    items = [load_pair(p, 3) for p in pairs]
    keras.utils.set_random_seed(0)
    model = build_user_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    started = time.perf_counter()
    model.fit(tutorial_dataset([i for i, _ in items], [m for _, m in items], 16, 0), epochs=epochs, verbose=2)
    print(f"pets model: {len(items)} pairs, {epochs} epochs, {time.perf_counter() - started:.0f} s", flush=True)
    model.save(path)
    ModelCard(name="pets-tutorial", title="A user's pets U-Net (TF tutorial style)", classes=PETS_CLASSES,
              input_size=SIZE, input_scale="0..1", resize="stretch", resize_filter="bilinear", output="logits",
              default_class="pet").save(path)
    return path


def run_ours(folder, base_path, seed, freeze_encoder=True):
    from segdemo.finetune.data import load_training_pairs
    from segdemo.finetune.options import FinetuneOptions
    from segdemo.finetune.recipe import run_finetune
    from segdemo.models import cards
    from segdemo.serving.segmenter import Segmenter

    pairs, _ = load_training_pairs(folder / "train", cards.ModelCard.load(base_path), NEW_CLASSES)
    started = time.perf_counter()
    model, summary = run_finetune(pairs, FinetuneOptions(base=str(base_path), classes=NEW_CLASSES, seed=seed,
                                                         freeze_encoder=freeze_encoder))
    seconds = time.perf_counter() - started
    iou = foreground_iou(Segmenter(model, summary.card, freeze=False), score_pairs(folder, summary.card))
    return {"iou": iou, "seconds": seconds, "held_out_after": summary.after["per_class_iou"]["object"],
            "held_out_before": summary.before["per_class_iou"]["object"]}


def run_baseline(folder, base_path, seed):
    import keras

    from segdemo.data.pairs import split_pairs
    from segdemo.finetune.data import load_training_pairs
    from segdemo.models import cards
    from segdemo.models.files import load_model_file
    from segdemo.serving.segmenter import Segmenter

    card = cards.ModelCard.load(base_path)
    pairs, _ = load_training_pairs(folder / "train", card, NEW_CLASSES)
    train_idx, _ = split_pairs([name for name, _, _ in pairs], 0.2)  # the 16 pairs the app trains on
    keras.utils.set_random_seed(seed)
    base = load_model_file(base_path)
    base.get_layer("encoder").trainable = False  # the tutorial freezes the encoder
    head = base.layers[-1]
    outputs = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(head.input)
    model = keras.Model(base.input, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    started = time.perf_counter()
    model.fit(tutorial_dataset([pairs[i][1] for i in train_idx], [pairs[i][2] for i in train_idx], BASELINE_BATCH,
                               seed), epochs=BASELINE_EPOCHS, verbose=0)
    seconds = time.perf_counter() - started
    served_card = card.replace(classes=NEW_CLASSES, default_class="object", colors=None)
    iou = foreground_iou(Segmenter(model, served_card, freeze=False), score_pairs(folder, served_card))
    return {"iou": iou, "seconds": seconds}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pets-epochs", type=int, default=6)
    parser.add_argument("--domain", default=DOMAIN, help="a domain of bench/finetune_robustness.py")
    parser.add_argument("--unfreeze-encoder", action="store_true", help="ours: train the nested encoder too")
    args = parser.parse_args()
    base_path = pets_model(args.shared, args.pets_epochs)
    folder = build_domain(args.domain, args.shared)
    runs = {"ours": [], "baseline": []}
    for seed in args.seeds:
        for method, run in (("ours", lambda *a: run_ours(*a, freeze_encoder=not args.unfreeze_encoder)),
                            ("baseline", run_baseline)):
            result = run(folder, base_path, seed)
            runs[method].append(result)
            print(f"{method} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()), flush=True)
    rows = []
    for method, results in runs.items():
        iou = summarise([r["iou"] for r in results])
        rows.append({"method": method, "min IoU": iou["min"], "median IoU": iou["median"], "max IoU": iou["max"],
                     "median s": round(float(np.median([r["seconds"] for r in results])), 1)})
    print(f"\n{args.domain}: a user's TF-tutorial-style pets model ({SIZE}x{SIZE}, [0, 1], nested encoder), "
          f"foreground (cell) IoU on the other slices, seeds {args.seeds}")
    print_table(rows, ["method", "min IoU", "median IoU", "max IoU", "median s"])
    print_json({"benchmark": "finetune_own_model", "domain": args.domain, "seeds": args.seeds,
                "pets_epochs": args.pets_epochs, "unfreeze_encoder": args.unfreeze_encoder,
                **{row["method"]: row for row in rows},
                "runs": {m: [{k: round(v, 4) for k, v in r.items()} for r in rs] for m, rs in runs.items()}})


if __name__ == "__main__":
    main()
