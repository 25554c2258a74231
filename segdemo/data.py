"""Reading images safely, decoding masks to class indices, and finding image/mask pairs on disk.

Every user-facing failure is an `InputError` whose message says what was wrong and what is accepted.
"""

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segdemo.cards import size_wh
from segdemo.limits import MAX_IMAGE_PIXELS, megapixels

# 12 MP photos pass MAX_IMAGE_PIXELS; a decompression bomb is refused before decoding.
# PIL's own guard stays as a backstop (it raises above twice this); `open_image` refuses anything above
# MAX_IMAGE_PIXELS first, from the header alone, with the image's size in the message.
Image.MAX_IMAGE_PIXELS = 4 * MAX_IMAGE_PIXELS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MASK_SUFFIXES = (".png", ".bmp", ".gif", ".tif", ".tiff")
# A mask file may carry one of these after the image's stem (after _ - . or a space): x.jpg pairs with x.png,
# x_mask.png, x-label.png ...
MASK_STEM_WORDS = ("mask", "masks", "label", "labels", "annot", "annotation", "gt", "seg", "trimap")
MASK_STEM_SUFFIX = re.compile(rf"[_\-. ]({'|'.join(MASK_STEM_WORDS)})$", re.IGNORECASE)
IMAGE_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"  # what IMAGE_SUFFIXES are, in words
# (image folder, mask folder, layout name) pairs of folders matched by file stem
FOLDER_LAYOUTS = (("images", "masks", "images+masks"), ("Images", "Labels", "seed"), ("image", "label", "isbi"))
IGNORE_INDEX = 255  # class index of pixels that count neither in the loss nor in the metrics
MASK_ENCODINGS = ("auto", "index", "binary", "trimap", "palette", "camvid")
CAMVID_VOID = 11  # CamVid's "unlabelled" index, ignored in losses and metrics
BINARY_THRESHOLD = 128  # grey anti-aliasing in 0/255 masks: >= this is foreground
PALETTE_TOLERANCE = 40  # max RGB distance from a palette colour before a pixel counts as unexpected


class InputError(ValueError):
    """Bad user input; the message is meant to be shown to the user as is."""


def open_image(source):
    """Open `source` (path, bytes, file object or PIL image) lazily and refuse bombs before decoding."""
    if isinstance(source, Image.Image):
        return source
    name = Path(source).name if isinstance(source, (str, Path)) else "the upload"
    try:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        image = Image.open(source)
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(f"{name} is not a readable image; accepted: JPEG, PNG, BMP, GIF, TIFF, WebP") from None
    except Image.DecompressionBombError:
        raise too_large_error(name, None) from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise too_large_error(name, (width, height))
    if width < 1 or height < 1:
        raise InputError(f"{name} is empty ({width}x{height} pixels)")
    return image


def too_large_error(name, size):
    what = f"{size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} MP" if size else "too many pixels"
    return InputError(f"{name} is too large ({what}); the limit is {megapixels()}")


def decode_pixels(image, name="the upload"):
    """Fully decode (first frame of animations); truncated or corrupt files raise InputError."""
    try:
        image.seek(0)
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise InputError(f"{name} could not be decoded (truncated or corrupt file: {error})") from None
    return image


