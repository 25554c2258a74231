"""Evaluate a model on a dataset at each image's original resolution.

    python -m segdemo.evaluate --model pets --data ../shared/datasets/oxford-pets-subset --split test

Prints one JSON object as the last line of stdout: pixel_acc, miou, mdice, per-class IoU and Dice,
images, seconds. Predictions go through the same `Segmenter` the app serves with.
"""

import argparse
import json
import shlex
import sys
import time

import numpy as np

from segdemo.cards import binary_mask_classes
from segdemo.data import find_pairs, load_pair
from segdemo.metrics import confusion_matrix, metrics_from_confusion


def evaluate(segmenter, pairs):
    """Metrics of `segmenter` over `pairs` on disk (read one at a time; black/white masks read as the model's
    card says, as uploads for a fine-tune are)."""
    num_classes = len(segmenter.classes)
    binary = binary_mask_classes(segmenter.card)
    return evaluate_arrays(segmenter, (load_pair(pair, num_classes, binary=binary) for pair in pairs))


def evaluate_arrays(segmenter, images_and_masks, classes=None, label_map=None):
    """Metrics over (HxWx3 image, HxW class-index mask) items at their own resolution, from one confusion
    matrix accumulated over all pixels. `label_map` (an index array) maps the model's classes to `classes`
    (another class set, e.g. a base model scored on a fine-tune's classes)."""
    started = time.perf_counter()
    classes = classes or segmenter.classes
    matrix = np.zeros((len(classes), len(classes)), np.int64)
    count = 0
    for image, mask in images_and_masks:
        labels = segmenter.predict(image).labels
        matrix += confusion_matrix(mask, labels if label_map is None else label_map[labels], len(classes))
        count += 1
    result = metrics_from_confusion(matrix, classes)
    result["pixel_error"] = round(1.0 - result["pixel_acc"], 4) if result["pixel_acc"] is not None else None
    result.update(images=count, seconds=round(time.perf_counter() - started, 1))
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="bundled model name or path to a .keras file")
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--split", default=None, help="split name, e.g. test")
    parser.add_argument("--tta", action="store_true",
                        help="average with the mirrored image's prediction (a fine-tune's card may already say so)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N pairs")
    parser.add_argument("--names", nargs="*", default=None, help="evaluate only the pairs with these names")
    parser.add_argument("--precision", default="float32", choices=["float32", "bf16"],
                        help="bf16: the oneDNN bfloat16 rewrite the app serves with on CPUs that support it")
    parser.add_argument("--update-card", action="store_true", help="store the result in the model's card")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from segdemo import cards
    from segdemo.registry import get_segmenter, resolve_model_path

    if args.precision == "bf16":
        from segdemo.runtime import enable_bf16_inference

        enable_bf16_inference(force=True)
    segmenter = get_segmenter(args.model, tta=args.tta or None)
    pairs = find_pairs(args.data, args.split).pairs
    if args.names is not None:
        pairs = [pair for pair in pairs if pair.name in set(args.names)]
    if args.limit:
        pairs = pairs[: args.limit]
    result = {"model": args.model, "data": args.data, "split": args.split, "tta": segmenter.tta,
              "precision": args.precision}
    result.update(evaluate(segmenter, pairs))
    if args.update_card:
        path = resolve_model_path(args.model)
        card = cards.ModelCard.load(path)
        label = args.split or "all"
        if args.names is not None:
            label += f" pairs {' '.join(args.names)}"
        label += f"{' (flip TTA)' if segmenter.tta else ''}{' (bf16)' if args.precision == 'bf16' else ''}"
        command = "python -m segdemo.evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
        card.metrics[label] = {**result, "command": command.replace(" --update-card", "")}
        card.save(path)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
