"""A card inferred from what a model tells (input size and channels, classes, output kind and grid)."""

from dataclasses import dataclass
from pathlib import Path

from segdemo.errors import InputError
from segdemo.models import cards
from segdemo.models.cards import ModelCard
from segdemo.models.preprocessing import BINARY_KINDS

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
    from segdemo.models.facts import input_rescaling, inspect_model

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
