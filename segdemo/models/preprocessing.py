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

from segdemo.models.resizing import LETTERBOX_FILL, resize_for_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L")
SIGMOID_EPSILON = 1e-6  # keeps the per-pixel normalisation of sigmoids defined where all of them are ~0


@dataclass(frozen=True)
class InputScale:
    words: str  # how an export states it
    mean: tuple = None  # per RGB channel, in 0..255 units: the model's input is (x - mean) / std; None: see below
    std: tuple = None

    def affine(self, channels, mean=None, std=None):
        """(multiplier, offset) per channel: x * multiplier + offset, from this scale's statistics (or the card's
        `mean`/`std` for "mean-std"). A grayscale model takes the means of the channels' statistics."""
        mean = np.asarray(self.mean if self.mean is not None else mean, np.float64).reshape(-1)
        std = np.asarray(self.std if self.std is not None else std, np.float64).reshape(-1)
        if channels == 1:
            mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
        return (1.0 / std).astype(np.float32), (-mean / std).astype(np.float32)


PER_IMAGE = "per-image"  # not an affine map: each image's own mean and standard deviation
MEAN_STD = "mean-std"  # the dataset's mean and standard deviation, given on the card (input_mean, input_std)
PER_IMAGE_EPSILON = 1e-6  # as Keras's samplewise_std_normalization: x / (std + 1e-6)
INPUT_SCALES = {
    "0..255": InputScale("0..255 (not normalised)", (0.0,) * 3, (1.0,) * 3),
    "0..1": InputScale("scaled to 0..1 (x / 255)", (0.0,) * 3, (255.0,) * 3),
    "-1..1": InputScale("scaled to -1..1 (x / 127.5 - 1)", (127.5,) * 3, (127.5,) * 3),
    "imagenet": InputScale("ImageNet-normalised ((x / 255 - mean) / std)", tuple(255.0 * m for m in IMAGENET_MEAN),
                           tuple(255.0 * s for s in IMAGENET_STD)),
    PER_IMAGE: InputScale("standardised per image ((x - its mean) / its std: Keras's samplewise_center + "
                          "samplewise_std_normalization, tf.image.per_image_standardization)"),
    MEAN_STD: InputScale("normalised with the dataset's statistics ((x - mean) / std, mean {mean} and std {std} "
                         "in 0..255 units)"),
}
CHANNEL_ORDERS = {"rgb": "in RGB order", "bgr": "in BGR order (as OpenCV's cv2.imread reads images)"}
RESIZES = {"stretch": "stretched to the input size",  # the keys are resizing.RESIZE_CHOICES
           "letterbox": f"letterboxed (aspect kept, centred, grey {LETTERBOX_FILL} around)"}
RESIZE_FILTERS = {"antialias": "antialiased bilinear (PIL; tf.image.resize(..., antialias=True))",
                  "bilinear": "bilinear without antialiasing (tf.image.resize's default)"}
INPUT_CHANNELS = {3: "RGB", 1: "grayscale"}
OUTPUT_KINDS = {  # name -> (what the output is, how serving reads it)
    "logits": ("logits", "softmax applied when serving"),
    "softmax": ("softmax probabilities", ""),
    "sigmoid": ("one sigmoid per class", ""),
    "sigmoid_binary": ("one sigmoid channel", "the foreground probability, foreground above the threshold"),
    "logits_binary": ("one logit channel", "sigmoid applied when serving, foreground above the threshold"),
    "linear_binary": ("one linear channel (a regression-style mask)", "foreground above the threshold"),
}
BINARY_KINDS = ("sigmoid_binary", "logits_binary", "linear_binary")  # one channel: two classes (background, one)
DEFAULT_THRESHOLDS = {"sigmoid_binary": 0.5, "logits_binary": 0.0, "linear_binary": 0.5}  # in the output's units
OUTPUT_LAYOUTS = {"spatial": "a grid of pixels", "flat": "flattened to (pixels, channels), read back as a grid"}
# The preprocessing a model file cannot tell, which a card states and `segdemo.card --check` can score on
# labelled pairs: field -> (the choices --check tries, the default assumed when nothing is said).
OPEN_OPTIONS = {
    "input_scale": (tuple(scale for scale in INPUT_SCALES if scale != MEAN_STD), "0..255"),
    "resize": (tuple(RESIZES), "stretch"),
    "resize_filter": (tuple(RESIZE_FILTERS), "antialias"),
    "channel_order": (tuple(CHANNEL_ORDERS), "rgb"),
}


def check_choice(value, choices, what):
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; one of {', '.join(choices)}")


def scale_pixels(x, input_scale, mean=None, std=None):
    """0..255 pixel values (NumPy or TensorFlow, float, (N,) h, w, channels) -> what the model was trained on;
    `mean`, `std`: the dataset statistics of "mean-std" (0..255 units, per channel)."""
    check_choice(input_scale, INPUT_SCALES, "input scale")
    if input_scale == "0..255":
        return x
    if input_scale == PER_IMAGE:
        return standardise_per_image(x / 255.0)
    multiplier, offset = INPUT_SCALES[input_scale].affine(x.shape[-1], mean, std)
    return x * multiplier + offset


