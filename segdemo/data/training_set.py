"""A session's training set: pairs corrected in the Segment tab and pairs uploaded in the Fine-tune tab, which
retraining reads and which downloads as a ZIP the Fine-tune tab accepts."""

import io
import threading
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from segdemo.data.images import display_size, resize_image, resize_mask
from segdemo.data.masks import IGNORE_INDEX
from segdemo.errors import InputError
from segdemo.limits import MAX_PAIRS

STORED_MAX_SIDE = 640  # pairs are kept at most this large (a fine-tune trains at 512 at most)


CORRECTED = "corrected"


UPLOADED = "uploaded"


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
