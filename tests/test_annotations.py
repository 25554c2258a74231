"""Polygons and COCO export of class-index masks (serving.annotations): what a COCO reader (pycocotools, which CVAT's
importer and most trainers use) rasterises from the written file gives the mask back: exactly at tolerance 0 and
for RLE, within 2% per class at the default tolerance; holes (the pet in the background, an island in a hole)
survive; 1-pixel lines, border regions and a 1x1 image too. NumPy, OpenCV and pycocotools only."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from segdemo.errors import InputError
from segdemo.serving.annotations import (
    DEFAULT_TOLERANCE,
    MAX_TOLERANCE,
    CocoBuilder,
    class_regions,
    coco_document,
    image_polygons,
)

CLASSES = ["background", "pet", "toy", "line"]
IGNORE = 255


def pet_scene():
    """60x80: a pet holding a toy (the pet's hole) with a bit of pet inside the toy (an island in a hole), toy
    along the right and top borders, three 1-pixel lines (horizontal, vertical, diagonal) and an ignored corner."""
    labels = np.zeros((60, 80), np.uint8)
    rows, cols = np.mgrid[:60, :80]
    labels[((cols - 30) / 20) ** 2 + ((rows - 28) / 16) ** 2 <= 1] = 1
    labels[((cols - 30) / 9) ** 2 + ((rows - 28) / 7) ** 2 <= 1] = 2
    labels[26:31, 28:33] = 1
    labels[:, 74:] = 2
    labels[0, :10] = 2
    labels[55, 5:60] = 3
    labels[2:50, 66] = 3
    labels[np.arange(40, 52), np.arange(50, 62)] = 3
    labels[57:, :4] = IGNORE
    return labels


def blob_scene():
    """480x640 shapes a few hundred pixels across, as a model draws them: a pet (ellipse) holding a toy, a toy
    polygon cut by the left border, a pet ellipse cut by the bottom one, a curved line (a leash) 3 px wide."""
    image = Image.new("L", (640, 480), 0)
    draw = ImageDraw.Draw(image)
    draw.ellipse([150, 90, 470, 330], fill=1)
    draw.ellipse([260, 170, 360, 250], fill=2)
    draw.polygon([(-40, 300), (120, 260), (170, 420), (30, 470)], fill=2)
    draw.ellipse([420, 360, 700, 560], fill=1)
    draw.arc([40, 20, 600, 200], 200, 340, fill=3, width=3)
    return np.asarray(image)


def round_trip(tmp_path, images, segmentation="polygon", tolerance=DEFAULT_TOLERANCE):
    """{file_name: (classes, h, w) bool} as pycocotools rasterises the written COCO file (union per category)."""
    builder = CocoBuilder(CLASSES, segmentation, tolerance)
    for file_name, labels in images:
        builder.add(file_name, labels)
    path = builder.write(tmp_path / f"coco_{segmentation}_{tolerance}.json")
    coco = COCO(path)
    masks = {}
    for image in coco.dataset["images"]:
        masks[image["file_name"]] = out = np.zeros((len(CLASSES), image["height"], image["width"]), bool)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            out[annotation["category_id"] - 1] |= coco.annToMask(annotation).astype(bool)
    return masks


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def small_images():
    one = np.full((1, 1), 2, np.uint8)
    single = np.zeros((7, 5), np.uint8)
    return [("pet.png", pet_scene()), ("one.png", one), ("single.jpg", single)]


def test_polygons_at_tolerance_0_give_the_mask_back_exactly(tmp_path):
    masks = round_trip(tmp_path, small_images(), tolerance=0)
    for file_name, labels in small_images():
        for index in range(len(CLASSES)):
            np.testing.assert_array_equal(masks[file_name][index], labels == index, err_msg=f"{file_name} {index}")
        assert not masks[file_name][:, labels == IGNORE].any()  # ignored pixels belong to no category


def test_rle_gives_the_mask_back_exactly(tmp_path):
    masks = round_trip(tmp_path, small_images(), segmentation="rle")
    for file_name, labels in small_images():
        for index in range(len(CLASSES)):
            np.testing.assert_array_equal(masks[file_name][index], labels == index, err_msg=f"{file_name} {index}")
    document = coco_document([("pet.png", pet_scene())], CLASSES, segmentation="rle")
    annotations = document["annotations"]
    assert [annotation["category_id"] for annotation in annotations] == [1, 2, 3, 4]  # one per class present
    for annotation in annotations:
        truth = pet_scene() == annotation["category_id"] - 1
        rows, cols = np.nonzero(truth)
        assert isinstance(annotation["segmentation"]["counts"], str) and annotation["segmentation"]["size"] == [60, 80]
        assert annotation["iscrowd"] == 0 and annotation["area"] == truth.sum()
        assert annotation["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]


def test_polygons_at_the_default_tolerance_keep_98_percent_of_each_class(tmp_path):
    labels = blob_scene()
    masks = round_trip(tmp_path, [("blobs.png", labels)])["blobs.png"]
    for index in range(len(CLASSES)):
        assert iou(masks[index], labels == index) >= 0.98, CLASSES[index]
    exact = sum(len(region.exterior) + sum(map(len, region.holes)) for region in class_regions(labels, CLASSES, 0))
    simple = sum(len(region.exterior) + sum(map(len, region.holes)) for region in class_regions(labels, CLASSES))
    assert simple < exact / 3  # the tolerance did simplify


@pytest.mark.parametrize("tolerance", [1.0, 5.0, MAX_TOLERANCE])
def test_thin_and_small_regions_survive_any_tolerance(tmp_path, tolerance):
    masks = round_trip(tmp_path, small_images(), tolerance=tolerance)
    labels = pet_scene()
    assert iou(masks["pet.png"][3], labels == 3) >= 0.98  # the 1-pixel lines
    np.testing.assert_array_equal(masks["one.png"][2], [[True]])
    np.testing.assert_array_equal(masks["single.jpg"][0], np.ones((7, 5), bool))
    regions = class_regions(labels, CLASSES, tolerance)
    assert [region.class_name for region in regions].count("line") == 3


def test_regions_keep_their_holes_and_islands():
    labels = pet_scene()
    regions = class_regions(labels, CLASSES, 0)
    holes = {name: sorted(len(region.holes) for region in regions if region.class_name == name) for name in CLASSES}
    # Regions are 8-connected and holes 4-connected (OpenCV's convention), class by class: the diagonal line is
    # one region of "line" but 12 one-pixel holes of the background, touching at their corners. So the
    # background's holes are the pet blob, the two straight lines and those 12; the pet's the toy; the toy's the
    # island of pet.
    assert holes == {"background": [15], "pet": [0, 1], "toy": [0, 0, 1], "line": [0, 0, 0]}
    for index in range(len(CLASSES)):
        assert sum(region.area for region in regions if region.class_index == index) == (labels == index).sum()
    island = min((region for region in regions if region.class_name == "pet"), key=lambda region: region.area)
    assert island.area == 25 and island.bbox == [28, 26, 5, 5]
    assert sorted(island.exterior.tolist()) == [[28, 26], [28, 31], [33, 26], [33, 31]]  # pixel edges, not centres


def test_image_polygons_describe_themselves_and_rasterise_back():
    labels = pet_scene()
    polygons = json.loads(json.dumps(image_polygons(labels, CLASSES, tolerance=0)))  # JSON-able
    assert (polygons["width"], polygons["height"], polygons["classes"]) == (80, 60, CLASSES)
    assert "pixel edges" in polygons["coordinates"] and polygons["tolerance"] == 0
    assert sum(len(region["holes"]) for region in polygons["regions"]) == 15 + 1 + 1
    rebuilt = np.zeros((len(CLASSES), 60, 80), np.uint8)
    for region in polygons["regions"]:
        rings = coco_mask.frPyObjects([np.ravel(ring).tolist() for ring in [region["exterior"], *region["holes"]]],
                                      60, 80)
        inside = coco_mask.decode(rings[0])
        for hole in rings[1:]:
            inside &= 1 - coco_mask.decode(hole)
        rebuilt[region["class_index"]] |= inside
    for index in range(len(CLASSES)):
        np.testing.assert_array_equal(rebuilt[index], labels == index)


def test_many_holes_make_one_polygon_per_region(tmp_path):
    """A background with 300 holes in rows and columns (each hole's cut may land on the hole above it) is still one
    annotation with one polygon, which CVAT imports as one shape and Label Studio as one region."""
    labels = np.zeros((90, 120), np.uint8)
    for row in range(3, 87, 6):
        for col in range(2, 118, 6):
            labels[row:row + 3, col:col + 2 + (col // 6) % 3] = 1
    document = coco_document([("holes.png", labels)], CLASSES, tolerance=0)
    background = [annotation for annotation in document["annotations"] if annotation["category_id"] == 1]
    assert len(background) == 1 and len(background[0]["segmentation"]) == 1
    assert all(len(annotation["segmentation"]) == 1 and len(annotation["segmentation"][0]) >= 6
               for annotation in document["annotations"])
    for tolerance in (0, 2.0):
        masks = round_trip(tmp_path, [("holes.png", labels)], tolerance=tolerance)["holes.png"]
        assert iou(masks[0], labels == 0) >= (1.0 if tolerance == 0 else 0.98)


def test_document_ids_categories_and_info():
    document = coco_document([("a.png", pet_scene()), ("b.png", np.ones((4, 6), np.uint8))], CLASSES,
                             colors=[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], info={"model": "pets"})
    assert document["categories"][1] == {"id": 2, "name": "pet", "supercategory": "", "color": [255, 0, 0]}
    assert [category["id"] for category in document["categories"]] == [1, 2, 3, 4]
    assert document["images"] == [{"id": 1, "file_name": "a.png", "width": 80, "height": 60},
                                  {"id": 2, "file_name": "b.png", "width": 6, "height": 4}]
    annotations = document["annotations"]
    assert [annotation["id"] for annotation in annotations] == list(range(1, len(annotations) + 1))
    assert len(annotations) == 1 + 2 + 3 + 3 + 1  # regions of a.png, then b.png's one pet region
    assert annotations[-1]["image_id"] == 2 and annotations[-1]["bbox"] == [0, 0, 6, 4]
    assert annotations[-1]["segmentation"] == [[0, 0, 6, 0, 6, 4, 0, 4]] and annotations[-1]["area"] == 24
    assert all(annotation["iscrowd"] == 0 for annotation in annotations)
    assert document["info"]["model"] == "pets" and document["info"]["segmentation"] == "polygon"


@pytest.mark.parametrize("options, accepted", [
    ({"segmentation": "mask"}, "'polygon' and 'rle'"),
    ({"tolerance": -1}, f"from 0 (exact outlines) to {MAX_TOLERANCE:g}"),
    ({"tolerance": MAX_TOLERANCE + 1}, f"to {MAX_TOLERANCE:g}"),
    ({"tolerance": float("nan")}, "from 0"),
    ({"tolerance": "1"}, "number of pixels"),
    ({"tolerance": True}, "number of pixels"),
])
def test_bad_options_say_what_is_accepted(options, accepted):
    with pytest.raises(InputError, match=accepted.replace("(", r"\(").replace(")", r"\)")):
        CocoBuilder(CLASSES, **options)