def standardise_per_image(x):
    """Each image minus its mean, over its standard deviation (+ PER_IMAGE_EPSILON), over all its pixels and
    channels (the last three axes), NumPy or TensorFlow."""
    if isinstance(x, np.ndarray):
        axes = tuple(range(x.ndim - 3, x.ndim))
        centred = x - x.mean(axis=axes, keepdims=True)
        return centred / (np.sqrt((centred ** 2).mean(axis=axes, keepdims=True)) + PER_IMAGE_EPSILON)
    import tensorflow as tf

    axes = list(range(len(x.shape) - 3, len(x.shape)))
    centred = x - tf.reduce_mean(x, axis=axes, keepdims=True)
    return centred / (tf.sqrt(tf.reduce_mean(tf.square(centred), axis=axes, keepdims=True)) + PER_IMAGE_EPSILON)


def to_channel_order(x, channel_order):
    """RGB pixels (channels last) in the order the model was trained on."""
    check_choice(channel_order, CHANNEL_ORDERS, "channel order")
    return x[..., ::-1] if channel_order == "bgr" else x


def to_grayscale(x):
    """(..., 3) RGB -> (..., 1) luma (ITU-R 601-2, as PIL's "L", unrounded), NumPy or TensorFlow."""
    red, green, blue = LUMA_WEIGHTS
    return x[..., 0:1] * red + x[..., 1:2] * green + x[..., 2:3] * blue


