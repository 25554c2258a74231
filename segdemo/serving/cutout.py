"""Cut-outs and virtual backgrounds: one class of a segmentation kept, the rest made transparent (an RGBA image,
as background-removal tools give) or replaced by a plain colour or a blurred copy of the image (a video call's
virtual background). The class's alpha is its hard mask (a sharp edge) or its probability (a soft edge).
NumPy and PIL only: fast enough for every frame of a video."""

import functools
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from segdemo.errors import InputError

SOFT, SHARP = "soft", "sharp"
EDGES = (SOFT, SHARP)
NONE, PLAIN, BLUR = "none", "plain", "blur"
BACKGROUNDS = (NONE, PLAIN, BLUR)  # the image as it is; the class over a plain colour; over a blurred copy
DEFAULT_COLOR = (0, 177, 64)  # chroma-key green: a video editor can key it out again
EDGE_CELLS = 2  # the soft edge spans at most this many model-grid cells either side of the sharp one
BLUR_SHARE = 1 / 40  # the default blur radius, as a share of the image's long side (16 px at 640)
BLUR_STEP = 4  # the blur runs on a copy this many times smaller per blur_radius/BLUR_STEP px (min. 1)


def require_edge(edge):
    if edge not in EDGES:
        raise InputError(f"Unknown edge {edge!r}; choose one of: {', '.join(EDGES)}.")


def require_background(background):
    if background not in BACKGROUNDS:
        raise InputError(f"Unknown background {background!r}; choose one of: {', '.join(BACKGROUNDS)}.")


def class_index_of(classes, class_name, default):
    """The index of `class_name` in `classes`; empty or None: `default`'s. InputError lists the classes."""
    name = class_name or default
    if name not in classes:
        raise InputError(f"unknown class {str(name)[:100]!r}; this model's classes: {', '.join(classes)}")
    return list(classes).index(name)


def color_rgb(color):
    """An (r, g, b) tuple from "#rgb", "#rrggbb", "#rrggbbaa", "rgb(r, g, b)", "rgba(r, g, b, a)" or a
    sequence of three numbers (colour pickers send either text form); empty or None: DEFAULT_COLOR."""
    if color is None or (isinstance(color, str) and not color.strip()):
        return DEFAULT_COLOR
    if not isinstance(color, str):
        values = [int(round(float(v))) for v in color]
    elif color.strip().startswith("#"):
        digits = color.strip()[1:]
        digits = "".join(d * 2 for d in digits) if len(digits) in (3, 4) else digits
        if len(digits) not in (6, 8) or not re.fullmatch(r"[0-9a-fA-F]+", digits):
            raise InputError(f"{color[:40]!r} is not a colour; give #rrggbb or rgb(r, g, b)")
        values = [int(digits[i:i + 2], 16) for i in (0, 2, 4)]
    else:
        match = re.fullmatch(r"\s*rgba?\(([^)]*)\)\s*", color)
        numbers = re.findall(r"[-+]?\d*\.?\d+", match.group(1)) if match else []
        if len(numbers) not in (3, 4):
            raise InputError(f"{color[:40]!r} is not a colour; give #rrggbb or rgb(r, g, b)")
        values = [int(round(float(v))) for v in numbers[:3]]
    if len(values) != 3:
        raise InputError(f"a colour has three values (r, g, b), got {len(values)}")
    return tuple(int(np.clip(v, 0, 255)) for v in values)


def sharp_alpha(labels, class_index):
    """255 where the pixel's class is `class_index`, else 0: the argmax mask, a hard edge."""
    return np.where(labels == class_index, np.uint8(255), np.uint8(0))


def class_odds(probs, class_index):
    """(h, w) float32: the class's probability against the strongest other class's, p / (p + p_other). For two
    classes it is the probability itself; for more, it is 0.5 exactly where the argmax changes, so a soft edge
    drawn from it is centred on the sharp one (the probability alone may be 0.4 inside the class)."""
    probs = np.asarray(probs, np.float32)
    own = probs[..., class_index]
    rest = [probs[..., index] for index in range(probs.shape[-1]) if index != class_index] or [1.0 - own]
    others = functools.reduce(np.maximum, rest)  # one pass per class: 4x faster than .max(axis=-1) over a few
    return own / np.maximum(own + others, 1e-6)


def edge_radius(full_shape, grid_shape):
    """EDGE_CELLS model-grid cells in full-resolution pixels: how far bilinear upsampling spreads a boundary."""
    cell = max(full_shape[0] / max(grid_shape[0], 1), full_shape[1] / max(grid_shape[1], 1))
    return max(1, int(np.ceil(EDGE_CELLS * cell)))


