"""The teach loop's mask editor: a prediction as the editor's background, the painted layer back to class indices."""

import numpy as np
from PIL import Image

from segdemo.data.images import display_size, resize_mask
from segdemo.errors import InputError
from segdemo.serving.drawing import mask_overlay, palette_lut

EDITOR_MAX_SIDE = 1024  # the editor's canvas: Gradio's ImageEditor gets slow on phones beyond this


MASK_OPACITY = 0.45  # of the predicted mask over the image in the editor's background


BRUSH_OPACITY = 0.7


PAINTED_ALPHA_MIN = 24  # layer pixels more transparent than this were erased: they return to the prediction


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
