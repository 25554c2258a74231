"""Evaluate a model on a dataset at each image's original resolution.

    python -m segdemo.evaluate --model pets --data ../shared/datasets/oxford-pets-subset --split test

Prints one JSON object as the last line of stdout: pixel_acc, miou, mdice, per-class IoU and Dice,
images, seconds. Predictions go through the same `Segmenter` the app serves with.
"""

import argparse
import json
import shlex
import sys

from segdemo.data.pairs import find_pairs
from segdemo.training.evaluation import evaluate


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
    from segdemo.models import cards
    from segdemo.serving.registry import get_segmenter, resolve_model_path

    if args.precision == "bf16":
        from segdemo.serving.runtime import enable_bf16_inference

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