def soft_alpha(labels, probs, class_index):
    """The class's odds (`class_odds`) resized bilinearly to the labels' size, made to agree with the labels: at
    least 128 where the pixel is the class and at most 127 where it is not, and only within `edge_radius` of the
    class's border (a box blur of the sharp mask finds the band): 255 deeper inside, 0 farther out, so a model
    unsure of a far-away region does not leave a ghost of it, nor holes inside the class."""
    sharp = sharp_alpha(labels, class_index)
    height, width = labels.shape
    odds = (class_odds(probs, class_index) * 255.0).round().astype(np.uint8)
    soft = np.asarray(Image.fromarray(odds).resize((width, height), Image.BILINEAR))
    soft = np.maximum(soft, sharp & 128)  # inside: at least 128
    np.minimum(soft, sharp | 127, out=soft)  # outside: at most 127
    radius = edge_radius(labels.shape, probs.shape[:2])
    band = np.asarray(Image.fromarray(sharp).filter(ImageFilter.BoxBlur(radius)))  # exactly 0 / 255 off the band
    return np.where((band == 0) | (band == 255), band, soft)


def alpha_for(labels, probs, class_index, edge=SOFT):
    """(H, W) uint8 alpha of class `class_index` for `labels` (H, W) of any size and `probs` (h, w, C) on the
    model's grid: see `class_alpha`."""
    require_edge(edge)
    return soft_alpha(labels, probs, class_index) if edge == SOFT else sharp_alpha(labels, class_index)


def class_alpha(prediction, class_index, edge=SOFT):
    """(H, W) uint8 alpha of one class at the image's full resolution from a `Prediction`: "sharp" is the
    class's mask (255 / 0), "soft" its probability at the edge (see `soft_alpha`)."""
    return alpha_for(prediction.labels, prediction.probs, class_index, edge)


def cutout_rgba(image, prediction, class_index, edge=SOFT):
    """(H, W, 4) uint8 RGBA: the image at full size, transparent where the class is not."""
    alpha = class_alpha(prediction, class_index, edge)
    if image.shape[:2] != alpha.shape:
        raise ValueError(f"image {image.shape[:2]} and prediction {alpha.shape} differ in size")
    return np.dstack([image[..., :3], alpha])


def blurred(image, radius=None):
    """A blurred copy of `image` (Gaussian, `radius` px; None: BLUR_SHARE of the long side): blurred at a size
    reduced by radius / BLUR_STEP (a box average, which blurs too) and scaled back, about 10x faster than at
    full size for the same look."""
    height, width = image.shape[:2]
    radius = max(height, width) * BLUR_SHARE if radius is None else float(radius)
    if radius <= 0:
        return image
    factor = max(1, min(int(radius // BLUR_STEP), height, width))
    small = Image.fromarray(image)
    small = small.reduce(factor) if factor > 1 else small
    small = small.filter(ImageFilter.GaussianBlur(radius / factor))
    return np.asarray(small.resize((width, height), Image.BILINEAR))


def blend(image, background, alpha):
    """`image` over `background` (an image, or an (r, g, b) colour) with (H, W) uint8 `alpha`: integer arithmetic,
    as in drawing.overlay (alpha 255 gives the image, 0 the background, exactly). The weights are stacked into
    three channels once: numpy broadcasting an (H, W, 1) weight over RGB runs 3x slower."""
    weight = alpha.astype(np.uint16)
    weight += weight >> 7  # 0..255 -> 0..256
    rest = 256 - weight
    if np.ndim(background) == 1:
        behind = np.stack([rest * int(channel) + 128 for channel in background], axis=-1)
    else:
        behind = np.stack([rest] * 3, axis=-1)
        behind *= background
        behind += 128
    mixed = image.astype(np.uint16)
    mixed *= np.stack([weight] * 3, axis=-1)
    mixed += behind
    mixed >>= 8
    return mixed.astype(np.uint8)


def replace_background(image, alpha, background, color=DEFAULT_COLOR, blur_radius=None):
    """(H, W, 3) uint8: the class (where `alpha` is high) over a plain `color` ("plain"), over a blurred copy of
    the image ("blur", `blur_radius` px), or the image itself ("none")."""
    require_background(background)
    image = image[..., :3]
    if background == NONE:
        return image
    behind = color_rgb(color) if background == PLAIN else blurred(image, blur_radius)
    return blend(image, behind, alpha)


@dataclass(frozen=True)
class VirtualBackground:
    """What a virtual background keeps and what it puts behind: used on every frame of a video or a stream."""

    class_index: int
    background: str = BLUR
    color: tuple = DEFAULT_COLOR
    edge: str = SOFT
    blur_radius: float = None  # px at the size drawn; None: BLUR_SHARE of the long side

    def __post_init__(self):
        require_background(self.background)
        require_edge(self.edge)

    def draw(self, image, labels, probs):
        """`image` with its background replaced; `labels` at the image's size, `probs` on the model's grid."""
        alpha = alpha_for(labels, probs, self.class_index, self.edge)
        return replace_background(image, alpha, self.background, self.color, self.blur_radius)