def output_probabilities(outputs, output_kind, output_layout, output_grid_hw, num_classes, threshold=None):
    """A model's raw outputs -> (N, h, w, num_classes) class probabilities (TensorFlow ops, fixed shapes):
    - "logits": softmax; "softmax": as is;
    - "sigmoid" (one per class): normalised to sum to 1 per pixel. The argmax is unchanged (same per-pixel
      order); the probability map shows the normalised value, not the raw sigmoid;
    - one channel ("sigmoid_binary", "logits_binary", "linear_binary"): the foreground's probability p and
      [1 - p, p], with p > 0.5 exactly where the output is above `threshold` (DEFAULT_THRESHOLDS when None):
      a sigmoid's p is shifted on the logit scale (p itself at 0.5), a linear output's p is 0.5 + (x - threshold)
      clipped to 0..1 (x itself for a 0..1 mask at 0.5);
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
    threshold = DEFAULT_THRESHOLDS[output_kind] if threshold is None else float(threshold)
    if output_kind == "linear_binary":
        foreground = tf.clip_by_value(0.5 + (outputs - threshold), 0.0, 1.0)
    elif output_kind == "logits_binary":
        foreground = tf.sigmoid(outputs - threshold)
    elif threshold == 0.5:
        foreground = outputs
    else:  # a sigmoid thresholded elsewhere than 0.5: its logit shifted so that the threshold reads 0.5
        clipped = tf.clip_by_value(outputs, SIGMOID_EPSILON, 1.0 - SIGMOID_EPSILON)
        foreground = tf.sigmoid(tf.math.log(clipped / (1.0 - clipped)) - float(np.log(threshold / (1 - threshold))))
    return tf.concat([1.0 - foreground, foreground], axis=-1)


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
    channel_order: str = "rgb"
    input_mean: tuple = None  # "mean-std": per channel, 0..255 units
    input_std: tuple = None
    threshold: float = None  # one-channel outputs: foreground above it (None: DEFAULT_THRESHOLDS)

    def __post_init__(self):
        for value, choices, what in ((self.input_channels, INPUT_CHANNELS, "input channels"),
                                     (self.input_scale, INPUT_SCALES, "input scale"),
                                     (self.resize, RESIZES, "resize"),
                                     (self.resize_filter, RESIZE_FILTERS, "resize filter"),
                                     (self.output, OUTPUT_KINDS, "output kind"),
                                     (self.output_layout, OUTPUT_LAYOUTS, "output layout"),
                                     (self.channel_order, CHANNEL_ORDERS, "channel order")):
            check_choice(value, choices, what)
        if self.input_scale == MEAN_STD:
            for name in ("input_mean", "input_std"):
                value = getattr(self, name)
                if value is None or len(value) not in (1, 3) or not all(float(v) == float(v) for v in value):
                    raise ValueError(f"input scale {MEAN_STD} needs {name} (one or three numbers, 0..255 units)")
            if not all(float(v) > 0 for v in self.input_std):
                raise ValueError("input_std must be positive")
        if self.threshold is not None and self.output not in BINARY_KINDS:
            raise ValueError(f"a threshold applies to one-channel outputs ({', '.join(BINARY_KINDS)}), "
                             f"not {self.output}")

    @classmethod
    def from_card(cls, card):
        stats = tuple(tuple(value) if value is not None and card.input_scale == MEAN_STD else None
                      for value in (card.input_mean, card.input_std))
        return cls(len(card.classes), card.input_channels, card.input_scale, card.resize, card.resize_filter,
                   card.output, card.output_layout, card.channel_order, *stats, card.threshold)

    @property
    def output_channels(self):
        """1 for a single-channel output, else one per class."""
        return 1 if self.output in BINARY_KINDS else self.num_classes

    # serving (NumPy before the compiled call, TensorFlow inside it)

    def resize_image(self, image, size_wh):
        """(pixels at the model's size, float32 0..255; the box the image covers): see `resize_for_model`."""
        return resize_for_model(image, size_wh, self.resize, self.resize_filter)

    def model_input(self, x):
        """0..255 RGB (N, h, w, 3) -> the model's input: grayscale when it takes one channel (else in its channel
        order), then scaled."""
        x = to_grayscale(x) if self.input_channels == 1 else to_channel_order(x, self.channel_order)
        return scale_pixels(x, self.input_scale, self.input_mean, self.input_std)

    def probabilities(self, outputs, grid_hw):
        """The model's raw outputs -> (N, h, w, classes) probabilities (see `output_probabilities`)."""
        return output_probabilities(outputs, self.output, self.output_layout, grid_hw, self.num_classes,
                                    self.threshold)

    # training (the same arithmetic as built-in Keras layers: the saved model carries no code)

    def input_layers(self, x):
        """`model_input` as Keras layers on the 0..255 RGB tensor `x` (frozen: not trained)."""
        import keras

        if self.input_channels == 1:
            x = fixed_1x1(x, np.asarray(LUMA_WEIGHTS, np.float32).reshape(3, 1), "to_grayscale")
        elif self.channel_order == "bgr":
            x = fixed_1x1(x, np.eye(3, dtype=np.float32)[::-1], "to_bgr")
        if self.input_scale == PER_IMAGE:
            x = keras.layers.Rescaling(1.0 / 255, name="to_unit_range")(x)
            # LayerNormalization over an image's pixels and channels, without its own scale and offset, is the
            # per-image standardisation (its epsilon under the square root instead of added to the std)
            x = keras.layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, epsilon=1e-12,
                                                name="per_image_standardisation")(x)
        elif self.input_scale != "0..255":
            multiplier, offset = INPUT_SCALES[self.input_scale].affine(self.input_channels, self.input_mean,
                                                                       self.input_std)
            x = keras.layers.Rescaling(multiplier.tolist(), offset.tolist(), name="input_scale")(x)
        return x

    def logits_layers(self, outputs, grid_wh):
        """The model's outputs as (N, h, w, classes) scores whose softmax is `probabilities` (for the model's
        own classes; its activation already split off): a flat output back on its grid, one channel as two
        (foreground minus the threshold, on the logit scale)."""
        import keras

        if self.output_layout == "flat":
            grid_w, grid_h = grid_wh
            outputs = keras.layers.Reshape((grid_h, grid_w, outputs.shape[-1]), name="to_grid")(outputs)
        if self.output in BINARY_KINDS:
            threshold = DEFAULT_THRESHOLDS[self.output] if self.threshold is None else self.threshold
            if self.output == "sigmoid_binary":  # the sigmoid was split off: the threshold on the logit scale
                threshold = float(np.log(threshold / (1 - threshold)))
            two = keras.layers.Conv2D(2, 1, trainable=False, name="to_two_classes")
            outputs = two(outputs)
            two.set_weights([np.asarray([0.0, 1.0], np.float32).reshape(1, 1, 1, 2),
                             np.asarray([0.0, -threshold], np.float32)])
        return outputs

    # words

    def input_words(self):
        """'RGB scaled to 0..1 (x / 255)'."""
        colour = INPUT_CHANNELS[self.input_channels]
        if self.input_channels == 3 and self.channel_order != "rgb":
            colour = f"{colour} {CHANNEL_ORDERS[self.channel_order]}"
        words = INPUT_SCALES[self.input_scale].words
        if self.input_scale == MEAN_STD:
            words = words.format(mean=", ".join(f"{v:g}" for v in self.input_mean),
                                 std=", ".join(f"{v:g}" for v in self.input_std))
        return f"{colour} {words}"

    def output_words(self, served=False):
        """'logits' (`served`: 'logits (softmax applied when serving)')."""
        what, how = OUTPUT_KINDS[self.output]
        if self.output in BINARY_KINDS:
            threshold = DEFAULT_THRESHOLDS[self.output] if self.threshold is None else self.threshold
            how = f"{how} {threshold:g}"
        return f"{what} ({how})" if served and how else what

    def describe(self):
        """Plain-English lines: how pixels reach the model and how its output is read."""
        return [f"pixels: {self.input_words()}, {RESIZES[self.resize]}, {RESIZE_FILTERS[self.resize_filter]}",
                f"output: {self.output_words(served=True)}, {OUTPUT_LAYOUTS[self.output_layout]}"]


def fixed_1x1(x, matrix, name):
    """A frozen 1x1 convolution: each output channel the `matrix` (in, out) combination of the input's."""
    import keras

    layer = keras.layers.Conv2D(matrix.shape[1], 1, use_bias=False, trainable=False, name=name)
    x = layer(x)
    layer.set_weights([matrix.reshape(1, 1, *matrix.shape)])
    return x
