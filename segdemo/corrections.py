"""The teach loop's data: a prediction as an editable mask layer for `gr.ImageEditor`, the painted layer back
to class indices, and a session's training set (pairs corrected in the Segment tab and pairs uploaded in the
Fine-tune tab), which retraining reads and which downloads as a ZIP the Fine-tune tab accepts."""

import io
import threading
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from segdemo.data import (
    IGNORE_INDEX,
    InputError,
    display_size,
    resize_image,
    resize_mask,
)
from segdemo.drawing import mask_overlay, palette_lut
from segdemo.limits import MAX_PAIRS

EDITOR_MAX_SIDE = 1024  # the editor's canvas: Gradio's ImageEditor gets slow on phones beyond this
MASK_OPACITY = 0.45  # of the predicted mask over the image in the editor's background
BRUSH_OPACITY = 0.7
PAINTED_ALPHA_MIN = 24  # layer pixels more transparent than this were erased: they return to the prediction
STORED_MAX_SIDE = 640  # pairs are kept at most this large (a fine-tune trains at 512 at most)
CORRECTED = "corrected"
UPLOADED = "uploaded"


def editor_value(image, labels, colors):
    """The ImageEditor's value for one prediction: as background, the image with the class mask over it in the
    class colours (at most EDITOR_MAX_SIDE), and no layer: the editor adds one empty layer, the strokes go there
    and all else stays the prediction. (Gradio 6.31's editor does not show layers given with the value.)"""
    size = display_size(image.shape[1], image.shape[0], EDITOR_MAX_SIDE)
    background = mask_overlay(image, labels, palette_lut(colors), size, MASK_OPACITY)
    return {"background": background, "layers": [], "composite": None}


def brush_colors(colors):
    """One brush per class, in the legend's colours (the editor's colour picker is fixed to these)."""
    return [(f"#{r:02x}{g:02x}{b:02x}", BRUSH_OPACITY) for r, g, b in colors]


def editor_to_labels(layers, predicted, colors, size):
    """Class indices (at `size`, (width, height)) from the editor's RGBA layers, bottom layer first, over the
    model's labels `predicted`. A painted pixel (alpha >= PAINTED_ALPHA_MIN) is read as a blend of the colour it
    started from (its predicted class's) and one class colour (a brush stroke, whose soft edges and overlaps
    blend it): it takes that class where the stroke dominates (blend weight >= 0.5), else keeps the predicted
    class. So anti-aliasing never invents a class, such as the red that half yellow over black is closest to.
    Unpainted and erased pixels keep the prediction. Raises InputError for an empty correction."""
    layers = [np.asarray(layer) for layer in (layers or []) if layer is not None]
    if not layers:
        raise InputError("No correction to add: press 'Correct this mask' first, then paint over the mistakes.")
    height, width = layers[0].shape[:2]
    labels = resize_mask(np.asarray(predicted, np.uint8), (width, height)).copy()
    palette = np.asarray(colors, np.float64).reshape(-1, 3)
    painted_any = False
    for layer in layers:
        if layer.ndim != 3 or layer.shape[2] != 4:
            raise InputError("The correction must be an RGBA layer of the mask editor.")
        if layer.shape[:2] != (height, width):
            layer = np.asarray(Image.fromarray(layer).resize((width, height), Image.NEAREST))
        painted = layer[:, :, 3] >= PAINTED_ALPHA_MIN
        if painted.any():
            painted_any = True
            labels[painted] = stroke_classes(layer[:, :, :3][painted], labels[painted], palette)
    if not painted_any:
        raise InputError("The correction is empty (nothing painted, or all of it erased): paint over the "
                         "mistakes with the class brushes, then add the pair.")
    return resize_mask(labels, tuple(size))


def stroke_classes(rgb, start, palette):
    """For pixels of colour `rgb` (N, 3) that started as classes `start` (N,): the class of each (see
    `editor_to_labels`), computed once per distinct (colour, start) combination."""
    keys = (rgb.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])) * 256 + np.minimum(start, len(palette) - 1)
    unique, inverse = np.unique(keys, return_inverse=True)
    x = np.stack([(unique >> 24) & 255, (unique >> 16) & 255, (unique >> 8) & 255], axis=1).astype(np.float64)
    origin = (unique & 255).astype(np.int64)
    base = palette[origin]  # (U, 3)
    direction = palette[None, :, :] - base[:, None, :]  # (U, C, 3): from the start colour to each class colour
    length = np.maximum((direction ** 2).sum(-1), 1e-9)
    weight = np.clip(((x - base)[:, None, :] * direction).sum(-1) / length, 0.0, 1.0)  # (U, C)
    distance = ((x[:, None, :] - base[:, None, :] - weight[..., None] * direction) ** 2).sum(-1)
    best = distance.argmin(1)
    chosen = np.where(weight[np.arange(len(unique)), best] >= 0.5, best, origin)
    return chosen[inverse.reshape(-1)].astype(np.uint8)


