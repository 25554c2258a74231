"""Does a fine-tune on 5, 10 or 20 pairs of a new domain give the same, good result for any seed, and how long
does it take? The tab's recipe against the one before it (every step through the whole network, 200 steps:
`--option recipe=full steps=200`), on the same pairs, in the same run, alternating.

    python bench/finetune_robustness.py [--shared ../shared] [--seeds 0 1 2] [--pairs 5 10 20] [--domains ...]

Domains, made from ../shared as a user would bring them (black/white masks, white = the object), cached in
.cache/finetune_domains/: 20 pairs to fine-tune on (the first 5 or 10 by name for fewer; the app holds a fifth
out for its curves, at least one) and other images of the domain scored at their original resolution:
- pets-from-street: Oxford pets, pet (with its border) vs the rest, from the street base (new classes)
- cars-from-pets: CamVid, car vs the rest, from the pets base (new classes)
- membranes-from-pets: ISBI 2012, cell interior (white) vs membrane, from the pets base (new classes;
  only 10 other slices exist to score on)
- pets-binary-from-pets: Oxford pets binary on the pets base with the tab's defaults (keep its classes:
  white -> pet, black -> background)
Prints per domain and pair count min / median / max foreground IoU as each model is served (its card: flip
TTA by default) and the median seconds of `run_finetune` (load, train, score: the command's time without
Python's and TensorFlow's start), then one JSON line. `--tutorial` adds the TF segmentation tutorial's recipe
(frozen ImageNet MobileNetV2 + pix2pix decoder at 128x128, Adam 1e-3, flips, 40 epochs, batch 4) at 20 pairs.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ROOT, print_json  # noqa: E402

from segdemo.data.pairs import find_pairs, load_pair  # noqa: E402
from segdemo.models.cards import ModelCard, binary_mask_classes  # noqa: E402

DOMAINS_DIR = ROOT / ".cache" / "finetune_domains"
TRAIN_PAIRS = 20
PAIR_COUNTS = (5, 10, 20)  # the first N of the domain's 20 pairs (by name) are fine-tuned on
BASELINE_OPTIONS = {"recipe": "full", "steps": 200}  # the recipe before the cached one: every step through all
SCORE_PAIRS = 60
NEW_CLASSES = ["background", "object"]
# domain -> (base model, classes for the fine-tune: None = keep the base's)
DOMAINS = {
    "pets-from-street": ("street", NEW_CLASSES),
    "cars-from-pets": ("pets", NEW_CLASSES),
    "membranes-from-pets": ("pets", NEW_CLASSES),
    "pets-binary-from-pets": ("pets", None),
}
BASELINE_SIZE = 128
BASELINE_EPOCHS = 40
BASELINE_BATCH = 4
CAMVID_CAR = 8
SERVINGS = ("iou_plain", "iou_flip")  # each model is also scored both ways: served plainly, and with flip TTA


# --- domains: binary masks from the shared datasets -------------------------------------------------------


def write_pair(folder, name, image, white):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{name}.jpg", quality=95)
    Image.fromarray(np.where(white, 255, 0).astype(np.uint8)).save(folder / "masks" / f"{name}.png")


def pets_source(shared):
    pairs = find_pairs(Path(shared) / "datasets" / "oxford-pets-subset", "test").pairs  # the bases never saw them
    return [(p.name, *load_pair(p, 3)) for p in pairs], lambda mask: mask != 1  # pet + border vs background


def cars_source(shared):
    root = Path(shared) / "datasets" / "camvid"
    train = [(p.name, *load_pair(p, 12)) for p in find_pairs(root, "train").pairs[::5]]
    test = [(p.name, *load_pair(p, 12)) for p in find_pairs(root, "test").pairs[::3]]
    with_cars = [item for item in train if (item[2] == CAMVID_CAR).mean() > 0.02]
    return with_cars, test, lambda mask: mask == CAMVID_CAR


def build_domain(name, shared):
    """Write the domain's train/ and score/ folders (once)."""
    folder = DOMAINS_DIR / name
    if (folder / "score" / "masks").is_dir():
        return folder
    rng = np.random.default_rng(0)
    if name.startswith("pets"):
        items, white = pets_source(shared)
        order = rng.permutation(len(items))
        train, score = [items[i] for i in order[:TRAIN_PAIRS]], [items[i] for i in order[TRAIN_PAIRS:][:SCORE_PAIRS]]
    elif name.startswith("cars"):
        candidates, test, white = cars_source(shared)
        train = [candidates[i] for i in rng.permutation(len(candidates))[:TRAIN_PAIRS]]
        score = test[:SCORE_PAIRS]
    else:
        pairs = find_pairs(Path(shared) / "datasets" / "isbi2012-membranes", "train").pairs
        items = [(p.name, *load_pair(p, 2)) for p in sorted(pairs, key=lambda p: int(p.name))]
        train, score, white = items[:TRAIN_PAIRS], items[TRAIN_PAIRS:], lambda mask: mask == 1  # cell interior
    for subset, chosen in (("train", train), ("score", score)):
        for pair_name, image, mask in chosen:
            write_pair(folder / subset, pair_name, image, white(mask))
    return folder


