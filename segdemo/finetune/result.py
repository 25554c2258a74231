"""A fine-tune's result: the new model's card (what it was trained on, how, its before/after scores), the
summary the app and the command show, the `.keras` file and its card."""

import datetime
from dataclasses import asdict
from pathlib import Path

from segdemo.finetune.events import FinetuneSummary
from segdemo.models import cards
from segdemo.models.cards import size_value

FINETUNED_SUFFIX = "-finetuned"


def new_card_for(base_card, classes, same_classes, size, pair_count, flip_tta):
    """The fine-tuned model's card: the base's architecture, normalisation and resizing (a user's model keeps
    its `resize` and `resize_filter`; its input scale and output decoding are inside the fine-tuned model), the
    new classes (or the base's with their colours and black/white reading), the training size; a teach-loop
    round keeps its name."""
    again = base_card.name.endswith(FINETUNED_SUFFIX)  # a teach-loop round continues a fine-tuned model
    return cards.ModelCard(
        name=base_card.name if again else f"{base_card.name}{FINETUNED_SUFFIX}",
        title=base_card.display_title if again else f"{base_card.display_title}, fine-tuned",
        description=f"Fine-tuned from {base_card.name} on {pair_count} pairs.",
        classes=list(classes),
        colors=base_card.colors if same_classes else [list(c) for c in cards.DEFAULT_COLORS[:len(classes)]],
        default_class=base_card.default_class if same_classes else cards.default_class_name(classes),
        binary_mask=base_card.binary_mask if same_classes else None,
        input_size=size_value(size),
        architecture=base_card.architecture,
        architecture_args=dict(base_card.architecture_args),
        normalisation=base_card.normalisation,
        resize=base_card.resize,
        resize_filter=base_card.resize_filter,
        flip_tta=flip_tta,
        base_model=base_card.name,
        date=datetime.date.today().isoformat(),
    )


def finetune_summary(card, options, data, run, before, before_note, after, seconds):
    """The FinetuneSummary, with the card's training record and metrics filled in."""
    pairs = len(data.train_names) + len(data.held_out)
    card.training = {
        "data": f"{pairs} uploaded pairs: {len(data.train_names)} train, {len(data.held_out)} held out "
                f"({', '.join(data.held_out[:10])})",
        "recipe": {k: v for k, v in asdict(options).items() if k != "classes"},
        "steps_run": run.steps_run,
        "stopped_by_user": run.stopped,
        "wall_time_seconds": round(seconds, 1),
    }
    card.metrics = {"held-out (after)": after, "held-out (before, base model)": before}
    return FinetuneSummary(card, before, after, run.rounds, seconds, run.stopped, list(data.held_out),
                           run.steps_run, before_note)


def save_result(model, summary, path):
    """Write the fine-tuned `.keras` file and its card beside it; records the path in the summary."""
    from segdemo.models.files import save_keras_model

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_keras_model(model, path)
    summary.card.save(path)
    summary.model_path = str(path)
    return path
