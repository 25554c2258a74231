"""Model cards: the JSON beside each model file that says what the model is (classes, colours, input size,
architecture, training recipe and data, measured metrics). The legend, the class dropdown, the About view
and evaluation all read it; nothing repeats its facts in code."""

import json
from pathlib import Path

CARD_SUFFIX = ".json"
BACKGROUND = "background"  # the class black pixels of a black/white mask belong to
MODEL_SUFFIX = ".keras"

# Distinct colours for classes without colours of their own (class 0 first).
DEFAULT_COLORS = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
]


def card_path(model_path):
    return Path(model_path).with_suffix(CARD_SUFFIX)


def markdown_path(model_path):
    return Path(model_path).with_suffix(".md")


def load_card(model_path):
    """The card of a model file (x.keras -> x.json); raises FileNotFoundError when there is none."""
    return json.loads(card_path(model_path).read_text())


def save_card(card, model_path):
    """Write the JSON card and its markdown rendering beside the model file."""
    card_path(model_path).write_text(json.dumps(card, indent=2) + "\n")
    markdown_path(model_path).write_text(card_markdown(card))


def class_colors(card):
    """(num_classes, 3) colours of a card, falling back to `DEFAULT_COLORS`."""
    colors = card.get("colors") or []
    count = len(card["classes"])
    return [tuple(colors[i]) if i < len(colors) else DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(count)]


def default_class_name(classes, declared=None):
    """The class a card shows first (probability map) and that white marks in black/white masks: the declared
    one, else the last class not called background."""
    if declared in classes:
        return declared
    return next((name for name in reversed(classes) if name.lower() != BACKGROUND), classes[-1])


def binary_mask_classes(card):
    """(black index, white index): how black/white masks read for a card's classes. A card may declare it
    (`"binary_mask": {"black": "membrane", "white": "cell"}`); otherwise black is the class called
    background and white the default class (pets: white -> pet, black -> background). None when the classes
    have no background class and declare nothing (e.g. street scenes): such masks cannot be read."""
    classes = [name.lower() for name in card["classes"]]
    declared = card.get("binary_mask")
    if declared:
        return classes.index(declared["black"].lower()), classes.index(declared["white"].lower())
    if BACKGROUND not in classes:
        return None
    white = default_class_name(card["classes"], card.get("default_class")).lower()
    if white == BACKGROUND:
        return None
    return classes.index(BACKGROUND), classes.index(white)


def describe_binary_reading(card):
    """'white -> pet, black -> background' (or why black/white masks cannot be read)."""
    mapping = binary_mask_classes(card)
    if mapping is None:
        return "black/white masks cannot be read for these classes (no background class)"
    black, white = mapping
    return f"white → {card['classes'][white]}, black → {card['classes'][black]}"


def input_wh(card):
    """The model's input size as (width, height): cards store one int for a square input, else [w, h]."""
    return size_wh(card["input_size"])


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
    """A short human-readable model card."""
    lines = [f"# {card.get('title', card['name'])}", "", card.get("description", ""), ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| classes | {', '.join(card['classes'])} |",
        f"| colours | {', '.join(str(tuple(c)) for c in class_colors(card))} |",
        f"| input size | {'x'.join(map(str, input_wh(card)))} (width x height; images are resized to it; "
        "predictions are resized back to the original resolution) |",
        f"| architecture | {card['architecture']} {json.dumps(card.get('architecture_args', {}))} |",
        f"| input normalisation | {card.get('normalisation', '')} |",
        *(["| served as | the mean of the image's and its mirror's prediction (flip test-time augmentation) |"]
          if card.get("flip_tta") else []),
        f"| date | {card.get('date', '')} |",
    ]
    training = card.get("training", {})
    if training:
        lines += ["", "## Training", ""]
        lines += [f"- **{key}**: {value}" for key, value in training.items() if key != "command"]
        if training.get("command"):
            lines += ["", "```", training["command"], "```"]
    for label, metrics in card.get("metrics", {}).items():
        lines += ["", f"## Metrics: {label}", ""]
        lines += [
            f"pixel accuracy {fmt(metrics.get('pixel_acc'))}, mean IoU {fmt(metrics.get('miou'))}, "
            f"mean Dice {fmt(metrics.get('mdice'))} on {metrics.get('images')} images",
            "",
            format_metrics_table(metrics, card["classes"]),
        ]
        if metrics.get("command"):
            lines += ["", "```", metrics["command"], "```"]
    for note in card.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"
