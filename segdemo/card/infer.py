"""A card inferred from what a model tells (input size and channels, classes, output kind and grid)."""

from dataclasses import dataclass
from pathlib import Path

from segdemo.errors import InputError
from segdemo.models import cards
from segdemo.models.cards import ModelCard
from segdemo.models.preprocessing import BINARY_KINDS, MEAN_STD, OPEN_OPTIONS

STATS_UNITS = ("0..255", "0..1")  # the units dataset statistics may be given in
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


STATED_OPTIONS = ("input_scale", "resize", "resize_filter", "channel_order")  # the OPEN_OPTIONS a user states


def infer_card(model, model_path, classes=None, stated=None, colors=None, title=None, name=None, input_size=None):
    """The card a model and the user's statements make, with the plain-word report. `stated`: the card fields
    the user gave (None or absent: not stated): the open preprocessing options (`preprocessing.OPEN_OPTIONS`),
    `input_mean`/`input_std` (0..255 units), `threshold`, `white` (the class white marks in black/white masks)
    and `output` (which output of a model with several)."""
    from segdemo.models.facts import input_rescaling, inspect_model, single_output

    stated = {key: value for key, value in (stated or {}).items() if value is not None and value != ""}
    model, output_name = single_output(model, stated.get("output"))
    facts = inspect_model(model)
    lines = [f"inferred {line}" for line in facts.describe()]
    if output_name:
        lines.append(f"stated output: {output_name} (of the model's {len(model.outputs)} served)")
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
    known = {key: stated[key] for key in STATED_OPTIONS if key in stated}
    if "input_mean" in stated or "input_std" in stated:
        if not ("input_mean" in stated and "input_std" in stated):
            raise InputError("give both --input-mean and --input-std (the dataset's statistics per channel)")
        known["input_scale"] = MEAN_STD
    rescaling = input_rescaling(model)
    if "input_scale" not in known and rescaling is not None:
        known["input_scale"] = "0..255"
        lines.append(f"inferred input scale 0..255: the model rescales its pixels itself (x * {rescaling[0]:g} + "
                     f"{rescaling[1]:g})")
    if facts.input_channels == 1 and known.get("channel_order", "rgb") != "rgb":
        raise InputError("the model takes grayscale images: a channel order does not apply")
    output_size = None
    if facts.output_size and facts.input_size and tuple(facts.output_size) != tuple(facts.input_size):
        output_size = list(facts.output_size)
    output = facts.output_kind
    if output == "logits_binary" and stated.get("threshold") is not None and facts.activation in ("linear", None):
        output = "linear_binary"  # a threshold on one linear channel: a regression-style mask (e.g. MSE on mask/255)
    defaults = {option: default for option, (_, default) in OPEN_OPTIONS.items()}
    card = ModelCard(
        name=name or Path(str(model_path).rstrip("/")).stem, title=title or "", classes=names,
        input_size=cards.size_value(size), input_channels=facts.input_channels, output=output,
        output_layout=facts.output_layout, output_size=output_size, colors=colors, output_name=output_name,
        input_mean=stated.get("input_mean"), input_std=stated.get("input_std"), threshold=stated.get("threshold"),
        binary_mask=white_reading(names, stated.get("white")), **{**defaults, **known},
        description=f"A {output} segmentation model described by segdemo.card.")
    for option in STATED_OPTIONS:
        what = option.replace("_", " ")
        if option == "channel_order" and facts.input_channels == 1:
            continue
        if option in known:
            lines.append(f"stated {what}: {known[option]}")
        else:
            warnings.append(f"{what} not stated: {defaults[option]} assumed (say --{option.replace('_', '-')}, or let "
                            "--check score the choices)")
    if output != facts.output_kind or stated.get("threshold") is not None:
        lines.append(f"stated threshold: {card.io.output_words(served=True)}")
    return Inferred(facts, card.validate(), lines, warnings, known)


def white_reading(classes, white):
    """The card's `binary_mask` for `--white CLASS` (None: not stated); InputError for a class it lacks."""
    if white is None:
        return None
    lowered = [name.lower() for name in classes]
    if white.lower() not in lowered or len(classes) != 2:
        raise InputError(f"--white {white}: black/white masks read for a model with two classes, one of "
                         f"{', '.join(classes)}")
    other = classes[1 - lowered.index(white.lower())]
    return {"black": other, "white": classes[lowered.index(white.lower())]}


def parse_statistics(text, units=None, what="input-mean"):
    """'0.485,0.456,0.406' -> ([R, G, B] in 0..255 units, a line saying which units were assumed or "").
    `units`: those of the text (STATS_UNITS); None: 0..1 when every value is at most 1."""
    try:
        values = [float(value) for value in str(text).replace(" ", "").split(",") if value]
    except ValueError:
        values = []
    if len(values) not in (1, 3):
        raise InputError(f"{what} {text!r}: give one or three numbers separated by commas (R,G,B)")
    said = ""
    if units is None:
        units = "0..1" if max(abs(value) for value in values) <= 1 else "0..255"
        said = f"{what} read in {units} units (say the units to change it)"
    return [value * 255.0 if units == "0..1" else value for value in values], said