def score_pairs(folder, card):
    """The domain's scoring pairs, masks read as the model's card reads black/white."""
    binary = binary_mask_classes(card)
    return [load_pair(pair, len(card.classes), binary=binary) for pair in find_pairs(folder / "score").pairs]


def foreground_iou(segmenter, items):
    from segdemo.training.evaluation import evaluate_arrays

    white = binary_mask_classes(segmenter.card)[1]
    result = evaluate_arrays(segmenter, items)
    return result["per_class_iou"][segmenter.classes[white]]


def served_both_ways(model, card, items):
    """Foreground IoU of `model` served plainly and as the mean with the mirrored image's prediction."""
    from segdemo.serving.segmenter import Segmenter

    return {f"iou_{name}": foreground_iou(Segmenter(model, card, tta=tta, freeze=False), items)
            for name, tta in (("plain", False), ("flip", True))}


# --- runs ----------------------------------------------------------------------------------------------------


def run_ours(folder, base, classes, seed, overrides=None, pairs=TRAIN_PAIRS):
    from segdemo.finetune.data import load_training_pairs
    from segdemo.finetune.options import FinetuneOptions
    from segdemo.finetune.recipe import run_finetune
    from segdemo.models import cards
    from segdemo.serving.registry import resolve_model_path
    from segdemo.serving.segmenter import Segmenter

    base_card = cards.ModelCard.load(resolve_model_path(base))
    loaded, _ = load_training_pairs(folder / "train", base_card, classes, limit=pairs)
    started = time.perf_counter()
    model, summary = run_finetune(loaded, FinetuneOptions(base=base, classes=classes, seed=seed, **(overrides or {})))
    seconds = time.perf_counter() - started
    segmenter = Segmenter(model, summary.card, freeze=False)  # served as the card says (flip_tta)
    white = segmenter.classes[binary_mask_classes(summary.card)[1]]
    both = served_both_ways(model, summary.card, score_pairs(folder, summary.card))
    return {"iou": both["iou_flip" if segmenter.tta else "iou_plain"], **both, "seconds": seconds,
            "held_out_before": summary.before["per_class_iou"][white],
            "held_out_after": summary.after["per_class_iou"][white]}


def build_tutorial_model(encoder_weights, num_classes=2, size=BASELINE_SIZE):
    """The TF segmentation tutorial's model: frozen MobileNetV2 encoder, pix2pix upsampling decoder."""
    import keras

    from segdemo.models.architectures import load_mobilenet_weights

    inputs = keras.Input((size, size, 3))
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    encoder_base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None)
    load_mobilenet_weights(encoder_base, encoder_weights)
    names = ["block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu",
             "block_16_project"]
    encoder = keras.Model(encoder_base.input, [encoder_base.get_layer(n).output for n in names])
    encoder.trainable = False
    skips = encoder(scaled)
    x = skips[-1]
    for filters, skip in zip((512, 256, 128, 64), reversed(skips[:-1])):
        x = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Concatenate()([x, skip])
    outputs = keras.layers.Conv2DTranspose(num_classes, 3, strides=2, padding="same")(x)
    return keras.Model(inputs, outputs)


def run_baseline(folder, shared, seed):
    import keras
    import tensorflow as tf

    from segdemo.data.images import resize_image, resize_mask
    from segdemo.data.pairs import split_pairs

    card = ModelCard("tutorial", list(NEW_CLASSES), BASELINE_SIZE)
    pairs = find_pairs(folder / "train").pairs
    train_idx, _ = split_pairs([p.name for p in pairs], 0.2)  # the same 16 pairs the fine-tune trains on
    items = [load_pair(pairs[i], 2, binary=binary_mask_classes(card)) for i in train_idx]
    images = np.stack([resize_image(image, BASELINE_SIZE) for image, _ in items]).astype(np.float32)
    masks = np.stack([resize_mask(mask, BASELINE_SIZE) for _, mask in items])
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    model = build_tutorial_model(Path(shared) / "pretrained" / "mobilenetv2_160_imagenet_dogs.h5")
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def flip(image, mask):
        flipped = tf.random.uniform(()) > 0.5
        return (tf.where(flipped, tf.reverse(image, [1]), image),
                tf.where(flipped, tf.reverse(mask, [1]), mask))

    data = (tf.data.Dataset.from_tensor_slices((images, masks)).shuffle(len(images), seed=seed)
            .map(flip).batch(BASELINE_BATCH).prefetch(2))
    model.fit(data, epochs=BASELINE_EPOCHS, verbose=0)
    seconds = time.perf_counter() - started
    card = card.replace(default_class="object")
    both = served_both_ways(model, card, score_pairs(folder, card))
    return {"iou": both["iou_plain"], **both, "seconds": seconds}  # the tutorial serves plainly


