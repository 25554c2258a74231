"""Finding image/mask pairs on disk (the folder layouts and name suffixes users have), splitting and loading them."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segdemo.data.images import IMAGE_SUFFIXES, load_image, resize_image, resize_mask
from segdemo.data.masks import MASK_SUFFIXES, decode_mask, detect_encoding, load_mask_array
from segdemo.errors import InputError
from segdemo.models.cards import size_wh

# A mask file may carry one of these after the image's stem (after _ - . or a space): x.jpg pairs with x.png,
# x_mask.png, x-label.png ...
MASK_STEM_WORDS = ("mask", "masks", "label", "labels", "annot", "annotation", "gt", "seg", "trimap")


MASK_STEM_SUFFIX = re.compile(rf"[_\-. ]({'|'.join(MASK_STEM_WORDS)})$", re.IGNORECASE)


# (image folder, mask folder, layout name) pairs of folders matched by file stem
FOLDER_LAYOUTS = (("images", "masks", "images+masks"), ("Images", "Labels", "seed"), ("image", "label", "isbi"))


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