@dataclass
class TrainingPair:
    name: str
    image: np.ndarray  # (H, W, 3) uint8, at most STORED_MAX_SIDE
    mask: np.ndarray  # (H, W) uint8 class indices (255 = ignore)
    classes: tuple  # the class names the mask's indices refer to
    colors: list  # their colours (thumbnails)
    source: str  # CORRECTED or UPLOADED


def class_histogram(mask, classes):
    """{class name: share of the labelled pixels}."""
    counts = np.bincount(mask[mask != IGNORE_INDEX].reshape(-1), minlength=len(classes))[: len(classes)]
    total = max(int(counts.sum()), 1)
    return {name: round(float(count) / total, 4) for name, count in zip(classes, counts)}


class TrainingSet:
    """One session's training pairs: corrected ones (added one by one) and the last upload's pairs."""

    def __init__(self):
        self.pairs, self._lock, self._counter = [], threading.Lock(), 0

    def add(self, image, mask, classes, colors, name=None, source=CORRECTED):
        """Store a pair (downscaled to STORED_MAX_SIDE); returns it."""
        if image.shape[:2] != mask.shape[:2]:
            raise InputError(f"The mask is {mask.shape[1]}×{mask.shape[0]} but the image is "
                             f"{image.shape[1]}×{image.shape[0]}: they must be the same size.")
        extra = sorted(int(v) for v in np.unique(mask) if len(classes) <= v != IGNORE_INDEX)
        if extra:
            raise InputError(f"The mask has class values {extra}, but the model has only {len(classes)} classes "
                             f"({', '.join(classes)}).")
        with self._lock:
            if len(self.pairs) >= MAX_PAIRS:
                raise InputError(f"The training set is full ({MAX_PAIRS} pairs): remove some or clear it first.")
            self._counter += 1
            size = display_size(image.shape[1], image.shape[0], STORED_MAX_SIDE)
            pair = TrainingPair(name or f"corrected_{self._counter:03d}", resize_image(image, size),
                                resize_mask(mask, size), tuple(classes), [tuple(c) for c in colors], source)
            self.pairs.append(pair)
            return pair

    def replace_uploaded(self, loaded, classes, colors):
        """The Fine-tune tab's latest upload, [(name, image, mask)], replaces the previous one's pairs."""
        with self._lock:
            self.pairs = [pair for pair in self.pairs if pair.source != UPLOADED]
        for name, image, mask in loaded[: MAX_PAIRS - len(self.pairs)]:
            self.add(image, mask, classes, colors, name=name, source=UPLOADED)

    def remove(self, index):
        with self._lock:
            if not 0 <= index < len(self.pairs):
                raise InputError(f"There is no pair {index + 1}: the set holds {len(self.pairs)} pairs.")
            return self.pairs.pop(index)

    def clear(self):
        with self._lock:
            self.pairs = []

    def corrected_for(self, classes):
        """The corrected pairs whose masks use `classes`, as [(name, image, mask)]."""
        return [(p.name, p.image, p.mask) for p in self.pairs if p.source == CORRECTED and p.classes == tuple(classes)]

    def for_classes(self, classes):
        """(every pair whose masks use `classes` as [(name, image, mask)], names of the others)."""
        fitting = [(p.name, p.image, p.mask) for p in self.pairs if p.classes == tuple(classes)]
        other = [p.name for p in self.pairs if p.classes != tuple(classes)]
        return fitting, other

    def summary(self):
        corrected = sum(p.source == CORRECTED for p in self.pairs)
        return (f"**{len(self.pairs)} pairs** in your training set ({corrected} corrected, "
                f"{len(self.pairs) - corrected} uploaded)")

    def zip_bytes(self):
        """The set as a ZIP in the layout the Fine-tune tab reads: images/<name>.png and masks/<name>.png
        (pixel value = class index), and classes.txt (each pair's class names)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for pair in self.pairs:
                for folder, array in (("images", pair.image), ("masks", pair.mask)):
                    png = io.BytesIO()
                    Image.fromarray(array).save(png, format="PNG")
                    archive.writestr(f"{folder}/{pair.name}.png", png.getvalue())
            archive.writestr("classes.txt", "".join(f"{p.name}: {', '.join(p.classes)}\n" for p in self.pairs))
        return buffer.getvalue()
