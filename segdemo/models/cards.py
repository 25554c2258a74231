"""Model cards: the JSON beside each model file that says what the model is (classes, colours, input size,
architecture, training recipe and data, measured metrics). One type, `ModelCard`, with load, save, validate
and markdown; train, fine-tune, evaluate and the Hub read and write it. The legend, the class dropdown, the About
view and evaluation all read it; nothing repeats its facts in code."""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from segdemo.config import EXAMPLES_DIR
from segdemo.errors import InputError
from segdemo.limits import MAX_DESCRIPTION_CHARS, MAX_TITLE_CHARS
from segdemo.models.preprocessing import BINARY_KINDS, INPUT_CHANNELS, ModelIO

CARD_SUFFIX = ".json"
BACKGROUND = "background"  # the class black pixels of a black/white mask belong to
MODEL_SUFFIX = ".keras"

# Distinct colours for classes without colours of their own (class 0 first).
DEFAULT_COLORS = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
]


class CardError(ValueError):
    """A card that does not describe a model: what is wrong with it."""


def card_path(model_path):
    return Path(model_path).with_suffix(CARD_SUFFIX)


def markdown_path(model_path):
    return Path(model_path).with_suffix(".md")


@dataclass
class ModelCard:
    """What a model is. `name`, `classes` and `input_size` (an int side for a square input, else
    [width, height]) are required; the rest is optional. Keys a card file has beyond these fields are kept in
    `extra` and written back."""

    name: str
    classes: list
    input_size: object  # int or [width, height]
    input_scale: str = "0..255"  # INPUT_SCALES: the pixel range the model was trained on
    resize: str = "stretch"  # RESIZES
    resize_filter: str = "antialias"  # RESIZE_FILTERS
    input_channels: int = 3  # INPUT_CHANNELS
    output: str = "logits"  # OUTPUT_KINDS
    output_layout: str = "spatial"  # OUTPUT_LAYOUTS
    output_size: list = None  # [width, height] of the output grid; None: the input size
    channel_order: str = "rgb"  # CHANNEL_ORDERS: "bgr" for models trained on cv2.imread images
    input_mean: list = None  # input_scale "mean-std": the dataset's mean per channel, 0..255 units
    input_std: list = None  # and its standard deviation
    threshold: float = None  # one-channel outputs: foreground above it (None: preprocessing.DEFAULT_THRESHOLDS)
    output_name: str = None  # a model with several outputs: the one served (its name, or its index as text)
    title: str = ""
    description: str = ""
    colors: list = None  # [[r, g, b]] per class; None: DEFAULT_COLORS
    default_class: str = None  # the class shown first; None: the last one not called background
    binary_mask: dict = None  # {"black": class, "white": class}: how black/white masks read
    examples: list = None  # example images shown with the model: beside the model file, else under examples/
    clip: str = None  # an example video for the Live tab, found as `examples` are
    architecture: str = ""
    architecture_args: dict = field(default_factory=dict)
    normalisation: str = ""
    ignore_index: int = None
    flip_tta: bool = False  # served as the mean of the image's and its mirror's prediction
    base_model: str = None  # the model a fine-tune started from
    license: str = None
    datasets: list = None
    date: str = ""
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # {label: evaluation result}
    notes: list = field(default_factory=list)
    export: dict = None  # an exported model's input and output (segdemo.export)
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data):
        """A card from its JSON form; raises CardError when it does not describe a model."""
        if not isinstance(data, dict):
            raise CardError(f"a card is a JSON object, not {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        missing = [key for key in ("name", "classes", "input_size") if key not in data]
        if missing:
            raise CardError(f"the card lacks {', '.join(missing)}")
        card = cls(**{k: v for k, v in data.items() if k in names},
                   extra={k: v for k, v in data.items() if k not in names})
        return card.validate()

    def to_dict(self):
        """The JSON form: fields in declaration order, leaving out empty optional ones and those at their
        default (a bundled model's card states none of the preprocessing defaults), then `extra`."""
        data = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            is_default = item.default is not dataclasses.MISSING and value == item.default
            if item.name == "extra" or (item.name not in ("name", "classes", "input_size") and
                                        (value in (None, "", {}, []) or is_default)):
                continue
            data[item.name] = value
        return {**data, **self.extra}

    @classmethod
    def load(cls, model_path):
        """The card of a model file (x.keras -> x.json); FileNotFoundError when there is none, CardError when
        it does not describe a model."""
        path = card_path(model_path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise CardError(f"{path.name} is not valid JSON ({error})") from None
        try:
            return cls.from_dict(data)
        except CardError as error:
            raise CardError(f"{path.name}: {error}") from None

    def save(self, model_path):
        """Write the JSON card and its markdown rendering beside the model file."""
        self.validate()
        card_path(model_path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        markdown_path(model_path).write_text(self.markdown())

    def validate(self):
        """Raise CardError for a card that cannot describe a model; returns the card."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise CardError("name must be a non-empty string")
        if not isinstance(self.classes, list) or not self.classes or not all(
                isinstance(name, str) and name for name in self.classes):
            raise CardError("classes must be a list of class names")
        commas = [name for name in self.classes if "," in name]
        if commas:
            raise CardError(f"class names cannot hold a comma (the API and the forms separate class names with "
                            f"commas): {', '.join(map(repr, commas))}")
        if len(set(self.classes)) != len(self.classes):
            raise CardError(f"class names must be distinct (got {self.classes})")
        for key, limit in (("title", MAX_TITLE_CHARS), ("description", MAX_DESCRIPTION_CHARS)):
            text = getattr(self, key)
            if not isinstance(text, str) or len(text) > limit:
                raise CardError(f"{key} must be text of at most {limit} characters (got "
                                f"{len(text) if isinstance(text, str) else type(text).__name__})")
        if self.title and "\n" in self.title:
            raise CardError("title must be one line")
        try:
            width, height = size_wh(self.input_size)
        except (TypeError, ValueError):
            raise CardError(f"input_size must be an int or [width, height] (got {self.input_size!r})") from None
        if width < 1 or height < 1:
            raise CardError(f"input_size must be positive (got {self.input_size!r})")
        if self.colors is not None and not all(isinstance(c, (list, tuple)) and len(c) == 3 and
                                               all(0 <= int(v) <= 255 for v in c) for c in self.colors):
            raise CardError("colors must be [r, g, b] triples of 0..255")
        if self.default_class is not None and self.default_class not in self.classes:
            raise CardError(f"default_class {self.default_class!r} is not one of the classes")
        if self.input_channels not in INPUT_CHANNELS:
            raise CardError(f"input_channels must be one of {', '.join(map(str, INPUT_CHANNELS))} "
                            f"(got {self.input_channels!r})")
        try:
            ModelIO.from_card(self)  # every preprocessing and output field, checked where they are defined
        except ValueError as error:
            raise CardError(str(error)) from None
        if self.output in BINARY_KINDS and len(self.classes) != 2:
            raise CardError(f"a single-channel output ({self.output}) has two classes, background and the named "
                            f"one; the card lists {len(self.classes)}")
        if self.binary_mask is not None:
            lowered = [name.lower() for name in self.classes]
            if not all(str(self.binary_mask.get(key, "")).lower() in lowered for key in ("black", "white")):
                raise CardError(f"binary_mask {self.binary_mask} must name two of the classes as black and white")
        return self

    def replace(self, **changes):
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def size(self):
        """The model's input size as (width, height)."""
        return size_wh(self.input_size)

    @property
    def io(self):
        """How the model takes its input and gives its output (`preprocessing.ModelIO`): the one definition
        serving, the fine-tune's training form, the exports and the descriptions read."""
        return ModelIO.from_card(self)

    @property
    def output_channels(self):
        """How many channels the model's output has for this card: 1 for a single-channel output, else one
        per class."""
        return self.io.output_channels

    @property
    def shown_class(self):
        """The class whose probability map the model shows first, and that white marks in black/white masks:
        the declared `default_class`, else the last class not called background."""
        return default_class_name(self.classes, self.default_class)

    @property
    def display_title(self):
        return self.title or self.name

    def markdown(self):
        """A short human-readable model card."""
        return card_markdown(self)


def class_colors(card):
    """(num_classes, 3) colours of a card, falling back to `DEFAULT_COLORS`."""
    colors = card.colors or []
    count = len(card.classes)
    return [tuple(colors[i]) if i < len(colors) else DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(count)]


def showcase_file(entry, model_path):
    """Where an example (or clip) a card lists lies: beside the model file (segdemo.card --examples copies them
    there, so they travel with the model), else in the repository's examples/ (the bundled cards' examples).
    None when neither holds it."""
    for folder in ((Path(model_path).parent,) if model_path else ()) + (EXAMPLES_DIR,):
        path = (folder / entry).resolve()
        if path.is_file() and path.is_relative_to(folder.resolve()):
            return path
    return None


def example_files(card, model_path):
    """The example images a card lists that exist (an empty list when it lists none)."""
    return [path for path in (showcase_file(entry, model_path) for entry in card.examples or ()) if path]


def default_class_name(classes, declared=None):
    """The class a card shows first (probability map) and that white marks in black/white masks: the declared
    one, else the last class not called background."""
    if declared in classes:
        return declared
    return next((name for name in reversed(classes) if name.lower() != BACKGROUND), classes[-1])


def binary_mask_classes(card):
    """(black index, white index): how black/white masks read for a card's classes. A card may declare it
    (`"binary_mask": {"black": "membrane", "white": "cell"}`, `segdemo.card --white`); a one-channel model's
    white is its channel's class (it learnt mask / 255); otherwise black is the class called background and
    white the default class (pets: white -> pet, black -> background). None when the classes
    have no background class and declare nothing (e.g. street scenes): such masks cannot be read."""
    classes = [name.lower() for name in card.classes]
    declared = card.binary_mask
    if declared:
        return classes.index(declared["black"].lower()), classes.index(declared["white"].lower())
    if card.output in BINARY_KINDS:  # one output channel, trained on mask / 255: white is its channel's class
        return 0, 1
    if BACKGROUND not in classes:
        return None
    white = card.shown_class.lower()
    if white == BACKGROUND:
        return None
    return classes.index(BACKGROUND), classes.index(white)


def describe_binary_reading(card):
    """'white -> pet, black -> background' (or why black/white masks cannot be read)."""
    mapping = binary_mask_classes(card)
    if mapping is None:
        return "black/white masks cannot be read for these classes (no background class)"
    black, white = mapping
    return f"white → {card.classes[white]}, black → {card.classes[black]}"


def parse_class_names(text):
    """Comma-separated class names -> a list ([] for none); InputError when a name repeats."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    if len(set(names)) != len(names):
        raise InputError(f"Class names must be distinct (comma-separated, in index order); got {', '.join(names)}")
    return names


def size_wh(size):
    """An int side or a (width, height) pair -> (width, height)."""
    if isinstance(size, (int, float)):
        return int(size), int(size)
    width, height = size
    return int(width), int(height)


def size_value(size):
    """How a card stores a size: one int when square, else [width, height]."""
    width, height = size_wh(size)
    return width if width == height else [width, height]


def format_metrics_table(metrics, class_names):
    """Markdown table of per-class IoU and Dice."""
    rows = ["| class | IoU | Dice |", "|---|---|---|"]
    for name in class_names:
        iou = metrics.get("per_class_iou", {}).get(name)
        dice = metrics.get("per_class_dice", {}).get(name)
        rows.append(f"| {name} | {fmt(iou)} | {fmt(dice)} |")
    return "\n".join(rows)


def fmt(value):
    return "n/a" if value is None else f"{value:.4f}"


def card_markdown(card):
    """A short human-readable model card (`ModelCard.markdown`)."""
    lines = [f"# {card.display_title}", "", card.description, ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| classes | {', '.join(card.classes)} |",
        f"| colours | {', '.join(str(tuple(c)) for c in class_colors(card))} |",
        f"| input size | {'x'.join(map(str, card.size))} (width x height; images are resized to it; "
        "predictions are resized back to the original resolution) |",
        f"| architecture | {card.architecture} {json.dumps(card.architecture_args)} |",
        f"| input normalisation | {card.normalisation} |",
        *(["| served as | the mean of the image's and its mirror's prediction (flip test-time augmentation) |"]
          if card.flip_tta else []),
        f"| date | {card.date} |",
    ]
    training = card.training
    if training:
        lines += ["", "## Training", ""]
        lines += [f"- **{key}**: {value}" for key, value in training.items() if key != "command"]
        if training.get("command"):
            lines += ["", "```", training["command"], "```"]
    for label, metrics in card.metrics.items():
        lines += ["", f"## Metrics: {label}", ""]
        lines += [
            f"pixel accuracy {fmt(metrics.get('pixel_acc'))}, mean IoU {fmt(metrics.get('miou'))}, "
            f"mean Dice {fmt(metrics.get('mdice'))} on {metrics.get('images')} images",
            "",
            format_metrics_table(metrics, card.classes),
        ]
        if metrics.get("command"):
            lines += ["", "```", metrics["command"], "```"]
    for note in card.notes:
        lines += ["", note]
    return "\n".join(lines) + "\n"
