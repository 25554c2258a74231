"""What a fine-tune is asked to do: its options, checked against `segdemo.limits`, and the card its masks are
read with."""

from dataclasses import dataclass

from segdemo.errors import InputError
from segdemo.limits import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEARNING_RATE,
    DEFAULT_STEPS,
    MAX_BATCH_SIZE,
    MAX_INPUT_SIZE,
    MAX_LEARNING_RATE,
    MAX_PAIRS,
    MAX_STEPS,
    MIN_LEARNING_RATE,
    MIN_PAIRS,
    learning_rate_range,
)
from segdemo.models import cards
from segdemo.training.losses import LOSSES

BINARY_CLASSES = ("background", "object")
RECIPES = ("cached", "full")  # cached: the frozen part runs once per view (finetune/features.py); full: every step


@dataclass
class FinetuneOptions:
    """Training options with the defaults the tab shows."""

    base: str = "pets"
    steps: int = DEFAULT_STEPS
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = DEFAULT_BATCH_SIZE
    input_size: int = 0  # 0: the base model's input size
    val_share: float = 0.2
    augment: bool = True
    loss: str = "ce_dice"
    freeze_encoder: bool = True
    flip_tta: bool = True  # served (and validated) as the mean of the image's and its mirror's prediction
    classes: list = None  # None: keep the base model's classes
    seed: int = 0
    recipe: str = "cached"

    def check(self):
        """Raise InputError for values outside the stated limits."""
        if not 1 <= self.steps <= MAX_STEPS:
            raise InputError(f"steps must be between 1 and {MAX_STEPS} (got {self.steps})")
        if not MIN_LEARNING_RATE <= self.learning_rate <= MAX_LEARNING_RATE:
            raise InputError(f"learning rate must be from {learning_rate_range()} (got {self.learning_rate})")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise InputError(f"batch size must be between 1 and {MAX_BATCH_SIZE} (got {self.batch_size})")
        if self.input_size and not (32 <= self.input_size <= MAX_INPUT_SIZE and self.input_size % 32 == 0):
            raise InputError(f"input size must be a multiple of 32 from 32 to {MAX_INPUT_SIZE} (got {self.input_size})")
        if not 0.0 < self.val_share < 1.0:
            raise InputError(f"validation share must be between 0 and 1 (got {self.val_share})")
        if self.loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)} (got {self.loss})")
        if self.recipe not in RECIPES:
            raise InputError(f"recipe must be one of {', '.join(RECIPES)} (got {self.recipe})")
        if self.classes is not None and len(self.classes) < 2:
            raise InputError("a new class set needs at least two class names")


def check_pair_count(count, advice=""):
    """InputError for fewer than MIN_PAIRS or more than MAX_PAIRS pairs; `advice` ends the message."""
    if count < MIN_PAIRS:
        raise InputError(f"need at least {MIN_PAIRS} good pairs (one to train on, one held out); got {count}{advice}")
    if count > MAX_PAIRS:
        raise InputError(f"at most {MAX_PAIRS} pairs per fine-tune; got {count}{advice}")


def target_card(base_card, classes=None):
    """The card a fine-tune's masks are read with: the base's, or a new class set's."""
    if not classes or list(classes) == list(base_card.classes):
        return base_card
    return cards.ModelCard(name=f"{base_card.name} with new classes", classes=list(classes),
                           input_size=base_card.input_size, default_class=cards.default_class_name(list(classes)))
