"""Describe a Keras segmentation model once, so the app serves it the way its author trained it:

    python -m segdemo.card MODEL --classes NAME ... [--input-scale 0..255|0..1|-1..1|imagenet]
        [--resize stretch|letterbox] [--resize-filter antialias|bilinear] [--check DIR] [--colors R,G,B ...]
        [--title TITLE] [--name NAME] [--input-size W [H]]

It reads what the model itself tells (input size and channels, class count, output kind and resolution),
says so in plain words, and writes the card (MODEL's name with .json) beside the model. What a model cannot
tell is stated: how its pixels were scaled, how images were resized and with which filter. With `--check DIR`
(a few labelled pairs in any layout the Fine-tune tab accepts) every plausible scale, resize and filter is
scored on those pairs; the best is chosen, with a warning when it is not clearly ahead. A model whose first
layer is a Rescaling takes raw 0..255 pixels: that much it tells.
"""

import argparse
import shlex
import sys
from pathlib import Path

from segdemo.card.check import check_pairs, check_report, score_choices
from segdemo.card.infer import infer_card
from segdemo.errors import InputError
from segdemo.models import cards
from segdemo.models.preprocessing import INPUT_SCALES, RESIZE_FILTERS, RESIZES


def joined_scale(argv):
    """`--input-scale -1..1` as `--input-scale=-1..1` (argparse would read the value as an option)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for index, item in enumerate(argv[:-1]):
        if item == "--input-scale" and argv[index + 1].startswith("-"):
            return argv[:index] + [f"{item}={argv[index + 1]}"] + argv[index + 2:]
    return argv


def local_model_path(item):
    """A model to serve (`app.py --model`, SEGDEMO_MODELS) as a local path: a file as given, or a Hub
    repository `hf://owner/name` fetched (segdemo.models.hub.keras_repo_model); one in Keras's own layout gets its
    card from the segdemo.card options that follow the URI ("hf://owner/name --classes a b --input-scale 0..1")."""
    from segdemo.models.hub import HF_PREFIX, keras_repo_model

    source, *card_options = shlex.split(item)
    if not source.startswith(HF_PREFIX):
        return str(Path(source).absolute())
    path, has_card = keras_repo_model(source)
    if not has_card:
        if not card_options:
            raise InputError(f"{source} has no segdemo card: give segdemo.card's options after it, e.g. "
                             f"--model '{source} --classes background road --input-scale 0..1'")
        main([str(path), "--name", source.rsplit("/", 1)[-1], *card_options])
    return str(path)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .keras file, a legacy .h5 whole model, or a SavedModel folder")
    parser.add_argument("--classes", nargs="+", default=None, help="class names in output order")
    parser.add_argument("--input-scale", choices=INPUT_SCALES, default=None)
    parser.add_argument("--resize", choices=RESIZES, default=None)
    parser.add_argument("--resize-filter", choices=RESIZE_FILTERS, default=None,
                        help="antialias: PIL's bilinear (= tf.image.resize(..., antialias=True)); "
                             "bilinear: tf.image.resize's default")
    parser.add_argument("--check", metavar="DIR", default=None, help="labelled pairs to score the choices on")
    parser.add_argument("--colors", nargs="+", default=None, help="R,G,B per class")
    parser.add_argument("--title", default=None)
    parser.add_argument("--name", default=None, help="the name the app serves it under (default: the file's)")
    parser.add_argument("--input-size", nargs="+", type=int, default=None,
                        help="W [H]: for a model that takes any size")
    return parser.parse_args(joined_scale(argv))


def main(argv=None):
    from segdemo.models.files import load_model_file

    args = parse_args(argv)
    size = None if args.input_size is None else (args.input_size * 2)[:2]
    colors = [[int(v) for v in color.split(",")] for color in args.colors] if args.colors else None
    try:
        model = load_model_file(args.model)
        inferred = infer_card(model, args.model, args.classes, args.input_scale, args.resize, args.resize_filter,
                              colors, args.title, args.name, size)
        card = inferred.card
        for line in inferred.lines:
            print(line)
        if args.check:
            lines, best, warnings = check_report(score_choices(model, card, check_pairs(args.check, card),
                                                               inferred.known))
            print(f"--check on {args.check}:", *lines, sep="\n")
            card = card.replace(**best)
            print("chose " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in best.items()))
            inferred.warnings = [w for w in inferred.warnings if "not stated" not in w] + warnings
        for warning in inferred.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        path = cards.card_path(str(args.model).rstrip("/"))
        card.save(str(args.model).rstrip("/"))
        print("served as:", *card.io.describe(), sep="\n  ")
    except (InputError, cards.CardError) as error:
        raise SystemExit(f"segdemo.card: {error}") from None
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
