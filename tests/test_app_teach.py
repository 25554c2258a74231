"""The teach loop through `gradio_client` against the launched app: add pairs to the session's training set,
retrain twice (the second round continues from the first), segment with the result; bad input keeps the set."""

import io
import zipfile

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from segdemo.app.sessions import FINETUNED_CHOICE
from segdemo.limits import DEFAULT_BATCH_SIZE
from tests.helpers import square_pairs

# the tab's batch size: the job takes the network the worker traced ahead for the default base (as a user's would)
STEPS, LEARNING_RATE, BATCH_SIZE = 10, 1e-3, DEFAULT_BATCH_SIZE


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    """6 (image, mask) PNG files: a bright square (pets class 0, pet) on background (class 1)."""
    folder = tmp_path_factory.mktemp("teach")
    images, masks = square_pairs(6, 64, np.random.default_rng(5))
    files = []
    for index, (image, mask) in enumerate(zip(images, masks)):
        image_path, mask_path = folder / f"img{index}.png", folder / f"img{index}_mask.png"
        Image.fromarray(image).save(image_path)
        Image.fromarray((1 - mask).astype(np.uint8)).save(mask_path)  # pet = 0, background = 1
        files.append((str(image_path), str(mask_path)))
    return files


def add_pair(client, image, mask, model=""):
    added, summary, _ = client.predict(handle_file(image), handle_file(mask), model, api_name="/add_training_pair")
    return added, summary


def test_bad_pairs_are_refused_and_nothing_is_lost(app_url, pair_files, tmp_path):
    client = Client(app_url, verbose=False)
    image, mask = pair_files[0]
    added, _ = add_pair(client, image, mask, "pets")
    assert added["pairs"] == 1
    small_mask = tmp_path / "small.png"
    Image.open(mask).resize((32, 32)).save(small_mask)
    with pytest.raises(Exception, match="same size"):
        add_pair(client, image, str(small_mask), "pets")
    with pytest.raises(Exception, match=r"need at least 2 good pairs.*in your training set"):
        client.predict("pets", STEPS, LEARNING_RATE, BATCH_SIZE, api_name="/retrain")
    with pytest.raises(Exception, match="no fine-tuned model yet"):
        client.predict("my fine-tuned model (this session)", api_name="/retrain")
    added, summary = add_pair(client, *pair_files[1], "pets")
    assert added["pairs"] == 2 and "2 pairs" in summary  # the first pair survived both errors


def test_retrain_twice_continues_from_the_session_model(app_url, pair_files):
    client, other = Client(app_url, verbose=False), Client(app_url, verbose=False)
    for index, (image, mask) in enumerate(pair_files):
        added, _ = add_pair(client, image, mask, "pets")
        assert added["pairs"] == index + 1
        truth = 1 - square_pairs(6, 64, np.random.default_rng(5))[1][index]
        assert added["classes"]["pet"] == pytest.approx(float((truth == 0).mean()), abs=1e-3)
        assert added["classes"]["border"] == 0.0

    job = client.submit("pets", STEPS, LEARNING_RATE, BATCH_SIZE, api_name="/retrain")
    first = job.result()
    assert first["model_name"] == FINETUNED_CHOICE and first["pairs"] == 6 and first["steps_run"] >= STEPS
    assert "Done" in first["status"] and any("Round" in update["status"] for update in job.outputs()[:-1])
    # the second round (no model named: the session's) starts from the first round's model: its "before" is the
    # first's "after" (a bare call, with RETRAIN_STEPS, is README's example: tests/test_docs.py runs it)
    second = client.submit("", STEPS, api_name="/retrain").result()
    assert second["held_out"] == first["held_out"]
    assert second["before"]["miou"] == pytest.approx(first["after"]["miou"], abs=0.02)
    assert second["before"]["pixel_acc"] == pytest.approx(first["after"]["pixel_acc"], abs=0.02)

    *_, info, mask_path = client.predict(handle_file(pair_files[0][0]), FINETUNED_CHOICE, "pet", 0.5,
                                         api_name="/segment")
    assert "fine-tuned" in info and np.asarray(Image.open(mask_path)).shape == (64, 64)
    with pytest.raises(Exception, match="fine-tuned model .*(not in the list of choices|yet)"):  # not another's
        other.predict(handle_file(pair_files[0][0]), FINETUNED_CHOICE, "pet", 0.5, api_name="/segment")

    archive_path = client.predict(api_name="/download_training_set")
    with zipfile.ZipFile(archive_path) as archive:
        names = archive.namelist()
        assert sum(name.startswith("masks/") for name in names) == 6
        first_mask = np.asarray(Image.open(io.BytesIO(archive.read("masks/corrected_001.png"))))
    assert set(np.unique(first_mask)) <= {0, 1}
