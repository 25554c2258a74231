"""Two models on one image: each one's overlay (for a before/after slider), a map of the pixels where
they disagree, and per class the share of its pixels (by either model) on which they disagree. Classes are
matched by name, so a fine-tuned model compares with its base model and models with other classes still
compare where their class names meet."""

from dataclasses import dataclass

import numpy as np

from segdemo.data.images import display_size, load_image, resize_image, resize_mask
from segdemo.limits import DISPLAY_MAX_SIDE
from segdemo.serving.drawing import mask_overlay
from segdemo.serving.segment import PNG_WRITERS, require_image, write_png

DISAGREE_COLOR = (255, 0, 255)  # magenta: where the two models give a pixel different classes
AGREE_BRIGHTNESS = 0.4  # the image, dimmed, where they agree
OVERLAY_OPACITY = 0.5


@dataclass
class Comparison:
    overlays: tuple  # PNG paths: model A's overlay, model B's overlay
    disagreement_map: str  # PNG path
    class_disagreement: dict  # {class: share of the pixels either model gives that class where they disagree}
    disagreement: float  # share of all pixels where they disagree
    titles: tuple  # the two models' card titles


def union_labels(labels_a, classes_a, labels_b, classes_b):
    """Both label maps in one index space: model A's classes, then model B's classes A lacks."""
    names = list(classes_a) + [name for name in classes_b if name not in classes_a]
    b_to_union = np.array([names.index(name) for name in classes_b] + [255] * (256 - len(classes_b)), np.uint8)
    return labels_a, np.take(b_to_union, labels_b), names


def class_disagreement(union_a, union_b, names):
    """{class: 1 - IoU of the two models' masks of that class} for the classes either model uses."""
    shares = {}
    for index, name in enumerate(names):
        in_a, in_b = union_a == index, union_b == index
        either = np.count_nonzero(in_a | in_b)
        if either:
            shares[name] = float(np.count_nonzero(in_a ^ in_b)) / either
    return shares


def disagreement_image(image, disagree):
    """The image dimmed where the models agree, magenta where they do not."""
    dimmed = (image.astype(np.float32) * AGREE_BRIGHTNESS).astype(np.uint8)
    dimmed[disagree] = DISAGREE_COLOR
    return dimmed


def compare_models(image_source, segmenter_a, segmenter_b, folder, names=("A", "B")):
    """Segment one image with two Segmenters; the outputs go into `folder`. `names` title a model whose card
    has no title."""
    require_image(image_source)
    image = load_image(image_source)
    prediction_a, prediction_b = segmenter_a.predict(image), segmenter_b.predict(image)
    union_a, union_b, class_names = union_labels(prediction_a.labels, segmenter_a.classes, prediction_b.labels,
                                                 segmenter_b.classes)
    disagree = union_a != union_b
    size = display_size(image.shape[1], image.shape[0], DISPLAY_MAX_SIDE)
    shown = resize_image(image, size)
    writes = [PNG_WRITERS.submit(write_png, mask_overlay(shown, prediction.labels, segmenter.palette, size,
                                                         OVERLAY_OPACITY), folder, f"overlay_{side}")
              for side, segmenter, prediction in (("a", segmenter_a, prediction_a), ("b", segmenter_b, prediction_b))]
    shown_disagree = resize_mask(disagree.astype(np.uint8), size).astype(bool)
    writes.append(PNG_WRITERS.submit(write_png, disagreement_image(shown, shown_disagree), folder, "disagreement"))
    overlay_a, overlay_b, disagreement_map = (write.result() for write in writes)
    return Comparison((overlay_a, overlay_b), disagreement_map, class_disagreement(union_a, union_b, class_names),
                      float(disagree.mean()), (segmenter_a.card.title or names[0], segmenter_b.card.title or names[1]))
