"""What the Fine-tune tab, the teach loop and their API ask of the app, below the UI: the card an upload's masks
are read with (the base model's classes, or new ones the user names), reading an upload (its good pairs join the
session's training set, replacing an earlier upload's), starting a fine-tune on it, pushing the session's
fine-tuned model to the Hub, and adding corrected or uploaded pairs to the training set one by one. Each returns
a typed result or raises InputError; the tabs only lay out and format."""

import time
from dataclasses import dataclass
from pathlib import Path

from segdemo.app.jobs import join_training_set, start_finetune
from segdemo.app.sessions import FINETUNED_MODELS, base_for, session_folder, training_set_of
from segdemo.config import AppConfig
from segdemo.data.pairs import Pair, read_pair
from segdemo.data.uploads import read_upload
from segdemo.errors import InputError
from segdemo.finetune.options import BINARY_CLASSES, FinetuneOptions, target_card
from segdemo.models.cards import binary_mask_classes, class_colors, parse_class_names
from segdemo.models.hub import build_push_folder, check_repo_id, push_folder
from segdemo.serving.mask_editor import editor_to_labels
from segdemo.serving.registry import current_config

KEEP_CLASSES = "keep the base model's classes"
NEW_CLASSES = "define new classes"


def finetune_card(class_mode, class_names, base_card):
    """The card a fine-tune's masks are read with (classes, colours, black/white reading): the base model's,
    or the user's comma-separated new class names (none given: the two-class default)."""
    if class_mode != NEW_CLASSES:
        return base_card
    needed = "New classes: give at least two distinct names separated by commas, e.g. background, object"
    try:
        names = parse_class_names(class_names) or list(BINARY_CLASSES)
    except InputError:
        raise InputError(needed) from None
    if len(names) < 2:
        raise InputError(needed)
    return target_card(base_card, names)


@dataclass
class PairsRead:
    """An upload read for a fine-tune: the card its masks were read with, a report per pair, the good pairs
    [(name, image, mask)], other problems, and how many corrected pairs of the training set train with them."""

    card: object
    reports: list
    loaded: list
    problems: list
    corrected_pairs: int


def read_pairs(key, paths, base="", class_mode=KEEP_CLASSES, class_names=""):
    """Pair and read uploaded files for the base model `base` (a name the session has); the good pairs join the
    session's training set, replacing an earlier upload's."""
    card = finetune_card(class_mode, class_names, base_for(base, key)[1])
    reports, loaded, problems = read_upload(paths, card)
    corrected = len(join_training_set(key, loaded, card))
    return PairsRead(card, reports, loaded, problems, corrected)


def start_upload_finetune(key, paths, base="", class_mode=KEEP_CLASSES, class_names="", **options):
    """A fine-tune of `base` on the uploaded pairs (and the training set's corrected ones); `options`: the
    `FinetuneOptions` fields (checked before anything is read). Returns the running `jobs.Job`."""
    card = finetune_card(class_mode, class_names, base_for(base, key)[1])
    options = FinetuneOptions(base=base, classes=card.classes if class_mode == NEW_CLASSES else None, **options)
    options.check()
    reports, loaded, _ = read_upload(paths, card)
    return start_finetune(key, loaded, options, card, [report.name for report in reports if not report.ok])


def push_finetuned(key, repo_id, token="", config: AppConfig = None):
    """Push the session's fine-tuned model (model.keras, model.json, README.md) to the Hub model repo
    `repo_id`; `token`: this call's (else the configuration's HF_TOKEN), never logged or stored. Returns the
    repo's URL; InputError for no model or a bad id, RuntimeError / PermissionError when the Hub refuses."""
    finetuned = FINETUNED_MODELS.get(key)
    if finetuned is None:
        raise InputError("Train a model first: there is no fine-tuned model in this session yet.")
    repo_id = check_repo_id(repo_id)
    folder = build_push_folder(finetuned.model_path, session_folder(key) / "hub", repo_id)
    return push_folder(folder, repo_id, token or (config or current_config()).hub_token or None)


# The teach loop: pairs added one by one to the session's training set


def add_correction(key, result, layers):
    """The mask editor's painted `layers` over the prediction `result` (a `serving.segment.SegmentResult`) as
    class indices, added with its image to the session's training set. Returns (the pair, the share of its
    pixels that changed)."""
    if result is None:
        raise InputError("Press 'Correct this mask' first: there is no prediction in the editor.")
    card = result.segmenter.card
    colors = class_colors(card)
    height, width = result.display_labels.shape
    labels = editor_to_labels(layers, result.display_labels, colors, (width, height))
    pair = training_set_of(key).add(result.display_image, labels, card.classes, colors)
    return pair, float((labels != result.display_labels).mean())


def add_pair_files(key, image_path, mask_path, model_name=""):
    """An image file and its mask file, read with the classes of the model the session names (empty: its
    fine-tuned model if any, else the default), added to the session's training set. Returns the pair."""
    if not image_path or not mask_path:
        raise InputError("Give both an image and its mask (a PNG of class indices or class colours).")
    _, card = base_for(model_name, key)
    colors = class_colors(card)
    image, labels, _ = read_pair(Pair(Path(image_path), Path(mask_path)), len(card.classes), colors,
                                 binary_mask_classes(card))
    return training_set_of(key).add(image, labels, card.classes, colors)


def training_set_zip(key):
    """The session's training set written as a ZIP the Fine-tune tab reads back; returns its path."""
    training_set = training_set_of(key)
    if not training_set.pairs:
        raise InputError("The training set is empty: correct a prediction or upload pairs first.")
    path = session_folder(key) / f"training_set_{time.strftime('%Y%m%d_%H%M%S')}.zip"
    path.write_bytes(training_set.zip_bytes())
    return path
