"""The Fine-tune tab through `gradio_client` against the launched app: pairing report, a tiny fine-tune
that lowers the loss, session isolation between two clients, and Stop."""

import time
import zipfile

import pytest
from gradio_client import Client, handle_file

from segdemo.app.sessions import FINETUNED_CHOICE
from tests.helpers import add_square_pairs, encoded

KEEP = "keep the base model's classes"
NEW = "define new classes"
FAST = dict(steps=24, learning_rate=1e-3, batch_size=4, input_size=64, val_share=0.25, augment=False,
            loss="ce_dice", freeze_encoder=True, flip_tta=True)


@pytest.fixture(scope="module")
def pairs_zip(tmp_path_factory):
    """8 good pairs (pets class indices: square = pet 0, rest = background 1), one size mismatch, one
    image without a mask, one text file posing as an image."""
    path = tmp_path_factory.mktemp("upload") / "pairs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        images, masks = add_square_pairs(archive, 8, seed=3)
        archive.writestr("images/wrong_size.jpg", encoded(images[0], "JPEG"))
        archive.writestr("masks/wrong_size.png", encoded(masks[0][:32, :32]))
        archive.writestr("images/alone.jpg", encoded(images[1], "JPEG"))
        archive.writestr("images/fake.jpg", b"just text")
        archive.writestr("masks/fake.png", encoded(masks[0]))
    return str(path)


def finetune_call(client, pairs_zip, **overrides):
    options = {**FAST, **overrides}
    return client.submit([handle_file(pairs_zip)], "pets", options.pop("class_mode", KEEP),
                         options.pop("class_names", ""), *options.values(), api_name="/finetune")


def test_check_pairs_lists_good_and_bad(app_url, pairs_zip):
    client = Client(app_url, verbose=False)
    table, gallery, report = client.predict([handle_file(pairs_zip)], "pets", KEEP, "", api_name="/check_pairs")
    rows = {row[0]: row for row in table["data"]}
    assert sum(row[-1] == "ok" for row in rows.values()) == 8
    assert "is 64x64 but its mask wrong_size.png is 32x32" in rows["wrong_size"][-1]
    assert rows["fake"][-1].startswith("skipped:")
    assert "alone.jpg: no mask found" in report and "8 pairs ready" in report
    assert len(gallery) == 8


def test_finetune_lowers_loss_isolates_sessions_and_serves(app_url, pairs_zip):
    owner, other = Client(app_url, verbose=False), Client(app_url, verbose=False)
    job = finetune_call(owner, pairs_zip)
    status, _, _, table, summary, files = job.result(timeout=300)
    assert summary["curves"][-1]["loss"] < summary["curves"][0]["loss"] and summary["steps_run"] == 24
    assert summary["before"] is not None and summary["after"]["images"] == 2 == len(summary["held_out"])
    assert set(summary["skipped_pairs"]) == {"wrong_size", "fake"}
    assert any(path.endswith(".keras") for path in files) and "Done" in status
    assert [row[0] for row in table["data"]][:3] == ["pixel accuracy", "mean IoU", "mean Dice"]

    # the owner can segment with its model by name (no UI step first); the other session cannot see it and keeps
    # the bundled one
    *_, info, _ = owner.predict(handle_file("examples/chelsea_cat.png"), FINETUNED_CHOICE, "pet", 0.5,
                                api_name="/segment")
    assert "fine-tuned" in info and "mean with the mirrored image" in info  # served as its card says
    with pytest.raises(Exception, match="fine-tuned model .*(not in the list of choices|yet)"):
        other.predict(handle_file("examples/chelsea_cat.png"), FINETUNED_CHOICE, "pet", 0.5, api_name="/segment")
    *_, info, _ = other.predict(handle_file("examples/chelsea_cat.png"), "pets", "pet", 0.5, api_name="/segment")
    assert "fine-tuned" not in info


def test_stop_ends_training_and_keeps_the_weights_so_far(app_url, pairs_zip):
    client = Client(app_url, verbose=False)
    job = finetune_call(client, pairs_zip, steps=600, class_mode=NEW, class_names="background, square")  # rounds: 60
    deadline = time.time() + 120
    while time.time() < deadline and not any("Round" in str(update[0]) for update in job.outputs()):
        time.sleep(0.5)
    client.predict(api_name="/stop_finetune")
    status, _, _, _, summary, _ = job.result(timeout=120)
    assert summary["stopped_by_user"] and summary["steps_run"] < 600
    assert "base classes mapped" in summary["before_note"] and summary["after"]["images"] == 2
    assert "stopped by you" in status


def test_bad_finetune_requests_get_messages(app_url, pairs_zip, tmp_path):
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="less than minimum value 10"):  # the slider's own limit
        finetune_call(client, pairs_zip, steps=0).result(timeout=60)
    with pytest.raises(Exception, match="at least two distinct names"):
        finetune_call(client, pairs_zip, class_mode=NEW, class_names="cat, cat").result(timeout=60)
    bogus = tmp_path / "bogus.zip"
    bogus.write_text("not a zip")
    with pytest.raises(Exception, match="not a valid ZIP"):
        client.predict([handle_file(str(bogus))], "pets", KEEP, "", api_name="/check_pairs")
    with pytest.raises(Exception, match="no fine-tuned model"):
        client.predict(handle_file("examples/coffee_cup.png"), FINETUNED_CHOICE, api_name="/segment")


def test_client_leaving_mid_training_stops_it_and_the_server_stays_healthy(app_url, server_log, pairs_zip):
    client = Client(app_url, verbose=False)
    job = finetune_call(client, pairs_zip, steps=600)  # a round every 60 steps
    deadline = time.time() + 120
    while time.time() < deadline and not any("Round" in str(update[0]) for update in job.outputs()):
        time.sleep(0.5)
    job.cancel()
    client.close()
    deadline = time.time() + 60
    while time.time() < deadline and "its session stopped listening" not in server_log.read_text():
        time.sleep(0.5)
    assert "its session stopped listening" in server_log.read_text()
    other = Client(app_url, verbose=False)
    assert other.predict(handle_file("examples/coffee_cup.png"), "pets", "pet", 0.5, api_name="/segment")
