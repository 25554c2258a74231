"""Batch in process: one ZIP of images gives what the same images as loose files give (what a client sends to
run at the model's pace over the API: one upload), and a bad member is skipped and listed."""

import csv
import json
import zipfile

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from segdemo.errors import InputError
from segdemo.models.architectures import build_unet
from segdemo.models.cards import ModelCard
from segdemo.serving.annotations import MAX_TOLERANCE
from segdemo.serving.batch import COCO_NAME, CSV_NAME, segment_files
from segdemo.serving.segmenter import Segmenter
from tests.helpers import EXAMPLES

CARD = ModelCard.from_dict({"name": "tiny", "classes": ["background", "thing"], "colors": [[0, 0, 0], [255, 0, 0]],
                            "input_size": 32, "architecture": "unet"})
PHOTOS = ("chelsea_cat.png", "coffee_cup.png", "astronaut.png")


@pytest.fixture(scope="module")
def segmenter():
    import keras

    keras.utils.set_random_seed(0)
    return Segmenter(build_unet(2, depth=2, base_filters=4), CARD).warm_up()


def rows(outcome):
    with open(outcome.csv_path) as handle:
        return list(csv.reader(handle))


def test_one_zip_gives_what_the_loose_files_give(segmenter, tmp_path):
    files = [str(EXAMPLES / name) for name in PHOTOS]
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:
        for path in files:
            handle.write(path, f"photos/{path.rsplit('/', 1)[1]}")
        handle.writestr("photos/broken.jpg", b"not a jpeg")
    (tmp_path / "loose").mkdir()
    (tmp_path / "zipped").mkdir()
    loose = segment_files(files, segmenter, tmp_path / "loose")
    zipped = segment_files([str(archive)], segmenter, tmp_path / "zipped")

    assert [item.name for item in loose.images] == ["chelsea_cat", "coffee_cup", "astronaut"]  # upload order
    assert [item.name for item in zipped.images] == ["astronaut", "chelsea_cat", "coffee_cup"]  # the ZIP's, sorted
    assert rows(zipped)[0] == rows(loose)[0] and sorted(rows(zipped)[1:]) == sorted(rows(loose)[1:])
    assert len(rows(loose)) == 4  # header + one row per image
    assert len(zipped.problems) == 1 and "photos.zip/photos/broken.jpg" in zipped.problems[0]
    with zipfile.ZipFile(zipped.zip_path) as out, zipfile.ZipFile(loose.zip_path) as reference:
        names = sorted(out.namelist())
        assert {f"classes/{stem}.png" for stem in ("chelsea_cat", "coffee_cup", "astronaut")} <= set(names)
        assert CSV_NAME in names and "skipped.txt" in names and "skipped.txt" not in reference.namelist()
        for stem in ("chelsea_cat", "astronaut"):
            mine = np.asarray(Image.open(out.open(f"classes/{stem}.png")))
            theirs = np.asarray(Image.open(reference.open(f"classes/{stem}.png")))
            np.testing.assert_array_equal(mine, theirs)
            assert mine.shape == np.asarray(Image.open(EXAMPLES / f"{stem}.png")).shape[:2]


def coco_masks(archive, tmp_path):
    """{file_name: (classes, h, w) bool}: the ZIP's coco.json as pycocotools rasterises it, unioned per category."""
    path = tmp_path / COCO_NAME
    path.write_bytes(archive.read(COCO_NAME))
    coco = COCO(str(path))
    masks = {}
    for image in coco.dataset["images"]:
        masks[image["file_name"]] = out = np.zeros((len(CARD.classes), image["height"], image["width"]), bool)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            out[annotation["category_id"] - 1] |= coco.annToMask(annotation).astype(bool)
    return coco.dataset, masks


@pytest.mark.parametrize("segmentation", ["polygon", "rle"])
def test_the_zip_holds_coco_and_polygons_that_give_the_masks_back(segmenter, tmp_path, segmentation):
    files = [str(EXAMPLES / name) for name in PHOTOS]
    outcome = segment_files(files, segmenter, tmp_path, segmentation=segmentation)
    with zipfile.ZipFile(outcome.zip_path) as archive:
        names = set(archive.namelist())
        assert {f"{sub}/{stem}.{ext}" for stem in ("chelsea_cat", "coffee_cup", "astronaut")
                for sub, ext in (("classes", "png"), ("masks", "png"), ("polygons", "json"))} <= names
        dataset, masks = coco_masks(archive, tmp_path)
        assert [category["name"] for category in dataset["categories"]] == CARD.classes
        assert [image["file_name"] for image in dataset["images"]] == list(PHOTOS)  # the uploaded images' names
        assert dataset["info"]["model"] == "tiny"
        for stem in ("chelsea_cat", "coffee_cup", "astronaut"):
            labels = np.asarray(Image.open(archive.open(f"classes/{stem}.png")))
            polygons = json.loads(archive.read(f"polygons/{stem}.json"))
            assert (polygons["height"], polygons["width"]) == labels.shape
            assert {region["class"] for region in polygons["regions"]} == {CARD.classes[i] for i in np.unique(labels)}
            for index in np.unique(labels):
                truth, drawn = labels == index, masks[f"{stem}.png"][index]
                if segmentation == "rle":
                    np.testing.assert_array_equal(drawn, truth)
                else:
                    assert (truth & drawn).sum() / (truth | drawn).sum() >= 0.98, (stem, index)


@pytest.mark.parametrize("options", [{"segmentation": "masks"}, {"tolerance": -0.5},
                                     {"tolerance": MAX_TOLERANCE * 10}])
def test_bad_export_options_are_refused_before_any_work(segmenter, tmp_path, options):
    with pytest.raises(InputError, match="accepted"):
        segment_files([str(EXAMPLES / PHOTOS[0])], segmenter, tmp_path, **options)
    assert not any(tmp_path.iterdir())
