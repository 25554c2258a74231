"""`segdemo.card --check`: score every open preprocessing choice of a card on labelled pairs and keep the best."""

import itertools
from typing import NamedTuple

from segdemo.errors import InputError
from segdemo.models import cards
from segdemo.models.preprocessing import OPEN_OPTIONS

# The check ranks choices by the cross-entropy of the pairs' labels under the model's probabilities: it tells
# scales apart where the mean IoU of a weak model barely moves (bench/own_models.py: -1..1 against imagenet,
# 0.0001 mean IoU apart, 0.14 nats). An option is decided when its best value leads every other by this much.
CHECK_MARGIN = 0.01  # nats per labelled pixel


CHECK_PAIRS_MAX = 50  # pairs scored per combination (the first ones by name)


def check_pairs(folder, card):
    """(image, mask) pairs from `folder` read for `card`'s classes (the Fine-tune tab's layouts and masks)."""
    from segdemo.data.uploads import read_pairs_source, validate_and_load

    pairs, _ = read_pairs_source(folder)
    _, loaded = validate_and_load(sorted(pairs, key=lambda pair: pair.name)[:CHECK_PAIRS_MAX], len(card.classes),
                                  cards.class_colors(card), cards.binary_mask_classes(card))
    if not loaded:
        raise InputError(f"{folder}: no labelled pairs found (images/ + masks/, or x.jpg with x.png)")
    return [(image, mask) for _, image, mask in loaded]


OPTIONS = {option: choices for option, (choices, _) in OPEN_OPTIONS.items()}  # what --check tries


def label_cross_entropy(segmenter, pairs):
    """Mean -log p(label) over the labelled pixels of `pairs`, on the model's grid (masks resized by nearest)."""
    import numpy as np

    from segdemo.data.images import resize_mask
    from segdemo.data.masks import IGNORE_INDEX

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
    """[(cross-entropy, mean IoU, {option: value})] for every combination of OPTIONS the user left open (`fixed`
    holds what was stated or inferred; a grayscale model has no channel order), best (lowest cross-entropy)
    first."""
    from segdemo.serving.segmenter import Segmenter
    from segdemo.training.evaluation import evaluate_arrays

    fixed = {**({"channel_order": "rgb"} if card.input_channels == 1 else {}), **fixed}
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
    widths = {option: max(len(option), *(len(str(choice[option])) for _, _, choice in rows)) for option in OPTIONS}
    lines = ["cross-entropy  mean IoU  " + "  ".join(f"{option.replace('_', ' '):<{widths[option]}}"
                                                     for option in OPTIONS).rstrip()]
    lines += [f"{nll:13.4f}  {miou:8.4f}  " + "  ".join(f"{str(c[option]):<{widths[option]}}"
                                                       for option in OPTIONS).rstrip() for nll, miou, c in rows]
    best_nll, _, best = rows[0]
    warnings = []
    for option in OPTIONS:
        others = [nll for nll, _, choice in rows if choice[option] != best[option]]
        if others and min(others) - best_nll < CHECK_MARGIN:
            warnings.append(f"{option.replace('_', ' ')} {best[option]} is not clearly ahead (by "
                            f"{min(others) - best_nll:.4f} nats, < {CHECK_MARGIN}): state what the model was trained "
                            f"with (--{option.replace('_', '-')}) or check on more pairs")
    return lines, best, warnings


class CheckedCard(NamedTuple):
    """What `check_card` decided: the table's lines, the chosen preprocessing, the card with it, the warnings."""

    lines: list
    best: dict
    card: object  # cards.ModelCard
    warnings: list


def check_card(model, card, pairs, fixed, warnings):
    """Score `card`'s open choices (`fixed`: what was stated or inferred) on `pairs` and keep the best: the
    check's warnings replace `warnings`' "not stated" ones, which the check has now decided."""
    lines, best, check_warnings = check_report(score_choices(model, card, pairs, fixed))
    return CheckedCard(lines, best, card.replace(**best),
                       [warning for warning in warnings if "not stated" not in warning] + check_warnings)
