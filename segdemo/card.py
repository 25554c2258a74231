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
import itertools
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from segdemo import cards
from segdemo.cards import BINARY_KINDS, INPUT_SCALES, RESIZE_FILTERS, RESIZES, ModelCard
from segdemo.data import InputError

# The check ranks choices by the cross-entropy of the pairs' labels under the model's probabilities: it tells
# scales apart where the mean IoU of a weak model barely moves (bench/own_models.py: -1..1 against imagenet,
# 0.0001 mean IoU apart, 0.14 nats). An option is decided when its best value leads every other by this much.
CHECK_MARGIN = 0.01  # nats per labelled pixel
CHECK_PAIRS_MAX = 50  # pairs scored per combination (the first ones by name)
DEFAULT_SIDE = 256  # a model that takes any input size is served at this side unless --input-size says


@dataclass
class Inferred:
    """What a model tells, and the card it leads to with the user's statements."""

    facts: object  # model_inspect.ModelFacts
    card: ModelCard
    lines: list  # plain words: inferred, stated, assumed
    warnings: list
    known: dict  # the preprocessing options stated or inferred (the check leaves them as they are)


def class_names(given, facts):
    """The card's classes: as given (a single-channel output takes one name: background is added), else
    class_0 ... with a warning."""
    if facts.output_kind in BINARY_KINDS:
        if given and len(given) == 1:
            return [cards.BACKGROUND, given[0]], []
        if given and len(given) == 2:
            return list(given), []
        if given:
            raise InputError(f"the model has one output channel (two classes: background and one named class); "
                             f"{len(given)} names given")
        return [cards.BACKGROUND, "class_1"], ["no --classes: the classes are called background and class_1"]
    if given:
        if len(given) != facts.num_classes:
            raise InputError(f"the model's output has {facts.num_classes} classes, but {len(given)} names were given "
                             f"({', '.join(given)}); name them in output order")
        return list(given), []
    names = [f"class_{index}" for index in range(facts.num_classes)]
    return names, [f"no --classes: the classes are called {', '.join(names)}; name them with --classes"]


def infer_card(model, model_path, classes=None, input_scale=None, resize=None, resize_filter=None, colors=None,
               title=None, name=None, input_size=None):
    """The card a model and the user's statements make (None: not stated), with the plain-word report."""
    from segdemo.model_inspect import input_rescaling, inspect_model

    facts = inspect_model(model)
    lines = [f"inferred {line}" for line in facts.describe()]
    warnings = []
    names, more = class_names(classes, facts)
    warnings += more
    size = tuple(input_size) if input_size else facts.input_size
    if size is None:
        size = (DEFAULT_SIDE, DEFAULT_SIDE)
        warnings.append(f"the model takes any input size: served at {DEFAULT_SIDE}x{DEFAULT_SIDE} (say --input-size)")
    elif facts.input_size and tuple(size) != tuple(facts.input_size):
        raise InputError(f"the model's input is fixed at {facts.input_size[0]}x{facts.input_size[1]}, not "
                         f"{size[0]}x{size[1]}")
    rescaling = input_rescaling(model)
    if input_scale is None and rescaling is not None:
        input_scale = "0..255"
        lines.append(f"inferred input scale 0..255: the model rescales its pixels itself (x * {rescaling[0]:g} + "
                     f"{rescaling[1]:g})")
    output_size = None
    if facts.output_size and facts.input_size and tuple(facts.output_size) != tuple(facts.input_size):
        output_size = list(facts.output_size)
    card = ModelCard(
        name=name or Path(str(model_path).rstrip("/")).stem, title=title or "", classes=names,
        input_size=cards.size_value(size), input_scale=input_scale or "0..255", resize=resize or "stretch",
        resize_filter=resize_filter or "antialias", input_channels=facts.input_channels, output=facts.output_kind,
        output_layout=facts.output_layout, output_size=output_size, colors=colors,
        description=f"A {facts.output_kind} segmentation model described by segdemo.card.")
    for what, value, default in (("input scale", input_scale, "0..255"), ("resize", resize, "stretch"),
                                 ("resize filter", resize_filter, "antialias")):
        if value is None:
            warnings.append(f"{what} not stated: {default} assumed (say --{what.replace(' ', '-')}, or let --check "
                            "score the choices)")
        else:
            lines.append(f"stated {what}: {value}")
    known = {"input_scale": input_scale, "resize": resize, "resize_filter": resize_filter}
    return Inferred(facts, card.validate(), lines, warnings, {key: value for key, value in known.items() if value})


