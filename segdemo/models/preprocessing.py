"""What a model takes and returns, defined once: `ModelIO`, built from a model's card, is read by every path that
feeds a model or reads its output. The Segmenter's compiled `tf.function` calls `model_input` and
`probabilities`; the fine-tune's training form is built from `input_layers` and `logits_layers` (the same
arithmetic as Keras layers, so a saved fine-tuned model carries no code); the exports and `segdemo.card` state it
with `input_words`, `output_words` and `describe`. Each option is one entry in a table below: adding one is a
change here (and its tests); the card's validation, the command line's choices, the upload form and `--check`
read the tables.

The card says how its author trained the model:
- `input_scale` (INPUT_SCALES): what the model expects its RGB pixels in: "0..255" as read, "0..1" (/255,
  the TF pets tutorial), "-1..1" (/127.5 - 1, MobileNet-style), "imagenet" (x/255 - mean) / std. Each is an
  affine map of the 0..255 pixels, one multiplier and offset per channel.
- `resize` (RESIZES): "stretch" to the input size (every tutorial's tf.image.resize), or "letterbox": keep
  the aspect ratio, centre, pad with LETTERBOX_FILL grey (the bubbliiiing-style U-Net's resize_image).
- `resize_filter` (RESIZE_FILTERS): "antialias" = PIL's bilinear resize (what segdemo.data.images.resize_image
  and the app's own models use; it averages over the source pixels when shrinking, like
  tf.image.resize(..., antialias=True)), or "bilinear" = tf.image.resize's default (antialias=False: four
  source pixels per output pixel, what a tf.data pipeline of the TF tutorial trained on).
  The letterboxing tutorial resizes with PIL's BICUBIC; "antialias" is the nearest of the two offered.
- `input_channels` (INPUT_CHANNELS): 3 (RGB) or 1 (grayscale: luma as PIL's "L", unrounded).
- `output` (OUTPUT_KINDS) and `output_layout` (OUTPUT_LAYOUTS): see `output_probabilities`.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

LETTERBOX_FILL = 128  # grey, in 0..255, where a letterboxed image does not reach
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")
SIGMOID_EPSILON = 1e-6  # keeps the per-pixel normalisation of sigmoids defined where all of them are ~0


@dataclass(frozen=True)
class InputScale:
    words: str  # how an export states it
    mean: tuple  # per RGB channel, in 0..255 units: the model's input is (x - mean) / std
    std: tuple

    def affine(self, channels):
        """(multiplier, offset) per channel: x * multiplier + offset. A grayscale model takes the means of the
        channels' statistics."""
        mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        if channels == 1:
            mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        return (1.0 / std).astype(np.float32), (-mean / std).astype(np.float32)


INPUT_SCALES = {
    "0..255": InputScale("0..255 (not normalised)", (0.0,) * 3, (1.0,) * 3),
    "0..1": InputScale("scaled to 0..1 (x / 255)", (0.0,) * 3, (255.0,) * 3),
    "-1..1": InputScale("scaled to -1..1 (x / 127.5 - 1)", (127.5,) * 3, (127.5,) * 3),
    "imagenet": InputScale("ImageNet-normalised ((x / 255 - mean) / std)", tuple(255.0 * m for m in IMAGENET_MEAN),
                           tuple(255.0 * s for s in IMAGENET_STD)),
}
RESIZES = {"stretch": "stretched to the input size",
           "letterbox": f"letterboxed (aspect kept, centred, grey {LETTERBOX_FILL} around)"}
RESIZE_FILTERS = {"antialias": "antialiased bilinear (PIL; tf.image.resize(..., antialias=True))",
                  "bilinear": "bilinear without antialiasing (tf.image.resize's default)"}
INPUT_CHANNELS = {3: "RGB", 1: "grayscale"}
OUTPUT_KINDS = {  # name -> (what the output is, how serving reads it)
    "logits": ("logits", "softmax applied when serving"),
    "softmax": ("softmax probabilities", ""),
    "sigmoid": ("one sigmoid per class", ""),
    "sigmoid_binary": ("one sigmoid channel", "the foreground probability"),
    "logits_binary": ("one logit channel", "sigmoid applied when serving"),
}
BINARY_KINDS = ("sigmoid_binary", "logits_binary")  # one output channel: two classes (background, the named one)
OUTPUT_LAYOUTS = {"spatial": "a grid of pixels", "flat": "flattened to (pixels, channels), read back as a grid"}


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
    multiplier, offset = INPUT_SCALES[input_scale].affine(x.shape[-1])
    return x * multiplier + offset


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


