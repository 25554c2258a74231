"""The preprocessing and output decoding a model card describes, as small pure functions the Segmenter
calls: NumPy for the per-image resize (before the compiled model call), plain arithmetic that works on
NumPy arrays and TensorFlow tensors alike for pixel scaling and grayscale, and TensorFlow ops for the
output decoding that runs inside the compiled `tf.function` (fixed shapes).

The card says how its author trained the model:
- `input_scale` (INPUT_SCALES): what the model expects its RGB pixels in: "0..255" as read, "0..1" (/255,
  the TF pets tutorial), "-1..1" (/127.5 - 1, MobileNet-style), "imagenet" (x/255 - mean) / std.
- `resize` (RESIZES): "stretch" to the input size (every tutorial's tf.image.resize), or "letterbox": keep
  the aspect ratio, centre, pad with LETTERBOX_FILL grey (the bubbliiiing-style U-Net's resize_image).
- `resize_filter` (RESIZE_FILTERS): "antialias" = PIL's bilinear resize (what segdemo.data.resize_image
  and the app's own models use; it averages over the source pixels when shrinking, like
  tf.image.resize(..., antialias=True)), or "bilinear" = tf.image.resize's default (antialias=False: four
  source pixels per output pixel, what a tf.data pipeline of the TF tutorial trained on).
  The letterboxing tutorial resizes with PIL's BICUBIC; "antialias" is the nearest of the two offered.
"""

import numpy as np
from PIL import Image

from segdemo.models.cards import BINARY_KINDS, INPUT_SCALES, OUTPUT_KINDS, OUTPUT_LAYOUTS, RESIZE_FILTERS, RESIZES

LETTERBOX_FILL = 128  # grey, in 0..255, where a letterboxed image does not reach
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")
SIGMOID_EPSILON = 1e-6  # keeps the per-pixel normalisation of sigmoids defined where all of them are ~0


def check_choice(value, choices, what):
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; one of {', '.join(choices)}")


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
    check_choice(resize_filter, RESIZE_FILTERS, "resize filter")
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
    check_choice(resize, RESIZES, "resize")
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


def scale_pixels(x, input_scale):
    """0..255 pixel values (NumPy or TensorFlow, float, channels last) -> what the model was trained on."""
    check_choice(input_scale, INPUT_SCALES, "input scale")
    if input_scale == "0..255":
        return x
    if input_scale == "0..1":
        return x / 255.0
    if input_scale == "-1..1":
        return x / 127.5 - 1.0
    channels = x.shape[-1]
    if channels == 1:  # a grayscale model: the means of ImageNet's channel statistics
        mean, std = np.float32(np.mean(IMAGENET_MEAN)), np.float32(np.mean(IMAGENET_STD))
    else:
        mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    return (x / 255.0 - mean) / std


def to_grayscale(x):
    """(..., 3) RGB -> (..., 1) luma (ITU-R 601-2, as PIL's "L", unrounded), NumPy or TensorFlow."""
    red, green, blue = LUMA_WEIGHTS
    return x[..., 0:1] * red + x[..., 1:2] * green + x[..., 2:3] * blue


def output_probabilities(outputs, output_kind, output_layout, output_grid_hw, num_classes):
    """A model's raw outputs -> (N, h, w, num_classes) class probabilities (TensorFlow ops, fixed shapes):
    - "logits": softmax; "softmax": as is;
    - "sigmoid" (one per class): normalised to sum to 1 per pixel. The argmax is unchanged (same per-pixel
      order); the probability map shows the normalised value, not the raw sigmoid;
    - "sigmoid_binary": p -> [1 - p, p], so argmax is the 0.5 threshold; "logits_binary": sigmoid first;
    - layout "flat": (N, h*w, C) is reshaped to (N, h, w, C) with `output_grid_hw` (h, w)."""
    import tensorflow as tf

    check_choice(output_kind, OUTPUT_KINDS, "output kind")
    check_choice(output_layout, OUTPUT_LAYOUTS, "output layout")
    outputs = tf.convert_to_tensor(outputs)
    outputs = tf.cast(outputs, tf.float32)
    channels = outputs.shape[-1]
    expected = 1 if output_kind in BINARY_KINDS else num_classes
    if channels is not None and channels != expected:
        raise ValueError(f"a {output_kind} output for {num_classes} classes has {expected} channels, not {channels}")
    if output_layout == "flat":
        height, width = output_grid_hw
        outputs = tf.reshape(outputs, [-1, int(height), int(width), channels if channels is not None else expected])
    if output_kind == "logits":
        return tf.nn.softmax(outputs, axis=-1)
    if output_kind == "softmax":
        return outputs
    if output_kind == "sigmoid":
        shifted = outputs + SIGMOID_EPSILON
        return shifted / tf.reduce_sum(shifted, axis=-1, keepdims=True)
    foreground = tf.sigmoid(outputs) if output_kind == "logits_binary" else outputs
    return tf.concat([1.0 - foreground, foreground], axis=-1)


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


def crop_box(probs, box, input_wh=None):
    """The probabilities (..., h, w, C) inside a letterbox `box` (left, top, right, bottom, in model-input
    pixels), ready to be resized back to the original image. `input_wh` (width, height): the model input's
    size when the output grid is smaller or larger (the box is scaled to the grid, outwards)."""
    grid_wh = (probs.shape[-2], probs.shape[-3])
    left, top, right, bottom = grid_box(box, input_wh or grid_wh, grid_wh)
    return probs[..., top:bottom, left:right, :]
