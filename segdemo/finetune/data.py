"""A fine-tune's data, made once: the pairs checked against the class count, split into training and held-out
pairs by their names (not the seed), resized to the training size as the base's card says; the held-out pairs
also kept at their own size for the before/after scores."""

from dataclasses import dataclass

import numpy as np

from segdemo.data.images import resize_image, resize_mask
from segdemo.data.masks import IGNORE_INDEX
from segdemo.data.pairs import split_pairs
from segdemo.errors import InputError
from segdemo.finetune.options import target_card
from segdemo.models import cards


@dataclass
class TrainingData:
    """The pairs of one fine-tune: training and held-out arrays at the training size, the held-out pairs as
    uploaded, their names."""

    train_images: np.ndarray
    train_masks: np.ndarray
    val_images: np.ndarray
    val_masks: np.ndarray
    val_full: list  # [(image, mask)] at their own size
    train_names: list
    held_out: list


def prepare_data(pairs_data, num_classes, size, card, val_share):
    """TrainingData of decoded pairs [(name, image, mask)] for `num_classes` classes at `size` (width, height),
    resized as `card` says; InputError for a mask with a class value beyond the classes."""
    for name, _, mask in pairs_data:
        extra = [int(v) for v in np.unique(mask) if num_classes <= v != IGNORE_INDEX]
        if extra:
            raise InputError(f"{name}: mask has class values {extra} but only {num_classes} classes are defined")
    names = [name for name, _, _ in pairs_data]
    train_idx, val_idx = split_pairs(names, val_share)
    resizing = (card.resize, card.resize_filter)
    train = resize_pairs([pairs_data[i][1:] for i in train_idx], size, *resizing)
    val = resize_pairs([pairs_data[i][1:] for i in val_idx], size, *resizing)
    return TrainingData(*train, *val, [pairs_data[i][1:] for i in val_idx], [names[i] for i in train_idx],
                        [names[i] for i in val_idx])


def resize_pairs(images_and_masks, size, resize="stretch", resize_filter="antialias"):
    """(images, masks) at `size` as the card's `resize` and `resize_filter` say (a user's model is trained as it is
    served): letterboxed masks are IGNORE_INDEX where the image does not reach."""
    if (resize, resize_filter) == ("stretch", "antialias"):
        images = np.stack([resize_image(image, size) for image, _ in images_and_masks])
        masks = np.stack([resize_mask(mask, size) for _, mask in images_and_masks])
        return images, masks
    from segdemo.models.resizing import resize_for_model

    images, masks = [], []
    for image, mask in images_and_masks:
        pixels, (left, top, right, bottom) = resize_for_model(image, size, resize, resize_filter)
        images.append(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        canvas = np.full((size[1], size[0]), IGNORE_INDEX, np.uint8)
        canvas[top:bottom, left:right] = resize_mask(mask, (right - left, bottom - top))
        masks.append(canvas)
    return np.stack(images), np.stack(masks)


def load_training_pairs(source, base_card, classes=None, split=None, limit=0):
    """Read pairs for a fine-tune from a folder or ZIP, masks read for the target classes (black/white as
    `cards.binary_mask_classes` says). Returns ([(name, image, mask)], [problems])."""
    from segdemo.data.uploads import read_pairs_source, validate_and_load

    card = target_card(base_card, classes)
    pairs, problems = read_pairs_source(source, split)
    if limit:
        pairs = pairs[:limit]
    reports, loaded = validate_and_load(pairs, len(card.classes), cards.class_colors(card),
                                        cards.binary_mask_classes(card))
    return loaded, problems + [f"{r.name}: {r.problem}" for r in reports if r.problem]
