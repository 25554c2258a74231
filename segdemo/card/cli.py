"""Describe a Keras segmentation model once, so the app serves it the way its author trained it:

    python -m segdemo.card MODEL --classes NAME ... [--input-scale 0..255|0..1|-1..1|imagenet|per-image]
        [--input-mean R,G,B --input-std R,G,B] [--channel-order rgb|bgr] [--resize stretch|letterbox]
        [--resize-filter antialias|bilinear] [--threshold T] [--white CLASS] [--output NAME|INDEX]
        [--replace-layer NAME=OP ...] [--check DIR] [--name NAME] [--input-size W [H]]
        [--title TITLE] [--description FILE.md] [--main-class NAME] [--colors R,G,B ...] [--examples DIR]
        [--clip VIDEO]

It reads what the model itself tells (input size and channels, class count, output kind and resolution),
says so in plain words, and writes the card (MODEL's name with .json) beside the model. What a model cannot
tell is stated: how its pixels were scaled (a range, each image standardised, or the dataset's mean and std),
their channel order, how images were resized and with which filter. With `--check DIR` (a few labelled pairs
in any layout the Fine-tune tab accepts) every plausible choice is scored on those pairs; the best is chosen,
with a warning when it is not clearly ahead. A model whose first layer is a Rescaling takes raw 0..255
pixels: that much it tells. The showcase options make the demo the model's own (`app.py --model MODEL --only`):
its title and description on the page, its main class (what the probability map, the cut-out and black/white
masks mean), its colours, example images and a clip for the Live tab, copied beside the model
(`MODEL_examples/`) so they travel with it. A model with Lambda layers is listed with what can be read of
each (no code runs) and served after `--replace-layer` swaps each for built-in layers (segdemo/card/lambdas.py).
"""

import argparse
import shlex
import sys
from pathlib import Path

from segdemo.card.check import CHECK_MARGIN, check_card, check_pairs
from segdemo.card.infer import STATS_UNITS, infer_card, parse_statistics
from segdemo.card.lambdas import code_layers, code_layers_refused
from segdemo.card.showcase import check_title, copy_showcase_files, parse_colors, read_description
from segdemo.errors import InputError
from segdemo.models import cards
from segdemo.models.layer_operations import OPERATIONS_HELP
from segdemo.models.preprocessing import CHANNEL_ORDERS, INPUT_SCALES, MEAN_STD, RESIZE_FILTERS, RESIZES


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
    parser.add_argument("--input-scale", choices=[scale for scale in INPUT_SCALES if scale != MEAN_STD], default=None,
                        help="per-image: each image standardised (Keras's samplewise_center + "
                             "samplewise_std_normalization)")
    parser.add_argument("--input-mean", default=None, help="R,G,B: the dataset mean the model was trained with "
                        "((x - mean) / std; featurewise_center or numbers in the training script)")
    parser.add_argument("--input-std", default=None, help="R,G,B: the dataset's standard deviation")
    parser.add_argument("--stats-units", choices=STATS_UNITS, default=None,
                        help="the units of --input-mean/--input-std (default: 0..1 when every value is <= 1)")
    parser.add_argument("--channel-order", choices=list(CHANNEL_ORDERS), default=None,
                        help="bgr: trained on images read with cv2.imread")
    parser.add_argument("--threshold", type=float, default=None,
                        help="one output channel: foreground above this value (sigmoid 0.5, linear/ReLU 0.5)")
    parser.add_argument("--white", default=None, metavar="CLASS",
                        help="the class white marks in black/white masks (default: a one-channel model's class)")
    parser.add_argument("--output", default=None, metavar="NAME|INDEX", help="the output served, of several")
    parser.add_argument("--replace-layer", action="append", default=[], metavar="NAME=OP",
                        help=f"swap a Lambda layer for built-in ones (OP: {OPERATIONS_HELP}); repeatable")
    parser.add_argument("--resize", choices=RESIZES, default=None)
    parser.add_argument("--resize-filter", choices=RESIZE_FILTERS, default=None,
                        help="antialias: PIL's bilinear (= tf.image.resize(..., antialias=True)); "
                             "bilinear: tf.image.resize's default")
    parser.add_argument("--check", metavar="DIR", default=None, help="labelled pairs to score the choices on")
    parser.add_argument("--colors", nargs="+", default=None, help="R,G,B per class, in class order")
    parser.add_argument("--title", default=None, help="the demo's title (the page's heading and the model menu)")
    parser.add_argument("--description", default=None, metavar="FILE.md",
                        help="what the demo says under its title: a Markdown file, or the text itself")
    parser.add_argument("--main-class", default=None, metavar="NAME",
                        help="the class the probability map, the cut-out and black/white masks are about "
                             "(default: the last class not called background)")
    parser.add_argument("--examples", default=None, metavar="DIR", help="a folder of example images, copied "
                        "beside the model")
    parser.add_argument("--clip", default=None, metavar="VIDEO", help="an example video for the Live tab, copied "
                        "beside the model")
    parser.add_argument("--name", default=None, help="the name the app serves it under (default: the file's)")
    parser.add_argument("--input-size", nargs="+", type=int, default=None,
                        help="W [H]: for a model that takes any size")
    return parser.parse_args(joined_scale(argv))


def stated_options(args):
    """The card fields the command line states (see `infer.infer_card`)."""
    stated = {"input_scale": args.input_scale, "resize": args.resize, "resize_filter": args.resize_filter,
              "channel_order": args.channel_order, "threshold": args.threshold, "white": args.white,
              "output": args.output}
    for option in ("input_mean", "input_std"):
        text = getattr(args, option)
        if text is not None:
            stated[option], said = parse_statistics(text, args.stats_units, option.replace("_", "-"))
            if said:
                print(said)
    return stated


