"""Resizing an image to a model's input as its author did (stretched or letterboxed; PIL's antialiased bilinear
or tf.image.resize's default bilinear, in NumPy), and finding where it lies on the model's output grid."""

import numpy as np
from PIL import Image

LETTERBOX_FILL = 128  # grey, in 0..255, where a letterboxed image does not reach
RESIZE_CHOICES = ("stretch", "letterbox")
FILTER_CHOICES = ("antialias", "bilinear")


def bilinear_resize(image, size_wh):
    """HxWxC -> float32 h x w x C, as tf.image.resize(image, (h, w), method="bilinear", antialias=False)
    (half-pixel centres, no antialiasing), in NumPy."""
    width, height = size_wh
    source = np.asarray(image, np.float32)
    in_h, in_w = source.shape[:2]

    def axis(out_size, in_size):
        position = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
        floor = np.floor(position)
        lower = np.clip(floor, 0, in_size - 1).astype(np.int64)
        upper = np.clip(np.ceil(position), 0, in_size - 1).astype(np.int64)
        return lower, upper, (position - floor).astype(np.float32)

    top, bottom, y_lerp = axis(height, in_h)
    left, right, x_lerp = axis(width, in_w)
    x_lerp = x_lerp[None, :, None]
    upper_row = source[top][:, left] + (source[top][:, right] - source[top][:, left]) * x_lerp
    lower_row = source[bottom][:, left] + (source[bottom][:, right] - source[bottom][:, left]) * x_lerp
    return upper_row + (lower_row - upper_row) * y_lerp[:, None, None]


def antialias_resize(image, size_wh):
    """HxWxC uint8 -> float32 h x w x C with PIL's bilinear resize (= segdemo.data.resize_image)."""
    image = np.asarray(image)
    if image.shape[1] == size_wh[0] and image.shape[0] == size_wh[1]:
        return image.astype(np.float32)
    if image.shape[2] == 3:
        return np.asarray(Image.fromarray(image).resize(size_wh, Image.BILINEAR), np.float32)
    channels = [np.asarray(Image.fromarray(image[:, :, i]).resize(size_wh, Image.BILINEAR))
                for i in range(image.shape[2])]
    return np.stack(channels, axis=-1).astype(np.float32)


def resize_pixels(image, size_wh, resize_filter):
    if resize_filter not in FILTER_CHOICES:
        raise ValueError(f"unknown resize filter {resize_filter!r}; one of {', '.join(FILTER_CHOICES)}")
    if resize_filter == "bilinear":
        return bilinear_resize(image, size_wh)
    return antialias_resize(image, size_wh)


def letterbox_box(image_wh, size_wh):
    """(left, top, right, bottom) of an image of `image_wh` inside a model input of `size_wh`, both
    (width, height): scaled by min(w / iw, h / ih) to keep the aspect ratio, centred."""
    (in_w, in_h), (width, height) = image_wh, size_wh
    scale = min(width / in_w, height / in_h)
    new_w = min(width, max(1, int(in_w * scale + 1e-6)))
    new_h = min(height, max(1, int(in_h * scale + 1e-6)))
    left, top = (width - new_w) // 2, (height - new_h) // 2
    return left, top, left + new_w, top + new_h


def resize_for_model(image, size_wh, resize="stretch", resize_filter="antialias"):
    """An HxWxC uint8 image -> (float32 h x w x C in 0..255 at the model's `size_wh` (width, height), box):
    `box` (left, top, right, bottom) is where the image lies in the model input: the whole input for
    "stretch", the centred, aspect-kept part for "letterbox" (the rest is LETTERBOX_FILL)."""
    if resize not in RESIZE_CHOICES:
        raise ValueError(f"unknown resize {resize!r}; one of {', '.join(RESIZE_CHOICES)}")
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    width, height = int(size_wh[0]), int(size_wh[1])
    if resize == "stretch":
        return resize_pixels(image, (width, height), resize_filter), (0, 0, width, height)
    box = letterbox_box((image.shape[1], image.shape[0]), (width, height))
    left, top, right, bottom = box
    canvas = np.full((height, width, image.shape[2]), LETTERBOX_FILL, np.float32)
    canvas[top:bottom, left:right] = resize_pixels(image, (right - left, bottom - top), resize_filter)
    return canvas, box


def grid_box(box, input_wh, grid_wh):
    """A `box` (left, top, right, bottom) in model-input pixels -> the same region on an output grid of
    `grid_wh` (width, height), scaled outwards, at least one cell."""
    left, top, right, bottom = box
    grid_w, grid_h = grid_wh
    if tuple(input_wh) != tuple(grid_wh):
        scale_x, scale_y = grid_w / input_wh[0], grid_h / input_wh[1]
        left, right = int(np.floor(left * scale_x)), int(np.ceil(right * scale_x))
        top, bottom = int(np.floor(top * scale_y)), int(np.ceil(bottom * scale_y))
    left, top = max(0, left), max(0, top)
    return left, top, min(grid_w, max(right, left + 1)), min(grid_h, max(bottom, top + 1))