def to_rgb_array(image):
    """Any PIL mode -> HxWx3 uint8 RGB. Transparency is composited on white; 16-bit and float images are
    rescaled to 0..255 rather than clipped."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            scaled = values / 257.0
        else:
            low, high = float(np.nanmin(values)), float(np.nanmax(values))
            if mode == "F" and 0.0 <= low and high <= 1.0:
                scaled = values * 255.0
            elif 0.0 <= low and high <= 255.0:
                scaled = values
            else:
                scaled = (values - low) * (255.0 / max(high - low, 1e-12))
        gray = np.nan_to_num(scaled).clip(0, 255).round().astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def load_image(source):
    """Read an image from a path, bytes or PIL image as an HxWx3 uint8 RGB array, EXIF orientation applied."""
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    name = Path(source).name if isinstance(source, (str, Path)) else "the upload"
    image = decode_pixels(open_image(source), name)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not lose the picture  # noqa: BLE001
        pass
    return to_rgb_array(image)


def array_to_rgb(array):
    """An array from another library (HxW, HxWx1/3/4, any dtype) -> HxWx3 uint8."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape[:2]:
        raise InputError(f"expected an HxW or HxWxC image array, got shape {array.shape}")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        high = float(np.nanmax(values)) if values.size else 0.0
        scale = 255.0 if high <= 1.0 else (255.0 / 65535.0 if high > 255.0 else 1.0)
        array = np.nan_to_num(values * scale).clip(0, 255).round().astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


# --- masks -------------------------------------------------------------------------------------------------


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


# --- pairs -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One training/evaluation example on disk and how its mask is encoded."""

    image: Path
    mask: Path
    encoding: str = "auto"

    @property
    def name(self):
        return self.image.stem


@dataclass
class PairSearch:
    """What `find_pairs` found: the pairs, and every file it could not pair."""

    layout: str
    pairs: list
    unpaired_images: list
    unpaired_masks: list


def mask_stem(path):
    """The image stem a mask file belongs to: x_mask.png -> x."""
    return MASK_STEM_SUFFIX.sub("", Path(path).stem)


def list_files(folder, suffixes):
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def match_by_stem(images, masks, encoding="auto"):
    """Pair image and mask files by stem (a mask may add a suffix such as _mask). Returns the pairs and the
    unmatched files of each side. When a mask could match two images (x.jpg and x.png), the first wins."""
    masks_by_stem = {}
    for mask in masks:  # an exact stem match first (x_mask.jpg with x_mask.png), then x.jpg with x_mask.png
        masks_by_stem.setdefault(mask.stem, mask)
    for mask in masks:
        masks_by_stem.setdefault(mask_stem(mask), mask)
    pairs, unpaired_images, used = [], [], set()
    for image in images:
        mask = masks_by_stem.get(image.stem)
        if mask is None or mask in used or mask == image:
            unpaired_images.append(image)
            continue
        used.add(mask)
        pairs.append(Pair(image, mask, encoding))
    unpaired_masks = [mask for mask in masks if mask not in used]
    return pairs, unpaired_images, unpaired_masks


def read_split(path):
    """Names listed in a split file (first token of each non-empty, non-comment line)."""
    names = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(Path(line.split()[0]).stem)
    return names