def file_notes(path):
    """What the card says of an old file: the Keras that wrote it, what was upgraded, what was ignored."""
    from segdemo.models.files import hdf5_model_config, sniff_format
    from segdemo.models.legacy import describe_file, upgrade_config

    if not Path(path).is_file() or sniff_format(path) != "hdf5":
        return []
    return describe_file(path, upgrade_config(hdf5_model_config(path))[1])


def choose_first_replacement(args, facts, stated, size):
    """--check with an unreplaced first-layer Lambda: each candidate (identity, x / 255, x / 127.5 - 1, the
    suggestion) swapped in, scored like input scales on the pairs; returns (the chosen operation, report lines)."""
    import tempfile

    from segdemo.card.check import label_cross_entropy
    from segdemo.card.lambdas import replace_layers, replacement_candidates
    from segdemo.serving.segmenter import Segmenter

    rows = []
    with tempfile.TemporaryDirectory(prefix="segdemo_candidates_") as folder:
        for label, operation in replacement_candidates(facts).items():
            model, path = replace_layers(args.model, [f"{facts.name}={operation}"], Path(folder) / f"{len(rows)}.keras")
            card = infer_card(model, path, args.classes, {**stated, "input_scale": "0..255"}, input_size=size).card
            pairs = check_pairs(args.check, card)
            rows.append((label_cross_entropy(Segmenter(model, card, tta=False, freeze=False), pairs), label, operation))
    rows.sort()
    lines = [f"--check: the first-layer {facts.class_name} {facts.name!r} replaced by each candidate "
             "(cross-entropy of the pairs' labels, lower is better):"]
    lines += [f"{nll:13.4f}  {label} ({operation})" for nll, label, operation in rows]
    if len(rows) > 1 and rows[1][0] - rows[0][0] < CHECK_MARGIN:
        lines.append(f"warning: {rows[0][1]} is not clearly ahead of {rows[1][1]}: state it with --replace-layer")
    return rows[0][2], lines


def replaced_model(args, stated, size):
    """(the model to describe, its path): the file as it is, or with its Lambda layers swapped for built-in ones
    (--replace-layer, or --check for a first-layer one) in a new file. A Lambda left unreplaced ends the command
    with what the file says of each and the option that replaces it."""
    from segdemo.card.lambdas import replace_layers
    from segdemo.models.files import load_model_file

    found = code_layers(args.model)
    named = {item.partition("=")[0] for item in args.replace_layer}
    open_layers = [facts for facts in found if facts.name not in named]
    items = list(args.replace_layer)
    if open_layers:
        for facts in open_layers:
            print(*facts.lines(), sep="\n")
        if args.check and len(open_layers) == 1 and open_layers[0].first:
            operation, lines = choose_first_replacement(args, open_layers[0], stated, size)
            print(*lines, sep="\n")
            items.append(f"{open_layers[0].name}={operation}")
        else:
            raise InputError(code_layers_refused(args.model, open_layers))
    if not items:
        return load_model_file(args.model), args.model
    model, path = replace_layers(args.model, items)
    print(f"replaced {', '.join(items)} with built-in layers: wrote {path} (it carries no code; serve this file)")
    return model, path


def stated_showcase(args):
    """The title, description and colours the options state, checked before the model is loaded."""
    fields = {"title": check_title(args.title) if args.title is not None else None,
              "description": read_description(args.description) if args.description is not None else None,
              "colors": parse_colors(args.colors, args.classes) if args.colors else None}
    return {key: value for key, value in fields.items() if value is not None}


def showcase_fields(args, showcase, classes):
    """`stated_showcase`'s fields and the main class, checked against the card's classes (inferred or given)."""
    if "colors" in showcase and len(showcase["colors"]) != len(classes):
        parse_colors(args.colors, classes)  # raises with the count and the classes
    if args.main_class is not None and args.main_class not in classes:
        raise InputError(f"--main-class {args.main_class!r} is not one of the classes ({', '.join(classes)})")
    return {**showcase, **({"default_class": args.main_class} if args.main_class is not None else {})}


def main(argv=None):
    args = parse_args(argv)
    size = None if args.input_size is None else (args.input_size * 2)[:2]
    try:
        showcase = stated_showcase(args)
        stated = stated_options(args)
        model, model_path = replaced_model(args, stated, size)
        inferred = infer_card(model, model_path, args.classes, stated, None, None, args.name or (
            Path(str(args.model)).stem if str(model_path) != str(args.model) else None), size)
        card = inferred.card
        notes = file_notes(args.model)
        card.notes = [*card.notes, *notes]
        for line in [*inferred.lines, *notes]:
            print(line)
        if args.check:
            checked = check_card(model, card, check_pairs(args.check, card), inferred.known, inferred.warnings)
            print(f"--check on {args.check}:", *checked.lines, sep="\n")
            card, inferred.warnings = checked.card, checked.warnings
            print("chose " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in checked.best.items()))
        for warning in inferred.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        card = card.replace(**showcase_fields(args, showcase, card.classes)).validate()
        examples, clip = copy_showcase_files(model_path, args.examples, args.clip)
        card = card.replace(examples=examples, clip=clip)
        path = cards.card_path(str(model_path).rstrip("/"))
        card.save(str(model_path).rstrip("/"))
        print("served as:", *card.io.describe(), sep="\n  ")
    except (InputError, cards.CardError) as error:
        raise SystemExit(f"segdemo.card: {error}") from None
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