def check_pairs(folder, card):
    """(image, mask) pairs from `folder` read for `card`'s classes (the Fine-tune tab's layouts and masks)."""
    from segdemo.uploads import read_pairs_source, validate_and_load

    pairs, _ = read_pairs_source(folder)
    _, loaded = validate_and_load(sorted(pairs, key=lambda pair: pair.name)[:CHECK_PAIRS_MAX], len(card.classes),
                                  cards.class_colors(card), cards.binary_mask_classes(card))
    if not loaded:
        raise InputError(f"{folder}: no labelled pairs found (images/ + masks/, or x.jpg with x.png)")
    return [(image, mask) for _, image, mask in loaded]


OPTIONS = {"input_scale": INPUT_SCALES, "resize": RESIZES, "resize_filter": RESIZE_FILTERS}


def label_cross_entropy(segmenter, pairs):
    """Mean -log p(label) over the labelled pixels of `pairs`, on the model's grid (masks resized by nearest)."""
    import numpy as np

    from segdemo.data import IGNORE_INDEX, resize_mask

    total, count = 0.0, 0
    for image, mask in pairs:
        probs = segmenter.predict(image).probs
        labels = resize_mask(mask, (probs.shape[1], probs.shape[0]))
        known = labels != IGNORE_INDEX
        picked = np.take_along_axis(probs, np.minimum(labels, probs.shape[-1] - 1)[..., None].astype(np.int64), -1)
        total += float(-np.log(picked[..., 0][known] + 1e-7).sum())
        count += int(known.sum())
    return total / max(count, 1)


def score_choices(model, card, pairs, fixed):
    """[(cross-entropy, mean IoU, {input_scale, resize, resize_filter})] for every combination the user left
    open (`fixed` holds what was stated or inferred), best (lowest cross-entropy) first."""
    from segdemo.evaluate import evaluate_arrays
    from segdemo.segmenter import Segmenter

    axes = {key: [fixed[key]] if fixed.get(key) else list(values) for key, values in OPTIONS.items()}
    rows = []
    for values in itertools.product(*axes.values()):
        choice = dict(zip(axes, values))
        segmenter = Segmenter(model, card.replace(**choice), tta=False, freeze=False)
        rows.append((label_cross_entropy(segmenter, pairs), evaluate_arrays(segmenter, pairs)["miou"] or 0.0,
                     choice))
    return sorted(rows, key=lambda row: row[0])


def check_report(rows):
    """(the table's lines, the chosen preprocessing, warnings): each option left open is decided when its best
    value leads the best row with another value by CHECK_MARGIN; else a warning names it."""
    lines = ["cross-entropy  mean IoU  input scale  resize     filter"]
    lines += [f"{nll:13.4f}  {miou:8.4f}  {c['input_scale']:<11}  {c['resize']:<9}  {c['resize_filter']}"
              for nll, miou, c in rows]
    best_nll, _, best = rows[0]
    warnings = []
    for option in OPTIONS:
        others = [nll for nll, _, choice in rows if choice[option] != best[option]]
        if others and min(others) - best_nll < CHECK_MARGIN:
            warnings.append(f"{option.replace('_', ' ')} {best[option]} is not clearly ahead (by "
                            f"{min(others) - best_nll:.4f} nats, < {CHECK_MARGIN}): state what the model was trained "
                            f"with (--{option.replace('_', '-')}) or check on more pairs")
    return lines, best, warnings


def joined_scale(argv):
    """`--input-scale -1..1` as `--input-scale=-1..1` (argparse would read the value as an option)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for index, item in enumerate(argv[:-1]):
        if item == "--input-scale" and argv[index + 1].startswith("-"):
            return argv[:index] + [f"{item}={argv[index + 1]}"] + argv[index + 2:]
    return argv


def local_model_path(item):
    """A model to serve (`app.py --model`, SEGDEMO_MODELS) as a local path: a file as given, or a Hub
    repository `hf://owner/name` fetched (segdemo.hub.keras_repo_model); one in Keras's own layout gets its
    card from the segdemo.card options that follow the URI ("hf://owner/name --classes a b --input-scale 0..1")."""
    from segdemo.hub import HF_PREFIX, keras_repo_model

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
    from segdemo.model_files import load_model_file

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
    except (InputError, cards.CardError) as error:
        raise SystemExit(f"segdemo.card: {error}") from None
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