def find_pairs(root, split=None):
    """Find image/mask pairs under `root` in one of the known layouts:

    - oxford: images/*.jpg + annotations/trimaps/*.png, split from annotations/<split>.txt
    - camvid: <split>/ + <split>annot/ (index masks; 11 = unlabelled is ignored)
    - images/ + masks/ (or the seed layout Images/ + Labels/, or ISBI's image/ + label/), matched by stem;
      a <split>.txt beside them or a <split>/ level above them selects a split
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    if (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir():
        search = search_folders(root / "images", root / "annotations" / "trimaps", "trimap", "oxford")
        return select_split(search, root / "annotations" / f"{split}.txt" if split else None)
    if split and (root / split).is_dir() and (root / f"{split}annot").is_dir():
        return search_folders(root / split, root / f"{split}annot", "camvid", "camvid")
    if split and (root / split).is_dir():
        return find_pairs(root / split)
    for image_dir, mask_dir, layout in FOLDER_LAYOUTS:
        if (root / image_dir).is_dir() and (root / mask_dir).is_dir():
            search = search_folders(root / image_dir, root / mask_dir, "auto", layout)
            split_file = root / f"{split}.txt" if split else None
            return select_split(search, split_file)
    raise InputError(
        f"no known layout in {root}: expected images/ + masks/, Images/ + Labels/, image/ + label/, "
        "images/ + annotations/trimaps/ (Oxford pets) or <split>/ + <split>annot/ (CamVid)"
    )


def search_folders(image_dir, mask_dir, encoding, layout):
    images = list_files(image_dir, IMAGE_SUFFIXES)
    masks = list_files(mask_dir, MASK_SUFFIXES)
    pairs, unpaired_images, unpaired_masks = match_by_stem(images, masks, encoding)
    return PairSearch(layout, pairs, unpaired_images, unpaired_masks)


def select_split(search, split_file):
    if split_file is None:
        return search
    if not split_file.is_file():
        raise InputError(f"split file {split_file} not found")
    wanted = read_split(split_file)
    by_name = {pair.name: pair for pair in search.pairs}
    missing = [name for name in wanted if name not in by_name]
    if missing:
        raise InputError(f"{split_file.name} lists {len(missing)} names without a pair, e.g. {missing[:3]}")
    return PairSearch(search.layout, [by_name[name] for name in wanted], [], [])


def load_pair(pair, num_classes=None, palette=None, binary=(0, 1)):
    """Read one pair as (HxWx3 uint8 image, HxW uint8 class indices); sizes must match. `binary`: the
    (black, white) classes of black/white masks (`cards.binary_mask_classes`)."""
    return read_pair(pair, num_classes, palette, binary)[:2]


def read_pair(pair, num_classes=None, palette=None, binary=(0, 1)):
    """`load_pair`, also returning how the mask was encoded (one of MASK_ENCODINGS, never auto)."""
    image = load_image(pair.image)
    stored = load_mask_array(pair.mask)
    encoding = detect_encoding(stored, num_classes, palette) if pair.encoding == "auto" else pair.encoding
    mask = decode_mask(stored, encoding, num_classes, palette, name=pair.mask.name, binary=binary)
    if image.shape[:2] != mask.shape[:2]:
        raise InputError(
            f"{pair.image.name} is {image.shape[1]}x{image.shape[0]} but its mask {pair.mask.name} is "
            f"{mask.shape[1]}x{mask.shape[0]}; image and mask must have the same size"
        )
    return image, mask, encoding


def display_size(width, height, max_side):
    """(width, height) scaled down, aspect kept, so that the longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_image(image, size):
    """HxWx3 uint8 -> size x size (or (w, h)) bilinear, uint8."""
    size = size_wh(size)
    if image.shape[:2] == (size[1], size[0]):
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def resize_mask(mask, size):
    """HxW class indices -> size x size (or (w, h)) nearest neighbour, so no new classes appear."""
    size = size_wh(size)
    if mask.shape[:2] == (size[1], size[0]):
        return mask
    return np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))


def split_pairs(names, val_share):
    """(train, held-out) index lists; at least one of each when val_share > 0 and there are two names. Held-out
    pairs are picked by a hash of their names, so the split is the same for every seed and listing order."""
    order = sorted(range(len(names)), key=lambda i: hashlib.sha1(names[i].encode()).hexdigest())
    val_count = min(max(1, round(len(names) * val_share)), len(names) - 1) if val_share > 0 and len(names) > 1 else 0
    return sorted(order[val_count:]), sorted(order[:val_count])


def load_resized_pairs(pairs, size, num_classes=None, palette=None, binary=(0, 1)):
    """Decode pairs and resize them to size x size (or (w, h)): (N, H, W, 3) uint8 images and (N, H, W)
    uint8 masks."""
    width, height = size_wh(size)
    images = np.zeros((len(pairs), height, width, 3), np.uint8)
    masks = np.zeros((len(pairs), height, width), np.uint8)
    for index, pair in enumerate(pairs):
        image, mask = load_pair(pair, num_classes, palette, binary)
        images[index] = resize_image(image, size)
        masks[index] = resize_mask(mask, size)
    return images, masks