RUNS_CACHE = ROOT / ".cache" / "finetune_robustness_runs.json"


def cached_run(key, run):
    """`run()`'s result, kept in RUNS_CACHE under `key` so that an interrupted bench resumes."""
    import json

    cache = json.loads(RUNS_CACHE.read_text()) if RUNS_CACHE.exists() else {}
    if key not in cache:
        cache[key] = run()
        RUNS_CACHE.write_text(json.dumps(cache, indent=1))
    return cache[key]


def parse_overrides(items):
    """`--option steps=300 freeze_encoder=False` -> {"steps": 300, "freeze_encoder": False}, typed as the
    FinetuneOptions field's default."""
    from dataclasses import fields

    from segdemo.finetune.options import FinetuneOptions

    types = {field.name: type(field.default) for field in fields(FinetuneOptions)}
    overrides = {}
    for item in items:
        name, _, value = item.partition("=")
        if name not in types or name in ("base", "classes", "seed"):
            raise SystemExit(f"--option {item}: not a FinetuneOptions field this bench varies")
        overrides[name] = value.lower() in ("1", "true", "yes") if types[name] is bool else types[name](value)
    return overrides


def recipe_key(overrides=None):
    """What identifies the fine-tune recipe: the options' defaults, the recipe's and the probe's constants (and
    overrides)."""
    from dataclasses import asdict

    from segdemo.finetune import features, network, probe, training
    from segdemo.finetune.options import FinetuneOptions

    constants = {k: getattr(module, k) for module in (network, training, features, probe) for k in dir(module)
                 if k.isupper() and isinstance(getattr(module, k), (int, float))}
    return str(sorted({**asdict(FinetuneOptions(**(overrides or {}))), **constants}.items()))


def summarise(values):
    values = sorted(values)
    return {"min": round(values[0], 4), "median": round(float(np.median(values)), 4), "max": round(values[-1], 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pairs", type=int, nargs="+", default=list(PAIR_COUNTS), choices=list(PAIR_COUNTS))
    parser.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=list(DOMAINS))
    parser.add_argument("--no-baseline", action="store_true", help="ours only (not today's full-network recipe)")
    parser.add_argument("--tutorial", action="store_true", help="also the TF tutorial's recipe (20 pairs only)")
    parser.add_argument("--option", nargs="+", default=[], metavar="NAME=VALUE",
                        help="fine-tune options other than the tab's defaults, e.g. steps=300 (to measure a change)")
    args = parser.parse_args()
    overrides = parse_overrides(args.option)
    from segdemo.training.loop import limit_threads

    limit_threads(2)
    recipes = {"ours": overrides, **({} if args.no_baseline else {"full": BASELINE_OPTIONS})}
    report = []
    for domain in args.domains:
        folder = build_domain(domain, args.shared)
        base, classes = DOMAINS[domain]
        for pairs in args.pairs:
            runs = {name: [] for name in recipes}
            for seed in args.seeds:
                for name, options in recipes.items():  # alternating, so a slower stretch of the machine hits both
                    key = f"{domain}|{pairs}|{name}|{seed}|{recipe_key(options)}"
                    runs[name].append(cached_run(key, lambda: run_ours(folder, base, classes, seed, options, pairs)))  # noqa: B023 - called now
                    print(domain, pairs, "pairs, seed", seed, name,
                          {k: round(v, 3) for k, v in runs[name][-1].items()}, flush=True)
                if args.tutorial and pairs == TRAIN_PAIRS:
                    runs.setdefault("tutorial", []).append(cached_run(f"{domain}|baseline|{seed}|plain+flip",
                                                           lambda: run_baseline(folder, args.shared, seed)))  # noqa: B023
            report.append({"domain": domain, "pairs": pairs, "base": base, "classes": classes or "the base's",
                           "scored_images": len(find_pairs(folder / "score").pairs), "seeds": args.seeds,
                           "options": {name: options or "the tab's defaults" for name, options in recipes.items()},
                           **{name: {"iou": summarise([r["iou"] for r in results]),
                                     **{key: summarise([r[key] for r in results]) for key in SERVINGS},
                                     "seconds": summarise([r["seconds"] for r in results])}
                              for name, results in runs.items() if results}})
    print(f"\n{'domain':24} {'pairs':>5} {'recipe':9} {'fg IoU min / median / max':26} {'seconds median':>14} "
          f"{'x ours':>7}")
    for result in report:
        for name in ("ours", "full", "tutorial"):
            if name in result:
                iou, secs = result[name]["iou"], result[name]["seconds"]
                ratio = secs["median"] / result["ours"]["seconds"]["median"]
                print(f"{result['domain']:24} {result['pairs']:5} {name:9} {iou['min']:.3f} / {iou['median']:.3f} / "
                      f"{iou['max']:.3f}{'':5} {secs['median']:14.1f} {ratio:7.2f}")
    print_json(report)


if __name__ == "__main__":
    main()
