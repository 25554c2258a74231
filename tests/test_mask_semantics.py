"""Black/white masks mean what they show: white is the object on any base, the report says how masks were
read, masks that look inverted are flagged, and evaluation reads masks the same way."""

import numpy as np
import pytest
from PIL import Image

from segdemo.app.finetune_requests import NEW_CLASSES, finetune_card
from segdemo.data.masks import decode_mask
from segdemo.data.pairs import Pair
from segdemo.data.uploads import looks_inverted, validate_and_load
from segdemo.errors import InputError
from segdemo.finetune.options import target_card
from segdemo.models.cards import ModelCard, binary_mask_classes, describe_binary_reading
from segdemo.serving.registry import resolve_model_path
from segdemo.ui.finetune_tab import problems_markdown

PETS = ModelCard.load(resolve_model_path("pets"))  # pet, background, border; default class pet
STREET = ModelCard.load(resolve_model_path("street"))  # 11 classes, none called background
MEMBRANES = ModelCard.load(resolve_model_path("membranes"))  # membrane, cell; ISBI: white = cell


def object_mask(size=32, inverted=False):
    """A white object in the middle of a black frame (or the inverse)."""
    mask = np.zeros((size, size), np.uint8)
    mask[8:24, 8:24] = 255
    return 255 - mask if inverted else mask


def write_pairs(folder, masks):
    pairs = []
    for index, mask in enumerate(masks):
        image, mask_path = folder / f"p{index}.jpg", folder / f"p{index}.png"
        Image.new("RGB", mask.shape[::-1], (100, 80, 60)).save(image)
        Image.fromarray(mask).save(mask_path)
        pairs.append(Pair(image, mask_path))
    return pairs


def test_on_a_three_class_base_white_is_its_main_class_and_black_its_background():
    black, white = binary_mask_classes(PETS)
    assert (PETS.classes[white], PETS.classes[black]) == ("pet", "background")
    decoded = decode_mask(object_mask(), num_classes=3, binary=(black, white))
    assert decoded[16, 16] == PETS.classes.index("pet") and decoded[0, 0] == PETS.classes.index("background")
    assert describe_binary_reading(PETS) == "white → pet, black → background"


def test_on_a_two_class_set_white_is_the_object_whatever_the_order():
    for classes in (["background", "object"], ["object", "background"]):
        card = target_card(PETS, classes)
        black, white = binary_mask_classes(card)
        assert classes[white] == "object" and classes[black] == "background"
    assert binary_mask_classes(MEMBRANES) == (0, 1)  # declared by its card: black membrane, white cell


def test_a_base_without_background_class_refuses_binary_masks_with_a_reason(tmp_path):
    assert binary_mask_classes(STREET) is None
    reports, loaded = validate_and_load(write_pairs(tmp_path, [object_mask()]), len(STREET.classes),
                                        None, binary_mask_classes(STREET))
    assert not loaded and "black/white mask" in reports[0].problem and "background, object" in reports[0].problem


def test_pairs_report_says_how_masks_were_read_and_flags_inverted_ones(tmp_path):
    binary = binary_mask_classes(PETS)
    reports, loaded = validate_and_load(write_pairs(tmp_path, [object_mask()] * 3), 3, None, binary)
    assert [r.encoding for r in reports] == ["binary"] * 3 and not looks_inverted(reports)
    assert reports[0].class_pixels == {0: 16 * 16, 1: 32 * 32 - 16 * 16}  # the white square is pet (0)
    text = problems_markdown(reports, [], PETS)
    assert "black/white (3 pairs): white → pet, black → background" in text and "inverted" not in text

    inverted, _ = validate_and_load(write_pairs(tmp_path, [object_mask(inverted=True)] * 3), 3, None, binary)
    assert looks_inverted(inverted)
    assert "look inverted" in problems_markdown(inverted, [], PETS)


def test_new_classes_in_the_tab_read_white_as_the_object():
    card = finetune_card(NEW_CLASSES, "background, car", PETS)
    assert describe_binary_reading(card) == "white → car, black → background"
    with pytest.raises(InputError, match="two distinct names"):
        finetune_card(NEW_CLASSES, "car, car", PETS)


def test_evaluation_reads_black_white_masks_as_the_model_card_says(tmp_path):
    from segdemo.training.evaluation import evaluate

    class Constant:
        """A 'segmenter' that predicts class 0 (pet) everywhere."""
        card, classes = PETS, PETS.classes

        def predict(self, image):
            return type("P", (), {"labels": np.zeros(image.shape[:2], np.uint8)})()

    result = evaluate(Constant(), write_pairs(tmp_path, [object_mask()]))
    assert result["per_class_iou"]["pet"] == pytest.approx(16 * 16 / 32 ** 2)  # white read as pet, not background