@dataclass(frozen=True)
class ModelIO:
    """How one model takes its input and gives its output (the card's preprocessing fields, checked), with
    every form of it the app needs: NumPy resize, TensorFlow arithmetic, Keras layers, words."""

    num_classes: int
    input_channels: int = 3
    input_scale: str = "0..255"
    resize: str = "stretch"
    resize_filter: str = "antialias"
    output: str = "logits"
    output_layout: str = "spatial"

    def __post_init__(self):
        for value, choices, what in ((self.input_channels, INPUT_CHANNELS, "input channels"),
                                     (self.input_scale, INPUT_SCALES, "input scale"),
                                     (self.resize, RESIZES, "resize"),
                                     (self.resize_filter, RESIZE_FILTERS, "resize filter"),
                                     (self.output, OUTPUT_KINDS, "output kind"),
                                     (self.output_layout, OUTPUT_LAYOUTS, "output layout")):
            check_choice(value, choices, what)

    @classmethod
    def from_card(cls, card):
        return cls(len(card.classes), card.input_channels, card.input_scale, card.resize, card.resize_filter,
                   card.output, card.output_layout)

    @property
    def output_channels(self):
        """1 for a single-channel output, else one per class."""
        return 1 if self.output in BINARY_KINDS else self.num_classes

    # serving (NumPy before the compiled call, TensorFlow inside it)

    def resize_image(self, image, size_wh):
        """(pixels at the model's size, float32 0..255; the box the image covers): see `resize_for_model`."""
        return resize_for_model(image, size_wh, self.resize, self.resize_filter)

    def model_input(self, x):
        """0..255 RGB (N, h, w, 3) -> the model's input: grayscale when it takes one channel, then scaled."""
        return scale_pixels(to_grayscale(x) if self.input_channels == 1 else x, self.input_scale)

    def probabilities(self, outputs, grid_hw):
        """The model's raw outputs -> (N, h, w, classes) probabilities (see `output_probabilities`)."""
        return output_probabilities(outputs, self.output, self.output_layout, grid_hw, self.num_classes)

    # training (the same arithmetic as built-in Keras layers: the saved model carries no code)

    def input_layers(self, x):
        """`model_input` as Keras layers on the 0..255 RGB tensor `x` (frozen: not trained)."""
        import keras

        if self.input_channels == 1:
            gray = keras.layers.Conv2D(1, 1, use_bias=False, trainable=False, name="to_grayscale")
            x = gray(x)
            gray.set_weights([np.asarray(LUMA_WEIGHTS, np.float32).reshape(1, 1, 3, 1)])
        if self.input_scale != "0..255":
            multiplier, offset = INPUT_SCALES[self.input_scale].affine(self.input_channels)
            x = keras.layers.Rescaling(multiplier.tolist(), offset.tolist(), name="input_scale")(x)
        return x

    def logits_layers(self, outputs, grid_wh):
        """The model's outputs as (N, h, w, classes) scores whose softmax is `probabilities` (for the model's
        own classes; its activation already split off): a flat output back on its grid, one channel as two."""
        import keras

        if self.output_layout == "flat":
            grid_w, grid_h = grid_wh
            outputs = keras.layers.Reshape((grid_h, grid_w, outputs.shape[-1]), name="to_grid")(outputs)
        if self.output in BINARY_KINDS:
            two = keras.layers.Conv2D(2, 1, use_bias=False, trainable=False, name="to_two_classes")
            outputs = two(outputs)
            two.set_weights([np.asarray([0.0, 1.0], np.float32).reshape(1, 1, 1, 2)])
        return outputs

    # words

    def input_words(self):
        """'RGB scaled to 0..1 (x / 255)'."""
        return f"{INPUT_CHANNELS[self.input_channels]} {INPUT_SCALES[self.input_scale].words}"

    def output_words(self, served=False):
        """'logits' (`served`: 'logits (softmax applied when serving)')."""
        what, how = OUTPUT_KINDS[self.output]
        return f"{what} ({how})" if served and how else what

    def describe(self):
        """Plain-English lines: how pixels reach the model and how its output is read."""
        return [f"pixels: {self.input_words()}, {RESIZES[self.resize]}, {RESIZE_FILTERS[self.resize_filter]}",
                f"output: {self.output_words(served=True)}, {OUTPUT_LAYOUTS[self.output_layout]}"]
