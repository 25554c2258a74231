"""Batch in process: one ZIP of images gives what the same images as loose files give (what a client sends to
run at the model's pace over the API: one upload), and a bad member is skipped and listed."""

import csv
import zipfile

import numpy as np
import pytest
from PIL import Image

from segdemo.models.architectures import build_unet
from segdemo.models.cards import ModelCard
from segdemo.serving.batch import CSV_NAME, segment_files
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
