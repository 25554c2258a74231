"""Decoding masks to class indices: index, black/white, trimap, palette and CamVid colour masks."""

from pathlib import Path

import numpy as np

from segdemo.data.images import decode_pixels, open_image
from segdemo.errors import InputError

MASK_SUFFIXES = (".png", ".bmp", ".gif", ".tif", ".tiff")


IGNORE_INDEX = 255  # class index of pixels that count neither in the loss nor in the metrics


MASK_ENCODINGS = ("auto", "index", "binary", "trimap", "palette", "camvid")


CAMVID_VOID = 11  # CamVid's "unlabelled" index, ignored in losses and metrics


BINARY_THRESHOLD = 128  # grey anti-aliasing in 0/255 masks: >= this is foreground


PALETTE_TOLERANCE = 40  # max RGB distance from a palette colour before a pixel counts as unexpected


def load_mask_array(source):
    """Read a mask file as stored: HxW for single-channel/palette files (palette files keep their indices),
    HxWx3 for colour files."""
    name = Path(source).name if isinstance(source, (str, Path)) else "the mask"
    image = decode_pixels(open_image(source), name)
    if image.mode in ("P", "L", "1", "I;16", "I", "I;16B", "I;16L"):
        return np.asarray(image.convert("L") if image.mode == "1" else image).astype(np.int64)
    rgb = np.asarray(image.convert("RGB"))
    if np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 1], rgb[:, :, 2]):
        return rgb[:, :, 0].astype(np.int64)
    return rgb


def decode_mask(mask, encoding="auto", num_classes=None, palette=None, name="mask", binary=(0, 1)):
    """Turn a stored mask (HxW values or HxWx3 colours) into HxW uint8 class indices.

    encodings: index (values are class ids; 255 = ignore), binary (0/255 with grey anti-aliasing,
    thresholded at 128; black -> class `binary[0]`, white -> class `binary[1]`, see
    `cards.binary_mask_classes`; `binary=None`: the classes have no reading for black/white), trimap (Oxford
    pets: 1, 2, 3 -> 0, 1, 2), palette (RGB colours -> nearest palette entry), camvid (index with 11 =
    unlabelled -> 255 ignore), auto (palette for colour masks, index when values fit the classes, else binary)."""
    if encoding not in MASK_ENCODINGS:
        raise ValueError(f"unknown mask encoding {encoding!r}; choose from {MASK_ENCODINGS}")
    mask = np.asarray(mask)
    if encoding == "auto":
        encoding = detect_encoding(mask, num_classes, palette)
    if encoding == "palette":
        return decode_palette_mask(mask, palette, name)
    if mask.ndim == 3:
        raise InputError(f"{name} is a colour mask; give the class colours (a palette) to decode it")
    if encoding == "binary":
        if binary is None:
            raise InputError(f"{name} is a black/white mask, but these classes say neither which class white "
                             "is nor which is black (no 'background' class): define two new classes such as "
                             "'background, object', or upload class-index or colour masks")
        black, white = binary
        return np.where(mask >= BINARY_THRESHOLD, white, black).astype(np.uint8)
    if encoding == "trimap":
        bad = sorted(set(np.unique(mask).tolist()) - {1, 2, 3})
        if bad:
            raise InputError(f"{name} is not an Oxford trimap: values {bad[:10]} outside 1, 2, 3")
        if num_classes is not None and num_classes != 3:  # read as pet, background, border, or not at all
            raise InputError(f"{name} is an Oxford trimap (pet, background, border: 3 classes), but the model has "
                             f"{num_classes}; score it on masks of its own classes")
        return (mask - 1).astype(np.uint8)
    labels = mask.astype(np.int64)
    if encoding == "camvid":
        labels = np.where(labels == CAMVID_VOID, IGNORE_INDEX, labels)
    valid = labels[labels != IGNORE_INDEX]
    if valid.size and (valid.min() < 0 or (num_classes and valid.max() >= num_classes)):
        values = sorted(set(np.unique(valid).tolist()) - set(range(num_classes or 256)))
        raise InputError(
            f"{name} has class values {values[:10]} but the model has {num_classes} classes "
            f"(0..{(num_classes or 256) - 1}, 255 = ignore)"
        )
    return labels.astype(np.uint8)


def detect_encoding(mask, num_classes=None, palette=None):
    """Guess how a mask is encoded (see `decode_mask`): colour -> palette; only 0 and 255 -> binary; values
    that fit the classes -> index; 0..255 with greys above 127 -> binary with anti-aliasing; anything else
    -> index (whose range check then names the unexpected values)."""
    if mask.ndim == 3:
        return "palette"
    values = set(np.unique(mask).tolist())
    if values <= {0, 255}:
        return "binary"
    classes = values - {IGNORE_INDEX}
    if max(classes) < (num_classes or 32):
        return "index"
    if min(values) == 0 and max(values) >= BINARY_THRESHOLD:
        return "binary"
    return "index"


def decode_palette_mask(mask, palette, name="mask"):
    """RGB mask -> indices of the nearest palette colour; colours far from every entry are an error."""
    if palette is None or not len(palette):
        raise InputError(f"{name} is a colour mask but no class colours were given")
    colors = np.asarray(palette, dtype=np.int64).reshape(-1, 3)
    rgb = mask if mask.ndim == 3 else np.repeat(mask[:, :, None], 3, axis=2)
    unique, inverse = np.unique(rgb.reshape(-1, 3).astype(np.int64), axis=0, return_inverse=True)
    distances = np.sqrt(((unique[:, None, :] - colors[None, :, :]) ** 2).sum(axis=2))
    nearest = distances.argmin(axis=1)
    far = distances.min(axis=1) > PALETTE_TOLERANCE
    if far.any():
        listed = ", ".join(f"({r},{g},{b})" for r, g, b in unique[far][:8].tolist())
        more = f" and {int(far.sum()) - 8} more" if far.sum() > 8 else ""
        raise InputError(f"{name} has colours not in the class palette: {listed}{more}")
    return nearest[inverse.reshape(-1)].reshape(rgb.shape[:2]).astype(np.uint8)
