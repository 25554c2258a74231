"""What the Fine-tune tab and its API ask of the app, below the UI: the card an upload's masks are read with
(the base model's classes, or new ones the user names), reading an upload (its good pairs join the session's
training set, replacing an earlier upload's), starting a fine-tune on it, and pushing the session's fine-tuned
model to the Hub. Each returns a typed result or raises InputError; the tab only lays out and formats."""

from dataclasses import dataclass

from segdemo.app.jobs import join_training_set, start_finetune
from segdemo.app.sessions import FINETUNED_MODELS, base_for, session_folder
from segdemo.config import AppConfig
from segdemo.data.uploads import read_upload
from segdemo.errors import InputError
from segdemo.finetune.options import BINARY_CLASSES, FinetuneOptions, target_card
from segdemo.models.cards import parse_class_names
from segdemo.models.hub import build_push_folder, check_repo_id, push_folder
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
